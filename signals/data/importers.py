"""Import candle and trade files into the candle store.

Three formats are recognised from a file's first line (plain, gzip or a single-member zip as
data.binance.vision ships them; compression is found by the magic bytes, not the name):

* ``interchange``: the project's CSV (ARCHITECTURE.md), header
  ``timestamp,open,high,low,close,volume,buy_volume,trades``, open time in epoch seconds.
* ``binance``: data.binance.vision kline CSVs, 12 columns, with or without the newer header;
  ``open_time`` in milliseconds, or microseconds for files from 2025 on (told apart per row by
  magnitude). ``taker_buy_base_volume`` becomes ``buy_volume``, ``number_of_trades`` ``trades``.
* ``bybit-trades``: public.bybit.com/trading dumps, one row per trade, aggregated to candles of
  the base timeframe (1m unless given): open/high/low/close from the price in time order,
  ``volume`` = sum of ``size``, ``buy_volume`` = sum of ``size`` of taker buys (``side == Buy``),
  ``trades`` = number of trades. A minute without trades gives no candle. Every candle of a
  dump is written as closed: Bybit publishes one dump per whole UTC day, after the day ended.
  ``size`` is taken as base units (linear USDT contracts, spot); inverse contracts, whose size
  is in USD, are not converted.

All the files given are parsed and validated completely (the candle rules of
`signals.data.validate`, reported by file, line and field) before anything is written: one bad
file and none is written. Then each file's base candles and every aggregated higher timeframe
are written in one transaction per file, after re-aggregating any range an interrupted fetch
left pending. Higher timeframes
are re-aggregated from the base candles read back from the database over whole buckets, so a
bucket split across two files becomes complete (``closed = 1``) once both are imported.

When files of different timeframes overlap, the finer data wins where it is complete: an
incomplete aggregate never replaces a stored closed candle, and a coarser file imported after
finer ones does not replace the candles built from their complete buckets, so the stored higher
timeframes agree with the finest complete candles whichever order the files come in.

The work is split along the flow: `signals.data.formats` recognises and reads a file,
`signals.data.parse` validates it into base candles, `signals.data.reaggregate` rebuilds the
higher timeframes; this module writes parsed files and runs the whole import.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from signals.data.connection import connect_writable
from signals.data.formats import FileFormat, detect_format, first_line, format_from_line, read_text
from signals.data.frames import epoch_seconds
from signals.data.parse import ParsedFile, detect_timeframe, parse_file, trades_to_candles
from signals.data.reaggregate import (
    AggregateCount,
    Repair,
    bucket_span,
    progress_stage,
    reaggregate,
    refresh_from_finer,
    repair_pending,
)
from signals.data.write import upsert_candles
from signals.errors import DataError
from signals.timeframes import higher_timeframes, timeframe_seconds

__all__ = [  # the import API, wherever each part is defined
    "AggregateCount",
    "FileFormat",
    "FileImport",
    "ImportSummary",
    "ParsedFile",
    "Repair",
    "detect_format",
    "detect_timeframe",
    "first_line",
    "format_from_line",
    "import_file",
    "import_files",
    "parse_file",
    "read_text",
    "reaggregate",
    "repair_pending",
    "trades_to_candles",
    "write_parsed",
]


@dataclass
class FileImport:
    """What importing one file did."""

    path: Path
    format: str
    timeframe: str
    rows_read: int
    rows_written: int
    first: pd.Timestamp | None = None
    last: pd.Timestamp | None = None
    aggregated: dict[str, AggregateCount] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class ImportSummary:
    """The result of `import_files`: one `FileImport` per file, in the order given."""

    db: Path
    symbol: str
    files: list[FileImport] = field(default_factory=list)
    repaired: list[Repair] = field(default_factory=list)

    @property
    def rows_written(self) -> int:
        """Return the number of base candles written over all files."""
        return sum(f.rows_written for f in self.files)


def write_parsed(
    conn: sqlite3.Connection,
    parsed: ParsedFile,
    *,
    symbol: str,
    bar: tqdm | None = None,
) -> FileImport:
    """Write one parsed file's base candles and re-aggregate higher timeframes, atomically."""
    result = FileImport(parsed.path, parsed.format, parsed.timeframe, parsed.rows_read, 0)
    candles = parsed.candles
    if candles.empty:
        return result
    seconds = epoch_seconds(candles.index)
    first, last = int(seconds[0]), int(seconds[-1])
    result.first, result.last = candles.index[0], candles.index[-1]
    base_tf = parsed.timeframe
    with conn:
        progress_stage(bar, f"writing {base_tf}")
        result.rows_written = upsert_candles(conn, candles, symbol=symbol, timeframe=base_tf)
        step = timeframe_seconds(base_tf)
        refresh_from_finer(conn, symbol, base_tf, bucket_span(first, last, step))
        result.aggregated = reaggregate(conn, symbol, base_tf, first, last, bar=bar)
    return result


