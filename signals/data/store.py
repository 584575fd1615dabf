"""Read and write the candle store (SQLite, WAL) that research and live share.

Readers open the database read-only through a ``file:...?mode=ro`` URI with a busy timeout, so
the pipeline can keep writing. Only closed candles are ever returned.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from signals.config import CandleSource
from signals.data.schema import (
    ANALYSIS_COLUMNS,
    ANALYSIS_DDL,
    CANDLE_COLUMNS,
    CANDLES_DDL,
    PENDING_DDL,
)
from signals.errors import DataError
from signals.timeframes import timeframe_seconds

Clock = Callable[[], float]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def connect_readonly(path: Path | str, *, busy_timeout_ms: int = 5000) -> sqlite3.Connection:
    """Open an existing SQLite database read-only, or raise `DataError` naming the file."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: database not found")
    uri = f"file:{path.resolve().as_posix()}?mode=ro"
    try:
        conn = sqlite3.connect(
            uri, uri=True, timeout=busy_timeout_ms / 1000, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    except sqlite3.Error as exc:
        raise DataError(f"{path}: cannot open database: {exc}") from None
    return conn


def connect_writable(
    path: Path | str, *, busy_timeout_ms: int = 5000, source: CandleSource | None = None
) -> sqlite3.Connection:
    """Open (creating if needed) a database in WAL mode with the reference schema.

    With a mapped `source` (``data.source`` of the config) the candle table is the mapped one:
    used as it is when it exists, else created with the mapped columns only.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=busy_timeout_ms / 1000)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    if _is_reference(source):
        conn.execute(CANDLES_DDL)
        conn.execute(PENDING_DDL)  # import/fetch's aggregation marker (reference schema only)
    else:  # a pipeline's own table: nothing else is added to its database
        conn.execute(_mapped_ddl(source))  # type: ignore[arg-type]
    return conn


def _is_reference(source: CandleSource | None) -> bool:
    return source is None or source == CandleSource()


def _mapped_columns(source: CandleSource) -> list[tuple[str, str]]:
    """Return (frame field, table column) of every column the mapped table has, key first."""
    cols = source.columns
    names = ["symbol", "timeframe", "timestamp", *CANDLE_COLUMNS, "closed"]
    return [(name, col) for name in names if (col := getattr(cols, name))]


def _mapped_ddl(source: CandleSource) -> str:
    types = {"symbol": "TEXT", "timeframe": "TEXT", "timestamp": "INTEGER", "trades": "INTEGER",
             "closed": "INTEGER"}  # fmt: skip
    columns = [f"{_quote(col)} {types.get(name, 'REAL')}" for name, col in _mapped_columns(source)]
    key = [_quote(col) for name, col in _mapped_columns(source) if name in _KEY]
    return (
        f"CREATE TABLE IF NOT EXISTS {_quote(source.table)} "
        f"({', '.join(columns)}, PRIMARY KEY ({', '.join(key)}))"
    )


_KEY = ("symbol", "timeframe", "timestamp")


def mark_pending(
    conn: sqlite3.Connection, symbol: str, timeframe: str, first: int, last: int
) -> None:
    """Record base candles `first`..`last` as not yet aggregated, in the caller's transaction.

    One range per series: a new mark widens the stored one to cover both.
    """
    conn.execute(
        "INSERT INTO aggregate_pending (symbol, timeframe, first, last) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(symbol, timeframe) DO UPDATE SET first = min(first, excluded.first), "
        "last = max(last, excluded.last)",
        (symbol, timeframe, int(first), int(last)),
    )


def pending_ranges(conn: sqlite3.Connection) -> list[tuple[str, str, int, int]]:
    """Return the (symbol, base timeframe, first, last) ranges still waiting for aggregation."""
    rows = conn.execute(
        "SELECT symbol, timeframe, first, last FROM aggregate_pending ORDER BY symbol, timeframe"
    ).fetchall()
    return [(str(s), str(t), int(a), int(b)) for s, t, a, b in rows]


def clear_pending(
    conn: sqlite3.Connection, symbol: str, timeframe: str, first: int, last: int
) -> None:
    """Delete a pending range once aggregated, unless another writer widened it meanwhile."""
    conn.execute(
        "DELETE FROM aggregate_pending "
        "WHERE symbol = ? AND timeframe = ? AND first = ? AND last = ?",
        (symbol, timeframe, int(first), int(last)),
    )


def empty_frame() -> pd.DataFrame:
    """Return an empty candle frame with the standard columns and a UTC index."""
    index = pd.DatetimeIndex([], tz="UTC", name="time")
    return pd.DataFrame({c: pd.Series([], dtype="float64") for c in CANDLE_COLUMNS}, index=index)


def frame_from_rows(rows: list[tuple], columns: list[str]) -> pd.DataFrame:
    """Build a candle frame (UTC index ``time``, float64 columns) from ``timestamp, ...`` rows."""
    if not rows:
        frame = empty_frame()
        for extra in columns[1:]:
            if extra not in frame:
                frame[extra] = pd.Series([], dtype="float64")
        return frame
    ts, values = arrays_from_rows(rows, len(columns) - 1)
    return frame_from_arrays(ts, values, list(columns[1:]))


def arrays_from_rows(rows: list[tuple], n_values: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (open times as int64 epoch seconds, float64 values) of ``timestamp, ...`` rows."""
    if not rows:
        return np.empty(0, dtype="int64"), np.empty((0, n_values), dtype="float64")
    try:  # numbers and NULLs (NaN): one conversion, one float64 block
        numbers = np.array(rows, dtype="float64")
        if np.isnan(numbers[:, 0]).any():
            raise ValueError("a NULL open time")  # the slow path reports it as before
        return numbers[:, 0].astype("int64"), numbers[:, 1:]
    except (TypeError, ValueError):  # text somewhere: unreadable values become NaN
        array = np.array(rows, dtype=object)
        values = [
            pd.to_numeric(array[:, i], errors="coerce").astype("float64")
            for i in range(1, n_values + 1)
        ]
        return array[:, 0].astype("int64"), np.column_stack(values)


UTC_MICROSECONDS = pd.DatetimeTZDtype("us", "UTC")


def frame_from_arrays(
    ts: np.ndarray, values: np.ndarray, columns: list[str] | pd.Index
) -> pd.DataFrame:
    """Build a candle frame from open times (epoch seconds) and a float64 value matrix.

    `columns` may be a prebuilt `pd.Index` (the live engine passes one, saving its construction
    on every step).
    """
    # as pd.to_datetime(ts, unit="s", utc=True) gives (microseconds, UTC), without its parsing
    stamps = ts.astype("datetime64[s]").astype("datetime64[us]")
    index = pd.DatetimeIndex(stamps, name="time", dtype=UTC_MICROSECONDS)
    return pd.DataFrame(values, index=index, columns=columns)


class CandleStore:
    """Read-only access to closed candles of one database (plus optional analysis.db)."""

    def __init__(
        self,
        path: Path | str,
        *,
        analysis_db: Path | str | None = None,
        source: CandleSource | None = None,
        busy_timeout_ms: int = 5000,
        clock: Clock = time.time,
    ) -> None:
        self.path = Path(path)
        self.source = source or CandleSource()
        self.clock = clock
        self._conn = connect_readonly(self.path, busy_timeout_ms=busy_timeout_ms)
        info = self.path.stat()
        self._identity = (info.st_dev, info.st_ino)
        self.analysis_db = Path(analysis_db) if analysis_db else None
        if self.analysis_db is not None:
            if not self.analysis_db.exists():
                raise DataError(f"{self.analysis_db}: analysis database not found")
            uri = f"file:{self.analysis_db.resolve().as_posix()}?mode=ro"
            self._conn.execute("ATTACH DATABASE ? AS an", (uri,))

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def set_busy_timeout(self, milliseconds: int) -> None:
        """Set how long a read waits for a writer's lock before it fails (0: fail at once)."""
        self._conn.execute(f"PRAGMA busy_timeout = {int(milliseconds)}")

    def __enter__(self) -> CandleStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- queries -----------------------------------------------------------------------------

    def data_version(self) -> int:
        """Return SQLite's ``PRAGMA data_version``: it changes when another connection commits."""
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def series(self) -> list[tuple[str, str]]:
        """Return the (symbol, timeframe) pairs present in the store."""
        cols, src = self.source.columns, self.source
        sym = _quote(cols.symbol) if cols.symbol else "?"
        tf = _quote(cols.timeframe) if cols.timeframe else "?"
        params = [
            p for p, c in ((src.symbol, cols.symbol), (src.timeframe, cols.timeframe)) if not c
        ]
        sql = f"SELECT DISTINCT {sym}, {tf} FROM {_quote(src.table)} ORDER BY 1, 2"
        with self._errors("listing series"):
            return [(str(s), str(t)) for s, t in self._conn.execute(sql, params)]

    def history(
        self,
        symbol: str,
        timeframe: str,
        *,
        start: pd.Timestamp | int | None = None,
        end: pd.Timestamp | int | None = None,
        with_analysis: bool = False,
    ) -> pd.DataFrame:
        """Return closed candles with open time in [start, end] as a frame on a UTC index."""
        where, params = self._series_filter(symbol, timeframe)
        if start is not None:
            where.append(f"{self._ts_expr()} >= ?")
            params.append(_epoch(start))
        if end is not None:
            where.append(f"{self._ts_expr()} <= ?")
            params.append(_epoch(end))
        rows = self._rows(where, params, order="ASC", limit=None, with_analysis=with_analysis)
        return frame_from_rows(*rows)

    def last_closed(
        self, symbol: str, timeframe: str, n: int, *, until: pd.Timestamp | int | None = None
    ) -> pd.DataFrame:
        """Return the last `n` closed candles (opening at or before `until`), oldest first."""
        where, params = self._series_filter(symbol, timeframe)
        if until is not None:
            where.append(f"{self._ts_expr()} <= ?")
            params.append(_epoch(until))
        frame = frame_from_rows(
            *self._rows(where, params, order="DESC", limit=n, with_analysis=False)
        )
        return frame.iloc[::-1]

    def closed_since(self, symbol: str, timeframe: str, after: pd.Timestamp | int) -> pd.DataFrame:
        """Return closed candles whose open time is strictly after `after`, oldest first."""
        ts, values = self.closed_since_arrays(symbol, timeframe, after)
        if not len(ts):
            return empty_frame()
        return frame_from_arrays(ts, values, list(CANDLE_COLUMNS))

    def closed_since_arrays(
        self,
        symbol: str,
        timeframe: str,
        after: pd.Timestamp | int,
        *,
        until: pd.Timestamp | int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return `closed_since` as arrays: open times and a (candles x CANDLE_COLUMNS) matrix.

        `until` bounds the open times from above (inclusive).
        """
        where, params = self._series_filter(symbol, timeframe)
        where.append(f"{self._ts_expr()} > ?")
        params.append(_epoch(after))
        if until is not None:
            where.append(f"{self._ts_expr()} <= ?")
            params.append(_epoch(until))
        rows = self._rows(where, params, order="ASC", limit=None, with_analysis=False)[0]
        return arrays_from_rows(rows, len(CANDLE_COLUMNS))

    def newest_open(self, symbol: str, timeframe: str, *, at_most: int) -> int | None:
        """Return the newest open time of any row of the series (forming ones too) <= `at_most`."""
        where, params = self._series_filter(symbol, timeframe, closed_only=False)
        where.append(f"{self._ts_expr()} <= ?")
        params.append(int(at_most))
        sql = (
            f"SELECT MAX({self._ts_expr()}) FROM {_quote(self.source.table)} c"
            f" WHERE {' AND '.join(where)}"
        )
        with self._errors("reading candles"):
            row = self._conn.execute(sql, params).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def check_schema(self) -> None:
        """Raise `DataError` naming the table or mapped column the store cannot find."""
        table = self.source.table
        with self._errors("reading the schema"):
            info = self._conn.execute(f"PRAGMA table_info({_quote(table)})").fetchall()
        if not info:
            raise DataError(
                f"{self.path}: no table {table!r} (set data.source.table in the config)"
            )
        present = {row[1] for row in info}
        mapped = self.source.columns.model_dump()
        missing = [
            f"{key} -> {name!r}" for key, name in mapped.items() if name and name not in present
        ]
        if missing:
            raise DataError(
                f"{self.path}: table {table!r} has no column "
                + ", ".join(missing)
                + f" (columns: {', '.join(sorted(present))}; map them in data.source.columns)"
            )

    def file_identity(self) -> tuple[int, int]:
        """Return (device, inode) of the database file this store opened."""
        return self._identity

    # -- helpers -----------------------------------------------------------------------------

    def _ts_expr(self) -> str:
        col = "c." + _quote(self.source.columns.timestamp)
        return f"({col} / 1000)" if self.source.timestamp_unit == "ms" else col

    def _series_filter(
        self, symbol: str, timeframe: str, *, closed_only: bool = True
    ) -> tuple[list[str], list[object]]:
        cols, src = self.source.columns, self.source
        where: list[str] = []
        params: list[object] = []
        if cols.symbol:
            where.append(f"c.{_quote(cols.symbol)} = ?")
            params.append(symbol)
        elif src.symbol and src.symbol != symbol:
            raise DataError(f"{self.path}: table holds only {src.symbol}, not {symbol}")
        if cols.timeframe:
            where.append(f"c.{_quote(cols.timeframe)} = ?")
            params.append(timeframe)
        elif src.timeframe and src.timeframe != timeframe:
            raise DataError(f"{self.path}: table holds only {src.timeframe}, not {timeframe}")
        if not closed_only:
            pass
        elif cols.closed:
            where.append(f"c.{_quote(cols.closed)} = 1")
        else:
            where.append(f"{self._ts_expr()} + ? <= ?")
            params.extend([timeframe_seconds(timeframe), int(self.clock())])
        return where, params

    def _rows(
        self,
        where: list[str],
        params: list[object],
        *,
        order: str,
        limit: int | None,
        with_analysis: bool,
    ) -> tuple[list[tuple], list[str]]:
        cols = self.source.columns
        names = ["timestamp", *CANDLE_COLUMNS]
        exprs = [self._ts_expr()]
        for name in CANDLE_COLUMNS:
            mapped = getattr(cols, name)
            exprs.append(f"c.{_quote(mapped)}" if mapped else "NULL")
        join = ""
        if with_analysis:
            if self.analysis_db is None:
                raise DataError("with_analysis=True needs an analysis database")
            exprs += [f"a.{c}" for c in ANALYSIS_COLUMNS]
            names += list(ANALYSIS_COLUMNS)
            sym = f"c.{_quote(cols.symbol)}" if cols.symbol else "a.symbol"
            tf = f"c.{_quote(cols.timeframe)}" if cols.timeframe else "a.timeframe"
            join = (
                " LEFT JOIN an.analysis a ON a.symbol = "
                f"{sym} AND a.timeframe = {tf} AND a.timestamp = {self._ts_expr()}"
            )
        sql = (
            f"SELECT {', '.join(exprs)} FROM {_quote(self.source.table)} c{join}"
            f" WHERE {' AND '.join(where) or '1'} ORDER BY {self._ts_expr()} {order}"
        )
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._errors("reading candles"):
            rows = self._conn.execute(sql, params).fetchall()
        return rows, names

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:
            raise DataError(f"{self.path}: {what} failed: {exc}") from None


def _epoch(value: pd.Timestamp | int | str) -> int:
    if isinstance(value, int | np.integer):
        return int(value)
    ts = pd.Timestamp(value)
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return int(ts.timestamp())


def write_candles(
    conn: sqlite3.Connection,
    frame: pd.DataFrame,
    *,
    symbol: str,
    timeframe: str,
    closed: bool | pd.Series = True,
    source: CandleSource | None = None,
) -> int:
    """Upsert a candle frame into the reference (or mapped) table; re-writing changes nothing."""
    with conn:
        return upsert_candles(
            conn, frame, symbol=symbol, timeframe=timeframe, closed=closed, source=source
        )


def upsert_candles(
    conn: sqlite3.Connection,
    frame: pd.DataFrame,
    *,
    symbol: str,
    timeframe: str,
    closed: bool | pd.Series = True,
    keep_closed: bool = False,
    source: CandleSource | None = None,
) -> int:
    """Upsert like `write_candles` inside the caller's transaction (no commit).

    With ``keep_closed`` an incoming ``closed = 0`` row never replaces a stored closed candle:
    an incomplete aggregate must not overwrite a complete candle of the same open time. With a
    mapped `source` the rows go to the mapped table and columns (see `upsert_mapped`).
    """
    if frame.empty:
        return 0
    if not _is_reference(source):
        if keep_closed:
            raise DataError("keep_closed needs the reference candle table")
        return upsert_mapped(
            conn, frame, symbol=symbol, timeframe=timeframe, closed=closed, source=source
        )
    ts = (
        frame.index.as_unit("s").asi8.astype("int64")
        if isinstance(frame.index, pd.DatetimeIndex)
        else frame.index.to_numpy("int64")
    )
    closed_values = (
        closed.astype(int).to_numpy()
        if isinstance(closed, pd.Series)
        else np.full(len(frame), int(closed))
    )

    def col(name: str) -> list[object]:
        if name not in frame:
            return [None] * len(frame)
        values = frame[name].to_numpy("float64")
        return [None if np.isnan(v) else float(v) for v in values]

    trades = [None if v is None else int(v) for v in col("trades")]
    rows = zip(
        [symbol] * len(frame),
        [timeframe] * len(frame),
        ts.tolist(),
        col("open"),
        col("high"),
        col("low"),
        col("close"),
        col("volume"),
        col("buy_volume"),
        trades,
        closed_values.tolist(),
        strict=True,
    )
    sql = (
        "INSERT INTO candles (symbol, timeframe, timestamp, open, high, low, close, volume, "
        "buy_volume, trades, closed) VALUES (?,?,?,?,?,?,?,?,?,?,?) "
        "ON CONFLICT(symbol, timeframe, timestamp) DO UPDATE SET open=excluded.open, "
        "high=excluded.high, low=excluded.low, close=excluded.close, volume=excluded.volume, "
        "buy_volume=excluded.buy_volume, trades=excluded.trades, closed=excluded.closed"
    )
    if keep_closed:
        sql += " WHERE excluded.closed = 1 OR candles.closed = 0"
    conn.executemany(sql, rows)
    return len(frame)


def create_analysis_db(path: Path | str) -> sqlite3.Connection:
    """Open (creating if needed) an analysis database with the reference table."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(ANALYSIS_DDL)
    return conn


def upsert_mapped(
    conn: sqlite3.Connection,
    frame: pd.DataFrame,
    *,
    symbol: str,
    timeframe: str,
    source: CandleSource,
    closed: bool | pd.Series = True,
) -> int:
    """Write candles into a mapped table as its pipeline would, inside the caller's transaction.

    Only the mapped columns are written (a table without ``closed`` gets closed candles only;
    ``ms`` timestamps are written in milliseconds). A row with the same key (symbol, timeframe,
    timestamp: those the table has) is replaced, whatever indexes the table has.
    """
    if frame.empty:
        return 0
    cols = source.columns
    for name, want, only in (("symbol", symbol, source.symbol),
                             ("timeframe", timeframe, source.timeframe)):  # fmt: skip
        if getattr(cols, name) is None and only is not None and only != want:
            raise DataError(f"table {source.table} holds only {only}, not {want}")
    closed_values = (
        closed.astype(int).to_numpy()
        if isinstance(closed, pd.Series)
        else np.full(len(frame), int(closed))
    )
    if cols.closed is None and not closed_values.all():
        raise DataError(
            f"table {source.table} has no closed column: it cannot hold forming candles"
        )
    ts = (
        frame.index.as_unit("s").asi8.astype("int64")
        if isinstance(frame.index, pd.DatetimeIndex)
        else frame.index.to_numpy("int64")
    )
    stamps = (ts * 1000 if source.timestamp_unit == "ms" else ts).tolist()
    fixed = {"symbol": [symbol] * len(frame), "timeframe": [timeframe] * len(frame),
             "timestamp": stamps, "closed": closed_values.tolist()}  # fmt: skip

    def values(name: str) -> list[object]:
        if name in fixed:
            return list(fixed[name])
        if name not in frame:
            return [None] * len(frame)
        out = [None if np.isnan(v) else float(v) for v in frame[name].to_numpy("float64")]
        return [None if v is None else int(v) for v in out] if name == "trades" else out

    mapped = _mapped_columns(source)
    rows = list(zip(*(values(name) for name, _ in mapped), strict=True))
    key = [(i, col) for i, (name, col) in enumerate(mapped) if name in _KEY]
    table = _quote(source.table)
    where = " AND ".join(f"{_quote(col)} = ?" for _, col in key)
    conn.executemany(f"DELETE FROM {table} WHERE {where}", [[r[i] for i, _ in key] for r in rows])
    conn.executemany(
        f"INSERT INTO {table} ({', '.join(_quote(c) for _, c in mapped)}) "
        f"VALUES ({', '.join('?' * len(mapped))})",
        rows,
    )
    return len(frame)
