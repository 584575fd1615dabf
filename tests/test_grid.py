"""Grid specs: ranges (stop included), lists, single values, typing and validation."""

from __future__ import annotations

import pytest

from research.optimise.grid import expand_grid, grid_combinations, parse_grid
from signals.errors import ParamsError
from strategies import get_strategy

EMA = get_strategy("ema_cross")
SCALPING = get_strategy("scalping")


def values(strategy, spec: str) -> tuple:
    return parse_grid(strategy, [spec])[0].values


def test_range_includes_the_stop() -> None:
    assert values(EMA, "fast=5:30:5") == (5, 10, 15, 20, 25, 30)
    assert values(EMA, "fast=5:29:5") == (5, 10, 15, 20, 25)
    assert values(EMA, "fast=7:7:1") == (7,)


def test_float_steps_include_the_stop_despite_rounding() -> None:
    assert values(SCALPING, "threshold=0.3:0.6:0.1") == (0.3, 0.4, 0.5, 0.6)
    assert values(SCALPING, "flow_bias=0:0.2:0.05") == (0.0, 0.05, 0.1, 0.15, 0.2)


def test_lists_and_single_values_are_typed_by_the_declared_kind() -> None:
    assert values(EMA, "slow=50, 20,100") == (50, 20, 100)
    got = values(EMA, "fast=9")
    assert got == (9,) and isinstance(got[0], int)
    assert values(EMA, "fast=9.0") == (9,)
    got = values(SCALPING, "volume_surge=2")
    assert got == (2.0,) and isinstance(got[0], float)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("fast=5.5", "whole numbers"),
        ("fast=5:10:0.5", "whole numbers"),
        ("fast=abc", "not a number"),
        ("fast=1,5", "outside the declared range"),
        ("slow=20:500:10", "outside the declared range"),
        ("fast=10:5:1", "below start"),
        ("fast=5:10:0", "step must be positive"),
        ("fast=5:10", "start:stop:step"),
        ("fast", "expected name="),
        ("fast=", "expected name="),
        ("fast=nan", "finite"),
    ],
)
def test_bad_specs_are_explained(spec: str, message: str) -> None:
    with pytest.raises(ParamsError, match=message):
        parse_grid(EMA, [spec])


def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(ParamsError, match="did you mean 'slow'"):
        parse_grid(EMA, ["slwo=20:30:5"])


def test_a_parameter_given_twice_is_an_error() -> None:
    with pytest.raises(ParamsError, match="twice"):
        parse_grid(EMA, ["fast=5", "fast=6"])


def test_invalid_combinations_are_skipped_and_counted() -> None:
    grid = expand_grid(EMA, ["fast=5:20:5", "slow=10,20"])
    pairs = [(p.fast, p.slow) for p in grid.combos]
    assert pairs == [(5, 10), (5, 20), (10, 20), (15, 20)]
    assert grid.skipped == 4  # (10,10), (15,10), (20,10), (20,20): fast >= slow
    assert grid.total == 8
    assert grid.names == ("fast", "slow")
    assert [(p.fast, p.slow) for p in grid_combinations(EMA, ["fast=5:20:5", "slow=10,20"])] == (
        pairs
    )


def test_other_parameters_keep_their_defaults() -> None:
    (params,) = grid_combinations(SCALPING, ["rsi_period=9"])
    defaults = SCALPING.params()
    assert params.rsi_period == 9
    assert params.ema_fast == defaults.ema_fast and params.threshold == defaults.threshold
