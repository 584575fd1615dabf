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
    fields = [f for f in FIELDS if f in candles.columns]
    opens, values = _aggregate(_epoch(candles.index), _matrix(candles, fields), timeframe, fields)
    return _frame(opens, values, fields)


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
    ts = _epoch(candles.index)
    fields = [f for f in FIELDS if f in candles.columns]
    matrix = _matrix(candles, fields)
    names: list[str] = []
    blocks: list[np.ndarray] = []
    for tf in timeframes:
        opens, values = _aggregate(ts, matrix, tf, fields)
        higher = _frame(opens, values, fields)
        extra = columns(tf, higher) if columns is not None else {}
        if extra:
            added = [np.asarray(v, dtype="float64").reshape(-1, 1) for v in extra.values()]
            values = np.hstack([values, *added])
        at = _visible_rows(ts, opens, tf, base)
        picked = values[np.maximum(at, 0)] if len(values) else np.empty((len(ts), values.shape[1]))
        picked[at < 0] = np.nan
        names += [f"{name}_{tf}" for name in [*fields, *extra]]
        blocks.append(picked)
    labels = pd.Index(names, dtype=object)  # plain labels: no Arrow strings (slow to index)
    merged = pd.DataFrame(np.hstack(blocks), index=candles.index, columns=labels, copy=False)
    return pd.concat([candles, merged], axis=1)


def _matrix(candles: pd.DataFrame, fields: list[str]) -> np.ndarray:
    # The candles' OHLCV fields as one float64 (candles x fields) array.
    return np.column_stack([candles[f].to_numpy(dtype="float64") for f in fields])


def _aggregate(
    ts: np.ndarray, values: np.ndarray, timeframe: str, fields: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    # Open times (epoch s) and (higher candles x fields) values.
    length = timeframe_seconds(timeframe)
    bucket = ts - ts % length  # the higher candle each base candle belongs to
    n, width = values.shape
    if not n:
        return bucket, np.empty((0, width))
    starts = np.flatnonzero(np.concatenate(([True], bucket[1:] != bucket[:-1])))
    ends = np.concatenate((starts[1:], [n])) - 1
    out = np.empty((len(starts), width))
    for j, name in enumerate(fields):  # one reduction per field (at most six)
        column = values[:, j]
        if name == "open":
            out[:, j] = column[starts]
        elif name == "close":
            out[:, j] = column[ends]
        elif name == "high":
            out[:, j] = np.maximum.reduceat(column, starts)
        elif name == "low":
            out[:, j] = np.minimum.reduceat(column, starts)
        else:  # volumes: a sum, NaN when a base candle's value is unknown
            out[:, j] = np.add.reduceat(column, starts)
    return bucket[starts], out


def _frame(opens: np.ndarray, values: np.ndarray, fields: list[str]) -> pd.DataFrame:
    # The higher candles as a frame on their open times (UTC).
    index = pd.DatetimeIndex(opens.astype("datetime64[s]"), name="time").tz_localize("UTC")
    return pd.DataFrame(values, index=index, columns=pd.Index(fields, dtype=object), copy=False)


def _visible_rows(ts: np.ndarray, opens: np.ndarray, tf: str, base: int | None) -> np.ndarray:
    # Per base row, the position of the last higher candle visible on it (-1: none yet).
    if base is None:  # one candle: its length is unknown, nothing is visible
        return np.full(len(ts), -1, dtype="int64")
    length = _ratio(tf, base) * base
    # the last higher candle that closed by each row's close: t + b >= T + H
    return np.searchsorted(opens + length, ts + base, side="right").astype("int64") - 1


def _ratio(higher: str, base: int) -> int:
    length = timeframe_seconds(higher)
    if length <= base or length % base:
        raise InformativeError(
            f"informative timeframe {higher} ({length} s) must be longer than the base "
            f"candles ({base} s) and a whole multiple of them"
        )
    return length // base


def _epoch(index: pd.Index) -> np.ndarray:
    # Open times in epoch seconds, whatever the index's unit.
    values = pd.DatetimeIndex(index).as_unit("s").asi8
    return np.asarray(values, dtype="int64")
