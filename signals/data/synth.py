"""A realistic synthetic market of 1m candles, deterministic for a seed.

The model, per 1-minute bar (log returns):

* **Regimes**: a Markov chain over trending-up, trending-down and ranging segments lasting hours
  to days. Trends add a drift (a few percent a day); ranges pull the log price back towards the
  level where the range began (Ornstein-Uhlenbeck, half-life of a few hours).
* **Volatility clustering**: GARCH(1,1) on the innovations (Student-t, fat tails), with an
  annualised volatility around 60% like BTC, times an intraday seasonal factor.
* **Volume**: a daily cycle peaking around 13-16 UTC (quieter at weekends), rising with the size
  of the bar's move and with the volatility level, with lognormal noise.
* **Taker buy volume**: its share of volume is about 0.5 and rises with the bar's standardised
  return (falls on down moves).
* **Trades**: Poisson around volume / average trade size.
* **OHLC**: open is the previous close; high and low are drawn as the extremes of a Brownian
  bridge from open to close, so high >= max(open, close) and low <= min(open, close) always.

The recursion (GARCH plus mean reversion) runs in a numba kernel when numba is importable, else in
plain Python (same arithmetic, slower).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from signals.data.aggregate import aggregate
from signals.data.store import connect_writable, write_candles
from signals.timeframes import TIMEFRAMES

GENERATOR_VERSION = "1"
MINUTES_PER_YEAR = 365 * 1440

# Regimes: 0 = ranging, 1 = trending up, 2 = trending down.
RANGE, UP, DOWN = 0, 1, 2
REGIME_NAMES = ("range", "up", "down")
# Transition matrix of the embedded chain (next segment's regime given the current one).
TRANSITIONS = np.array(
    [
        [0.0, 0.5, 0.5],  # range -> up / down
        [0.6, 0.0, 0.4],  # up -> range / down
        [0.6, 0.4, 0.0],  # down -> range / up
    ]
)
MEAN_SEGMENT_MIN = 14 * 60  # mean regime length: 14 hours
MIN_SEGMENT_MIN = 2 * 60  # at least 2 hours
MAX_SEGMENT_MIN = 5 * 1440  # at most 5 days
TREND_DRIFT_PER_DAY = (0.015, 0.05)  # |drift| of a trend, log return per day, uniform
RANGE_HALF_LIFE_MIN = 4 * 60  # mean reversion half-life in ranges

ANNUAL_VOL = 0.60
GARCH_ALPHA = 0.03
GARCH_BETA = 0.968  # persistence 0.998: a volatility burst half-life of ~6 hours
T_DOF = 5.0  # Student-t innovations

SEASON_PEAK_HOUR = 14.5  # UTC
VOLUME_SEASON_AMPLITUDE = 0.3
VOL_SEASON_AMPLITUDE = 0.25
WEEKEND_VOLUME = 0.7
BASE_VOLUME = 12.0  # base units per minute at an average hour
MEAN_TRADE_SIZE = 0.05  # base units per trade


@dataclass(frozen=True)
class SynthResult:
    """What `write_synth_db` wrote."""

    out_dir: Path
    candles_db: Path
    analysis_db: Path
    meta_path: Path
    seed: int
    days: int
    symbol: str
    rows: dict[str, int] = field(default_factory=dict)
    analysis_rows: int = 0


def synth_market(
    *,
    days: int,
    seed: int,
    symbol: str = "BTCUSDT",
    start: str = "2024-01-01",
    start_price: float = 40000.0,
) -> pd.DataFrame:
    """Generate `days` of 1m candles (UTC index ``time``, float64 columns) for a seed."""
    if days < 1:
        raise ValueError("days must be >= 1")
    del symbol  # the model does not depend on the symbol; kept for a uniform signature
    n = int(days) * 1440
    rng = np.random.Generator(np.random.PCG64(seed))
    index = pd.date_range(pd.Timestamp(start, tz="UTC"), periods=n, freq="1min", name="time")
    seconds = index.as_unit("s").asi8
    hours = (seconds % 86400) / 3600.0
    weekend = (seconds // 86400 + 3) % 7 >= 5  # 1970-01-01 was a Thursday (Monday = 0)
    regime, drift = _regimes(rng, n)
    season_vol = 1.0 + VOL_SEASON_AMPLITUDE * np.cos(2 * np.pi * (hours - SEASON_PEAK_HOUR) / 24)
    shocks = _student_t(rng, n)
    returns, sigma = _simulate(shocks, season_vol, drift, regime == RANGE, _garch_params())
    frame = _ohlc(rng, returns, sigma, start_price)
    _add_flow(rng, frame, returns, sigma, hours, weekend)
    frame.index = index
    return frame


def _garch_params() -> tuple[float, float, float, float]:
    per_minute_var = ANNUAL_VOL**2 / MINUTES_PER_YEAR
    omega = per_minute_var * (1.0 - GARCH_ALPHA - GARCH_BETA)
    kappa = np.log(2.0) / RANGE_HALF_LIFE_MIN
    return omega, GARCH_ALPHA, GARCH_BETA, float(kappa)


def _regimes(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-minute regime codes and drift (log return per minute) from a segment Markov chain."""
    lengths: list[np.ndarray] = []
    total = 0
    while total < n:
        chunk = rng.exponential(MEAN_SEGMENT_MIN, size=max(16, n // MEAN_SEGMENT_MIN + 16))
        chunk = np.clip(chunk, MIN_SEGMENT_MIN, MAX_SEGMENT_MIN).astype(np.int64)
        lengths.append(chunk)
        total += int(chunk.sum())
    seg_len = np.concatenate(lengths)
    seg_len = seg_len[: int(np.searchsorted(np.cumsum(seg_len), n)) + 1]
    states = np.empty(len(seg_len), dtype=np.int64)
    states[0] = rng.integers(0, 3)
    picks = rng.random(len(seg_len))
    cumulative = TRANSITIONS.cumsum(axis=1)
    for i in range(1, len(seg_len)):
        states[i] = int(np.searchsorted(cumulative[states[i - 1]], picks[i], side="right"))
    magnitude = rng.uniform(*TREND_DRIFT_PER_DAY, size=len(seg_len)) / 1440.0
    seg_drift = np.where(states == UP, magnitude, np.where(states == DOWN, -magnitude, 0.0))
    regime = np.repeat(states, seg_len)[:n]
    drift = np.repeat(seg_drift, seg_len)[:n]
    return regime, drift


def _student_t(rng: np.random.Generator, n: int) -> np.ndarray:
    """Student-t shocks scaled to unit variance."""
    return rng.standard_t(T_DOF, size=n) * np.sqrt((T_DOF - 2.0) / T_DOF)


def _simulate_py(
    shocks: np.ndarray,
    season: np.ndarray,
    drift: np.ndarray,
    ranging: np.ndarray,
    omega: float,
    alpha: float,
    beta: float,
    kappa: float,
) -> tuple[np.ndarray, np.ndarray]:
    """GARCH(1,1) innovations plus regime drift / mean reversion; returns (log returns, sigma)."""
    n = shocks.shape[0]
    returns = np.empty(n)
    sigma = np.empty(n)
    var = omega / (1.0 - alpha - beta)
    eps = 0.0
    logp = 0.0
    anchor = 0.0
    was_ranging = False
    for i in range(n):
        var = omega + alpha * eps * eps + beta * var
        s = np.sqrt(var) * season[i]
        eps = s * shocks[i]
        if ranging[i] and not was_ranging:
            anchor = logp
        was_ranging = ranging[i]
        pull = -kappa * (logp - anchor) if ranging[i] else 0.0
        r = drift[i] + pull + eps
        eps = eps / season[i]  # GARCH sees the deseasonalised innovation
        logp += r
        returns[i] = r
        sigma[i] = s
    return returns, sigma


def _compile_kernel() -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """numba-compile the recursion (cached on disk when possible); the plain loop without numba."""
    try:  # numba ships with vectorbt
        from numba import njit
    except ImportError:  # pragma: no cover - depends on the environment
        return _simulate_py
    try:
        return njit(cache=True, nogil=True)(_simulate_py)
    except RuntimeError:  # pragma: no cover - no writable cache location
        return njit(nogil=True)(_simulate_py)


_simulate_kernel = _compile_kernel()


def _simulate(
    shocks: np.ndarray,
    season: np.ndarray,
    drift: np.ndarray,
    ranging: np.ndarray,
    params: tuple[float, float, float, float],
) -> tuple[np.ndarray, np.ndarray]:
    return _simulate_kernel(shocks, season, drift, ranging.astype(np.bool_), *params)


def _ohlc(
    rng: np.random.Generator, returns: np.ndarray, sigma: np.ndarray, start_price: float
) -> pd.DataFrame:
    """Prices from log returns; high/low as Brownian-bridge extremes within each bar."""
    n = returns.shape[0]
    log_close = np.log(start_price) + np.cumsum(returns)
    close = np.round(np.exp(log_close), 2)
    open_ = np.empty(n)
    open_[0] = round(start_price, 2)
    open_[1:] = close[:-1]
    r = np.log(close / open_)
    u_hi, u_lo = 1.0 - rng.random(n), 1.0 - rng.random(n)  # in (0, 1]
    reach_hi = (r + np.sqrt(r * r - 2.0 * sigma**2 * np.log(u_hi))) / 2.0
    reach_lo = (r - np.sqrt(r * r - 2.0 * sigma**2 * np.log(u_lo))) / 2.0
    body_hi, body_lo = np.maximum(open_, close), np.minimum(open_, close)
    high = np.maximum(np.round(open_ * np.exp(reach_hi), 2), body_hi)
    low = np.minimum(np.round(open_ * np.exp(reach_lo), 2), body_lo)
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close})


