"""analysis.db: every column equals TA-Lib called directly; rewriting is idempotent."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import talib

from signals.data.analysis import compute_analysis, write_analysis
from signals.data.schema import ANALYSIS_COLUMNS
from signals.data.store import CandleStore, connect_writable, write_candles
from signals.data.synth import synth_market

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def candles_db(tmp_path: Path) -> Path:
    frame = synth_market(days=1, seed=21)
    db = tmp_path / "candles.db"
    conn = connect_writable(db)
    write_candles(conn, frame, symbol="BTCUSDT", timeframe="1m")
    write_candles(conn, frame.iloc[:600], symbol="ETHUSDT", timeframe="1m")
    conn.close()
    return db


def _expected(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    close = frame["close"].to_numpy("float64")
    volume = frame["volume"].to_numpy("float64")
    buy = frame["buy_volume"].to_numpy("float64")
    line, signal, hist = talib.MACD(close, fastperiod=12, slowperiod=26, signalperiod=9)
    upper, middle, lower = talib.BBANDS(close, timeperiod=20, nbdevup=2.0, nbdevdn=2.0, matype=0)
    width = pd.Series((upper - lower) / middle)
    threshold = width.rolling(120).quantile(0.2)
    squeeze = ((width <= threshold) & threshold.notna()).astype(float).to_numpy()
    return {
        "ema_9": talib.EMA(close, timeperiod=9),
        "ema_21": talib.EMA(close, timeperiod=21),
        "sma_50": talib.SMA(close, timeperiod=50),
        "sma_200": talib.SMA(close, timeperiod=200),
        "rsi_14": talib.RSI(close, timeperiod=14),
        "macd": line,
        "macd_signal": signal,
        "macd_hist": hist,
        "bb_upper": upper,
        "bb_middle": middle,
        "bb_lower": lower,
        "bb_squeeze": squeeze,
        "volume_ma_20": talib.SMA(volume, timeperiod=20),
        "buy_ratio": buy / volume,
        "net_flow": buy - (volume - buy),
    }


def test_compute_analysis_matches_talib() -> None:
    frame = synth_market(days=1, seed=4)
    out = compute_analysis(frame)
    assert list(out.columns) == list(ANALYSIS_COLUMNS)
    assert out.index.equals(frame.index)
    assert all(out[c].dtype == "float64" for c in out)
    expected = _expected(frame)
    for column in ANALYSIS_COLUMNS:
        np.testing.assert_allclose(out[column].to_numpy(), expected[column], err_msg=column)
    assert out["bb_squeeze"].isin([0.0, 1.0]).all()
    assert out["bb_squeeze"].sum() > 0
    assert out["sma_200"].iloc[:199].isna().all() and out["sma_200"].iloc[199:].notna().all()


def test_unknown_buy_volume_gives_nan_flow() -> None:
    frame = synth_market(days=1, seed=4).drop(columns="buy_volume")
    out = compute_analysis(frame)
    assert out["buy_ratio"].isna().all() and out["net_flow"].isna().all()
    assert out["ema_9"].notna().iloc[8:].all()


def test_write_analysis_stores_talib_values(candles_db: Path, tmp_path: Path) -> None:
    analysis_db = tmp_path / "analysis.db"
    written = write_analysis(candles_db, analysis_db, progress=False)
    assert written == {("BTCUSDT", "1m"): 1440, ("ETHUSDT", "1m"): 600}
    with CandleStore(candles_db, analysis_db=analysis_db) as store:
        joined = store.history("BTCUSDT", "1m", with_analysis=True)
    expected = _expected(joined)
    for column in ANALYSIS_COLUMNS:
        np.testing.assert_allclose(joined[column].to_numpy(), expected[column], err_msg=column)


def test_write_analysis_is_idempotent_and_replaces(candles_db: Path, tmp_path: Path) -> None:
    analysis_db = tmp_path / "analysis.db"
    write_analysis(candles_db, analysis_db, progress=False)
    dump = _dump(analysis_db)
    write_analysis(candles_db, analysis_db, progress=False)
    assert _dump(analysis_db) == dump
    # a stale row (e.g. of a candle since removed) disappears on rewrite
    with sqlite3.connect(analysis_db) as conn:
        conn.execute(
            "INSERT INTO analysis (symbol, timeframe, timestamp) VALUES ('BTCUSDT','1m',1)"
        )
    write_analysis(candles_db, analysis_db, progress=False)
    assert _dump(analysis_db) == dump


def test_write_analysis_only_selected_symbols(candles_db: Path, tmp_path: Path) -> None:
    analysis_db = tmp_path / "analysis.db"
    written = write_analysis(candles_db, analysis_db, symbols=["ETHUSDT"], progress=False)
    assert list(written) == [("ETHUSDT", "1m")]


def _dump(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute(
            "SELECT * FROM analysis ORDER BY symbol, timeframe, timestamp"
        ).fetchall()


def test_cli_analysis_defaults_next_to_db(candles_db: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "signals",
            "data",
            "analysis",
            "--db",
            str(candles_db),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    target = candles_db.with_name("analysis.db")
    assert target.exists() and str(target) in proc.stdout
    assert len(_dump(target)) == 2040


def test_cli_analysis_missing_db_is_clear_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "signals", "data", "analysis", "--db", str(tmp_path / "no.db")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "database not found" in proc.stderr and "Traceback" not in proc.stderr
