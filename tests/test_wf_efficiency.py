"""Walk-forward efficiency on per-day returns: meaningful near zero, undefined (with why) below it.

Two runs gave nonsense with the old definition (mean annualised test / mean annualised train):
-279 when the train mean was near zero, and 9.33 when 12-day test windows were annualised.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from research.optimise.efficiency import TRAIN_FLOOR, daily_rate, efficiency
from research.optimise.walkforward import WalkForwardConfig, run_walkforward, window_days
from strategies import get_strategy
from tests.candles import random_walk

# the demo's 4 folds (make demo, seed 7): (total return, days) of each train and test window
DEMO_TRAIN = [(0.2616, 36.3125), (0.2176, 36.3125), (0.2759, 36.3125), (0.3230, 36.3125)]
DEMO_TEST = [(-0.0543, 12.1042), (0.1004, 12.1042), (0.2172, 12.1042), (0.0050, 12.1042)]


def _annualised(total: float, days: float) -> float:
    return float((1 + total) ** (365 / days) - 1)


def test_short_windows_are_not_annualised_into_a_huge_ratio() -> None:
    old = np.mean([_annualised(*w) for w in DEMO_TEST]) / np.mean(
        [_annualised(*w) for w in DEMO_TRAIN]
    )
    assert old > 9  # what the report showed (9.33): one +21.7% fold annualised to +37,300%
    wfe = efficiency(DEMO_TRAIN, DEMO_TEST)
    assert wfe.value == pytest.approx(0.764, abs=0.005) and wfe.why == ""
    train = np.mean([(1 + r) ** (1 / d) - 1 for r, d in DEMO_TRAIN])
    assert wfe.train_daily == pytest.approx(train)
    assert "0.76" in wfe.describe() and "a day" in wfe.describe()


def test_a_train_figure_near_zero_gives_undefined_with_the_reason() -> None:
    # train windows that barely moved: the old ratio divided by ~0 (it printed -279)
    train = [(0.0004, 30.0), (-0.0003, 30.0)]
    test = [(-0.03, 10.0), (0.002, 10.0)]
    old = np.mean([_annualised(*w) for w in test]) / np.mean([_annualised(*w) for w in train])
    assert abs(old) > 100
    wfe = efficiency(train, test)
    assert wfe.value is None and "below the floor" in wfe.why
    assert "undefined" in wfe.describe()


def test_a_losing_train_mean_is_undefined_not_a_positive_ratio() -> None:
    wfe = efficiency([(-0.10, 30.0)], [(-0.05, 10.0)])
    assert wfe.value is None and "lost money on their own train windows" in wfe.why


windows = st.lists(st.tuples(st.floats(-0.99, 5.0), st.floats(0.5, 400.0)), min_size=1, max_size=8)


@given(windows, windows)
def test_efficiency_is_bounded_by_the_floor_for_all_inputs(train: list, test: list) -> None:
    wfe = efficiency(train, test)
    if wfe.value is None:
        assert wfe.why and (wfe.train_daily < TRAIN_FLOOR or math.isnan(wfe.train_daily))
    else:
        assert wfe.train_daily >= TRAIN_FLOOR and wfe.why == ""
        assert abs(wfe.value) <= abs(wfe.test_daily) / TRAIN_FLOOR + 1e-9
        assert math.copysign(1, wfe.value) == math.copysign(1, wfe.test_daily) or wfe.value == 0


def test_daily_rate_compounds_back_to_the_window_return() -> None:
    assert (1 + daily_rate(0.2172, 12.1042)) ** 12.1042 - 1 == pytest.approx(0.2172)
    assert daily_rate(-1.0, 10) == -1.0 and math.isnan(daily_rate(0.1, 0))


def test_a_run_reports_the_per_day_efficiency_of_its_folds() -> None:
    from research.optimise.outputs import frozen_from_run, overfitting, summary
    from research.optimise.walkforward import walkforward_efficiency

    candles = random_walk(6000, seed=3, freq="5min")
    config = WalkForwardConfig(folds=2, trials=4, min_trades=1, seed=2)
    run = run_walkforward(candles, get_strategy("ema_cross"), timeframe="5m", config=config,
                          storage=None, run="wfe", progress=False)  # fmt: skip
    days = [window_days(f.test, "5m") for f in run.folds]
    assert days == [len(f.test.equity) / 288 for f in run.folds]
    train = [(f.train.equity.iloc[-1] / 1e4 - 1, window_days(f.train, "5m")) for f in run.folds]
    test = [(f.test.equity.iloc[-1] / 1e4 - 1, d) for f, d in zip(run.folds, days, strict=True)]
    by_hand = efficiency(train, test)
    assert walkforward_efficiency(run) == by_hand
    stats = overfitting(run)
    frozen = frozen_from_run(run, stats, symbol="BTCUSDT", source="synthetic")
    assert (frozen.metrics or {})["walkforward_efficiency"] == by_hand.value
    recorded = summary(run, stats, frozen)["walkforward_efficiency"]
    assert recorded["value"] == by_hand.value
    assert (recorded["undefined_because"] is None) == (by_hand.value is not None)