def _add_flow(
    rng: np.random.Generator,
    frame: pd.DataFrame,
    returns: np.ndarray,
    sigma: np.ndarray,
    hours: np.ndarray,
    weekend: np.ndarray,
) -> None:
    """Volume, taker buy volume and trade count, in place."""
    n = returns.shape[0]
    z = returns / sigma  # standardised move of the bar
    typical = np.sqrt(ANNUAL_VOL**2 / MINUTES_PER_YEAR)
    season = 1.0 + VOLUME_SEASON_AMPLITUDE * np.cos(2 * np.pi * (hours - SEASON_PEAK_HOUR) / 24)
    level = np.where(weekend, WEEKEND_VOLUME, 1.0) * season * np.sqrt(sigma / typical)
    activity = 0.6 + 0.4 * np.abs(z)
    noise = rng.lognormal(mean=-0.125, sigma=0.5, size=n)
    volume = np.round(BASE_VOLUME * level * activity * noise, 4) + 0.001
    share = 0.5 + 0.12 * np.tanh(0.6 * z) + rng.normal(0.0, 0.07, size=n)
    share = np.clip(share, 0.02, 0.98)
    buy = np.minimum(np.round(volume * share, 4), volume)
    trades = np.maximum(1.0, rng.poisson(volume / MEAN_TRADE_SIZE).astype("float64"))
    frame["volume"] = volume
    frame["buy_volume"] = buy
    frame["trades"] = trades


