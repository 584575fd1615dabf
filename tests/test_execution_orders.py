"""`simulate_orders` (the sweep's simulation) gives exactly the order records of `simulate`."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from research.backtest.execution import ExecutionModel, simulate, simulate_orders
from signals.costs import CostModel
from tests.candles import random_walk
from tests.livekit import ROOT

CANDLES = random_walk(400, seed=11)
FIELDS = ("col", "idx", "size", "price", "fees", "side")


def _reference(buy: np.ndarray, sell: np.ndarray, execution, costs) -> np.ndarray:
    pf = simulate(
        CANDLES,
        pd.DataFrame(buy),
        pd.DataFrame(sell),
        execution=execution,
        costs=costs,
        timeframe="1m",
    )
    records = pf.order_records
    return records[np.lexsort((records["idx"], records["col"]))]


def _assert_same_orders(ours: np.ndarray, reference: np.ndarray) -> None:
    assert len(ours) == len(reference)
    for field in FIELDS:
        np.testing.assert_array_equal(ours[field], reference[field], err_msg=field)


executions = st.builds(
    ExecutionModel,
    fill=st.sampled_from(["next_open", "close"]),
    direction=st.sampled_from(["long", "short", "both"]),
    stop_loss=st.none() | st.sampled_from([0.002, 0.01]),
    take_profit=st.none() | st.sampled_from([0.003, 0.02]),
)
costs_models = st.builds(
    CostModel,
    fee_bps=st.sampled_from([0.0, 5.5]),
    slippage_bps=st.sampled_from([0.0, 1.0]),
    slippage_model=st.sampled_from(["fixed", "atr", "range", "volume"]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    execution=executions,
    costs=costs_models,
    density=st.sampled_from([0.0, 0.005, 0.05, 0.5]),
    k=st.integers(1, 5),
    seed=st.integers(0, 10_000),
)
def test_orders_equal_the_portfolio_orders(
    execution: ExecutionModel, costs: CostModel, density: float, k: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    buy = rng.random((len(CANDLES), k)) < density
    sell = rng.random((len(CANDLES), k)) < density
    ours = simulate_orders(CANDLES, buy, sell, execution=execution, costs=costs)
    _assert_same_orders(ours, _reference(buy, sell, execution, costs))


@pytest.mark.parametrize("size", [0.25, 1.0])
def test_fractional_size_orders_equal_the_portfolio_orders(size: float) -> None:
    rng = np.random.default_rng(3)
    buy = rng.random((len(CANDLES), 3)) < 0.02
    sell = rng.random((len(CANDLES), 3)) < 0.02
    execution, costs = ExecutionModel(size=size), CostModel(fee_bps=5.5, slippage_bps=1.0)
    ours = simulate_orders(CANDLES, buy, sell, execution=execution, costs=costs)
    _assert_same_orders(ours, _reference(buy, sell, execution, costs))


def test_no_signal_gives_no_orders() -> None:
    none = np.zeros((len(CANDLES), 2), dtype=bool)
    orders = simulate_orders(CANDLES, none, none, execution=ExecutionModel(), costs=CostModel())
    assert len(orders) == 0


def test_a_signal_on_the_last_candle_does_not_fill_at_next_open() -> None:
    buy = np.zeros(len(CANDLES), dtype=bool)
    buy[-1] = True
    none = np.zeros_like(buy)
    orders = simulate_orders(CANDLES, buy, none, execution=ExecutionModel(), costs=CostModel())
    assert len(orders) == 0
    at_close = ExecutionModel(fill="close")
    free = CostModel(fee_bps=0.0, slippage_bps=0.0)
    (order,) = simulate_orders(CANDLES, buy, none, execution=at_close, costs=free)
    assert order["idx"] == len(CANDLES) - 1 and order["price"] == CANDLES["close"].iloc[-1]


def kernel_calls() -> tuple[int, int]:
    """Simulate with and without stops; return vectorbt's kernel's (cache hits, cache misses)."""
    from research.backtest.kernel import simulate_from_signals_nb as kernel

    buy = np.zeros(len(CANDLES), dtype=bool)
    buy[[3, 200]] = True
    sell = np.roll(buy, 50)
    costs = CostModel(fee_bps=5.5, slippage_bps=1.0)
    simulate(CANDLES, pd.Series(buy), pd.Series(sell), execution=ExecutionModel(), costs=costs,
             timeframe="1m")  # fmt: skip
    simulate_orders(CANDLES, buy, sell, execution=ExecutionModel(stop_loss=0.01), costs=costs)
    stats = kernel.stats
    return sum(stats.cache_hits.values()), sum(stats.cache_misses.values())


def test_a_new_process_loads_the_simulation_kernel_from_the_disk_cache() -> None:
    # vectorbt compiles its kernel without numba's disk cache (5 s a process): here it is
    # compiled once (in this process, if no earlier one did), then a new process loads both
    # entry points' versions (from_signals, and the stops path) from the cache
    kernel_calls()
    code = "from tests.test_execution_orders import kernel_calls; print(*kernel_calls())"
    for _ in range(2):  # numba updates a cache index by read-modify-write: another process
        # saving the same kernel at that moment can drop this entry once (that one recompiles)
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=300, cwd=ROOT)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        if done.stdout.split() == ["2", "0"]:
            break
    assert done.stdout.split() == ["2", "0"]  # hits, misses (a miss compiles)
