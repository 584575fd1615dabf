"""Write candle frames into the reference candle table or a mapped one (upserts)."""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd

from signals.config import CandleSource
from signals.data.connection import SERIES_KEY, is_reference, mapped_columns, quote_name
from signals.errors import DataError


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
    if source is not None and not is_reference(source):
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

    def col(name: str) -> list[float | None]:
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
        if name == "trades":
            return [None if v is None else int(v) for v in out]
        return list(out)

    mapped = mapped_columns(source)
    rows = list(zip(*(values(name) for name, _ in mapped), strict=True))
    key = [(i, col) for i, (name, col) in enumerate(mapped) if name in SERIES_KEY]
    table = quote_name(source.table)
    where = " AND ".join(f"{quote_name(col)} = ?" for _, col in key)
    conn.executemany(f"DELETE FROM {table} WHERE {where}", [[r[i] for i, _ in key] for r in rows])
    conn.executemany(
        f"INSERT INTO {table} ({', '.join(quote_name(c) for _, c in mapped)}) "
        f"VALUES ({', '.join('?' * len(mapped))})",
        rows,
    )
    return len(frame)
