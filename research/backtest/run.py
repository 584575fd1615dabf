"""One obvious way to run a backtest: strategy signals -> execution model -> metrics.

>>> result = run_backtest(candles, get_strategy("scalping"), timeframe="1m")  # doctest: +SKIP
>>> result.metrics["sharpe"], len(result.trades)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import vectorbt as vbt

from research.backtest.execution import ExecutionModel, simulate, simulate_orders, slippage_from
from research.backtest.metrics import TradeArrays, metrics_table
from signals.costs import CostModel, apply_funding
from signals.timeframes import timeframe_seconds
from signals.warmup import start_position, warmed_signals
from strategies import SignalFrame, Strategy

BREAK_EVEN_MAX_BPS = 1000.0


@dataclass(frozen=True)
class BacktestResult:
    """Metrics, trades, equity curve and the signals of one backtest."""

    metrics: dict[str, float]
    trades: pd.DataFrame
    equity: pd.Series
    signals: SignalFrame
    execution: ExecutionModel
    costs: CostModel
    params: Any = field(default=None)


def portfolio_metrics(
    pf: vbt.Portfolio,
    candles: pd.DataFrame,
    timeframe: str,
    *,
    equity: np.ndarray | None = None,
) -> pd.DataFrame:
    """Return the metrics table (one row per portfolio column) of a simulated portfolio.

    `equity` replaces the portfolio's value curve when given (e.g. after funding).
    """
    records = pf.trades.values
    equity = pf.value().to_numpy() if equity is None else equity
    assets = pf.assets().to_numpy()
    orders = pf.orders.values
    k = equity.shape[1] if equity.ndim == 2 else 1
    fees = np.bincount(orders["col"], weights=orders["fees"], minlength=k)
    trades = TradeArrays(
        col=records["col"],
        pnl=records["pnl"],
        ret=records["return"],
        entry_idx=records["entry_idx"],
        exit_idx=records["exit_idx"],
    )
    return metrics_table(
        equity=equity,
        init_cash=float(np.asarray(pf.init_cash).ravel()[0]),
        trades=trades,
        fees_paid=fees,
        exposure=(assets != 0).mean(axis=0),
        close=candles["close"].to_numpy(),
        timeframe=timeframe,
    )


def trade_list(pf: vbt.Portfolio, index: pd.DatetimeIndex) -> pd.DataFrame:
    """Return the trades as a tidy table (entry/exit time and price, size, fees, pnl, return)."""
    r = pf.trades.values
    return pd.DataFrame(
        {
            "direction": np.where(r["direction"] == 0, "long", "short"),
            "entry_time": index[r["entry_idx"]],
            "entry_price": r["entry_price"],
            "exit_time": index[r["exit_idx"]],
            "exit_price": r["exit_price"],
            "size": r["size"],
            "fees": r["entry_fees"] + r["exit_fees"],
            "pnl": r["pnl"],
            "return": r["return"],
            "status": np.where(r["status"] == 0, "open", "closed"),
        }
    )


@dataclass(frozen=True)
class Scored:
    """Metrics, per-candle equity (after funding) and trades of one simulated signal series."""

    metrics: dict[str, float]
    equity: pd.Series
    trades: pd.DataFrame


def funded_portfolio(
    candles: pd.DataFrame,
    buy: pd.Series | pd.DataFrame,
    sell: pd.Series | pd.DataFrame,
    *,
    timeframe: str,
    execution: ExecutionModel,
    costs: CostModel,
    slippage: np.ndarray | None = None,
) -> tuple[vbt.Portfolio, np.ndarray, np.ndarray | None]:
    """Simulate signals (one column or many): portfolio, equity after funding, funding paid."""
    pf = simulate(
        candles, buy, sell, execution=execution, costs=costs, timeframe=timeframe,
        slippage=slippage,
    )  # fmt: skip
    funding = funding_schedule(candles, timeframe, costs)
    values, paid = funded_equity(pf, candles, timeframe, funding)
    return pf, values, paid


def score_signals(
    candles: pd.DataFrame,
    buy: pd.Series,
    sell: pd.Series,
    *,
    timeframe: str,
    execution: ExecutionModel,
    costs: CostModel,
    slippage: np.ndarray | None = None,
) -> Scored:
    """Simulate one series of BUY/SELL decisions on `candles`, costs and funding included.

    `slippage`: per-candle slippage read with the candles before them (`slippage_from`); by
    default the cost model's on `candles` alone.
    """
    pf, values, paid = funded_portfolio(
        candles, buy, sell, timeframe=timeframe, execution=execution, costs=costs,
        slippage=slippage,
    )  # fmt: skip
    metrics = portfolio_metrics(pf, candles, timeframe, equity=values).iloc[0].to_dict()
    if paid is not None:
        metrics["funding_paid"] = float(paid.sum())
    equity = pd.Series(np.asarray(values).ravel(), index=candles.index, name="equity")
    return Scored(metrics=metrics, equity=equity, trades=trade_list(pf, candles.index))


def run_backtest(
    candles: pd.DataFrame,
    strategy: Strategy,
    params: Any = None,
    *,
    timeframe: str,
    execution: ExecutionModel | None = None,
    costs: CostModel | None = None,
    since: pd.Timestamp | None = None,
) -> BacktestResult:
    """Backtest `strategy` on `candles`: its signals, simulated fills, metrics and trades.

    With `since`, the candles before it only warm up the strategy's indicators: signals, fills
    and metrics start at `since`, as if history had been running all along.
    """
    params = params if params is not None else strategy.params()
    execution = execution or ExecutionModel()
    costs = costs or CostModel()
    start = start_position(candles.index, since)
    slippage = slippage_from(candles, start, None, execution, costs)
    candles, frame = warmed_signals(candles, strategy, params, start=start)
    scored = score_signals(
        candles, frame.buy, frame.sell, timeframe=timeframe, execution=execution, costs=costs,
        slippage=slippage,
    )  # fmt: skip
    metrics = scored.metrics
    metrics["cost_break_even_bps"] = cost_break_even_bps(
        candles, frame.buy, frame.sell, timeframe=timeframe, execution=execution, costs=costs
    )
    return BacktestResult(
        metrics=metrics,
        trades=scored.trades,
        equity=scored.equity,
        signals=frame,
        execution=execution,
        costs=costs,
        params=params,
    )


def funding_schedule(candles: pd.DataFrame, timeframe: str, costs: CostModel) -> pd.Series | None:
    """Return the funding rates charged over the candles' span (None without funding)."""
    if not costs.has_funding or len(candles) == 0:
        return None
    step = pd.Timedelta(seconds=timeframe_seconds(timeframe))
    return costs.funding_rates(candles.index[0], candles.index[-1] + step)


