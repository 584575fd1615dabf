"""Trend pullback: 15m/5m entries on pullbacks in the direction of the 1h trend.

The 1h trend comes from the hourly candles (``informative = ("1h",)``, aggregated from the base
candles; see `strategies.informative`): up when the last closed hour closed above the SMA
``trend_period`` of the hourly closes and that SMA rose over the last ``trend_slope`` hours. The
gate allows BUY only in an up trend and SELL only in the mirror down trend. Inside it, the BUY
rules (SELL mirrors each one) look for the end of a pullback on the base candles:

- RSI crossed back above ``rsi_low`` in the last ``event_window`` candles (it had dipped);
- Stochastic %K crossed above %D while %D was below ``stoch_low``, in the last ``event_window``;
- net taker flow of the last ``flow_window`` candles positive (abstains when unknown).

Comparisons carry a small margin (`MARGIN`), so values equal up to float noise (an SMA on flat
prices, whose running sum depends on where history starts) never decide a signal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from strategies import indicators as ind
from strategies import warmup
from strategies.base import Rule, RuleSet, Strategy
from strategies.params import ScoringParams, param

MARGIN = 1e-9  # relative, for prices; indicators in 0..100 use MARGIN * 100


@dataclass(frozen=True, kw_only=True)
class TrendPullbackParams(ScoringParams):
    """Trend-pullback parameters and their search ranges."""

    threshold: float = param(0.6, low=0.3, high=1.0, step=0.05)
    cooldown: int = param(6, low=0, high=48, step=2)
    trend_period: int = param(50, low=20, high=100, step=10)
    trend_slope: int = param(5, low=1, high=24)
    rsi_period: int = param(14, low=5, high=30)
    rsi_low: float = param(40.0, low=20.0, high=50.0, step=5.0)
    stoch_k: int = param(14, low=5, high=30)
    stoch_low: float = param(30.0, low=10.0, high=45.0, step=5.0)
    flow_window: int = param(6, low=1, high=24)
    event_window: int = param(3, low=1, high=12)


class TrendPullback(Strategy[TrendPullbackParams]):
    """Pullback entries on 15m and 5m candles with the 1h trend."""

    name = "trend_pullback"
    timeframes = ("15m", "5m")
    informative = ("1h",)
    Params = TrendPullbackParams
    description = "RSI and Stochastic pullback ends, with taker flow, only with the 1h SMA trend."

    def warmup(self, params: TrendPullbackParams) -> int:
        """Return the longest base-candle indicator warm-up plus the event and flow windows."""
        p = params
        longest = max(
            warmup.wilder(p.rsi_period) + p.event_window,
            warmup.stochastic(p.stoch_k, 3, 3) + p.event_window,
            p.flow_window,
        )
        return longest + 1

    def informative_warmup(self, params: TrendPullbackParams) -> int:
        """Return the 1h candles of the trend: the SMA and its slope."""
        return warmup.window(params.trend_period) + params.trend_slope

    def informative_columns(
        self, timeframe: str, higher: pd.DataFrame, params: TrendPullbackParams
    ) -> Mapping[str, Any]:
        """Return the hourly trend: +1 up, -1 down, 0 neither (``trend_1h``)."""
        close = higher["close"]
        sma = ind.sma(close, params.trend_period).to_numpy()
        before = np.concatenate([np.full(params.trend_slope, np.nan), sma[: -params.trend_slope]])
        before = before[: len(sma)]
        with np.errstate(invalid="ignore"):
            tol = MARGIN * np.abs(sma)
            up = (close.to_numpy() > sma + tol) & (sma > before + tol)
            down = (close.to_numpy() < sma - tol) & (sma < before - tol)
        return {"trend": up.astype("float64") - down.astype("float64")}

    def rules(self, candles: pd.DataFrame, params: TrendPullbackParams) -> RuleSet:
        """Evaluate the 1h trend gates and the three BUY rules with their SELL mirrors."""
        p, c = params, candles
        rsi = ind.rsi(c["close"], p.rsi_period)
        k, d = ind.stochastic(c["high"], c["low"], c["close"], p.stoch_k, 3, 3)
        flow = ind.net_flow(c["buy_volume"], c["volume"]).rolling(p.flow_window).sum()
        win, rsi_high, stoch_high = p.event_window, 100.0 - p.rsi_low, 100.0 - p.stoch_low
        level = 100.0 * MARGIN
        buy = [
            Rule(
                f"RSI{p.rsi_period} back above {p.rsi_low:g} after a pullback",
                ind.within(_crossed(rsi, rsi * 0 + p.rsi_low, level), win),
            ),
            Rule(
                f"Stochastic %K crossed above %D below {p.stoch_low:g}",
                ind.within(_crossed(k, d, level) & (d < p.stoch_low), win),
            ),
            Rule(
                f"net taker flow of {p.flow_window} candles positive", flow > 0, known=flow.notna()
            ),
        ]
        sell = [
            Rule(
                f"RSI{p.rsi_period} back below {rsi_high:g} after a bounce",
                ind.within(_crossed(rsi * 0 + rsi_high, rsi, level), win),
            ),
            Rule(
                f"Stochastic %K crossed below %D above {stoch_high:g}",
                ind.within(_crossed(d, k, level) & (d > stoch_high), win),
            ),
            Rule(
                f"net taker flow of {p.flow_window} candles negative", flow < 0, known=flow.notna()
            ),
        ]
        trend = c["trend_1h"]
        return RuleSet(
            buy=buy,
            sell=sell,
            buy_gate=trend > 0,
            sell_gate=trend < 0,
            buy_gate_reason=f"1h uptrend (close above a rising SMA{p.trend_period} of 1h closes)",
            sell_gate_reason=(
                f"1h downtrend (close below a falling SMA{p.trend_period} of 1h closes)"
            ),
        )


def _crossed(a: pd.Series, b: pd.Series, margin: float) -> pd.Series:
    # True where a moves above b + margin from at or below it (float noise never crosses).
    x, y = a.to_numpy(dtype="float64"), b.to_numpy(dtype="float64")
    with np.errstate(invalid="ignore"):
        above = x > y + margin
        below = x <= y + margin
    crossed = above.copy()
    crossed[:1] = False
    crossed[1:] &= below[:-1]
    return pd.Series(crossed, index=a.index, copy=False)


STRATEGY = TrendPullback()
