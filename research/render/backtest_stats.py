"""What a backtest report shows beyond the metrics: trade statistics and monthly returns.

Computed from `run_backtest`'s own trade list and equity curve, so they agree with its metrics:
a trade still open at the end counts, valued at the last close (as in
research/backtest/metrics.py); a win has pnl > 0, a loss pnl < 0 (a flat trade ends both
streaks).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class TradeStats:
    """Best, worst and average trade, durations, streaks and exposure of one backtest."""

    trades: int
    open_trades: int
    wins: int
    losses: int
    best_return: float
    worst_return: float
    average_return: float
    average_win: float
    average_loss: float
    best_pnl: float
    worst_pnl: float
    average_pnl: float
    average_seconds: float
    longest_seconds: float
    longest_win_streak: int
    longest_loss_streak: int
    exposure: float


def longest_run(flags: np.ndarray) -> int:
    """Return the length of the longest run of True in `flags`."""
    best = current = 0
    for flag in flags.tolist():
        current = current + 1 if flag else 0
        best = max(best, current)
    return best


def _mean(values: pd.Series) -> float:
    return float(values.mean()) if len(values) else float("nan")


def trade_stats(trades: pd.DataFrame, exposure: float) -> TradeStats:
    """Return the statistics of `trades` (run_backtest's trade list, in entry order)."""
    pnl = trades["pnl"].astype("float64")
    returns = trades["return"].astype("float64")
    held = (trades["exit_time"] - trades["entry_time"]).dt.total_seconds()
    empty = len(trades) == 0
    return TradeStats(
        trades=len(trades),
        open_trades=int((trades["status"] == "open").sum()),
        wins=int((pnl > 0).sum()),
        losses=int((pnl < 0).sum()),
        best_return=float("nan") if empty else float(returns.max()),
        worst_return=float("nan") if empty else float(returns.min()),
        average_return=_mean(returns),
        average_win=_mean(returns[pnl > 0]),
        average_loss=_mean(returns[pnl < 0]),
        best_pnl=float("nan") if empty else float(pnl.max()),
        worst_pnl=float("nan") if empty else float(pnl.min()),
        average_pnl=_mean(pnl),
        average_seconds=_mean(held),
        longest_seconds=float("nan") if empty else float(held.max()),
        longest_win_streak=longest_run((pnl > 0).to_numpy()),
        longest_loss_streak=longest_run((pnl < 0).to_numpy()),
        exposure=float(exposure),
    )


def monthly_returns(equity: pd.Series, initial: float) -> pd.DataFrame:
    """Return each calendar month's return (rows: years, columns: months 1..12; NaN: no data).

    A month's return is its last equity over the previous month's last (over `initial` for the
    first month), so the months compound to the total return.
    """
    ends = equity.groupby([equity.index.year, equity.index.month]).last()
    starts = ends.shift(1).fillna(initial)
    returns = ends / starts - 1.0
    table = returns.unstack(level=1).reindex(columns=range(1, 13))
    table.index.name, table.columns.name = "year", "month"
    return table


def yearly_returns(equity: pd.Series, initial: float) -> pd.Series:
    """Return each calendar year's return, chained like `monthly_returns`."""
    ends = equity.groupby(equity.index.year).last()
    return ends / ends.shift(1).fillna(initial) - 1.0
