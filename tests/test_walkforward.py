"""Walk-forward: splits, no lookahead across folds, determinism, resume, and finding a real edge."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from research.optimise.folds import duration_candles, make_folds
from research.optimise.outputs import frozen_from_run, overfitting
from research.optimise.walkforward import (
    BAD_SCORE,
    WalkForwardConfig,
    fold_table,
    run_walkforward,
)
from signals.errors import SignalsError
from signals.frozen import dumps
from strategies import get_strategy
from strategies.base import Rule, RuleSet, Strategy
from strategies.params import ScoringParams, fixed, param
from tests.candles import random_walk


def test_rolling_folds_tile_the_end_with_a_purge_gap() -> None:
    folds = make_folds(1000, folds=4, train=300, test=100, gap=10)
    assert [f.test_start for f in folds] == [600, 700, 800, 900]
    assert folds[-1].test_end == 1000
    for f in folds:
        assert f.train_end == f.test_start - 10 and f.train_end - f.train_start == 300


def test_anchored_folds_expand_from_a_fixed_start() -> None:
    folds = make_folds(1000, folds=3, scheme="anchored", train=400, test=150, gap=0)
    assert {f.train_start for f in folds} == {folds[0].train_start}
    assert [f.train_end - f.train_start for f in folds] == [400, 550, 700]


def test_folds_that_do_not_fit_are_a_clear_error() -> None:
    with pytest.raises(SignalsError, match="cannot hold 10 folds"):
        make_folds(500, folds=10, train=300, test=50)
    assert duration_candles("2d", "1h") == 48 and duration_candles("90", "5m") == 90


CANDLES = random_walk(9000, seed=3, freq="5min")
CONFIG = WalkForwardConfig(folds=3, trials=8, min_trades=2, seed=11)


def ema_run(candles: pd.DataFrame = CANDLES, config: WalkForwardConfig = CONFIG, **kw):
    storage, run = kw.pop("storage", None), kw.pop("run", "t")
    strategy = get_strategy("ema_cross")
    return run_walkforward(
        candles, strategy, timeframe="5m", config=config, storage=storage, run=run, progress=False
    )


def test_since_starts_the_first_train_window_there_with_earlier_candles_as_warm_up() -> None:
    config = WalkForwardConfig(folds=2, trials=2, min_trades=0, seed=1)
    since, first = CANDLES.index[3000], 3000
    strategy = get_strategy("ema_cross")
    run = run_walkforward(
        CANDLES, strategy, timeframe="5m", config=config, storage=None, run="s", progress=False,
        since=since,
    )  # fmt: skip
    start = run.folds[0].fold.train_start
    assert first <= start < first + config.folds + 3  # rounding of the window sizes only
    # without `since` the first window starts one warm-up into the data, long before it
    plain = ema_run(config=config)
    assert plain.folds[0].fold.train_start < first


def test_poisoned_test_window_does_not_change_earlier_folds() -> None:
    clean = ema_run()
    folds = clean.folds
    poisoned = CANDLES.copy()
    last = folds[-1].fold
    cols = ["open", "high", "low", "close"]
    poisoned.iloc[last.test_start :, [poisoned.columns.get_loc(c) for c in cols]] *= 1.7
    dirty = ema_run(poisoned)
    a, b = fold_table(clean), fold_table(dirty)
    pd.testing.assert_frame_equal(a.iloc[:-1], b.iloc[:-1])
    assert a.iloc[-1]["test_total_return"] != b.iloc[-1]["test_total_return"]


def test_same_seed_same_trials_and_frozen_file() -> None:
    one, two = ema_run(), ema_run()
    for f1, f2 in zip(one.folds, two.folds, strict=True):
        assert f1.trials["params"].tolist() == f2.trials["params"].tolist()
    stamp = "2026-01-01T00:00:00+00:00"
    files = [
        dumps(frozen_from_run(r, overfitting(r), symbol="BTCUSDT", source="x", created_at=stamp))
        for r in (one, two)
    ]
    assert files[0] == files[1]
    other = ema_run(config=WalkForwardConfig(folds=3, trials=8, min_trades=2, seed=12))
    assert other.folds[0].trials["params"].tolist() != one.folds[0].trials["params"].tolist()


def test_previous_best_is_enqueued_first_and_bad_trials_score_badly() -> None:
    run = ema_run(config=WalkForwardConfig(folds=3, trials=8, min_trades=12, seed=11))
    for before, after in zip(run.folds, run.folds[1:], strict=False):
        first = json.loads(after.trials.iloc[0]["params"])
        assert first == {k: before.best_params[k] for k in first}
    trials = pd.concat([f.trials for f in run.folds])
    few = trials[trials["trades"].fillna(0) < 12]
    assert len(few) > 0
    assert (few["value"] == BAD_SCORE).all()
    rejected = trials[trials["rejected"].notna()]
    assert (rejected["value"] == BAD_SCORE).all()


def test_interrupted_run_resumes_from_storage(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    first = ema_run(config=WalkForwardConfig(folds=3, trials=4, min_trades=2, seed=11),
                    storage=storage, run="r")  # fmt: skip
    resumed = ema_run(storage=storage, run="r")
    for a, b in zip(first.folds, resumed.folds, strict=True):
        assert len(b.trials) == 8
        assert b.trials["params"].tolist()[:4] == a.trials["params"].tolist()


# -- a planted edge: the taker-buy share LAG - 1 candles earlier predicts the next return --------

LAG = 6


def planted_edge(n: int, seed: int) -> pd.DataFrame:
    """Candles whose return at t leans toward the sign of (buy share - 0.5) at t - LAG."""
    rng = np.random.default_rng(seed)
    share = rng.uniform(0.3, 0.7, n)
    r = rng.normal(0.0, 0.002, n)
    r[LAG:] += 0.0004 * np.sign(share[:-LAG] - 0.5)
    close = 20000.0 * np.exp(np.cumsum(r))
    open_ = np.concatenate([[20000.0], close[:-1]])
    index = pd.date_range("2024-01-01", periods=n, freq="5min", tz="UTC", name="time")
    frame = pd.DataFrame({"open": open_, "close": close}, index=index)
    frame["high"] = frame[["open", "close"]].max(axis=1) * 1.0005
    frame["low"] = frame[["open", "close"]].min(axis=1) * 0.9995
    frame["volume"], frame["trades"] = 10.0, 100.0
    frame["buy_volume"] = 10.0 * share
    return frame


@dataclass(frozen=True, kw_only=True)
class LagParams(ScoringParams):
    threshold: float = fixed(1.0)
    cooldown: int = fixed(0)
    lag: int = param(1, low=1, high=12)


class FlowLag(Strategy[LagParams]):
    """Long while the buy share `lag - 1` candles ago leaned to buyers (only lag 6 is real)."""

    name, timeframes, Params = "flow_lag_test", ("5m",), LagParams

    def warmup(self, params: LagParams) -> int:
        return params.lag + 1

    def rules(self, candles: pd.DataFrame, params: LagParams) -> RuleSet:
        share = (candles["buy_volume"] / candles["volume"]).shift(params.lag - 1)
        up, down = share > 0.5, share < 0.5
        return RuleSet(
            buy=[Rule("buyers led", up & ~up.shift(1, fill_value=False))],
            sell=[Rule("sellers led", down & ~down.shift(1, fill_value=False))],
        )


def test_walkforward_finds_a_planted_edge_and_says_it_is_real() -> None:
    from signals.costs import CostModel

    candles = planted_edge(12000, seed=5)
    config = WalkForwardConfig(folds=3, trials=12, min_trades=5, seed=2,
                               costs=CostModel(fee_bps=0.0, slippage_bps=0.0))  # fmt: skip
    run = run_walkforward(candles, FlowLag(), timeframe="5m", config=config, storage=None,
                          run="edge", progress=False)  # fmt: skip
    assert [f.best_params["lag"] for f in run.folds] == [LAG] * 3
    stats = overfitting(run)
    assert stats.dsr is not None and stats.dsr.dsr > 0.95, stats.verdict
    assert stats.pbo is not None and stats.pbo.pbo < 0.2, stats.verdict
    assert all(f.test.metrics["total_return"] > 0 for f in run.folds)


def test_walkforward_on_noise_is_not_promoted_as_real() -> None:
    from signals.costs import CostModel

    candles = planted_edge(12000, seed=5)
    unrelated = np.random.default_rng(1).uniform(0.3, 0.7, len(candles))
    candles["buy_volume"] = 10.0 * unrelated  # the hint no longer predicts: every lag is noise
    config = WalkForwardConfig(folds=3, trials=12, min_trades=1, seed=2,
                               costs=CostModel(fee_bps=0.0, slippage_bps=0.0))  # fmt: skip
    run = run_walkforward(candles, FlowLag(), timeframe="5m", config=config, storage=None,
                          run="noise", progress=False)  # fmt: skip
    stats = overfitting(run)
    assert stats.dsr is not None and stats.dsr.dsr < 0.95, stats.verdict
