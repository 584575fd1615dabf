"""Read the candle store (SQLite, WAL) that research and live share; its public API in one place.

Readers open the database read-only through a ``file:...?mode=ro`` URI with a busy timeout, so
the pipeline can keep writing. Only closed candles are ever returned. Opening databases is in
`signals.data.connection`, rows to frames in `signals.data.frames`, writing in
`signals.data.write`; their public names are importable from here too.
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
from signals.data.connection import (
    connect_readonly,
    connect_writable,
    create_analysis_db,
    quote_name,
)
from signals.data.frames import (
    UTC_MICROSECONDS,
    arrays_from_rows,
    empty_frame,
    frame_from_arrays,
    frame_from_rows,
)
from signals.data.schema import ANALYSIS_COLUMNS, CANDLE_COLUMNS
from signals.data.write import upsert_candles, upsert_mapped, write_candles
from signals.errors import DataError
from signals.timeframes import timeframe_seconds

__all__ = [  # the store API, wherever each part is defined
    "UTC_MICROSECONDS",
    "CandleStore",
    "Clock",
    "arrays_from_rows",
    "connect_readonly",
    "connect_writable",
    "create_analysis_db",
    "empty_frame",
    "frame_from_arrays",
    "frame_from_rows",
    "upsert_candles",
    "upsert_mapped",
    "write_candles",
]

Clock = Callable[[], float]


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
        self._selects: dict[bool, tuple[str, list[str]]] = {}
        # closed_since_arrays: (symbol, timeframe, bounded) -> (SQL, its series parameters;
        # None when they hold the clock and are made on each call)
        self._since_queries: dict[tuple[str, str, bool], tuple[str, tuple | None]] = {}
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
        sym = quote_name(cols.symbol) if cols.symbol else "?"
        tf = quote_name(cols.timeframe) if cols.timeframe else "?"
        params = [
            p for p, c in ((src.symbol, cols.symbol), (src.timeframe, cols.timeframe)) if not c
        ]
        sql = f"SELECT DISTINCT {sym}, {tf} FROM {quote_name(src.table)} ORDER BY 1, 2"
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
        key = (symbol, timeframe, until is not None)
        query = self._since_queries.get(key)
        if query is None:  # built once per series: the live engine reads on every step
            where, params = self._series_filter(symbol, timeframe)
            where.append(f"{self._ts_expr()} > ?")
            if until is not None:
                where.append(f"{self._ts_expr()} <= ?")
            select = self._select_sql(with_analysis=False)
            sql = f"{select} WHERE {' AND '.join(where)} ORDER BY {self._ts_expr()} ASC"
            fixed = tuple(params) if self.source.columns.closed else None  # else: the clock
            query = self._since_queries[key] = (sql, fixed)
        sql, fixed = query
        args = list(fixed) if fixed is not None else self._series_filter(symbol, timeframe)[1]
        args.append(_epoch(after))
        if until is not None:
            args.append(_epoch(until))
        try:
            rows = self._conn.execute(sql, args).fetchall()
        except sqlite3.OperationalError as exc:  # as `_errors`, inline: a live step's read
            raise DataError(f"{self.path}: reading candles failed: {exc}") from None
        return arrays_from_rows(rows, len(CANDLE_COLUMNS))

    def newest_open(self, symbol: str, timeframe: str, *, at_most: int) -> int | None:
        """Return the newest open time of any row of the series (forming ones too) <= `at_most`."""
        where, params = self._series_filter(symbol, timeframe, closed_only=False)
        where.append(f"{self._ts_expr()} <= ?")
        params.append(int(at_most))
        sql = (
            f"SELECT MAX({self._ts_expr()}) FROM {quote_name(self.source.table)} c"
            f" WHERE {' AND '.join(where)}"
        )
        with self._errors("reading candles"):
            row = self._conn.execute(sql, params).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def check_schema(self) -> None:
        """Raise `DataError` naming the table or mapped column the store cannot find."""
        table = self.source.table
        with self._errors("reading the schema"):
            info = self._conn.execute(f"PRAGMA table_info({quote_name(table)})").fetchall()
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
        col = "c." + quote_name(self.source.columns.timestamp)
        return f"({col} / 1000)" if self.source.timestamp_unit == "ms" else col

    def _series_filter(
        self, symbol: str, timeframe: str, *, closed_only: bool = True
    ) -> tuple[list[str], list[object]]:
        cols, src = self.source.columns, self.source
        where: list[str] = []
        params: list[object] = []
        if cols.symbol:
            where.append(f"c.{quote_name(cols.symbol)} = ?")
            params.append(symbol)
        elif src.symbol and src.symbol != symbol:
            raise DataError(f"{self.path}: table holds only {src.symbol}, not {symbol}")
        if cols.timeframe:
            where.append(f"c.{quote_name(cols.timeframe)} = ?")
            params.append(timeframe)
        elif src.timeframe and src.timeframe != timeframe:
            raise DataError(f"{self.path}: table holds only {src.timeframe}, not {timeframe}")
        if not closed_only:
            pass
        elif cols.closed:
            where.append(f"c.{quote_name(cols.closed)} = 1")
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
        select, names = self._selects_of(with_analysis)
        sql = f"{select} WHERE {' AND '.join(where) or '1'} ORDER BY {self._ts_expr()} {order}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._errors("reading candles"):
            rows = self._conn.execute(sql, params).fetchall()
        return rows, list(names)

    def _selects_of(self, with_analysis: bool) -> tuple[str, list[str]]:
        if with_analysis not in self._selects:  # built once per store
            self._selects[with_analysis] = self._select(with_analysis)
        return self._selects[with_analysis]

    def _select_sql(self, *, with_analysis: bool) -> str:
        return self._selects_of(with_analysis)[0]

    def _select(self, with_analysis: bool) -> tuple[str, list[str]]:
        # The SELECT ... FROM ... [JOIN] of the mapped columns, and their names
        cols = self.source.columns
        names = ["timestamp", *CANDLE_COLUMNS]
        exprs = [self._ts_expr()]
        for name in CANDLE_COLUMNS:
            mapped = getattr(cols, name)
            exprs.append(f"c.{quote_name(mapped)}" if mapped else "NULL")
        join = ""
        if with_analysis:
            if self.analysis_db is None:
                raise DataError("with_analysis=True needs an analysis database")
            exprs += [f"a.{c}" for c in ANALYSIS_COLUMNS]
            names += list(ANALYSIS_COLUMNS)
            sym = f"c.{quote_name(cols.symbol)}" if cols.symbol else "a.symbol"
            tf = f"c.{quote_name(cols.timeframe)}" if cols.timeframe else "a.timeframe"
            join = (
                " LEFT JOIN an.analysis a ON a.symbol = "
                f"{sym} AND a.timeframe = {tf} AND a.timestamp = {self._ts_expr()}"
            )
        return f"SELECT {', '.join(exprs)} FROM {quote_name(self.source.table)} c{join}", names

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
