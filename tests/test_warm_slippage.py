"""A period cut out of a longer history pays the slippage a live bot pays on its first fills.

The variable slippage models read candles before the fill (the ATR model hundreds of them); a
backtest, a walk-forward window or a sweep started at `since` reads them from the candles before
`since`, exactly as the paper bot reads them from the store. Before, the simulation started at
`since` with no history, so its first fills paid a different (mostly the floor) slippage.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from research.backtest.execution import ExecutionModel
from research.backtest.run import run_backtest
from research.backtest.windows import evaluate_window
from research.optimise.chunks import SweepJob, chunk_metrics
from signals.costs import CostModel, Fill
from strategies import get_strategy
from tests.candles import random_walk

CANDLES = random_walk(3000, seed=21, freq="5min")
MODELS = {
    "atr": CostModel(slippage_model="atr", slippage_multiple=2.0, atr_period=14),
    "range": CostModel(slippage_model="range", slippage_multiple=2.0),
    "volume": CostModel(slippage_model="volume", impact_bps=50.0),
}


class FlatBefore:
    """The strategy with its decisions before `since` dropped: full history, traded from since."""

    def __init__(self, strategy: Any, since: pd.Timestamp) -> None:
        self.strategy, self.since, self.name = strategy, since, strategy.name

    def params(self, values: dict[str, Any] | None = None) -> Any:
        return self.strategy.params(values)

    def lookback(self, params: Any) -> int:
        return self.strategy.lookback(params)

    def signals(self, candles: pd.DataFrame, params: Any = None) -> Any:
        frame = self.strategy.signals(candles, params)
        return frame.only_where(np.asarray(candles.index >= self.since))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=st.sampled_from(sorted(MODELS)), start=st.integers(0, 2500),
       fill=st.sampled_from(["next_open", "close"]))  # fmt: skip
def test_warm_slippage_equals_the_full_history_slippage(model: str, start: int, fill: Fill) -> None:
    costs = MODELS[model]
    full = costs.slippage_fraction(CANDLES, fill=fill)
    warm = costs.warm_slippage(CANDLES, start, fill=fill)
    np.testing.assert_allclose(warm, full[start:], rtol=1e-12, atol=0.0)


def trades(result: Any) -> pd.DataFrame:
    return result.trades[["entry_time", "entry_price", "exit_price", "size"]].reset_index(drop=True)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_a_backtest_from_since_fills_as_the_full_history_does(model: str) -> None:
    strategy, costs = get_strategy("ema_cross"), MODELS[model]
    params = strategy.params({"fast": 5, "slow": 20})
    since = CANDLES.index[1200]
    cut = run_backtest(CANDLES, strategy, params, timeframe="5m", costs=costs, since=since)
    whole = run_backtest(CANDLES, FlatBefore(strategy, since), params, timeframe="5m", costs=costs)
    assert len(cut.trades) > 5
    pd.testing.assert_frame_equal(trades(cut), trades(whole), rtol=1e-12)
    assert cut.equity.iloc[-1] == pytest.approx(whole.equity.iloc[-1], rel=1e-12)


def test_a_walkforward_window_fills_as_the_full_history_does() -> None:
    strategy, costs = get_strategy("ema_cross"), MODELS["atr"]
    params = strategy.params({"fast": 5, "slow": 20})
    start, end = 1500, 2600
    window = evaluate_window(CANDLES, strategy, params, start, end, timeframe="5m",
                             execution=ExecutionModel(), costs=costs)  # fmt: skip
    head = CANDLES.iloc[:end]
    whole = run_backtest(head, FlatBefore(strategy, head.index[start]), params, timeframe="5m",
                         costs=costs)  # fmt: skip
    assert len(window.trades) > 3
    pd.testing.assert_frame_equal(
        window.trades[["entry_price", "exit_price"]].reset_index(drop=True),
        whole.trades[["entry_price", "exit_price"]].reset_index(drop=True),
        rtol=1e-12,
    )


def test_a_sweep_from_since_equals_the_backtest_from_since() -> None:
    strategy, costs = get_strategy("ema_cross"), MODELS["atr"]
    combos = [strategy.params({"fast": f, "slow": 20}) for f in (4, 5, 6)]
    first = 1200
    job = SweepJob(candles=CANDLES, strategy=strategy, combos=combos, timeframe="5m",
                   execution=ExecutionModel(), costs=costs, first=first)  # fmt: skip
    table = chunk_metrics(job, 0, len(combos))
    for j, params in enumerate(combos):
        result = run_backtest(CANDLES, strategy, params, timeframe="5m", costs=costs,
                              since=CANDLES.index[first])  # fmt: skip
        assert table["total_return"].iloc[j] == pytest.approx(
            result.metrics["total_return"], rel=1e-9
        )
