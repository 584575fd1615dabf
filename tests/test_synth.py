"""The synthetic market: deterministic, valid OHLC, and the stylised facts of a real market."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from signals.data.store import CandleStore
from signals.data.synth import synth_market, write_synth_db

TIMEFRAMES = ["1m", "5m", "15m", "1h", "4h", "1d"]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def market() -> pd.DataFrame:
    return synth_market(days=30, seed=11)


@pytest.fixture(scope="module")
def returns(market: pd.DataFrame) -> pd.Series:
    return np.log(market["close"]).diff().dropna()


def test_deterministic_for_a_seed() -> None:
    a = synth_market(days=3, seed=5)
    b = synth_market(days=3, seed=5)
    pd.testing.assert_frame_equal(a, b)
    c = synth_market(days=3, seed=6)
    assert not np.allclose(a["close"].to_numpy(), c["close"].to_numpy())


def test_shape_index_and_dtypes(market: pd.DataFrame) -> None:
    assert len(market) == 30 * 1440
    assert market.index.name == "time"
    assert str(market.index.tz) == "UTC"
    assert market.index[0] == pd.Timestamp("2024-01-01", tz="UTC")
    assert (np.diff(market.index.as_unit("s").asi8) == 60).all()
    cols = ["open", "high", "low", "close", "volume", "buy_volume", "trades"]
    assert list(market.columns) == cols
    assert all(market[c].dtype == "float64" for c in cols)
    assert not market.isna().any().any()


def test_ohlc_validity(market: pd.DataFrame) -> None:
    o, h, low, c = (market[k].to_numpy() for k in ("open", "high", "low", "close"))
    assert (h >= np.maximum(o, c)).all()
    assert (low <= np.minimum(o, c)).all()
    assert (low > 0).all()
    assert (o[1:] == c[:-1]).all()  # open = previous close
    assert ((h - low) > 0).mean() > 0.95  # bars have intrabar range
    assert (market["buy_volume"] <= market["volume"]).all()
    assert (market["buy_volume"] >= 0).all() and (market["volume"] > 0).all()
    assert (market["trades"] >= 1).all()


def test_annualised_volatility_is_btc_like(returns: pd.Series) -> None:
    vol = returns.std() * np.sqrt(365 * 1440)
    assert 0.35 < vol < 0.9


def test_volatility_clustering(returns: pd.Series) -> None:
    absolute = returns.abs()
    acf = [absolute.autocorr(lag) for lag in range(1, 11)]
    assert min(acf) > 0.1, acf
    # the raw returns themselves are close to uncorrelated
    assert abs(returns.autocorr(1)) < 0.1


def test_fat_tails(returns: pd.Series) -> None:
    assert returns.kurt() > 3.0


def test_regimes_trend_both_ways(market: pd.DataFrame) -> None:
    daily = np.log(market["close"]).diff(1440).dropna()
    assert daily.max() > 0.02
    assert daily.min() < -0.02


def test_intraday_volume_seasonality(market: pd.DataFrame) -> None:
    by_hour = market["volume"].groupby(market.index.hour).mean()
    assert by_hour.max() / by_hour.min() > 1.3
    assert 12 <= by_hour.idxmax() <= 17


def test_volume_rises_with_absolute_return(market: pd.DataFrame, returns: pd.Series) -> None:
    volume = market["volume"].iloc[1:]
    assert np.corrcoef(returns.abs(), volume)[0, 1] > 0.2


def test_buy_ratio_follows_returns(market: pd.DataFrame, returns: pd.Series) -> None:
    ratio = (market["buy_volume"] / market["volume"]).iloc[1:]
    assert 0.45 < ratio.mean() < 0.55
    assert np.corrcoef(ratio, returns)[0, 1] > 0.2
    assert ratio[returns > 0].mean() > ratio[returns < 0].mean()


def test_trades_follow_volume(market: pd.DataFrame) -> None:
    assert np.corrcoef(market["trades"], market["volume"])[0, 1] > 0.9


def test_write_synth_db_aggregates_consistently(tmp_path: Path) -> None:
    result = write_synth_db(tmp_path, days=2, seed=3, symbol="ETHUSDT")
    assert result.rows == {"1m": 2880, "5m": 576, "15m": 192, "1h": 48, "4h": 12, "1d": 2}
    meta = json.loads((tmp_path / "synth.json").read_text())
    assert meta["seed"] == 3 and meta["days"] == 2 and meta["symbol"] == "ETHUSDT"
    assert meta["generator_version"] and meta["start"] == "2024-01-01"
    with CandleStore(result.candles_db) as store:
        assert sorted(store.series()) == sorted(("ETHUSDT", tf) for tf in TIMEFRAMES)
        base = store.history("ETHUSDT", "1m")
        hourly = store.history("ETHUSDT", "1h")
    pd.testing.assert_frame_equal(
        base, synth_market(days=2, seed=3), check_index_type=False, check_freq=False
    )
    bucket = base.index.floor("1h")
    grouped = base.groupby(bucket)
    np.testing.assert_array_equal(hourly["high"].to_numpy(), grouped["high"].max().to_numpy())
    np.testing.assert_array_equal(hourly["low"].to_numpy(), grouped["low"].min().to_numpy())
    np.testing.assert_array_equal(hourly["open"].to_numpy(), grouped["open"].first().to_numpy())
    np.testing.assert_array_equal(hourly["close"].to_numpy(), grouped["close"].last().to_numpy())
    np.testing.assert_allclose(hourly["volume"].to_numpy(), grouped["volume"].sum().to_numpy())


def test_write_synth_db_overwrites_cleanly(tmp_path: Path) -> None:
    write_synth_db(tmp_path, days=2, seed=1)
    write_synth_db(tmp_path, days=1, seed=2)
    with sqlite3.connect(tmp_path / "candles.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM candles WHERE timeframe='1m'").fetchone() == (
            1440,
        )
    with sqlite3.connect(tmp_path / "analysis.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM analysis WHERE timeframe='1m'").fetchone() == (
            1440,
        )
    assert json.loads((tmp_path / "synth.json").read_text())["seed"] == 2


def test_cli_synth_subprocess(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "signals", "data", "synth", "--out", str(out), "--days", "3"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "seed 7" in proc.stdout and "candles.db" in proc.stdout
    with sqlite3.connect(out / "candles.db") as conn:
        tfs = {tf for (tf,) in conn.execute("SELECT DISTINCT timeframe FROM candles")}
        closed = conn.execute("SELECT MIN(closed) FROM candles").fetchone()[0]
    assert tfs == set(TIMEFRAMES)
    assert closed == 1  # 3 whole days: every higher-timeframe candle is complete
    with sqlite3.connect(out / "analysis.db") as conn:
        rows = conn.execute("SELECT COUNT(*) FROM analysis WHERE timeframe = '1m'").fetchone()
    assert rows == (3 * 1440,)


def test_compiled_kernel_matches_plain_python() -> None:
    from signals.data import synth

    rng = np.random.Generator(np.random.PCG64(1))
    n = 3000
    shocks = rng.standard_normal(n)
    season = 1.0 + 0.2 * np.sin(np.arange(n) / 100.0)
    drift = np.where(np.arange(n) < 1000, 1e-5, 0.0)
    ranging = np.arange(n) >= 1500
    params = synth._garch_params()
    fast = synth._simulate_kernel(shocks, season, drift, ranging, *params)
    slow = synth._simulate_py(shocks, season, drift, ranging, *params)
    np.testing.assert_allclose(fast[0], slow[0], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(fast[1], slow[1], rtol=1e-12)
