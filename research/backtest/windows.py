"""Evaluate parameters on one window of candles, warming indicators up on the candles before it.

Signals are computed on ``[start - lookback, end)`` and only the part in ``[start, end)`` is
simulated, so indicators are warm at the window's first candle while no candle at or after
``end`` is ever read. A decision on the window's last candle has no next open inside the window
and is not filled; a position still open at ``end`` is valued at the window's last close.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from research.backtest.execution import ExecutionModel, simulate
from research.backtest.run import funded_equity, funding_schedule, portfolio_metrics, trade_list
from signals.costs import CostModel
from strategies import Strategy


@dataclass(frozen=True)
class WindowResult:
    """Metrics and per-candle equity of one parameter set on one window."""

    metrics: dict[str, float]
    equity: pd.Series
    trades: pd.DataFrame


def window_signals(
    candles: pd.DataFrame, strategy: Strategy, params: Any, start: int, end: int
) -> tuple[pd.Series, pd.Series]:
    """Return BUY/SELL decisions for candles ``[start, end)``, warmed up on earlier candles."""
    low = max(0, start - strategy.lookback(params))
    frame = strategy.signals(candles.iloc[low:end], params)
    return frame.buy.iloc[start - low :], frame.sell.iloc[start - low :]


def evaluate_window(
    candles: pd.DataFrame,
    strategy: Strategy,
    params: Any,
    start: int,
    end: int,
    *,
    timeframe: str,
    execution: ExecutionModel,
    costs: CostModel,
) -> WindowResult:
    """Backtest `params` on candles ``[start, end)`` only, costs included."""
    buy, sell = window_signals(candles, strategy, params, start, end)
    window = candles.iloc[start:end]
    pf = simulate(window, buy, sell, execution=execution, costs=costs, timeframe=timeframe)
    values, paid = funded_equity(pf, window, timeframe, funding_schedule(window, timeframe, costs))
    metrics = portfolio_metrics(pf, window, timeframe, equity=values).iloc[0].to_dict()
    if paid is not None:
        metrics["funding_paid"] = float(paid.sum())
    equity = pd.Series(np.asarray(values).ravel(), index=window.index, name="equity")
    return WindowResult(metrics=metrics, equity=equity, trades=trade_list(pf, window.index))


def daily_returns(equity: pd.Series | pd.DataFrame, init_cash: float) -> pd.Series | pd.DataFrame:
    """Return per-UTC-day returns of an equity curve (or of each column), from `init_cash`."""
    closing = equity.resample("1D").last().dropna(how="all")
    previous = closing.shift(1)
    previous.iloc[0] = init_cash
    return closing / previous - 1.0


def candle_returns(equity: pd.Series, init_cash: float) -> pd.Series:
    """Return per-candle returns of an equity curve that started from `init_cash`."""
    previous = equity.shift(1)
    previous.iloc[0] = init_cash
    return equity / previous - 1.0


def stitch_equity(parts: list[pd.Series], init_cash: float) -> pd.Series:
    """Chain equity curves of consecutive windows (each starting flat from `init_cash`)."""
    if not parts:
        return pd.Series(dtype="float64", name="equity")
    returns = pd.concat([candle_returns(part, init_cash) for part in parts])
    return (init_cash * (1.0 + returns).cumprod()).rename("equity")
