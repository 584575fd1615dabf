"""Open the candle store's SQLite databases: read-only for readers, WAL and schema for writers.

A mapped source (``data.source`` of the config) names a pipeline's own candle table and columns;
the reference schema is `signals.data.schema`'s.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from signals.config import CandleSource
from signals.data.schema import ANALYSIS_DDL, CANDLE_COLUMNS, CANDLES_DDL, PENDING_DDL
from signals.errors import DataError

SERIES_KEY = ("symbol", "timeframe", "timestamp")


def quote_name(name: str) -> str:
    """Return `name` quoted as an SQL identifier."""
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
    if source is None or is_reference(source):
        conn.execute(CANDLES_DDL)
        conn.execute(PENDING_DDL)  # import/fetch's aggregation marker (reference schema only)
    else:  # a pipeline's own table: nothing else is added to its database
        conn.execute(_mapped_ddl(source))
    return conn


def is_reference(source: CandleSource | None) -> bool:
    """Return whether `source` is the reference candle table (no mapping)."""
    return source is None or source == CandleSource()


def mapped_columns(source: CandleSource) -> list[tuple[str, str]]:
    """Return (frame field, table column) of every column the mapped table has, key first."""
    cols = source.columns
    names = ["symbol", "timeframe", "timestamp", *CANDLE_COLUMNS, "closed"]
    return [(name, col) for name in names if (col := getattr(cols, name))]


def _mapped_ddl(source: CandleSource) -> str:
    types = {"symbol": "TEXT", "timeframe": "TEXT", "timestamp": "INTEGER", "trades": "INTEGER",
             "closed": "INTEGER"}  # fmt: skip
    columns = [
        f"{quote_name(col)} {types.get(name, 'REAL')}" for name, col in mapped_columns(source)
    ]
    key = [quote_name(col) for name, col in mapped_columns(source) if name in SERIES_KEY]
    return (
        f"CREATE TABLE IF NOT EXISTS {quote_name(source.table)} "
        f"({', '.join(columns)}, PRIMARY KEY ({', '.join(key)}))"
    )


def create_analysis_db(path: Path | str) -> sqlite3.Connection:
    """Open (creating if needed) an analysis database with the reference table."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(ANALYSIS_DDL)
    return conn
