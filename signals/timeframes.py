"""Candle timeframes: names, lengths in seconds, and alignment."""

from __future__ import annotations

from signals.errors import SignalsError, closest

TIMEFRAMES: dict[str, int] = {
    "1m": 60,
    "5m": 300,
    "15m": 900,
    "1h": 3600,
    "4h": 14400,
    "1d": 86400,
}


class TimeframeError(SignalsError, ValueError):
    """An unknown timeframe name."""


def timeframe_seconds(timeframe: str) -> int:
    """Return the length of one candle of `timeframe` in seconds."""
    try:
        return TIMEFRAMES[timeframe]
    except KeyError:
        close = closest(timeframe, TIMEFRAMES)
        hint = f" (did you mean {close!r}?)" if close else ""
        valid = ", ".join(TIMEFRAMES)
        raise TimeframeError(f"unknown timeframe {timeframe!r}{hint}; valid: {valid}") from None


def timeframe_from_seconds(seconds: int) -> str:
    """Return the timeframe name whose candle lasts `seconds`."""
    for name, length in TIMEFRAMES.items():
        if length == seconds:
            return name
    raise TimeframeError(f"no timeframe lasts {seconds} s; known: {TIMEFRAMES}")


def higher_timeframes(base: str) -> list[str]:
    """Return the timeframes longer than `base` that are whole multiples of it."""
    step = timeframe_seconds(base)
    return [tf for tf, s in TIMEFRAMES.items() if s > step and s % step == 0]
