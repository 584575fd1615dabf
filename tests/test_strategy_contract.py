"""The contract every registered strategy must meet (adding a strategy enrols it here)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from research.backtest.bias import check_bias
from strategies import get_strategy, strategy_hash, strategy_names
from strategies.params import ranges
from strategies.registry import strategy_modules
from tests.candles import random_walk

NAMES = strategy_names()
FREQ = {"1m": "1min", "5m": "5min", "15m": "15min", "1h": "1h"}


def candles_for(name: str, n: int | None = None, seed: int = 1) -> pd.DataFrame:
    strategy = get_strategy(name)
    n = n or 3 * strategy.lookback(strategy.params()) + 400
    return random_walk(n, seed=seed, freq=FREQ[strategy.timeframes[0]])


@pytest.fixture(scope="module", params=NAMES)
def case(request: pytest.FixtureRequest) -> tuple:
    strategy = get_strategy(request.param)
    candles = candles_for(request.param)
    return strategy, candles, strategy.signals(candles)


def test_every_module_is_registered() -> None:
    modules = strategy_modules()
    assert len(modules) == len(NAMES) >= 2
    assert {"scalping", "swing"} <= set(NAMES)


def test_output_on_input_index(case: tuple) -> None:
    _, candles, frame = case
    for series in (frame.buy, frame.sell, frame.buy_score, frame.sell_score):
        assert series.index.equals(candles.index)
    assert frame.buy_rules.index.equals(candles.index)


def test_input_not_modified(case: tuple) -> None:
    strategy, candles, _ = case
    before = candles.copy(deep=True)
    strategy.signals(candles)
    pd.testing.assert_frame_equal(candles, before)


def test_deterministic(case: tuple) -> None:
    strategy, candles, frame = case
    again = strategy.signals(candles)
    assert frame.buy.equals(again.buy) and frame.sell.equals(again.sell)
    assert frame.buy_score.equals(again.buy_score)


def test_scores_in_unit_interval(case: tuple) -> None:
    _, _, frame = case
    for score in (frame.buy_score, frame.sell_score):
        assert score.notna().all()
        assert ((score >= 0) & (score <= 1)).all()


def test_both_sides_fire(case: tuple) -> None:
    _, _, frame = case
    assert frame.buy.sum() > 0 and frame.sell.sum() > 0
    assert not (frame.buy & frame.sell).any()


def test_no_signal_during_warmup(case: tuple) -> None:
    strategy, _, frame = case
    settle = strategy.lookback(strategy.params()) - 1
    assert not frame.buy.iloc[:settle].any() and not frame.sell.iloc[:settle].any()


def test_signal_reasons_name_fired_rules(case: tuple) -> None:
    _, _, frame = case
    rows = frame.signal_rows()
    assert len(rows) == frame.buy.sum() + frame.sell.sum()
    for ts, row in rows.iterrows():
        rules = frame.buy_rules if row.signal == "BUY" else frame.sell_rules
        fired = [name for name in rules.columns if rules.loc[ts, name]]
        assert fired and row.reasons[: len(fired)] == fired
        assert 0 < row.confidence <= 1


def test_bias_checker_passes(case: tuple) -> None:
    strategy, candles, _ = case
    report = check_bias(strategy, candles, cuts=6, starts=3, seed=3)
    assert report.ok, report.verdict()


@pytest.mark.parametrize("name", NAMES)
@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_no_lookahead_property(name: str, data: st.DataObject) -> None:
    """Signals up to candle t are the same computed on history up to t or on all of it."""
    strategy = get_strategy(name)
    candles = _CACHE.setdefault(name, candles_for(name, seed=5))
    full = strategy.signals(candles)
    cut = data.draw(st.integers(min_value=10, max_value=len(candles) - 1), label="cut")
    part = strategy.signals(candles.iloc[: cut + 1])
    assert part.buy.equals(full.buy.iloc[: cut + 1])
    assert part.sell.equals(full.sell.iloc[: cut + 1])
    np.testing.assert_allclose(part.buy_score, full.buy_score.iloc[: cut + 1], atol=1e-9)


_CACHE: dict[str, pd.DataFrame] = {}


@pytest.mark.parametrize("name", NAMES)
def test_declared_warmup_is_sufficient(name: str) -> None:
    """A window of `lookback` candles decides every candle exactly like full history."""
    strategy = get_strategy(name)
    params = strategy.params()
    candles = candles_for(name, seed=9)
    full = strategy.signals(candles)
    lookback = strategy.lookback(params)
    for end in range(lookback, len(candles), max(1, len(candles) // 25)):
        window = candles.iloc[end - lookback + 1 : end + 1]
        last = strategy.signals(window, params)
        assert last.buy.iloc[-1] == full.buy.iloc[end]
        assert last.sell.iloc[-1] == full.sell.iloc[end]
        assert abs(last.buy_score.iloc[-1] - full.buy_score.iloc[end]) < 1e-9


@pytest.mark.parametrize("name", NAMES)
def test_params_declared_with_valid_defaults(name: str) -> None:
    strategy = get_strategy(name)
    spaces = ranges(strategy.Params)
    defaults = strategy.params()
    assert {"threshold", "cooldown"} <= {f.name for f in dataclasses.fields(defaults)}
    assert spaces, "a strategy declares at least one searchable parameter"
    for field_name, space in spaces.items():
        value = getattr(defaults, field_name)
        assert space.contains(value)
        assert space.low in space.grid() and space.high in space.grid()
    assert dataclasses.is_dataclass(defaults)
    with pytest.raises(dataclasses.FrozenInstanceError):
        defaults.threshold = 0.1


@pytest.mark.parametrize("name", NAMES)
def test_strategy_hash_tracks_source(name: str) -> None:
    strategy = get_strategy(name)
    digest = strategy_hash(strategy)
    assert len(digest) == 64 and digest == strategy_hash(strategy)
    source = Path(__file__).parents[1] / "strategies" / f"{name}.py"
    assert source.exists()
