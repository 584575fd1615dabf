"""Swing: regime-filtered breakouts on 15m/1h candles.

The regime gate allows BUY only in an up regime (close above SMA``regime_slow`` and
SMA``regime_fast`` above SMA``regime_slow``) and SELL only in the mirror down regime. Inside it,
the BUY rules (SELL mirrors each one) are:

- Bollinger squeeze then breakout: the bands were in a squeeze within the last ``squeeze_window``
  candles and the close breaks above the upper band;
- MACD line crossed above its signal line in the last ``event_window`` candles;
- RSI between 50 and ``rsi_high`` (momentum without being overbought);
- net taker flow of the last ``flow_window`` candles positive (abstains when unknown).
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
class SwingParams(ScoringParams):
    """Swing parameters and their search ranges."""

    threshold: float = param(0.5, low=0.25, high=1.0, step=0.05)
    cooldown: int = param(20, low=0, high=96, step=4)
    regime_fast: int = param(50, low=20, high=100, step=10)
    regime_slow: int = param(200, low=100, high=300, step=25)
    bb_period: int = param(20, low=10, high=40, step=2)
    bb_stddev: float = param(2.0, low=1.5, high=3.0, step=0.25)
    squeeze_lookback: int = param(120, low=40, high=240, step=20)
    squeeze_window: int = param(12, low=1, high=48)
    macd_fast: int = param(12, low=5, high=20)
    macd_slow: int = param(26, low=15, high=50)
    macd_signal: int = param(9, low=3, high=15)
    rsi_period: int = param(14, low=5, high=30)
    rsi_high: float = param(70.0, low=55.0, high=85.0, step=5.0)
    flow_window: int = param(12, low=1, high=48)
    event_window: int = param(3, low=1, high=12)

    def __post_init__(self) -> None:
        require_less(self, "regime_fast", "regime_slow")
        require_less(self, "macd_fast", "macd_slow")


class Swing(Strategy[SwingParams]):
    """Regime-filtered swing strategy for 15m and 1h candles."""

    name = "swing"
    timeframes = ("15m", "1h")
    Params = SwingParams
    description = "Squeeze breakouts, MACD crosses, RSI and net flow, only with the SMA regime."

    def warmup(self, params: SwingParams) -> int:
        """Return the longest indicator warm-up plus the event windows."""
        p = params
        longest = max(
            warmup.window(p.regime_slow),
            warmup.window(p.bb_period + p.squeeze_lookback) + p.squeeze_window,
            warmup.macd(p.macd_fast, p.macd_slow, p.macd_signal) + p.event_window,
            warmup.wilder(p.rsi_period),
            warmup.flat(p.rsi_period),
            p.flow_window,
        )
        return longest + 1

    def rules(self, candles: pd.DataFrame, params: SwingParams) -> RuleSet:
        """Evaluate the regime gates and the four BUY rules with their SELL mirrors."""
        p, c = params, candles
        close = c["close"]
        # comparisons with a tolerance: values equal up to float noise never decide (see ind)
        tol, osc = ind.price_tolerance(close), ind.OSCILLATOR_TOLERANCE
        fast, slow = ind.sma(close, p.regime_fast), ind.sma(close, p.regime_slow)
        upper, middle, lower = ind.bollinger(close, p.bb_period, p.bb_stddev)
        squeezed = ind.within(
            ind.bollinger_squeeze(upper, middle, lower, p.squeeze_lookback), p.squeeze_window
        )
        line, signal, _ = ind.macd(close, p.macd_fast, p.macd_slow, p.macd_signal)
        rsi = ind.rsi(close, p.rsi_period).mask(ind.flat(close, p.rsi_period))
        flow = ind.net_flow(c["buy_volume"], c["volume"]).rolling(p.flow_window).sum()
        flow_tol = c["volume"].rolling(p.flow_window).sum() * ind.PRICE_TOLERANCE
        win, rsi_low = p.event_window, 100.0 - p.rsi_high
        buy = [
            Rule(
                "Bollinger squeeze, then close above the upper band",
                squeezed.shift(1, fill_value=False) & ind.above(close, upper, tol),
            ),
            Rule(
                "MACD crossed above its signal",
                ind.within(ind.crossed_above(line, signal, tol), win),
            ),
            Rule(
                f"RSI{p.rsi_period} between 50 and {p.rsi_high:g}",
                ind.above(rsi, 50.0, osc) & ind.below(rsi, p.rsi_high, osc),
            ),
            Rule(
                f"net taker flow of {p.flow_window} candles positive",
                ind.above(flow, 0.0, flow_tol),
                known=flow.notna(),
            ),
        ]
        sell = [
            Rule(
                "Bollinger squeeze, then close below the lower band",
                squeezed.shift(1, fill_value=False) & ind.below(close, lower, tol),
            ),
            Rule(
                "MACD crossed below its signal",
                ind.within(ind.crossed_above(signal, line, tol), win),
            ),
            Rule(
                f"RSI{p.rsi_period} between {rsi_low:g} and 50",
                ind.below(rsi, 50.0, osc) & ind.above(rsi, rsi_low, osc),
            ),
            Rule(
                f"net taker flow of {p.flow_window} candles negative",
                ind.below(flow, 0.0, flow_tol),
                known=flow.notna(),
            ),
        ]
        up = ind.above(close, slow, tol) & ind.above(fast, slow, tol)
        down = ind.below(close, slow, tol) & ind.below(fast, slow, tol)
        return RuleSet(
            buy=buy,
            sell=sell,
            buy_gate=up,
            sell_gate=down,
            buy_gate_reason=f"up regime (close and SMA{p.regime_fast} above SMA{p.regime_slow})",
            sell_gate_reason=f"down regime (close and SMA{p.regime_fast} below SMA{p.regime_slow})",
        )

    def plots(self, candles: pd.DataFrame, params: SwingParams) -> list[Plot]:
        """Draw the regime SMAs and Bollinger bands on the price panel; MACD and RSI panels."""
        p = params
        close = candles["close"]
        upper, _, lower = ind.bollinger(close, p.bb_period, p.bb_stddev)
        line, signal, _ = ind.macd(close, p.macd_fast, p.macd_slow, p.macd_signal)
        return [
            Plot(f"SMA{p.regime_fast}", ind.sma(close, p.regime_fast)),
            Plot(f"SMA{p.regime_slow}", ind.sma(close, p.regime_slow)),
            Plot(f"Bollinger upper ({p.bb_period}, {p.bb_stddev:g})", upper),
            Plot(f"Bollinger lower ({p.bb_period}, {p.bb_stddev:g})", lower),
            Plot("MACD", line, "MACD", (0.0,)),
            Plot("MACD signal", signal, "MACD", (0.0,)),
            Plot(
                f"RSI{p.rsi_period}",
                ind.rsi(close, p.rsi_period),
                "RSI",
                (100.0 - p.rsi_high, 50.0, p.rsi_high),
            ),
        ]


STRATEGY = Swing()
