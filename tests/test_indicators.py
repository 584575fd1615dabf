"""Every indicator wrapper equals TA-Lib called directly (or its documented formula)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import talib
from hypothesis import given
from hypothesis import strategies as st

from strategies import indicators as ind
from strategies import warmup
from tests.candles import random_walk

C = random_walk(600, seed=4)
CLOSE, HIGH, LOW, VOL = (C[k].to_numpy() for k in ("close", "high", "low", "volume"))


def same(series, expected) -> None:
    assert series.index.equals(C.index)
    np.testing.assert_array_equal(series.to_numpy(), expected)


def test_moving_averages_and_rsi() -> None:
    same(ind.ema(C["close"], 13), talib.EMA(CLOSE, timeperiod=13))
    same(ind.sma(C["close"], 50), talib.SMA(CLOSE, timeperiod=50))
    same(ind.rsi(C["close"], 9), talib.RSI(CLOSE, timeperiod=9))
    same(ind.volume_ma(C["volume"], 20), talib.SMA(VOL, timeperiod=20))


def test_macd_bollinger_stochastic_atr() -> None:
    for got, want in zip(ind.macd(C["close"], 8, 21, 5), talib.MACD(CLOSE, 8, 21, 5), strict=True):
        same(got, want)
    for got, want in zip(
        ind.bollinger(C["close"], 20, 2.5), talib.BBANDS(CLOSE, 20, 2.5, 2.5, 0), strict=True
    ):
        same(got, want)
    k, d = ind.stochastic(C["high"], C["low"], C["close"], 10, 3, 3)
    want_k, want_d = talib.STOCH(HIGH, LOW, CLOSE, 10, 3, 0, 3, 0)
    same(k, want_k)
    same(d, want_d)
    same(ind.atr(C["high"], C["low"], C["close"], 14), talib.ATR(HIGH, LOW, CLOSE, 14))


def test_flow_indicators() -> None:
    buy = C["buy_volume"].to_numpy()
    same(ind.buy_ratio(C["buy_volume"], C["volume"]), buy / VOL)
    np.testing.assert_allclose(
        ind.net_flow(C["buy_volume"], C["volume"]), buy - (VOL - buy), rtol=1e-12
    )


def test_flow_indicators_at_zero_volume_and_unknown_buy_volume() -> None:
    index = pd.date_range("2024-01-01", periods=4, freq="1min", tz="UTC")
    buy = pd.Series([1.0, np.nan, 0.0, 2.0], index)
    volume = pd.Series([4.0, 3.0, 0.0, 2.0], index)
    ratio = ind.buy_ratio(buy, volume)
    np.testing.assert_array_equal(ratio.to_numpy(), [0.25, np.nan, np.nan, 1.0])
    flow = ind.net_flow(buy, volume)
    np.testing.assert_array_equal(flow.to_numpy(), [-2.0, np.nan, 0.0, 2.0])
    assert (ratio.name, flow.name) == ("buy_ratio", "net_flow")
    assert ratio.index.equals(index) and flow.index.equals(index)
    assert ind.volume_ma(volume, 2).name == "volume_ma_2"


def test_squeeze_equals_its_pandas_formula_with_gaps_in_the_bands() -> None:
    upper, middle, lower = ind.bollinger(C["close"], 20, 2.0)
    upper, middle = upper.copy(), middle.copy()
    upper.iloc[300], middle.iloc[400] = np.nan, 0.0  # a NaN width, an infinite width
    width = (upper - lower) / middle
    threshold = width.rolling(100, min_periods=100).quantile(0.2)
    expected = ((width <= threshold) & threshold.notna()).rename("bb_squeeze")
    got = ind.bollinger_squeeze(upper, middle, lower, lookback=100, quantile=0.2)
    pd.testing.assert_series_equal(got, expected)
    assert not got.iloc[300] and not got.iloc[400]


def test_squeeze_flags_the_narrowest_bands() -> None:
    upper, middle, lower = ind.bollinger(C["close"], 20, 2.0)
    squeeze = ind.bollinger_squeeze(upper, middle, lower, lookback=100, quantile=0.2)
    width = ((upper - lower) / middle).to_numpy()
    for i in (150, 300, 599):
        window = width[i - 99 : i + 1]
        assert squeeze.iloc[i] == (width[i] <= np.quantile(window, 0.2))
    assert not squeeze.iloc[:118].any()  # not defined before period + lookback - 1


def test_crossed_above_and_within() -> None:
    a = C["close"]
    b = ind.sma(a, 10)
    cross = ind.crossed_above(a, b)
    expect = (a > b) & (a.shift(1) <= b.shift(1))
    assert cross.equals(expect.rename("crossed_above"))
    near = ind.within(cross, 3)
    for i in np.flatnonzero(cross.to_numpy())[:5]:
        assert near.iloc[i : i + 3].all()


@given(
    st.lists(st.sampled_from([np.nan, 1.0, 2.0, 3.0]), min_size=0, max_size=30),
    st.lists(st.sampled_from([np.nan, 1.0, 2.0, 3.0]), min_size=30, max_size=30),
)
def test_crossed_above_is_the_pandas_definition_with_missing_values(
    left: list[float], right: list[float]
) -> None:
    a = pd.Series(left, dtype="float64")
    b = pd.Series(right[: len(left)], dtype="float64")
    expect = (a > b) & (a.shift(1) <= b.shift(1))
    assert ind.crossed_above(a, b).equals(expect.rename("crossed_above"))


GRID = st.lists(st.sampled_from([np.nan, 1.0, 2.0, 3.0]), min_size=2, max_size=30)
NOISE = st.lists(st.floats(-1e-3, 1e-3), min_size=30, max_size=30)


@given(GRID, GRID, NOISE, NOISE)
def test_tolerant_comparisons_ignore_noise_and_keep_real_differences(
    left: list[float], right: list[float], noise_a: list[float], noise_b: list[float]
) -> None:
    # values on a grid of 1, each seen through float noise far below the tolerance: the
    # tolerant comparisons give what the exact values give (equal values never cross or rise)
    n = min(len(left), len(right))
    a, b = pd.Series(left[:n]), pd.Series(right[:n])
    noisy_a, noisy_b = a + np.array(noise_a[:n]), b + np.array(noise_b[:n])
    tol = 1e-2
    assert ind.crossed_above(noisy_a, noisy_b, tol).equals(ind.crossed_above(a, b))
    assert ind.above(noisy_a, noisy_b, tol).equals(ind.above(a, b))
    assert ind.below(noisy_a, 2.0, tol).equals(ind.below(a, 2.0))
    assert ind.rising(noisy_a, tol).equals(ind.rising(a))
    assert ind.falling(noisy_a, tol).equals(ind.falling(a))
    assert ind.above(a, b).equals(((a > b) & a.notna() & b.notna()).rename("above"))


def test_price_tolerance_scales_with_the_price() -> None:
    tol = ind.price_tolerance(C["close"])
    np.testing.assert_array_equal(tol.to_numpy(), CLOSE * ind.PRICE_TOLERANCE)
    series = pd.Series([1.0, 2.0])
    with pytest.raises(ValueError, match="same index"):
        ind.above(series, pd.Series([1.0, 2.0], index=[5, 6]))


def test_flat_marks_a_market_that_stopped_and_does_not_depend_on_the_start() -> None:
    close = C["close"].copy()
    close.iloc[200:] = close.iloc[199]  # the market stops at candle 200
    period = 14
    full = ind.flat(close, period).to_numpy()
    assert not full[:200].any()  # it moved
    settle = warmup.flat(period)
    assert full[200 + settle :].all()  # the smoothed change decayed below the price tolerance
    for start in (150, 250, 300):  # a history that starts later, even inside the flat stretch
        late = ind.flat(close.iloc[start:], period).to_numpy()
        np.testing.assert_array_equal(late[settle:], full[start + settle :])


@given(
    st.one_of(
        st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=30).map(
            lambda v: np.array(v, dtype="float64")
        ),
        st.lists(st.booleans(), max_size=30).map(lambda v: np.array(v, dtype=bool)),
    ),
    st.sampled_from(["ema_5", "crossed_above", None]),
)
def test_the_fast_series_builder_gives_the_public_constructors_series(
    values: np.ndarray, name: str | None
) -> None:
    # the indicators wrap each result with pandas' internal path when it gives exactly this
    # (chosen at import: on pandas 3.1 the internal path, see the test below)
    index = pd.date_range("2024-01-01", periods=len(values), freq="min", tz="UTC", name="time")
    fast, public = ind._series(values, index, name), pd.Series(values, index, name=name)
    pd.testing.assert_series_equal(fast, public, check_exact=True)
    assert fast.index is index and fast.name == name and fast.dtype == values.dtype
    assert fast.flags.allows_duplicate_labels and fast.attrs == {}


def test_the_public_constructor_is_chosen_when_the_internal_path_is_gone_or_differs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ind, "SingleBlockManager", None)  # a pandas without it
    assert ind._choose_series_builder() is ind._public_series
    monkeypatch.undo()

    def unnamed(values: np.ndarray, index: pd.Index, name: str | None) -> pd.Series:
        return pd.Series(values, index)  # a pandas on which the name would be lost

    monkeypatch.setattr(ind, "_internal_series", unnamed)
    assert ind._choose_series_builder() is ind._public_series


@given(
    st.one_of(
        st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=20).map(
            lambda v: pd.Series(v, dtype="float64")
        ),
        st.lists(st.booleans(), max_size=20).map(lambda v: pd.Series(v, dtype=bool)),
        st.lists(st.integers(-5, 5), max_size=20).map(lambda v: pd.Series(v, dtype="int64")),
        st.lists(st.one_of(st.none(), st.booleans()), max_size=20).map(
            lambda v: pd.Series(v, dtype="boolean")
        ),
        st.lists(st.one_of(st.none(), st.floats(-1e6, 1e6)), max_size=20).map(
            lambda v: pd.Series(v, dtype="Float64")
        ),
    )
)
def test_the_inputs_arrays_are_what_to_numpy_gives(series: pd.Series) -> None:
    # indicators and the scoring read their inputs' arrays without to_numpy's dispatch when
    # pandas holds them as numpy arrays of the wanted dtype: the same values, read-only
    if series.dtype.kind == "f" or series.dtype == "Float64":
        got, want = ind._values(series), series.to_numpy(dtype="float64", na_value=np.nan)
        np.testing.assert_array_equal(got, want)
        assert got.dtype == np.float64
    if series.dtype in (bool, "boolean"):
        got, want = ind.as_flags(series), series.to_numpy(dtype=bool, na_value=False)
        np.testing.assert_array_equal(got, want)
        assert got.dtype == np.bool_
    held = ind._held(series, np.float64)
    if held is not None:
        assert series.dtype == np.float64 and not held.flags.writeable
        assert not len(series) or np.shares_memory(held, series.to_numpy())


def test_to_numpy_is_used_when_the_held_array_cannot_be_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def writable(series: pd.Series, dtype: type[np.generic]) -> np.ndarray | None:
        return np.array(series.to_numpy(dtype=dtype))  # a copy: not what to_numpy gives

    monkeypatch.setattr(ind, "_internal_held", writable)
    assert ind._choose_held() is ind._public_held
    monkeypatch.setattr(ind, "_internal_held", lambda s, d: s.nonexistent)  # attribute gone
    assert ind._choose_held() is ind._public_held
