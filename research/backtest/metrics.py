"""Every performance figure, computed in one place, for one backtest or a thousand columns.

Markets trade 24/7, so a year is 365 days of candles. Fractions are fractions (0.05 is 5%).
Definitions (r = per-candle returns of the equity curve, V = equity):

- ``total_return`` = V_end / initial cash - 1; ``annual_return`` = (1 + total)^(candles per year
  / candles) - 1;
- ``sharpe`` = mean(r) / std(r, ddof=1) x sqrt(candles per year); ``sortino`` uses the downside
  deviation sqrt(mean(min(r, 0)^2)) instead of std; ``calmar`` = annual_return / |max_drawdown|;
- ``max_drawdown`` = min(V / running max(V) - 1) (<= 0); ``max_drawdown_days`` = longest time
  spent below a previous equity high;
- per trade (open trades valued at the last close): ``win_rate`` = share with pnl > 0,
  ``profit_factor`` = gross profit / gross loss, ``expectancy`` = mean trade return (after fees),
  ``sqn`` = sqrt(N) x mean / std(ddof=1) of trade returns (NaN without spread),
  ``avg_holding_hours``;
- ``exposure`` = share of candles with a position open; ``fees_paid`` in quote currency;
- ``buy_hold_return`` = last close / first close - 1 over the same candles.

Undefined figures (a Sharpe without variance, a profit factor without trades) are NaN, never 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from signals.timeframes import timeframe_seconds

DAYS_PER_YEAR = 365.0
METRIC_KEYS: tuple[str, ...] = (
    "total_return",
    "annual_return",
    "sharpe",
    "sortino",
    "calmar",
    "max_drawdown",
    "max_drawdown_days",
    "win_rate",
    "profit_factor",
    "expectancy",
    "sqn",
    "trades",
    "avg_holding_hours",
    "exposure",
    "fees_paid",
    "buy_hold_return",
)


@dataclass(frozen=True)
class TradeArrays:
    """Per-trade fields needed by the metrics (one entry per trade, any column order)."""

    col: np.ndarray
    pnl: np.ndarray
    ret: np.ndarray
    entry_idx: np.ndarray
    exit_idx: np.ndarray


def candles_per_year(timeframe: str) -> float:
    """Return how many candles of `timeframe` a 24/7 market has in a year."""
    return DAYS_PER_YEAR * 86400.0 / timeframe_seconds(timeframe)


def metrics_table(
    *,
    equity: np.ndarray,
    init_cash: float,
    trades: TradeArrays,
    fees_paid: np.ndarray,
    exposure: np.ndarray,
    close: np.ndarray,
    timeframe: str,
) -> pd.DataFrame:
    """Return one row of metrics per equity column (`equity` has shape candles x columns)."""
    equity = np.asarray(equity, dtype="float64")
    if equity.ndim == 1:
        equity = equity[:, None]
    k = equity.shape[1]
    per_year = candles_per_year(timeframe)
    previous = np.vstack([np.full((1, k), init_cash), equity[:-1]])
    returns = equity / previous - 1.0
    table = {
        **_return_metrics(equity, returns, init_cash, per_year),
        **_drawdown_metrics(equity, timeframe),
        **trade_metrics(trades, k, timeframe),
        "exposure": np.asarray(exposure, dtype="float64"),
        "fees_paid": np.asarray(fees_paid, dtype="float64"),
        "buy_hold_return": np.full(k, close[-1] / close[0] - 1.0),
    }
    with np.errstate(divide="ignore", invalid="ignore"):
        mdd = np.abs(table["max_drawdown"])
        table["calmar"] = np.where(mdd > 0, table["annual_return"] / mdd, np.nan)
    return pd.DataFrame(table)[list(METRIC_KEYS)]


def _return_metrics(
    equity: np.ndarray, returns: np.ndarray, init_cash: float, per_year: float
) -> dict[str, np.ndarray]:
    n = equity.shape[0]
    total = equity[-1] / init_cash - 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        annual = np.power(np.maximum(1.0 + total, 0.0), per_year / n) - 1.0
        mean = returns.mean(axis=0)
        std = returns.std(axis=0, ddof=1) if n > 1 else np.full(equity.shape[1], np.nan)
        downside = np.sqrt(np.mean(np.minimum(returns, 0.0) ** 2, axis=0))
        sharpe = np.where(std > 0, mean / std * np.sqrt(per_year), np.nan)
        sortino = np.where(downside > 0, mean / downside * np.sqrt(per_year), np.nan)
    return {"total_return": total, "annual_return": annual, "sharpe": sharpe, "sortino": sortino}


def _drawdown_metrics(equity: np.ndarray, timeframe: str) -> dict[str, np.ndarray]:
    peak = np.maximum.accumulate(equity, axis=0)
    drawdown = equity / peak - 1.0
    position = np.arange(equity.shape[0])[:, None]
    last_peak = np.maximum.accumulate(np.where(drawdown < 0, 0, position), axis=0)
    longest = (position - last_peak).max(axis=0)
    days = longest * timeframe_seconds(timeframe) / 86400.0
    return {"max_drawdown": drawdown.min(axis=0), "max_drawdown_days": days}


def trade_metrics(trades: TradeArrays, k: int, timeframe: str) -> dict[str, np.ndarray]:
    """Return the per-trade metrics of `k` columns (win rate .. average holding time)."""
    col = np.asarray(trades.col, dtype="int64")
    pnl = np.asarray(trades.pnl, dtype="float64")
    ret = np.asarray(trades.ret, dtype="float64")

    def per_col(weights: np.ndarray) -> np.ndarray:
        return np.bincount(col, weights=weights, minlength=k).astype("float64")

    count = per_col(np.ones_like(pnl))
    wins = per_col((pnl > 0).astype("float64"))
    gross_profit = per_col(np.where(pnl > 0, pnl, 0.0))
    gross_loss = -per_col(np.where(pnl < 0, pnl, 0.0))
    held = per_col((trades.exit_idx - trades.entry_idx).astype("float64"))
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = per_col(ret) / count
        # two passes: sum(x^2) - n mean^2 cancels to noise of ~1e-8 |mean| in std
        std = np.sqrt(per_col((ret - mean[col]) ** 2) / (count - 1))
        # returns equal to 12 digits have no spread: SQN is undefined, not astronomically large
        spread = (count > 1) & (std > 1e-12 * np.abs(mean))
        sqn = np.where(spread, np.sqrt(count) * mean / std, np.nan)
        profit_factor = np.where(
            gross_loss > 0, gross_profit / gross_loss, np.where(gross_profit > 0, np.inf, np.nan)
        )
        hours = held / count * timeframe_seconds(timeframe) / 3600.0
        win_rate = wins / count
    return {
        "win_rate": np.where(count > 0, win_rate, np.nan),
        "profit_factor": profit_factor,
        "expectancy": np.where(count > 0, mean, np.nan),
        "sqn": sqn,
        "trades": count.astype("int64"),
        "avg_holding_hours": np.where(count > 0, hours, np.nan),
    }
