"""Higher-timeframe inputs: the longer candles a strategy reads, merged without lookahead.

A strategy that declares ``informative = ("1h",)`` receives, in ``rules()``, the columns
``open_1h, high_1h, low_1h, close_1h, volume_1h`` and ``buy_volume_1h`` (NaN where a base candle
of that hour has no taker-buy volume). On each row they hold the last 1h candle that had closed
by that row's own close. **The visibility rule**: a candle opened at T with length H is visible
on the base candle opened at t with length b if and only if ``t + b >= T + H``; before the first
one the columns are NaN. So a 15m candle opened at 10:45 sees the 10:00 hour (both close at
11:00), and the one opened at 10:30 still sees the 09:00 hour. Columns a strategy computes on the
higher candles themselves (``Strategy.informative_columns``, e.g. an SMA of the hourly closes)
are merged by the same rule.

**Where the higher candles come from**: they are aggregated here from the base candles the
strategy is given (hours aligned to the Unix epoch, like the store's), never read from the store's
table of that timeframe. Research and live therefore see the same higher candles, and live never
waits for the pipeline to commit the higher row. A higher candle with base candles missing (a
gap) is aggregated from the base candles that exist, like every other input of a strategy (gaps
are never filled); it becomes visible on the first base candle that closes at or after its end.
A history cut inside a higher candle makes that candle partial; the warm-up covers it
(`base_candles`).

The base length b is the greatest common divisor of the steps between the candles' open times
and of the first one's offset in its day (one pair of consecutive candles is enough), so
`Strategy.signals` needs no timeframe argument. Its limit: a history in which no two candles are
consecutive and every open time is aligned to a longer timeframe is taken for that timeframe.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from signals.errors import SignalsError
from signals.timeframes import TIMEFRAMES, timeframe_seconds

FIELDS = ("open", "high", "low", "close", "volume", "buy_volume")


class InformativeError(SignalsError, ValueError):
    """A higher timeframe that cannot be merged onto the base candles."""


def base_seconds(index: pd.Index) -> int | None:
    """Return the length of the candles on `index` in seconds (None with fewer than two)."""
    if len(index) < 2:
        return None
    ts = _epoch(index)
    # the steps between candles and the first one's offset in its day: all multiples of b
    step = int(np.gcd.reduce(np.concatenate((np.diff(ts), [ts[0] % 86_400]))))
    if step <= 0:
        return None
    known = [s for s in TIMEFRAMES.values() if step % s == 0]
    return max(known) if known else step


def base_candles(higher_candles: int, higher: str, base: int) -> int:
    """Return the base candles (of `base` seconds) that hold `higher_candles` whole candles.

    A window of that many base candles holds the last `higher_candles` higher candles visible
    on its last row complete, whatever higher candle the window starts in.
    """
    ratio = _ratio(higher, base)
    return (int(higher_candles) + 1) * ratio if higher_candles > 0 else 0


Columns = Callable[[str, pd.DataFrame], Mapping[str, Any]]


def aggregate(candles: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """Return the `timeframe` candles built from `candles` (OHLCV sums; partial ones included).

    The index is each higher candle's open time, aligned to the Unix epoch.
    """
    ts = _epoch(candles.index)
    length = timeframe_seconds(timeframe)
    bucket = ts - ts % length  # the higher candle each base candle belongs to
    n = len(ts)
    starts = np.flatnonzero(np.concatenate(([True], bucket[1:] != bucket[:-1]))) if n else ts
    ends = np.concatenate((starts[1:], [n])).astype("int64") - 1
    higher: dict[str, np.ndarray] = {}
    for f in (f for f in FIELDS if f in candles.columns):
        values = candles[f].to_numpy(dtype="float64")
        if not n:
            higher[f] = values
        elif f == "open":
            higher[f] = values[starts]
        elif f == "close":
            higher[f] = values[ends]
        elif f == "high":
            higher[f] = np.maximum.reduceat(values, starts)
        elif f == "low":
            higher[f] = np.minimum.reduceat(values, starts)
        else:  # volumes: a sum, NaN when a base candle's value is unknown
            higher[f] = np.add.reduceat(values, starts)
    index = pd.DatetimeIndex(pd.to_datetime(bucket[starts], unit="s", utc=True), name="time")
    return pd.DataFrame(higher, index=index)


def with_informative(
    candles: pd.DataFrame,
    timeframes: tuple[str, ...],
    base: int | None = None,
    columns: Columns | None = None,
) -> pd.DataFrame:
    """Return `candles` plus ``<column>_<tf>`` columns of each higher timeframe (module doc).

    `columns(tf, higher)` may add columns computed on the higher candles themselves (e.g. an
    SMA of the 1h closes); they are merged with the same visibility rule. `base` is the base
    candles' length in seconds (inferred from the index when None).
    """
    if not timeframes:
        return candles
    base = base if base is not None else base_seconds(candles.index)
    added: dict[str, np.ndarray] = {}
    ts = _epoch(candles.index)
    for tf in timeframes:
        higher = aggregate(candles, tf)
        if columns is not None:
            for name, values in columns(tf, higher).items():
                higher[name] = np.asarray(values, dtype="float64")
        at = _visible_rows(ts, higher, tf, base)
        for name in higher.columns:
            values = higher[name].to_numpy(dtype="float64")
            picked = values[np.maximum(at, 0)] if len(values) else np.full(len(ts), np.nan)
            added[f"{name}_{tf}"] = np.where(at >= 0, picked, np.nan)
    return pd.concat([candles, pd.DataFrame(added, index=candles.index)], axis=1)


def _visible_rows(ts: np.ndarray, higher: pd.DataFrame, tf: str, base: int | None) -> np.ndarray:
    # Per base row, the position of the last higher candle visible on it (-1: none yet).
    if base is None:  # one candle: its length is unknown, nothing is visible
        return np.full(len(ts), -1, dtype="int64")
    length = _ratio(tf, base) * base
    closes_at = _epoch(higher.index) + length
    # the last higher candle that closed by each row's close: t + b >= T + H
    return np.searchsorted(closes_at, ts + base, side="right").astype("int64") - 1


def _ratio(higher: str, base: int) -> int:
    length = timeframe_seconds(higher)
    if length <= base or length % base:
        raise InformativeError(
            f"informative timeframe {higher} ({length} s) is not a whole multiple of the "
            f"base candles ({base} s) longer than them"
        )
    return length // base


def _epoch(index: pd.Index) -> np.ndarray:
    # Open times in epoch seconds, whatever the index's unit.
    values = pd.DatetimeIndex(index).as_unit("s").asi8
    return np.asarray(values, dtype="int64")
