"""One chunk of a sweep: combinations ``start:stop`` of a job, simulated together.

A chunk is the unit of work of `research.optimise.sweep.run_sweep`, run in the sweep's own
process, in forked workers, or on a Dask cluster (`research.optimise.cluster`):

1. **Signals.** The strategy's own signal function (the one the live runner calls) runs once per
   combination inside `strategies.indicators.indicator_cache`, so each indicator is computed
   once per distinct input and reused by every combination of the chunk that needs it.
2. **Simulation.** The chunk's BUY/SELL decisions become the columns of two boolean matrices
   (parameters as columns) and go through `research.backtest.execution.simulate_orders`: vectorbt's
   own simulation kernel, run on the candles where a column can fill, returning only the
   order records (equal to `research.backtest.execution.simulate`'s, tested). With funding the chunk
   takes the backtest's full `Portfolio` path instead.
3. **Metrics.** The equity-curve figures are reduced from the order records without building
   the candles x columns equity matrix (`research.backtest.kernel`, checked against
   `research.backtest.metrics.metrics_table`); trades come from vectorbt's
   ``get_exit_trades_nb`` and the per-trade figures are `research.backtest.metrics`' own.

Dask workers unpickle `SweepJob` and find `chunk_metrics` by this module's path, and the
cluster's code fingerprint hashes this module's source.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from vectorbt.portfolio.nb import get_exit_trades_nb
from vectorbt.records.nb import col_map_nb

from research.backtest.execution import ExecutionModel, simulate_orders, slippage_from
from research.backtest.kernel import equity_metrics_nb
from research.backtest.metrics import METRIC_KEYS, TradeArrays, candles_per_year, trade_metrics
from signals.costs import CostModel
from signals.timeframes import timeframe_seconds
from signals.warmup import warmed_signals
from strategies import Strategy
from strategies.indicators import indicator_cache


@dataclass(frozen=True)
class SweepJob:
    """What every chunk of a sweep shares: the candles, strategy, combinations and models."""

    candles: pd.DataFrame
    strategy: Strategy
    combos: Sequence[Any]
    timeframe: str
    execution: ExecutionModel
    costs: CostModel
    first: int = 0  # candles before this position only warm up the signals


def simulation_path(execution: ExecutionModel, costs: CostModel) -> str:
    """Return how a sweep simulates: ``signals``, ``stops`` or ``portfolio`` (with funding)."""
    if getattr(costs, "has_funding", False):
        return "portfolio"
    if execution.stop_loss is not None or execution.take_profit is not None:
        return "stops"
    return "signals"


def chunk_metrics(job: SweepJob, start: int, stop: int) -> pd.DataFrame:
    """Signals, one simulation and the metrics of combinations ``start:stop`` of a job."""
    combos, first = job.combos[start:stop], job.first
    candles = job.candles.iloc[first:]  # the period; earlier candles only warm up the signals
    n, k = len(candles), len(combos)
    # Fortran order: each combination's column is contiguous, as vectorbt walks column by column.
    buy = np.zeros((n, k), dtype=bool, order="F")
    sell = np.zeros((n, k), dtype=bool, order="F")
    with indicator_cache():
        for j, params in enumerate(combos):
            _, frame = warmed_signals(job.candles, job.strategy, params, start=first)
            buy[:, j] = frame.buy.to_numpy(dtype=bool)
            sell[:, j] = frame.sell.to_numpy(dtype=bool)
    slippage = slippage_from(job.candles, first, None, job.execution, job.costs)
    if simulation_path(job.execution, job.costs) == "portfolio":
        return _reference_metrics(job, candles, buy, sell, slippage)
    orders = simulate_orders(
        candles, buy, sell, execution=job.execution, costs=job.costs, slippage=slippage
    )
    del buy, sell
    close = candles["close"].to_numpy(dtype="float64")
    return orders_table(orders, close, job.timeframe, k, init_cash=job.execution.init_cash)


def _reference_metrics(
    job: SweepJob,
    candles: pd.DataFrame,
    buy: np.ndarray,
    sell: np.ndarray,
    slippage: np.ndarray,
) -> pd.DataFrame:
    # Funding is applied to the equity curve after the simulation: take the backtest's own path.
    from research.backtest.run import funded_portfolio, portfolio_metrics

    index = pd.RangeIndex(len(candles))
    pf, values, _ = funded_portfolio(
        candles,
        pd.DataFrame(buy, index=index, copy=False),
        pd.DataFrame(sell, index=index, copy=False),
        execution=job.execution,
        costs=job.costs,
        timeframe=job.timeframe,
        slippage=slippage,
    )
    table = portfolio_metrics(pf, candles, job.timeframe, equity=values)
    # vectorbt's objects hold their candles x columns arrays in reference cycles, which the
    # allocation-count-driven gc frees late: collect now, or RSS doubles over a long sweep.
    del pf
    gc.collect()
    return table


def orders_table(
    orders: np.ndarray, close: np.ndarray, timeframe: str, k: int, *, init_cash: float
) -> pd.DataFrame:
    """Return the metrics of `k` columns from their order records (as `portfolio_metrics`)."""
    order = np.lexsort((orders["idx"], orders["col"]))
    if not np.array_equal(order, np.arange(len(orders))):
        orders = orders[order]
    figures = equity_metrics_nb(
        close,
        init_cash,
        orders["col"],
        orders["idx"],
        orders["size"],
        orders["price"],
        orders["fees"],
        orders["side"],
        k,
    )
    n = len(close)
    total, mean, std, downside, mdd, longest, exposure, fees = figures.T
    per_year = candles_per_year(timeframe)
    with np.errstate(divide="ignore", invalid="ignore"):
        annual = np.power(np.maximum(1.0 + total, 0.0), per_year / n) - 1.0
        table = {
            "total_return": total,
            "annual_return": annual,
            "sharpe": np.where(std > 0, mean / std * np.sqrt(per_year), np.nan),
            "sortino": np.where(downside > 0, mean / downside * np.sqrt(per_year), np.nan),
            "calmar": np.where(np.abs(mdd) > 0, annual / np.abs(mdd), np.nan),
            "max_drawdown": mdd,
            "max_drawdown_days": longest * timeframe_seconds(timeframe) / 86400.0,
            "exposure": exposure,
            "fees_paid": fees,
            "buy_hold_return": np.full(k, close[-1] / close[0] - 1.0),
        }
    col_map = col_map_nb(orders["col"], k)
    records = get_exit_trades_nb(orders, np.broadcast_to(close[:, None], (n, k)), col_map)
    trades = TradeArrays(
        col=records["col"],
        pnl=records["pnl"],
        ret=records["return"],
        entry_idx=records["entry_idx"],
        exit_idx=records["exit_idx"],
    )
    with np.errstate(divide="ignore", invalid="ignore"):  # columns without trades: NaN figures
        table.update(trade_metrics(trades, k, timeframe))
    return pd.DataFrame(table)[list(METRIC_KEYS)]
