"""Scalping: fast momentum turns on 1m/5m candles, confirmed by order flow.

BUY rules (SELL mirrors each one):

- EMA fast/slow cross up in the last ``event_window`` candles;
- Stochastic %K crossed above %D while oversold (%D below ``stoch_low``) in the last
  ``event_window`` candles;
- RSI below ``rsi_buy`` on a volume surge (volume above ``volume_surge`` x its MA);
- MACD histogram turned up (rising after falling) in the last ``event_window`` candles;
- buy-ratio bias: mean taker-buy share of the last ``flow_window`` candles above 0.5 + ``flow_bias``
  (abstains where taker-buy volume is unknown).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from strategies import indicators as ind
from strategies import warmup
from strategies.base import Rule, RuleSet, Strategy
from strategies.params import ScoringParams, param, require_less
from strategies.plots import Plot


@dataclass(frozen=True, kw_only=True)
class ScalpingParams(ScoringParams):
    """Scalping parameters and their search ranges."""

    threshold: float = param(0.6, low=0.3, high=1.0, step=0.05)
    cooldown: int = param(20, low=0, high=60, step=5)
    ema_fast: int = param(9, low=3, high=30)
    ema_slow: int = param(21, low=10, high=80)
    stoch_k: int = param(14, low=5, high=30)
    stoch_low: float = param(25.0, low=5.0, high=40.0, step=5.0)
    rsi_period: int = param(14, low=5, high=30)
    rsi_buy: float = param(40.0, low=20.0, high=50.0, step=5.0)
    volume_ma: int = param(20, low=5, high=60, step=5)
    volume_surge: float = param(1.5, low=1.0, high=4.0, step=0.25)
    flow_window: int = param(5, low=1, high=30)
    flow_bias: float = param(0.05, low=0.0, high=0.2, step=0.01)
    event_window: int = param(3, low=1, high=10)

    def __post_init__(self) -> None:
        require_less(self, "ema_fast", "ema_slow")


class Scalping(Strategy[ScalpingParams]):
    """Momentum scalper for 1m and 5m candles."""

    name = "scalping"
    timeframes = ("1m", "5m")
    Params = ScalpingParams
    description = "EMA/Stochastic/MACD turns with RSI on volume surges and order-flow bias."

    def warmup(self, params: ScalpingParams) -> int:
        """Return the longest indicator warm-up plus the event and flow windows."""
        p = params
        longest = max(
            warmup.ema(p.ema_fast),
            warmup.ema(p.ema_slow),
            warmup.stochastic(p.stoch_k, 3, 3),
            warmup.wilder(p.rsi_period),
            warmup.flat(p.rsi_period),
            warmup.window(p.volume_ma),
            warmup.macd(12, 26, 9) + 2,
        )
        return longest + max(p.event_window, p.flow_window)

    def rules(self, candles: pd.DataFrame, params: ScalpingParams) -> RuleSet:
        """Evaluate the five BUY rules and their SELL mirrors on every candle."""
        p, c = params, candles
        close, volume = c["close"], c["volume"]
        # comparisons with a tolerance: values equal up to float noise never decide (see ind)
        tol, osc = ind.price_tolerance(close), ind.OSCILLATOR_TOLERANCE
        fast, slow = ind.ema(close, p.ema_fast), ind.ema(close, p.ema_slow)
        k, d = ind.stochastic(c["high"], c["low"], close, p.stoch_k)
        rsi = ind.rsi(close, p.rsi_period).mask(ind.flat(close, p.rsi_period))
        surge = volume > p.volume_surge * ind.volume_ma(volume, p.volume_ma)
        hist = ind.macd(close)[2]
        rising, falling = ind.rising(hist, tol), ind.falling(hist, tol)
        flow = ind.buy_ratio(c["buy_volume"], volume).rolling(p.flow_window).mean()
        flow_known = flow.notna()
        win = p.event_window
        stoch_high = 100.0 - p.stoch_low
        rsi_sell = 100.0 - p.rsi_buy
        buy = [
            Rule(
                f"EMA{p.ema_fast} crossed above EMA{p.ema_slow}",
                ind.within(ind.crossed_above(fast, slow, tol), win),
            ),
            Rule(
                f"Stoch %K crossed above %D below {p.stoch_low:g}",
                ind.within(ind.crossed_above(k, d, osc) & ind.below(d, p.stoch_low, osc), win),
            ),
            Rule(
                f"RSI{p.rsi_period} below {p.rsi_buy:g} on volume surge",
                ind.below(rsi, p.rsi_buy, osc) & surge,
            ),
            Rule(
                "MACD histogram turned up",
                ind.within(rising & falling.shift(1, fill_value=False), win),
            ),
            Rule(
                f"taker-buy share above {0.5 + p.flow_bias:g}",
                flow > 0.5 + p.flow_bias,
                known=flow_known,
            ),
        ]
        sell = [
            Rule(
                f"EMA{p.ema_fast} crossed below EMA{p.ema_slow}",
                ind.within(ind.crossed_above(slow, fast, tol), win),
            ),
            Rule(
                f"Stoch %K crossed below %D above {stoch_high:g}",
                ind.within(ind.crossed_above(d, k, osc) & ind.above(d, stoch_high, osc), win),
            ),
            Rule(
                f"RSI{p.rsi_period} above {rsi_sell:g} on volume surge",
                ind.above(rsi, rsi_sell, osc) & surge,
            ),
            Rule(
                "MACD histogram turned down",
                ind.within(falling & rising.shift(1, fill_value=False), win),
            ),
            Rule(
                f"taker-buy share below {0.5 - p.flow_bias:g}",
                flow < 0.5 - p.flow_bias,
                known=flow_known,
            ),
        ]
        return RuleSet(buy=buy, sell=sell)

    def plots(self, candles: pd.DataFrame, params: ScalpingParams) -> list[Plot]:
        """Draw the EMAs on the price panel, and Stochastic, RSI and MACD histogram panels."""
        p, c = params, candles
        close = c["close"]
        k, d = ind.stochastic(c["high"], c["low"], close, p.stoch_k)
        stoch = (p.stoch_low, 100.0 - p.stoch_low)
        return [
            Plot(f"EMA{p.ema_fast}", ind.ema(close, p.ema_fast)),
            Plot(f"EMA{p.ema_slow}", ind.ema(close, p.ema_slow)),
            Plot(f"Stoch %K{p.stoch_k}", k, "Stochastic", stoch),
            Plot("Stoch %D", d, "Stochastic", stoch),
            Plot(
                f"RSI{p.rsi_period}",
                ind.rsi(close, p.rsi_period),
                "RSI",
                (p.rsi_buy, 100.0 - p.rsi_buy),
            ),
            Plot("MACD histogram", ind.macd(close)[2], "MACD", (0.0,)),
        ]


STRATEGY = Scalping()
