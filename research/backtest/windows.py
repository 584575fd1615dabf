"""Evaluate parameters on one window of candles, warming indicators up on the candles before it.

Signals are computed on ``[start - lookback, end)`` (`signals.warmup.warmed_signals`) and only
the part in ``[start, end)`` is simulated and scored, as a backtest is
(`research.backtest.run.score_signals`), so indicators are warm at the window's first candle
while no candle at or after ``end`` is ever read. A decision on the window's last candle has no
next open inside the window and is not filled; a position still open at ``end`` is valued at
the window's last close.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from research.backtest.execution import ExecutionModel, slippage_from
from research.backtest.run import Scored, score_signals
from signals.costs import CostModel
from signals.warmup import warmed_signals
from strategies import Strategy

WindowResult = Scored  # one parameter set on one window: metrics, per-candle equity, trades


def window_signals(
    candles: pd.DataFrame, strategy: Strategy, params: Any, start: int, end: int
) -> tuple[pd.Series, pd.Series]:
    """Return BUY/SELL decisions for candles ``[start, end)``, warmed up on earlier candles."""
    _, frame = warmed_signals(
        candles, strategy, params, start=start, end=end, warmup=strategy.lookback(params)
    )
    return frame.buy, frame.sell


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
    window, frame = warmed_signals(
        candles, strategy, params, start=start, end=end, warmup=strategy.lookback(params)
    )
    slippage = slippage_from(candles, start, end, execution, costs)
    return score_signals(
        window, frame.buy, frame.sell, timeframe=timeframe, execution=execution, costs=costs,
        slippage=slippage,
    )  # fmt: skip


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
