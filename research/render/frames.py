"""Tables for people: results as DataFrames of formatted text, for the HTML reports and notebooks.

Every cell goes through research/render/format.py, so a notebook's table reads like the report's
(``4`` trades, not ``4.000000``; prices with the decimals their size needs; percentages).

>>> display(metrics_frame(result.metrics, "USDT"))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from research.optimise.ranking import ALSO, SAME
from research.render import format as fmt

# the metric columns of a ranking, in order (the ranked metric goes first)
RANKING_METRICS = ("total_return", "sharpe", "max_drawdown", "win_rate", "profit_factor",
                   "trades")  # fmt: skip
SHORT = {"total_return": "return", "max_drawdown": "max DD", "win_rate": "win rate",
         "profit_factor": "profit factor", "annual_return": "annual return",
         "buy_hold_return": "buy & hold"}  # fmt: skip


def value(v: object) -> str:
    """Format a parameter value (``0.25``, ``20``, ``True``)."""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float | np.floating):
        return f"{float(v):g}"
    return str(v)


def metrics_frame(metrics: Mapping[str, float], unit: str = "") -> pd.DataFrame:
    """Return one row per metric: its name for people and its formatted value."""
    return pd.DataFrame(
        {"metric": [fmt.label(k) for k in metrics],
         "value": [fmt.metric(k, float(v), unit) for k, v in metrics.items()]},
    ).set_index("metric")  # fmt: skip


def trades_frame(trades: pd.DataFrame, unit: str = "") -> pd.DataFrame:
    """Return a backtest's trade list formatted: times, prices, duration, P&L, return, fees."""
    money = f"P&L{f' ({unit})' if unit else ''}"
    return pd.DataFrame({
        "direction": trades["direction"],
        "entry": trades["entry_time"].dt.strftime("%Y-%m-%d %H:%M"),
        "entry price": trades["entry_price"].map(fmt.price),
        "exit": trades["exit_time"].dt.strftime("%Y-%m-%d %H:%M"),
        "exit price": trades["exit_price"].map(fmt.price),
        "held": (trades["exit_time"] - trades["entry_time"]).dt.total_seconds().map(fmt.duration),
        money: trades["pnl"].map(lambda v: fmt.money(v, signed=True)),
        "return": trades["return"].map(lambda v: fmt.percent(v, signed=True)),
        "fees": trades["fees"].map(fmt.money),
        "status": trades["status"],
    }).set_axis(pd.RangeIndex(1, len(trades) + 1, name="#"))  # fmt: skip


def signals_frame(rows: pd.DataFrame, close: pd.Series | None = None) -> pd.DataFrame:
    """Return `SignalFrame.signal_rows` formatted: side, close, confidence, rules that fired."""
    out = pd.DataFrame(
        {"signal": rows["signal"], "confidence": rows["confidence"].map(fmt.ratio),
         "reasons": rows["reasons"].map("; ".join)},
        index=rows.index.strftime("%Y-%m-%d %H:%M"),
    )  # fmt: skip
    if close is not None:
        out.insert(1, "close", close.reindex(rows.index).map(fmt.price).to_numpy())
    out.index.name = "candle (UTC)"
    return out


def ranking_frame(
    ranked: pd.DataFrame, swept: Sequence[str], metric: str, unit: str = ""
) -> pd.DataFrame:
    """Return a `research.optimise.ranking.rank_sweep` result formatted, best first."""
    metrics = [metric, *(m for m in RANKING_METRICS if m != metric and m in ranked)]
    data: dict[str, list[str]] = {name: [value(v) for v in ranked[name]] for name in swept}
    for key in metrics:
        data[SHORT.get(key, key.replace("_", " "))] = [
            fmt.metric(key, float(v), unit) for v in ranked[key]
        ]
    if SAME in ranked and (ranked[SAME] > 1).any():
        data[SAME] = [f"{int(n)} rows" if n > 1 else "" for n in ranked[SAME]]
        data["other values with the same result"] = list(ranked[ALSO])
    return pd.DataFrame(data, index=pd.RangeIndex(1, len(ranked) + 1, name="rank"))
