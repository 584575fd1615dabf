"""Write candle frames as the interchange CSV of ARCHITECTURE.md.

``timestamp,open,high,low,close,volume,buy_volume,trades`` with a header; timestamp is the candle
open in UTC epoch seconds; ``buy_volume``/``trades`` are empty when unknown; ``trades`` is an
integer; floats are written in their shortest round-trip form (``repr``), with a trailing ``.0``
dropped (``4000.0`` is written ``4000``). A name ending in ``.gz`` is gzip-compressed (with a fixed
header time, so the same candles always give the same bytes).
"""

from __future__ import annotations

import gzip
import io
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

import pandas as pd

from signals.data.validate import epoch_seconds

HEADER = ("timestamp", "open", "high", "low", "close", "volume", "buy_volume", "trades")


def format_float(value: float) -> str:
    """Return the shortest round-trip text of `value`: ``4000.0`` → ``4000``, NaN → empty."""
    if math.isnan(value):
        return ""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def format_int(value: float) -> str:
    """Return `value` as an integer text, NaN → empty."""
    return "" if math.isnan(value) else str(int(value))


def interchange_lines(frame: pd.DataFrame) -> Iterator[str]:
    """Yield the CSV lines (header first, each ending in a newline) for a candle frame."""
    yield ",".join(HEADER) + "\n"
    columns = [epoch_seconds(frame.index).tolist()]
    for name in HEADER[1:]:
        values = frame[name].to_numpy("float64").tolist()
        fmt = format_int if name == "trades" else format_float
        columns.append([fmt(v) for v in values])
    for ts, *rest in zip(*columns, strict=True):
        yield f"{ts}," + ",".join(rest) + "\n"


@contextmanager
def _open_text(path: Path, *, gz: bool) -> Iterator[TextIO]:
    if gz:
        with (
            open(path, "wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as packed,
            io.TextIOWrapper(packed, encoding="utf-8", newline="") as text,
        ):
            yield text
    else:
        with open(path, "w", encoding="utf-8", newline="") as text:
            yield text


def write_interchange(frame: pd.DataFrame, path: Path) -> int:
    """Write `frame` to `path` as interchange CSV (gzip for ``.gz``), atomically; return rows."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        with _open_text(partial, gz=path.name.endswith(".gz")) as out:
            out.writelines(interchange_lines(frame))
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return len(frame)
