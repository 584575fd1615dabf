"""Indicators, all computed with TA-Lib, as pandas Series on the input's index.

Each function takes Series (float64) and returns Series aligned to the same index, NaN where the
indicator is not yet defined. Warm-up needs of each are in :mod:`strategies.warmup`.

**Comparisons that do not depend on where history starts.** TA-Lib's recursive indicators
(EMA, MACD, RSI) and its running sums (SMA, Stochastic, Bollinger) give values that differ by
float noise (a few units in the last place) depending on the first candle of the history. Where two
compared values are equal in exact arithmetic (%K equal to %D, a MACD histogram on a flat
market, two moving averages of a flat market), a plain ``>`` is decided by that noise, and so is
the signal. `above`, `below`, `crossed_above`, `rising` and `falling` take a ``tolerance``:
values closer than it count as equal. `price_tolerance` is the one for series in price units
(`PRICE_TOLERANCE` of the price, 3e-5 at 30,000) and `OSCILLATOR_TOLERANCE` the one for 0..100
oscillators. `flat` marks candles where nothing moved within a Wilder memory (RSI's gains and
losses then decay together, and their ratio remembers the start of history).

Inside ``with indicator_cache():`` the TA-Lib wrappers memoise their raw results, keyed by the
function, the input arrays (memory address, length and stride) and the arguments, so a sweep
computes EMA(9) of the close once for all the combinations that use it. Outside the context
nothing is cached and every call computes afresh; results are identical either way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import numpy as np
import pandas as pd
import talib

try:  # pandas-internal (see _choose_series_builder): absent, the public constructor is used
    from pandas.core.internals import SingleBlockManager
except ImportError:  # pragma: no cover - a pandas without it
    SingleBlockManager = None

MA_SMA = 0  # TA-Lib MA_Type.SMA: Stochastic smoothing stays windowed (exact after its period)
PRICE_TOLERANCE = 1e-9  # share of the price below which two price-unit values count as equal
OSCILLATOR_TOLERANCE = 1e-9  # the same, in the units of a 0..100 oscillator (RSI, Stochastic)


_CACHE: ContextVar[dict[tuple, tuple[tuple[np.ndarray, ...], Any]] | None] = ContextVar(
    "indicator_cache", default=None
)


@contextmanager
def indicator_cache() -> Iterator[None]:
    """Memoise the TA-Lib wrappers' results until the block ends (nested blocks share one memo).

    Entries keep their input arrays alive, so a memory address cannot be reused by other data
    while the memo exists. Each call still returns new Series on the caller's index.

    >>> with indicator_cache():  # doctest: +SKIP
    ...     a = ema(candles["close"], 9)
    ...     b = ema(candles["close"], 9)  # computed once
    """
    if _CACHE.get() is not None:
        yield
        return
    token = _CACHE.set({})
    try:
        yield
    finally:
        _CACHE.reset(token)


def _array_key(values: np.ndarray) -> tuple[int, int, int]:
    return (values.__array_interface__["data"][0], len(values), values.strides[0])


def _talib(name: str, func: Callable[..., Any], *inputs: np.ndarray, **kwargs: Any) -> Any:
    """Call ``func(*inputs, **kwargs)``, memoised when an `indicator_cache` is active."""
    memo = _CACHE.get()
    if memo is None:
        return func(*inputs, **kwargs)
    key = (name, tuple(_array_key(a) for a in inputs), tuple(sorted(kwargs.items())))
    hit = memo.get(key)
    if hit is None:
        hit = (inputs, func(*inputs, **kwargs))
        memo[key] = hit
    return hit[1]


def _values(series: pd.Series) -> np.ndarray:
    values = _held(series, np.float64)
    return values if values is not None else series.to_numpy(dtype="float64")


def _public_held(series: pd.Series, dtype: type[np.generic]) -> np.ndarray | None:
    return None  # always through to_numpy


def _internal_held(series: pd.Series, dtype: type[np.generic]) -> np.ndarray | None:
    # the numpy array a Series holds, as a read-only view (what to_numpy gives under
    # copy-on-write), or None when it holds something else; without to_numpy's dispatch
    values = series._values
    if type(values) is not np.ndarray or values.dtype != dtype:
        return None
    view = values.view()
    view.flags.writeable = False
    return view


def _choose_held() -> Callable[[pd.Series, type[np.generic]], np.ndarray | None]:
    # Each comparison and indicator reads its inputs' arrays (a dozen per live step and
    # strategy): to_numpy's dispatch is most of that. The internal read is used only if it
    # gives what to_numpy gives on this pandas, read-only and sharing the Series' memory.
    probes = [(pd.Series([1.5, np.nan, -0.0]), np.float64), (pd.Series([True, False]), np.bool_)]
    try:
        for series, dtype in probes:
            held, public = _internal_held(series, dtype), series.to_numpy(dtype=dtype)
            if not (
                held is not None
                and held.dtype == public.dtype
                and np.array_equal(held, public, equal_nan=held.dtype.kind == "f")
                and held.flags.writeable == public.flags.writeable
                and np.shares_memory(held, public)
            ):
                return _public_held
        if _internal_held(pd.Series([1, 2]), np.float64) is not None:  # int64: not held as is
            return _public_held
    except Exception:  # an internal attribute gone or changed
        return _public_held
    return _internal_held


_held = _choose_held()


def _public_series(values: np.ndarray, index: pd.Index, name: str | None) -> pd.Series:
    return pd.Series(values, index=index, name=name, copy=False)


def _internal_series(values: np.ndarray, index: pd.Index, name: str | None) -> pd.Series:
    # pandas' own path from an array to a Series, without the constructor's argument checks
    manager = SingleBlockManager.from_array(values, index)
    series = pd.Series._from_mgr(manager, axes=manager.axes)  # type: ignore[attr-defined]  # pandas-internal, checked below
    series._name = name  # what the `name` setter stores, without its hashability check
    return series


def _choose_series_builder() -> Callable[[np.ndarray, pd.Index, str | None], pd.Series]:
    # Every indicator and comparison wraps a fresh array in a Series, and the live step calls
    # dozens of them on each candle: the public constructor's argument checks are half of its
    # Python calls (benchmarks/live_latency.py). The internal path is used only if it gives
    # exactly the public one's Series on this pandas; else the public one.
    index = pd.DatetimeIndex(["2024-01-01", "2024-01-02"], tz="UTC", name="time")
    probes = [np.array([1.5, np.nan]), np.array([True, False])]
    try:
        for values in probes:
            fast = _internal_series(values, index, "probe")
            slow = _public_series(values, index, "probe")
            if not (
                fast.equals(slow)
                and fast.dtype == slow.dtype
                and fast.name == slow.name
                and fast.index is index
                and slow.index is index
                and fast.flags.allows_duplicate_labels == slow.flags.allows_duplicate_labels
                and fast.attrs == slow.attrs
                and np.shares_memory(fast.to_numpy(), values)
            ):
                return _public_series
    except Exception:  # an internal API gone or changed
        return _public_series
    return _internal_series


_series = _choose_series_builder()


def _wrap(values: np.ndarray, like: pd.Series, name: str) -> pd.Series:
    return _series(values, like.index, name)  # a fresh TA-Lib array


def ema(close: pd.Series, period: int) -> pd.Series:
    """Exponential moving average (TA-Lib EMA, seeded with the SMA of the first `period`)."""
    return _wrap(
        _talib("ema", talib.EMA, _values(close), timeperiod=period), close, f"ema_{period}"
    )


def sma(series: pd.Series, period: int) -> pd.Series:
    """Simple moving average."""
    return _wrap(
        _talib("sma", talib.SMA, _values(series), timeperiod=period), series, f"sma_{period}"
    )


def rsi(close: pd.Series, period: int = 14) -> pd.Series:
    """Relative strength index with Wilder smoothing (0..100)."""
    return _wrap(
        _talib("rsi", talib.RSI, _values(close), timeperiod=period), close, f"rsi_{period}"
    )


def macd(
    close: pd.Series, fast: int = 12, slow: int = 26, signal: int = 9
) -> tuple[pd.Series, pd.Series, pd.Series]:
    """MACD line, signal line and histogram."""
    line, sig, hist = _talib(
        "macd", talib.MACD, _values(close), fastperiod=fast, slowperiod=slow, signalperiod=signal
    )
    return (
        _wrap(line, close, "macd"),
        _wrap(sig, close, "macd_signal"),
        _wrap(hist, close, "macd_hist"),
    )


def bollinger(
    close: pd.Series, period: int = 20, stddev: float = 2.0
) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Bollinger bands (upper, middle, lower) around an SMA, `stddev` population deviations wide."""
    upper, middle, lower = _talib(
        "bollinger",
        talib.BBANDS,
        _values(close),
        timeperiod=period,
        nbdevup=stddev,
        nbdevdn=stddev,
        matype=MA_SMA,
    )
    return (
        _wrap(upper, close, "bb_upper"),
        _wrap(middle, close, "bb_middle"),
        _wrap(lower, close, "bb_lower"),
    )


