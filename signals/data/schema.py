"""The reference SQLite schema (ARCHITECTURE.md) and the column order of candle frames."""

from __future__ import annotations

CANDLE_COLUMNS: tuple[str, ...] = (
    "open",
    "high",
    "low",
    "close",
    "volume",
    "buy_volume",
    "trades",
)

CANDLES_DDL = """
CREATE TABLE IF NOT EXISTS candles (
    symbol TEXT NOT NULL,
    timeframe TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    open REAL, high REAL, low REAL, close REAL,
    volume REAL,
    buy_volume REAL,
    trades INTEGER,
    closed INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (symbol, timeframe, timestamp)
)
"""

ANALYSIS_COLUMNS: tuple[str, ...] = (
    "ema_9",
    "ema_21",
    "sma_50",
    "sma_200",
    "rsi_14",
    "macd",
    "macd_signal",
    "macd_hist",
    "bb_upper",
    "bb_middle",
    "bb_lower",
    "bb_squeeze",
    "volume_ma_20",
    "buy_ratio",
    "net_flow",
)

ANALYSIS_DDL = (
    "CREATE TABLE IF NOT EXISTS analysis (symbol TEXT NOT NULL, timeframe TEXT NOT NULL, "
    "timestamp INTEGER NOT NULL, "
    + ", ".join(f"{c} REAL" for c in ANALYSIS_COLUMNS)
    + ", PRIMARY KEY (symbol, timeframe, timestamp))"
)

# Durable "dirty range" per base series: base candles in [first, last] (open times, epoch s) were
# committed but the higher timeframes over them may not have been re-aggregated yet. Written in
# the same transaction as the base candles, deleted in the one that re-aggregates them, so a
# process killed anywhere in between leaves a marker that the next fetch or import repairs.
PENDING_DDL = """
CREATE TABLE IF NOT EXISTS aggregate_pending (
    symbol TEXT NOT NULL,
    timeframe TEXT NOT NULL,
    first INTEGER NOT NULL,
    last INTEGER NOT NULL,
    PRIMARY KEY (symbol, timeframe)
)
"""