def funded_equity(
    pf: vbt.Portfolio, candles: pd.DataFrame, timeframe: str, funding: pd.Series | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Return the equity curve (candles x columns) after funding, and the funding paid per row."""
    values = pf.value().to_numpy()
    if funding is None:
        return values, None
    closes = candles.index + pd.Timedelta(seconds=timeframe_seconds(timeframe))
    return apply_funding(values, pf.asset_value().to_numpy(), closes, funding)


def final_value(orders: np.ndarray, last_close: float, init_cash: float) -> float:
    """Return one column's value after its `orders` (vectorbt order records) at `last_close`."""
    signed = np.where(orders["side"] == 0, orders["size"], -orders["size"])
    cash = init_cash - float(np.sum(signed * orders["price"])) - float(np.sum(orders["fees"]))
    return cash + float(np.sum(signed)) * last_close


def cost_break_even_bps(
    candles: pd.DataFrame,
    buy: pd.Series,
    sell: pd.Series,
    *,
    timeframe: str,
    execution: ExecutionModel,
    costs: CostModel,
    tolerance_bps: float = 0.01,
) -> float:
    """Return the fee + slippage per side (bps) at which net total return reaches zero.

    NaN when the strategy loses money even without costs (or never trades); the search cap
    (`BREAK_EVEN_MAX_BPS`) when it is still profitable there. Funding, if any, is charged
    as configured at every level.
    """
    funding = funding_schedule(candles, timeframe, costs)
    buy_flags, sell_flags = buy.to_numpy(dtype=bool), sell.to_numpy(dtype=bool)
    last_close = float(candles["close"].iloc[-1]) if len(candles) else float("nan")

    def net(total_bps: float) -> float:
        level = costs.with_total_bps(total_bps)
        if funding is None:  # the final value alone, from the order records
            orders = simulate_orders(
                candles, buy_flags, sell_flags, execution=execution, costs=level
            )
            return final_value(orders, last_close, execution.init_cash) / execution.init_cash - 1
        pf = simulate(candles, buy, sell, execution=execution, costs=level, timeframe=timeframe)
        value, _ = funded_equity(pf, candles, timeframe, funding)
        return float(np.asarray(value)[-1].ravel()[0] / execution.init_cash - 1.0)

    if not (buy.any() or sell.any()) or net(0.0) <= 0:
        return float("nan")
    low, high = 0.0, BREAK_EVEN_MAX_BPS
    if net(high) > 0:
        return high
    while high - low > tolerance_bps:
        mid = (low + high) / 2
        low, high = (mid, high) if net(mid) > 0 else (low, mid)
    return round((low + high) / 2, 4)