def _remove_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def write_synth_db(
    out_dir: Path,
    *,
    days: int,
    seed: int,
    symbol: str = "BTCUSDT",
    start: str = "2024-01-01",
    progress: bool = False,
) -> SynthResult:
    """Write candles.db (1m..1d), analysis.db and synth.json for a synthetic market in `out_dir`."""
    from signals.data.analysis import write_analysis

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    candles_db, analysis_db = out_dir / "candles.db", out_dir / "analysis.db"
    meta_path = out_dir / "synth.json"
    for path in (candles_db, analysis_db):
        _remove_db(path)
    frame = synth_market(days=days, seed=seed, symbol=symbol, start=start)
    rows: dict[str, int] = {}
    conn = connect_writable(candles_db)
    try:
        rows["1m"] = write_candles(conn, frame, symbol=symbol, timeframe="1m", closed=True)
        for tf in TIMEFRAMES:
            if tf == "1m":
                continue
            agg = aggregate(frame, base="1m", target=tf)
            rows[tf] = write_candles(
                conn,
                agg.drop(columns="complete"),
                symbol=symbol,
                timeframe=tf,
                closed=agg["complete"],
            )
    finally:
        conn.close()
    written = write_analysis(candles_db, analysis_db, progress=progress)
    meta = {
        "generator": "signals.data.synth",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "days": days,
        "symbol": symbol,
        "start": start,
        "rows": rows,
    }
    meta_path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return SynthResult(
        out_dir=out_dir,
        candles_db=candles_db,
        analysis_db=analysis_db,
        meta_path=meta_path,
        seed=seed,
        days=days,
        symbol=symbol,
        rows=rows,
        analysis_rows=sum(written.values()),
    )
