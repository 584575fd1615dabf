"""EMA cross: the minimal example strategy and the benchmark the others must beat.

BUY on the candle where the fast EMA of the close crosses above the slow one; SELL on the mirror
cross. One rule per side, so the score is 0 or 1 and a signal's confidence is 1.0. The defaults
(threshold 1.0, cooldown 0) make it a pure cross with no debounce.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from strategies import indicators as ind
from strategies import warmup
from strategies.base import Rule, RuleSet, Strategy
from strategies.params import ScoringParams, fixed, param, require_less
from strategies.plots import Plot


@dataclass(frozen=True, kw_only=True)
class EmaCrossParams(ScoringParams):
    """EMA cross parameters: only fast and slow are searched."""

    threshold: float = fixed(1.0)  # one rule per side: the score is 0 or 1
    cooldown: int = fixed(0)  # a pure cross: no debounce, not searched
    fast: int = param(12, low=2, high=100)
    slow: int = param(26, low=5, high=400)

    def __post_init__(self) -> None:
        require_less(self, "fast", "slow")


class EmaCross(Strategy[EmaCrossParams]):
    """Fast/slow EMA crossover on any timeframe."""

    name = "ema_cross"
    timeframes = ("1m", "5m", "15m", "1h", "4h", "1d")
    Params = EmaCrossParams
    description = "BUY when the fast EMA crosses above the slow EMA, SELL on the opposite cross."

    def warmup(self, params: EmaCrossParams) -> int:
        """Return the slow EMA's warm-up (the fast one settles sooner)."""
        return warmup.ema(params.slow)

    def rules(self, candles: pd.DataFrame, params: EmaCrossParams) -> RuleSet:
        """Evaluate the cross-up (BUY) and cross-down (SELL) rules on every candle."""
        p = params
        close = candles["close"]
        fast, slow = ind.ema(close, p.fast), ind.ema(close, p.slow)
        buy = Rule(f"EMA{p.fast} crossed above EMA{p.slow}", ind.crossed_above(fast, slow))
        sell = Rule(f"EMA{p.fast} crossed below EMA{p.slow}", ind.crossed_above(slow, fast))
        return RuleSet(buy=[buy], sell=[sell])

    def plots(self, candles: pd.DataFrame, params: EmaCrossParams) -> list[Plot]:
        """Draw both EMAs on the price panel (the reports call this; decisions do not)."""
        close = candles["close"]
        return [Plot(f"EMA{n}", ind.ema(close, n)) for n in (params.fast, params.slow)]


STRATEGY = EmaCross()
