"""Warm-up lengths derived from indicator lookbacks (ARCHITECTURE.md, "Strategy contract").

Windowed indicators (SMA, Bollinger, Stochastic) are exact once their window is full. Recursive
ones remember where the data started: the start's weight decays like (1 - a)**n, with a = 2/(p+1)
for an EMA and 1/p for Wilder smoothing (RSI, ATR). It drops below float64 resolution (2**-53,
about 1.1e-16) after ln(2**-53)/ln(1 - a) candles, roughly 36.7/a. Each helper returns the number
of candles after which the indicator equals its full-history value to float precision.
"""

from __future__ import annotations

import math

_FLOAT64_DIGITS = 53 * math.log(2.0)  # -ln(2**-53)


def _decay_candles(alpha: float) -> int:
    if alpha >= 1.0:
        return 0
    return math.ceil(_FLOAT64_DIGITS / -math.log1p(-alpha))


def window(period: int) -> int:
    """Warm-up of a windowed indicator (SMA, Bollinger, rolling min/max): its period."""
    return int(period)


def ema(period: int) -> int:
    """Warm-up of an EMA of `period`: the SMA seed plus the decay of the seed below float64."""
    return int(period) + _decay_candles(2.0 / (period + 1.0))


def wilder(period: int) -> int:
    """Warm-up of a Wilder-smoothed indicator (RSI, ATR) of `period`."""
    return int(period) + 1 + _decay_candles(1.0 / period)


def macd(fast: int, slow: int, signal: int) -> int:
    """Warm-up of MACD: the slower EMA, then the signal EMA of the MACD line."""
    return max(ema(fast), ema(slow)) + ema(signal)


def stochastic(k_period: int, k_smooth: int, d_period: int) -> int:
    """Warm-up of the slow Stochastic with SMA smoothing (all windowed)."""
    return int(k_period + k_smooth + d_period)


def flat(period: int) -> int:
    """Warm-up of `strategies.indicators.flat` of `period` (an EMA of the close's changes)."""
    return ema(2 * int(period) - 1) + 1