def import_file(
    conn: sqlite3.Connection,
    path: Path | str,
    *,
    symbol: str = "BTCUSDT",
    timeframe: str | None = None,
    progress: bool = True,
) -> FileImport:
    """Parse, validate and write one file into an open writable connection."""
    started = time.perf_counter()
    parsed = _parse_with_bar(Path(path), timeframe=timeframe, symbol=symbol, progress=progress)
    return _write_with_bar(conn, parsed, symbol=symbol, progress=progress, started=started)


def _parse_with_bar(
    path: Path, *, timeframe: str | None, symbol: str, progress: bool
) -> ParsedFile:
    with tqdm(total=1, desc=f"{path.name} (check)", unit="step", disable=not progress) as bar:
        bar.set_postfix_str("reading", refresh=False)
        parsed = parse_file(path, timeframe=timeframe, symbol=symbol)
        bar.update(1)
        bar.set_postfix_str("valid")
    return parsed


def _write_with_bar(
    conn: sqlite3.Connection, parsed: ParsedFile, *, symbol: str, progress: bool, started: float
) -> FileImport:
    stages = 1 + len(higher_timeframes(parsed.timeframe))
    with tqdm(total=stages, desc=parsed.path.name, unit="step", disable=not progress) as bar:
        result = write_parsed(conn, parsed, symbol=symbol, bar=bar)
        bar.set_postfix_str("done")
    result.seconds = time.perf_counter() - started
    return result


def import_files(
    paths: Iterable[Path | str],
    *,
    db: Path | str,
    symbol: str = "BTCUSDT",
    timeframe: str | None = None,
    progress: bool = True,
) -> ImportSummary:
    """Import candle/trade files into `db`: all are validated first, then each is written.

    Every file is parsed and checked completely before anything is written: one malformed row
    in any file raises `DataError` (naming file, line and field) and no file is written. Then
    each file is written atomically in its own transaction (base candles and aggregates); ranges
    an interrupted fetch left unaggregated are re-aggregated first.
    """
    files = [Path(p) for p in paths]
    if timeframe is not None:
        timeframe_seconds(timeframe)  # raises TimeframeError naming the valid ones
    if not files:
        raise DataError("no files to import")
    for path in files:
        if not path.is_file():
            raise DataError(f"{path}: file not found")
    summary = ImportSummary(Path(db), symbol)
    parsed: list[tuple[ParsedFile, float]] = []
    for path in files:
        started = time.perf_counter()
        try:
            item = _parse_with_bar(path, timeframe=timeframe, symbol=symbol, progress=progress)
        except DataError as exc:
            if len(files) == 1:
                raise
            raise DataError(f"{exc}; none of the {len(files)} files was imported") from None
        parsed.append((item, time.perf_counter() - started))
    try:
        conn = connect_writable(db)
    except sqlite3.Error as exc:
        raise DataError(f"{db}: cannot open database for writing: {exc}") from None
    try:
        summary.repaired = repair_pending(conn)
        for item, seconds in parsed:
            started = time.perf_counter() - seconds
            summary.files.append(
                _write_with_bar(conn, item, symbol=symbol, progress=progress, started=started)
            )
    except sqlite3.Error as exc:
        raise DataError(f"{db}: writing candles failed: {exc}") from None
    finally:
        conn.close()
    return summary