def bollinger_squeeze(
    upper: pd.Series,
    middle: pd.Series,
    lower: pd.Series,
    lookback: int = 120,
    quantile: float = 0.2,
) -> pd.Series:
    """Squeeze flag: band width (upper-lower)/middle at or below its rolling `quantile`.

    A squeeze marks unusually narrow bands: volatility contraction that often precedes a breakout.
    The comparison is windowed, so it is exact after ``period + lookback`` candles. NaN widths give
    ``False``.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        width = (_values(upper) - _values(lower)) / _values(middle)
    rolling = _wrap(width, middle, "bb_width").rolling(lookback, min_periods=lookback)
    threshold = rolling.quantile(quantile).to_numpy()
    squeezed = (width <= threshold) & ~np.isnan(threshold)
    return _series(squeezed, middle.index, "bb_squeeze")


def stochastic(
    high: pd.Series,
    low: pd.Series,
    close: pd.Series,
    k_period: int = 14,
    k_smooth: int = 3,
    d_period: int = 3,
) -> tuple[pd.Series, pd.Series]:
    """Slow Stochastic %K and %D (0..100), both smoothed with SMAs."""
    k, d = _talib(
        "stochastic",
        talib.STOCH,
        _values(high),
        _values(low),
        _values(close),
        fastk_period=k_period,
        slowk_period=k_smooth,
        slowk_matype=MA_SMA,
        slowd_period=d_period,
        slowd_matype=MA_SMA,
    )
    return _wrap(k, close, "stoch_k"), _wrap(d, close, "stoch_d")


def atr(high: pd.Series, low: pd.Series, close: pd.Series, period: int = 14) -> pd.Series:
    """Average true range with Wilder smoothing."""
    values = _talib(
        "atr", talib.ATR, _values(high), _values(low), _values(close), timeperiod=period
    )
    return _wrap(values, close, f"atr_{period}")


def volume_ma(volume: pd.Series, period: int = 20) -> pd.Series:
    """Simple moving average of volume."""
    values = _talib("sma", talib.SMA, _values(volume), timeperiod=period)
    return _wrap(values, volume, f"volume_ma_{period}")


def buy_ratio(buy_volume: pd.Series, volume: pd.Series) -> pd.Series:
    """Taker-buy share of volume (0..1); NaN where volume is zero or buy volume unknown."""
    buy, total = _values(buy_volume), _values(volume)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(total > 0, buy / total, np.nan)
    return _wrap(ratio, volume, "buy_ratio")


def net_flow(buy_volume: pd.Series, volume: pd.Series) -> pd.Series:
    """Taker buy volume minus taker sell volume (base units); NaN where buy volume is unknown."""
    return _wrap(2.0 * _values(buy_volume) - _values(volume), volume, "net_flow")


def price_tolerance(price: pd.Series) -> pd.Series:
    """Return the tolerance of comparisons in price units: `PRICE_TOLERANCE` of `price`."""
    return _wrap(np.abs(_values(price)) * PRICE_TOLERANCE, price, "price_tolerance")


Tolerance = pd.Series | float


def _operand(value: pd.Series | float, like: pd.Series) -> np.ndarray | float:
    if isinstance(value, pd.Series):
        if not value.index.equals(like.index):
            raise ValueError("compared series need the same index")
        return _values(value)
    return float(value)


def above(a: pd.Series, b: pd.Series | float, tolerance: Tolerance = 0.0) -> pd.Series:
    """True where `a` exceeds `b` by more than `tolerance`; NaN on either side gives False."""
    with np.errstate(invalid="ignore"):
        flags = _values(a) > _operand(b, a) + _operand(tolerance, a)
    return _series(flags, a.index, "above")


def below(a: pd.Series, b: pd.Series | float, tolerance: Tolerance = 0.0) -> pd.Series:
    """True where `a` is under `b` by more than `tolerance`; NaN on either side gives False."""
    with np.errstate(invalid="ignore"):
        flags = _values(a) < _operand(b, a) - _operand(tolerance, a)
    return _series(flags, a.index, "below")


def crossed_above(a: pd.Series, b: pd.Series, tolerance: Tolerance = 0.0) -> pd.Series:
    """True on the candle where `a` moves from at or below `b` to above it (by `tolerance`).

    With a tolerance, `a` is above `b` only when it exceeds it by more than the tolerance, so
    two values equal up to float noise never cross.
    """
    if not a.index.equals(b.index):
        raise ValueError("crossed_above needs two series on the same index")
    x, y = _values(a), _values(b) + _operand(tolerance, a)
    crossed = x > y  # NaN compares False, as in pandas
    crossed[:1] = False
    crossed[1:] &= x[:-1] <= y[:-1]
    return _series(crossed, a.index, "crossed_above")


def rising(series: pd.Series, tolerance: Tolerance = 0.0) -> pd.Series:
    """True where `series` rose since the previous candle by more than `tolerance`."""
    return above(series, series.shift(1), tolerance).rename("rising")


def falling(series: pd.Series, tolerance: Tolerance = 0.0) -> pd.Series:
    """True where `series` fell since the previous candle by more than `tolerance`."""
    return below(series, series.shift(1), tolerance).rename("falling")


def flat(close: pd.Series, period: int) -> pd.Series:
    """True where the close has not moved within a Wilder memory of `period` candles.

    The Wilder average of the absolute close-to-close change (an EMA of period ``2 * period -
    1``, RSI's smoothing) is within `price_tolerance`: RSI's average gain and loss are then both
    decayed float remnants, whose ratio depends on where history started. Undefined (NaN
    average) counts as not flat.
    """
    quiet = _talib("flat", _flat_values, _values(close), timeperiod=period)
    return _series(quiet, close.index, "flat")


def _flat_values(close: np.ndarray, timeperiod: int) -> np.ndarray:
    # memoised as a whole: the change array is new on every call, so its EMA alone would not be
    moved = talib.EMA(np.abs(np.diff(close, prepend=np.nan)), timeperiod=2 * timeperiod - 1)
    with np.errstate(invalid="ignore"):
        return moved <= np.abs(close) * PRICE_TOLERANCE


def within(event: pd.Series, candles: int) -> pd.Series:
    """True where `event` happened on this candle or on one of the previous ``candles - 1``."""
    return _series(recent_count(as_flags(event), candles) > 0, event.index, None)


def as_flags(event: pd.Series) -> np.ndarray:
    """Return a boolean Series as a numpy bool array, missing values as False."""
    held = _held(event, np.bool_)  # numpy bools have no missing values: no NA pass needed
    if held is not None:
        return held
    if event.dtype == np.bool_:
        return event.to_numpy()
    return event.to_numpy(dtype=bool, na_value=False)


def recent_count(flags: np.ndarray, candles: int) -> np.ndarray:
    """Count the True flags on each candle and the ``candles - 1`` before it (a rolling sum).

    Equivalent to ``pd.Series(flags).rolling(candles, min_periods=1).sum()``, exact (integer
    cumulative sums), without pandas' per-window overhead.
    """
    total = np.cumsum(flags, dtype=np.int64)
    before = np.zeros_like(total)
    if candles < len(total):
        before[candles:] = total[:-candles]
    return total - before
