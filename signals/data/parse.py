"""Parse and validate one candle or trade file completely into base candles.

Every row is checked against the candle rules of `signals.data.validate` (reported by file,
line and field) before anything is returned, so a caller can refuse a whole batch before it
writes any of it. See `signals.data.importers` for the formats and how they map to candles.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from signals.data.formats import (
    BYBIT_REQUIRED,
    INTERCHANGE_COLUMNS,
    FileFormat,
    format_from_line,
    read_text,
)
from signals.data.schema import CANDLE_COLUMNS
from signals.data.validate import Violation, check_frame, iso, row_violations
from signals.errors import DataError
from signals.timeframes import (
    TIMEFRAMES,
    TimeframeError,
    timeframe_from_seconds,
    timeframe_seconds,
)


@dataclass
class ParsedFile:
    """A validated file turned into base candles (UTC index ``time``, float64 columns)."""

    path: Path
    format: str
    timeframe: str
    rows_read: int
    candles: pd.DataFrame


# -- validation helpers --


def _check_field_counts(text: str, fmt: FileFormat, path: Path) -> None:
    lines = text.split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    expected = len(fmt.columns) - 1
    start = fmt.first_data_line - 1
    for i in range(start, len(lines)):
        found = lines[i].count(",")
        if found != expected:
            what = "a blank line" if not lines[i].strip() else f"{found + 1} fields"
            raise DataError(
                f"{path}: line {i + 1}: expected {expected + 1} fields "
                f"({','.join(fmt.columns)}), found {what}"
            )


def _read_table(text: str, fmt: FileFormat, path: Path, usecols: Sequence[str]) -> pd.DataFrame:
    _check_field_counts(text, fmt, path)
    try:
        return pd.read_csv(
            io.StringIO(text),
            header=None,
            names=list(fmt.columns),
            usecols=list(usecols),
            skiprows=fmt.first_data_line - 1,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=True,
            engine="c",
        )
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataError(f"{path}: cannot parse CSV: {exc}") from None


def _fail(path: Path, line: int, column: str, problem: str, value: str) -> DataError:
    shown = f" ({value!r})" if value != "" else ""
    return DataError(f"{path}: line {line}, field {column!r}: {problem}{shown}")


def _numeric(
    raw: pd.DataFrame,
    column: str,
    ctx: tuple[Path, int],
    *,
    required: bool = True,
    integer: bool = False,
    non_negative: bool = True,
) -> np.ndarray:
    """Convert one text column to float64, raising `DataError` at the first bad row."""
    path, first = ctx
    text = raw[column].astype(str).str.strip()
    numbers = pd.to_numeric(text, errors="coerce")
    values = np.asarray(numbers.to_numpy(dtype="float64", na_value=np.nan), dtype="float64")
    empty = (text == "").to_numpy()
    checks = [
        (empty if required else np.zeros(len(values), bool), "empty required field"),
        (~empty & ~np.isfinite(values), "not a number"),
    ]
    finite = np.where(np.isfinite(values), values, 0.0)
    if integer:
        checks.append((finite != np.floor(finite), "not an integer"))
    if non_negative:
        checks.append((finite < 0, "negative value"))
    for bad, problem in checks:
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise _fail(path, i + first, column, problem, str(text.iloc[i]))
    return values


def _check_timestamps(ts: np.ndarray, ctx: tuple[Path, int], column: str) -> None:
    path, first = ctx
    dup = pd.Series(ts).duplicated().to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise _fail(path, i + first, column, "duplicate candle open time", str(int(ts[i])))


def detect_timeframe(timestamps: Iterable[int] | np.ndarray) -> str:
    """Return the timeframe whose length is the most common positive spacing of `timestamps`."""
    values = timestamps if isinstance(timestamps, np.ndarray) else list(timestamps)
    ts = np.unique(np.asarray(values, dtype="int64"))
    diffs = np.diff(ts)
    diffs = diffs[diffs > 0]
    if diffs.size == 0:
        raise DataError("cannot detect the timeframe from fewer than two candles; pass --timeframe")
    spacings, counts = np.unique(diffs, return_counts=True)
    spacing = int(spacings[np.argmax(counts)])
    try:
        return timeframe_from_seconds(spacing)
    except TimeframeError:
        known = ", ".join(f"{k}={v}s" for k, v in TIMEFRAMES.items())
        raise DataError(
            f"candle spacing of {spacing} s is not a known timeframe ({known}); pass --timeframe"
        ) from None


def _resolve_timeframe(
    ts: np.ndarray, timeframe: str | None, ctx: tuple[Path, int], column: str
) -> str:
    """Detect (or take) the timeframe and check every open time is aligned to it."""
    path, first = ctx
    if timeframe is None:
        try:
            timeframe = detect_timeframe(ts)
        except DataError as exc:
            raise DataError(f"{path}: {exc}") from None
    step = timeframe_seconds(timeframe)
    misaligned = ts % step != 0
    if misaligned.any():
        i = int(np.flatnonzero(misaligned)[0])
        problem = f"open time {int(ts[i])} not aligned to {timeframe} candles"
        raise _fail(path, i + first, column, problem, "")
    return timeframe


SHOWN_LINES = 5


def _check_rows(
    ts: np.ndarray, columns: dict[str, np.ndarray], timeframe: str, ctx: tuple[Path, int]
) -> None:
    """Raise `DataError` naming line and field of the first row that breaks a candle rule.

    The rules are `signals.data.validate`'s (order, OHLC consistency, negative or NaN values,
    ``buy_volume <= volume``, alignment), applied to the rows in file order.
    """
    path, first = ctx
    found = row_violations(ts, columns, timeframe=timeframe, symbol="", origin=str(path))
    if not found:
        return
    pos, violation = found[0]
    lines = sorted({p + first for p, _ in found[1:]})
    more = ""
    if len(found) > 1:
        shown = ", ".join(str(n) for n in lines[:SHOWN_LINES])
        tail = ", ..." if len(lines) > SHOWN_LINES else ""
        more = f" (and {len(found) - 1} more in this file, lines {shown}{tail})"
    raise DataError(
        f"{path}: line {pos + first}, field {violation.field!r}: {violation.message}{more}"
    )


def _candle_frame(ts: np.ndarray, columns: dict[str, np.ndarray]) -> pd.DataFrame:
    index = pd.DatetimeIndex(pd.to_datetime(ts, unit="s", utc=True), name="time")
    frame = pd.DataFrame({c: columns[c] for c in CANDLE_COLUMNS}, index=index)
    return frame.sort_index()


# -- parsers --


def _parse_interchange(text: str, fmt: FileFormat, path: Path, timeframe: str | None) -> ParsedFile:
    raw = _read_table(text, fmt, path, INTERCHANGE_COLUMNS)
    ctx = (path, fmt.first_data_line)
    ts = _numeric(raw, "timestamp", ctx, integer=True).astype("int64")
    cols = {c: _numeric(raw, c, ctx) for c in ("open", "high", "low", "close", "volume")}
    cols["buy_volume"] = _numeric(raw, "buy_volume", ctx, required=False)
    cols["trades"] = _numeric(raw, "trades", ctx, required=False, integer=True)
    _check_timestamps(ts, ctx, "timestamp")
    tf = _resolve_timeframe(ts, timeframe, ctx, "timestamp")
    _check_rows(ts, cols, tf, ctx)
    return ParsedFile(path, fmt.name, tf, len(raw), _candle_frame(ts, cols))


def _binance_seconds(open_time: np.ndarray, ctx: tuple[Path, int]) -> np.ndarray:
    """Convert open times in ms, or µs (2025 on), to epoch seconds, per row by magnitude."""
    path, first = ctx
    micro = open_time >= 1e14
    small = open_time < 1e11
    if small.any():
        i = int(np.flatnonzero(small)[0])
        raise _fail(
            path,
            i + first,
            "open_time",
            "not in milliseconds or microseconds",
            str(int(open_time[i])),
        )
    divisor = np.where(micro, 10**6, 10**3)
    as_int = open_time.astype("int64")
    fractional = as_int % divisor != 0
    if fractional.any():
        i = int(np.flatnonzero(fractional)[0])
        raise _fail(path, i + first, "open_time", "not on a whole second", str(as_int[i]))
    return as_int // divisor


def _parse_binance(text: str, fmt: FileFormat, path: Path, timeframe: str | None) -> ParsedFile:
    used = ("open_time", "open", "high", "low", "close", "volume", "count", "taker_buy_volume")
    raw = _read_table(text, fmt, path, used)
    ctx = (path, fmt.first_data_line)
    ts = _binance_seconds(_numeric(raw, "open_time", ctx, integer=True), ctx)
    cols = {c: _numeric(raw, c, ctx) for c in ("open", "high", "low", "close", "volume")}
    cols["buy_volume"] = _numeric(raw, "taker_buy_volume", ctx)
    cols["trades"] = _numeric(raw, "count", ctx, integer=True)
    _check_timestamps(ts, ctx, "open_time")
    tf = _resolve_timeframe(ts, timeframe, ctx, "open_time")
    _check_rows(ts, cols, tf, ctx)
    return ParsedFile(path, fmt.name, tf, len(raw), _candle_frame(ts, cols))


def _trade_sides(raw: pd.DataFrame, ctx: tuple[Path, int]) -> np.ndarray:
    path, first = ctx
    side = raw["side"].astype(str).str.strip()
    bad = ~side.isin(["Buy", "Sell"]).to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise _fail(path, i + first, "side", "expected Buy or Sell", str(side.iloc[i]))
    return (side == "Buy").to_numpy()


def _check_symbol(raw: pd.DataFrame, symbol: str, ctx: tuple[Path, int]) -> None:
    path, first = ctx
    names = raw["symbol"].astype(str).str.strip()
    other = (names != symbol).to_numpy()
    if other.any():
        i = int(np.flatnonzero(other)[0])
        raise _fail(
            path,
            i + first,
            "symbol",
            f"trade of another symbol than {symbol} (pass --symbol to import it)",
            str(names.iloc[i]),
        )


def trades_to_candles(
    seconds: np.ndarray, price: np.ndarray, size: np.ndarray, is_buy: np.ndarray, step: int = 60
) -> pd.DataFrame:
    """Aggregate trades (epoch seconds, price, base size, taker-buy flag) to candles of `step` s.

    Trades are put in time order first (a file in descending order is reversed, so trades with
    the same timestamp keep their order). Buckets without trades give no candle.
    """
    order = np.arange(len(seconds))
    if len(seconds) > 1 and seconds[0] > seconds[-1]:
        order = order[::-1]
    order = order[np.argsort(seconds[order], kind="stable")]
    ts = seconds[order]
    bucket = (np.floor(ts / step) * step).astype("int64")
    trades = pd.DataFrame(
        {
            "bucket": bucket,
            "price": price[order],
            "size": size[order],
            "buy": np.where(is_buy[order], size[order], 0.0),
        }
    )
    g = trades.groupby("bucket", sort=True)
    out = pd.DataFrame(
        {
            "open": g["price"].first(),
            "high": g["price"].max(),
            "low": g["price"].min(),
            "close": g["price"].last(),
            "volume": g["size"].sum(),
            "buy_volume": g["buy"].sum(),
            "trades": g["price"].size().astype("float64"),
        }
    )
    keys = out.index.to_numpy("int64")
    out.index = pd.DatetimeIndex(pd.to_datetime(keys, unit="s", utc=True), name="time")
    return out


def _parse_bybit(
    text: str, fmt: FileFormat, path: Path, timeframe: str | None, symbol: str
) -> ParsedFile:
    raw = _read_table(text, fmt, path, BYBIT_REQUIRED)
    ctx = (path, fmt.first_data_line)
    seconds = _numeric(raw, "timestamp", ctx)
    if len(seconds) and np.nanmax(seconds) >= 1e11:  # some dumps give milliseconds
        seconds = seconds / 1000.0
    price = _numeric(raw, "price", ctx)
    size = _numeric(raw, "size", ctx)
    is_buy = _trade_sides(raw, ctx)
    _check_symbol(raw, symbol, ctx)
    tf = timeframe or "1m"
    candles = trades_to_candles(seconds, price, size, is_buy, step=timeframe_seconds(tf))
    _check_built(candles, tf, path)
    return ParsedFile(path, fmt.name, tf, len(raw), candles)


def _check_built(candles: pd.DataFrame, timeframe: str, path: Path) -> None:
    """Check candles built from trades with the same rules (a safety net: they hold by build)."""
    found: list[Violation] = check_frame(candles, timeframe=timeframe, symbol="", origin="")
    if found:
        v = found[0]
        raise DataError(
            f"{path}: candle {iso(v.timestamp)} built from its trades, field {v.field!r}: "
            f"{v.message}"
        )


def parse_file(
    path: Path | str, *, timeframe: str | None = None, symbol: str = "BTCUSDT"
) -> ParsedFile:
    """Read, recognise and validate one file completely; return its base candles."""
    path = Path(path)
    if timeframe is not None:
        timeframe_seconds(timeframe)  # raises TimeframeError naming the valid ones
    text = read_text(path)
    end = text.find("\n")
    line = (text if end < 0 else text[:end]).rstrip("\r")
    fmt = format_from_line(line, path)
    if fmt.name == "interchange":
        return _parse_interchange(text, fmt, path, timeframe)
    if fmt.name == "binance":
        return _parse_binance(text, fmt, path, timeframe)
    return _parse_bybit(text, fmt, path, timeframe, symbol)
