"""Precomputed indicators (analysis.db) from the candles of a store, with TA-Lib.

The columns are exactly `signals.data.schema.ANALYSIS_COLUMNS`, computed on closed candles of
each (symbol, timeframe) with the functions of `strategies.indicators`:
EMA 9/21, SMA 50/200, RSI 14, MACD (12, 26, 9), Bollinger (20, 2.0) with its squeeze flag as
0/1, volume SMA 20, buy ratio and net flow.
"""

from __future__ import annotations

import sqlite3
from itertools import repeat
from pathlib import Path

import numpy as np
import pandas as pd

from signals.data.frames import epoch_seconds
from signals.data.schema import ANALYSIS_COLUMNS
from signals.data.store import CandleStore, create_analysis_db
from strategies import indicators as ind


def compute_analysis(frame: pd.DataFrame) -> pd.DataFrame:
    """Return the analysis columns for a candle frame, on the frame's index."""
    close, volume = frame["close"].astype("float64"), frame["volume"].astype("float64")
    buy = frame["buy_volume"].astype("float64") if "buy_volume" in frame else close * np.nan
    line, signal, hist = ind.macd(close, 12, 26, 9)
    upper, middle, lower = ind.bollinger(close, 20, 2.0)
    out = pd.DataFrame(
        {
            "ema_9": ind.ema(close, 9),
            "ema_21": ind.ema(close, 21),
            "sma_50": ind.sma(close, 50),
            "sma_200": ind.sma(close, 200),
            "rsi_14": ind.rsi(close, 14),
            "macd": line,
            "macd_signal": signal,
            "macd_hist": hist,
            "bb_upper": upper,
            "bb_middle": middle,
            "bb_lower": lower,
            "bb_squeeze": ind.bollinger_squeeze(upper, middle, lower).astype("float64"),
            "volume_ma_20": ind.volume_ma(volume, 20),
            "buy_ratio": ind.buy_ratio(buy, volume),
            "net_flow": ind.net_flow(buy, volume),
        },
        index=frame.index,
    )
    return out[list(ANALYSIS_COLUMNS)].astype("float64")


def _rows(symbol: str, timeframe: str, analysis: pd.DataFrame) -> list[tuple]:
    ts = epoch_seconds(analysis.index).tolist()
    columns = []
    for name in ANALYSIS_COLUMNS:
        values = analysis[name].to_numpy("float64")
        cells = values.astype(object)
        cells[np.isnan(values)] = None
        columns.append(cells.tolist())
    return list(zip(repeat(symbol), repeat(timeframe), ts, *columns))


def replace_analysis(
    conn: sqlite3.Connection, symbol: str, timeframe: str, analysis: pd.DataFrame
) -> int:
    """Replace every analysis row of (symbol, timeframe) with `analysis`; return rows written."""
    cols = ", ".join(ANALYSIS_COLUMNS)
    marks = ", ".join("?" * (3 + len(ANALYSIS_COLUMNS)))
    sql = f"INSERT INTO analysis (symbol, timeframe, timestamp, {cols}) VALUES ({marks})"
    with conn:
        conn.execute("DELETE FROM analysis WHERE symbol = ? AND timeframe = ?", (symbol, timeframe))
        conn.executemany(sql, _rows(symbol, timeframe, analysis))
    return len(analysis)


def write_analysis(
    candles_db: Path | str,
    analysis_db: Path | str,
    *,
    symbols: list[str] | None = None,
    progress: bool = True,
) -> dict[tuple[str, str], int]:
    """(Re)compute analysis.db from every (symbol, timeframe) of candles.db; rows per series."""
    from tqdm import tqdm

    written: dict[tuple[str, str], int] = {}
    with CandleStore(candles_db) as store:
        series = [(s, tf) for s, tf in store.series() if symbols is None or s in symbols]
        conn = create_analysis_db(analysis_db)
        try:
            for symbol, timeframe in tqdm(series, desc="analysis", disable=not progress):
                frame = store.history(symbol, timeframe)
                written[(symbol, timeframe)] = replace_analysis(
                    conn, symbol, timeframe, compute_analysis(frame)
                )
        finally:
            conn.close()
    return written
