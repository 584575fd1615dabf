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
"""

from __future__ import annotations

import gzip
import io
import sqlite3
import time
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from signals.data.aggregate import aggregate
from signals.data.crashpoint import crash_point
from signals.data.schema import CANDLE_COLUMNS
from signals.data.store import (
    clear_pending,
    connect_writable,
    frame_from_rows,
    pending_ranges,
    upsert_candles,
)
from signals.data.validate import Violation, check_frame, iso, row_violations
from signals.errors import DataError
from signals.timeframes import (
    TIMEFRAMES,
    TimeframeError,
    higher_timeframes,
    timeframe_from_seconds,
    timeframe_seconds,
)

INTERCHANGE_COLUMNS: tuple[str, ...] = ("timestamp", *CANDLE_COLUMNS)
BINANCE_COLUMNS: tuple[str, ...] = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "count",
    "taker_buy_volume",
    "taker_buy_quote_volume",
    "ignore",
)
BYBIT_REQUIRED: tuple[str, ...] = ("timestamp", "symbol", "side", "size", "price")

GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"


@dataclass(frozen=True)
class FileFormat:
    """A recognised file layout: its name, column names and whether line 1 is a header."""

    name: str
    columns: tuple[str, ...]
    header: bool

    @property
    def first_data_line(self) -> int:
        """Return the 1-based line number of the first data row."""
        return 2 if self.header else 1


@dataclass(frozen=True)
class AggregateCount:
    """How many candles of one aggregated timeframe were (re)computed, by completeness."""

    complete: int
    incomplete: int


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


@dataclass
class ParsedFile:
    """A validated file turned into base candles (UTC index ``time``, float64 columns)."""

    path: Path
    format: str
    timeframe: str
    rows_read: int
    candles: pd.DataFrame


# -- reading and format detection --


def _open_text(path: Path) -> io.TextIOBase:
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc}") from None
    if magic[:2] == GZIP_MAGIC:
        return gzip.open(path, "rt", encoding="utf-8-sig")  # type: ignore[return-value]
    if magic == ZIP_MAGIC:  # data.binance.vision ships one CSV per .zip
        return _open_zip_member(path)
    return path.open("r", encoding="utf-8-sig")


def _open_zip_member(path: Path) -> io.TextIOBase:
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise DataError(f"{path}: corrupt zip archive: {exc}") from None
    members = [n for n in archive.namelist() if not n.endswith("/")]
    if len(members) != 1:
        archive.close()
        raise DataError(f"{path}: a zip archive must hold exactly one CSV, found {members}")
    return io.TextIOWrapper(archive.open(members[0]), encoding="utf-8-sig")


def read_text(path: Path | str) -> str:
    """Return the whole decoded text of a plain, gzip or zip file, or raise `DataError`."""
    path = Path(path)
    try:
        with _open_text(path) as fh:
            return fh.read()
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read as text (corrupt gzip or not CSV?): {exc}") from None


def first_line(path: Path | str) -> str:
    """Return the first line of a plain, gzip or zip file, without its line ending."""
    path = Path(path)
    try:
        with _open_text(path) as fh:
            return fh.readline().rstrip("\r\n")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read as text (corrupt gzip or not CSV?): {exc}") from None


def _is_integer_text(text: str) -> bool:
    return text.strip().isdigit()


def format_from_line(line: str, path: Path | str = "<file>") -> FileFormat:
    """Recognise the file format from its first line, or raise `DataError` quoting it."""
    fields = [f.strip() for f in line.split(",")]
    if tuple(fields) == INTERCHANGE_COLUMNS:
        return FileFormat("interchange", INTERCHANGE_COLUMNS, header=True)
    if len(fields) == len(BINANCE_COLUMNS):
        if fields[0] == "open_time":
            return FileFormat("binance", BINANCE_COLUMNS, header=True)
        if _is_integer_text(fields[0]):
            return FileFormat("binance", BINANCE_COLUMNS, header=False)
    if tuple(fields[: len(BYBIT_REQUIRED)]) == BYBIT_REQUIRED:
        return FileFormat("bybit-trades", tuple(fields), header=True)
    shown = line if len(line) <= 120 else line[:117] + "..."
    raise DataError(
        f"{path}: unrecognised format; first line was {shown!r}. Expected the interchange CSV "
        "header, a Binance kline CSV (12 columns) or a Bybit trade dump header"
    )


def detect_format(path: Path | str) -> FileFormat:
    """Recognise the format of a file (plain or gzip) from its first line."""
    return format_from_line(first_line(path), path)


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


# -- writing --


def _bucket_span(first: int, last: int, size: int) -> tuple[int, int]:
    """Return [start, end) covering whole `size` buckets from `first` to `last` (epoch s)."""
    return first - first % size, last - last % size + size


def _read_back(
    conn: sqlite3.Connection, symbol: str, timeframe: str, span: tuple[int, int]
) -> pd.DataFrame:
    rows = conn.execute(
        "SELECT timestamp, open, high, low, close, volume, buy_volume, trades FROM candles "
        "WHERE symbol = ? AND timeframe = ? AND timestamp >= ? AND timestamp < ? AND closed = 1 "
        "ORDER BY timestamp",
        (symbol, timeframe, span[0], span[1]),
    ).fetchall()
    return frame_from_rows(rows, ["timestamp", *CANDLE_COLUMNS])


def _has_rows(conn: sqlite3.Connection, symbol: str, timeframe: str, span: tuple[int, int]) -> bool:
    row = conn.execute(
        "SELECT 1 FROM candles WHERE symbol = ? AND timeframe = ? AND timestamp >= ? "
        "AND timestamp < ? LIMIT 1",
        (symbol, timeframe, span[0], span[1]),
    ).fetchone()
    return row is not None


def _write_aggregate(
    conn: sqlite3.Connection, base: pd.DataFrame, symbol: str, source: str, target: str
) -> AggregateCount:
    out = aggregate(base, base=source, target=target)
    complete = out.pop("complete").astype(bool)
    upsert_candles(conn, out, symbol=symbol, timeframe=target, closed=complete, keep_closed=True)
    n_complete = int(complete.sum())
    return AggregateCount(n_complete, len(out) - n_complete)


def _refresh_from_finer(
    conn: sqlite3.Connection, symbol: str, timeframe: str, span: tuple[int, int]
) -> None:
    """Let complete aggregates of finer candles already stored override a coarser file's rows.

    Importing a 1h file after 1m files must not replace 1h candles built from complete minutes
    (with their taker-buy volume and trade counts) by the file's coarser copy.
    """
    step = timeframe_seconds(timeframe)
    for finer, length in TIMEFRAMES.items():
        if length < step and step % length == 0 and _has_rows(conn, symbol, finer, span):
            base = _read_back(conn, symbol, finer, span)
            out = aggregate(base, base=finer, target=timeframe)
            out = out[out.pop("complete").astype(bool)]
            upsert_candles(conn, out, symbol=symbol, timeframe=timeframe, closed=True)
            return


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
    seconds = candles.index.as_unit("s").asi8
    first, last = int(seconds[0]), int(seconds[-1])
    result.first, result.last = candles.index[0], candles.index[-1]
    base_tf = parsed.timeframe
    with conn:
        _stage(bar, f"writing {base_tf}")
        result.rows_written = upsert_candles(conn, candles, symbol=symbol, timeframe=base_tf)
        step = timeframe_seconds(base_tf)
        _refresh_from_finer(conn, symbol, base_tf, _bucket_span(first, last, step))
        result.aggregated = reaggregate(conn, symbol, base_tf, first, last, bar=bar)
    return result


def reaggregate(
    conn: sqlite3.Connection,
    symbol: str,
    base_tf: str,
    first: int,
    last: int,
    *,
    bar: tqdm | None = None,
) -> dict[str, AggregateCount]:
    """Rebuild every higher timeframe over the buckets touched by base candles `first`..`last`.

    The base candles are read back from the database (so a bucket split across two writes is
    complete once both are in); an incomplete bucket is stored with ``closed = 0`` and never
    replaces a closed candle already there. Does not commit: the caller owns the transaction.
    """
    targets = higher_timeframes(base_tf)
    if not targets:
        return {}
    spans = {t: _bucket_span(first, last, timeframe_seconds(t)) for t in targets}
    whole = (min(s[0] for s in spans.values()), max(s[1] for s in spans.values()))
    stored = _read_back(conn, symbol, base_tf, whole)  # read once, over the widest span
    stored_s = stored.index.as_unit("s").asi8
    counts: dict[str, AggregateCount] = {}
    for target in targets:
        _stage(bar, f"aggregating {target}")
        start, end = spans[target]
        base = stored[(stored_s >= start) & (stored_s < end)]
        counts[target] = _write_aggregate(conn, base, symbol, base_tf, target)
        crash_point(f"aggregate:{target}")
    return counts


@dataclass(frozen=True)
class Repair:
    """Higher timeframes rebuilt over a range an interrupted write left pending."""

    symbol: str
    timeframe: str
    first: int
    last: int
    aggregated: dict[str, AggregateCount]

    def __str__(self) -> str:
        rebuilt = sum(c.complete + c.incomplete for c in self.aggregated.values())
        return (
            f"re-aggregated {self.symbol} {self.timeframe} {iso(self.first)} .. "
            f"{iso(self.last)}: {rebuilt} higher-timeframe candles"
        )


def repair_pending(conn: sqlite3.Connection) -> list[Repair]:
    """Re-aggregate every range whose base candles were committed but not yet aggregated.

    Each range is rebuilt and its marker deleted in one transaction, so a crash here too leaves
    the marker for the next run; only the marked buckets are read and rewritten.
    """
    done = []
    for symbol, timeframe, first, last in pending_ranges(conn):
        with conn:
            counts = reaggregate(conn, symbol, timeframe, first, last)
            clear_pending(conn, symbol, timeframe, first, last)
        done.append(Repair(symbol, timeframe, first, last, counts))
    return done


def _stage(bar: tqdm | None, text: str) -> None:
    if bar is not None:
        bar.set_postfix_str(text, refresh=False)
        bar.update(1)


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
    paths = [Path(p) for p in paths]
    if timeframe is not None:
        timeframe_seconds(timeframe)  # raises TimeframeError naming the valid ones
    if not paths:
        raise DataError("no files to import")
    for path in paths:
        if not path.is_file():
            raise DataError(f"{path}: file not found")
    summary = ImportSummary(Path(db), symbol)
    parsed: list[tuple[ParsedFile, float]] = []
    for path in paths:
        started = time.perf_counter()
        try:
            item = _parse_with_bar(path, timeframe=timeframe, symbol=symbol, progress=progress)
        except DataError as exc:
            if len(paths) == 1:
                raise
            raise DataError(f"{exc}; none of the {len(paths)} files was imported") from None
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
