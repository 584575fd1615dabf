"""Small, seeded candle frames for tests (independent of the synthetic-market generator)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def random_walk(
    n: int, *, seed: int = 0, freq: str = "1min", start: str = "2024-01-01"
) -> pd.DataFrame:
    """Return `n` valid OHLCV candles of a seeded random walk with taker-buy volume and trades."""
    rng = np.random.default_rng(seed)
    returns = rng.normal(0.0, 0.002, n) * np.exp(rng.normal(0, 0.5, n))
    close = 30000.0 * np.exp(np.cumsum(returns))
    open_ = np.concatenate([[30000.0], close[:-1]])
    wiggle = np.abs(rng.normal(0, 0.001, (2, n))) * close
    high = np.maximum(open_, close) + wiggle[0]
    low = np.minimum(open_, close) - wiggle[1]
    volume = rng.gamma(2.0, 5.0, n) * (1 + 50 * np.abs(returns))
    share = np.clip(0.5 + 40 * returns + rng.normal(0, 0.05, n), 0.0, 1.0)
    index = pd.date_range(start, periods=n, freq=freq, tz="UTC", name="time")
    return pd.DataFrame(
        {
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
            "buy_volume": volume * share,
            "trades": np.round(volume * 10.0),
        },
        index=index,
    )
