"""The sweep report (``signals sweep --report FILE.html``): one self-contained HTML page.

What it shows, from one `run_sweep` result: the run (grid, period, costs, the parameters left
fixed), the ranking of the swept parameters (combinations under `min_trades` trades left out,
identical results merged), the best combination's neighbourhood with a verdict (plateau or
spike?), a heatmap of the metric for each pair of swept parameters (trade counts on hover) and
each metric against each parameter. Plotly.js is inlined: the file opens offline.

What the page draws is summarised as JSON in the page (``#sweep-summary``) for tests and tools.

>>> write_sweep_report(result, Path("sweep.html"), metric="sharpe", symbol="BTCUSDT",
...                    min_trades=10)  # doctest: +SKIP
"""

from __future__ import annotations

import html
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from research.optimise.ranking import (
    fixed_values,
    grid_edges,
    neighbourhood,
    plateau_verdict,
    rank_sweep,
    swept_names,
)
from research.optimise.sweep import SweepResult
from research.render import format as fmt
from research.render.frames import ranking_frame, value
from research.render.page import figure_blocks, json_block, pairs_table, write_page
from research.render.page import table as html_table
from research.render.sweep_figures import SENSITIVITY_METRICS, pair_heatmap, sensitivity

TOP_ROWS = 20
MAX_PAIRS = 10  # heatmaps drawn at most (the first swept parameters' pairs)


@dataclass(frozen=True)
class SweepReport:
    """A built report: its page body, figures and what it drew (as embedded)."""

    title: str
    body: str
    figures: list[go.Figure]
    summary: dict[str, Any]


def build_sweep_report(
    result: SweepResult, *, metric: str = "sharpe", symbol: str = "", min_trades: int = 0,
    top: int = TOP_ROWS,
) -> SweepReport:  # fmt: skip
    """Build the report of a sweep ranked by `metric`."""
    table, unit = result.table, fmt.quote_currency(symbol)
    swept = swept_names(table, result.param_names)
    ranked = rank_sweep(table, swept, metric, min_trades=min_trades)
    best = table.loc[ranked.index[0]] if len(ranked) else None
    pairs = list(itertools.combinations(swept, 2))[:MAX_PAIRS]
    figures = [
        pair_heatmap(table, x, y, metric, min_trades=min_trades, unit=unit,
                     best=None if best is None else (best[x], best[y]))
        for x, y in pairs
    ]  # fmt: skip
    metrics = [metric, *(m for m in SENSITIVITY_METRICS if m != metric)]
    if swept:
        figures.append(sensitivity(table, swept, metrics, min_trades=min_trades, best=best))
    near, verdict = _neighbourhood(table, swept, ranked, metric, min_trades)
    summary = {
        "strategy": result.strategy, "symbol": symbol, "timeframe": result.timeframe,
        "metric": metric, "min_trades": min_trades, "rows": len(table),
        "eligible": int((table["trades"].fillna(0) >= min_trades).sum()),
        "distinct_results": len(ranked), "swept": list(swept),
        "fixed": {k: _plain(v) for k, v in fixed_values(table, result.param_names).items()},
        "best": None if best is None else {n: _plain(best[n]) for n in swept},
        "best_row": None if best is None else int(ranked.index[0]),
        "best_metric": None if best is None else _plain(best[metric]),
        "heatmaps": [list(p) for p in pairs], "verdict": verdict[0],
        "neighbours": max(0, len(near) - 1),
        "edges": [] if best is None else grid_edges(table, swept, ranked.index[0]),
    }  # fmt: skip
    blocks = figure_blocks(figures)
    title = f"Sweep: {result.strategy} {symbol} {result.timeframe}".replace("  ", " ")
    heat = blocks[: len(pairs)]
    body = "".join([
        _head(result, summary, title, swept),
        f"<div class='verdict'>{html.escape(_headline(summary, verdict, unit, table))}</div>",
        f"<h2>Ranking by {html.escape(fmt.label(metric))}</h2>",
        _ranking_note(summary, len(ranked), top),
        html_table(ranking_frame(ranked.head(top), swept, metric, unit).reset_index()),
        "<h2>The best combination's neighbourhood</h2>",
        _neighbourhood_block(near, swept, metric, unit, verdict),
        "<h2>Heatmaps</h2>" if heat else "",
        _heatmap_note(summary, metric) if heat else "", *heat,
        "<h2>Sensitivity: each metric against each parameter</h2>" if swept else "",
        "<p class='note'>Solid: the best value over the other swept parameters; dotted: their "
        "median; red star: the best combination. A smooth, flat curve near the best value "
        "means the choice is robust; a lone peak means it is fitted to these candles.</p>"
        if swept else "", *blocks[len(pairs):],
        json_block("sweep-summary", summary),
    ])  # fmt: skip
    return SweepReport(title, body, figures, summary)


def write_sweep_report(
    result: SweepResult, path: Path, *, metric: str = "sharpe", symbol: str = "",
    min_trades: int = 0,
) -> SweepReport:  # fmt: skip
    """Write the self-contained HTML report of a sweep to `path` and return what it drew."""
    report = build_sweep_report(result, metric=metric, symbol=symbol, min_trades=min_trades)
    write_page(path, report.title, report.body)
    return report


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def _head(result: SweepResult, summary: dict[str, Any], title: str, swept: tuple) -> str:
    period = (
        f"{result.first_candle:%Y-%m-%d %H:%M} to {result.last_candle:%Y-%m-%d %H:%M} UTC, "
        if result.first_candle is not None and result.last_candle is not None else ""
    )  # fmt: skip
    run = (
        f"{period}{fmt.count(result.candles)} candles; {fmt.count(summary['rows'])} combinations "
        f"({fmt.count(result.skipped)} invalid skipped) in {result.elapsed:.1f} s; fill "
        f"{result.execution.fill}, {result.execution.direction}; costs: "
        f"{result.costs.describe()}."
    )
    grid = ", ".join(result.grid) or ", ".join(swept)
    fixed = ", ".join(f"{k}={value(v)}" for k, v in summary["fixed"].items())
    return (
        f"<h1>{html.escape(title)}</h1><p>{html.escape(run)}</p>"
        f"<p class='note'>Grid: {html.escape(grid)}. Fixed at their values: "
        f"{html.escape(fixed) or 'none'}.</p>"
    )


def _headline(summary: dict[str, Any], verdict: tuple[str, str], unit: str,
              table: pd.DataFrame) -> str:  # fmt: skip
    if summary["best"] is None:
        return (f"No combination has {summary['min_trades']} or more trades: nothing to rank "
                "(lower --min-trades or widen the period).")  # fmt: skip
    row = table.loc[summary["best_row"]]
    best = ", ".join(f"{k}={value(v)}" for k, v in summary["best"].items())
    metric = summary["metric"]
    return (
        f"Best {fmt.label(metric)}: {fmt.metric(metric, row[metric], unit)} with {best} "
        f"({fmt.count(row['trades'])} trades, return "
        f"{fmt.percent(row['total_return'], signed=True)}, max drawdown "
        f"{fmt.percent(row['max_drawdown'], signed=True)}). "
        f"Neighbourhood: {verdict[0].upper()} ({verdict[1]})." + _edge_note(summary)
    )


def _edge_note(summary: dict[str, Any]) -> str:
    edges = summary["edges"]
    if not edges:
        return ""
    values = ", ".join(f"{n}={value(summary['best'][n])}" for n in edges)
    return (f" The best sits on the edge of the grid ({values}): the optimum may lie beyond "
            "it; widen the grid there before trusting it.")  # fmt: skip


def _ranking_note(summary: dict[str, Any], distinct: int, top: int) -> str:
    left_out = summary["rows"] - summary["eligible"]
    return (
        f"<p class='note'>Only the swept parameters are shown. {fmt.count(left_out)} of "
        f"{fmt.count(summary['rows'])} combinations have fewer than {summary['min_trades']} trades"
        f" and are left out (--min-trades). Combinations with identical results (trades, return, "
        f"Sharpe, drawdown, win rate, fees) are merged into one row, which names the other "
        f"values: {fmt.count(summary['eligible'])} combinations give {fmt.count(distinct)} "
        f"distinct results; the best {min(top, distinct)} are listed.</p>"
    )


def _heatmap_note(summary: dict[str, Any], metric: str) -> str:
    others = "over the other swept parameters" if len(summary["swept"]) > 2 else ""
    return (
        f"<p class='note'>Each cell: the best {html.escape(fmt.label(metric))} {others} among "
        f"combinations with {summary['min_trades']} or more trades (blank: none). Hover a cell "
        "for its trade count. The black ring marks the best combination.</p>"
    )


def _neighbourhood(
    table: pd.DataFrame, swept: tuple[str, ...], ranked: pd.DataFrame, metric: str,
    min_trades: int,
) -> tuple[pd.DataFrame, tuple[str, str]]:  # fmt: skip
    if ranked.empty or not swept:
        return table.iloc[:0], ("undecided", "nothing ranked")
    near = neighbourhood(table, swept, ranked.index[0])
    return near, plateau_verdict(near, metric, min_trades=min_trades)


def _neighbourhood_block(near: pd.DataFrame, swept: tuple[str, ...], metric: str, unit: str,
                         verdict: tuple[str, str]) -> str:  # fmt: skip
    if near.empty:
        return f"<p class='note'>{html.escape(verdict[1])}.</p>"
    shown = ranking_frame(near, swept, metric, unit)
    best = float(near[metric].iloc[0])
    shown.insert(0, "vs best", ["best"] + [_difference(metric, v - best)
                                           for v in near[metric].iloc[1:]])  # fmt: skip
    shown.insert(0, "steps away", [str(d) for d in near["distance"]])
    summary = pairs_table([("Verdict", verdict[0]), ("Why", verdict[1])])
    return (
        "<p class='note'>Every combination at most one grid step from the best in each swept "
        "parameter. A plateau (most neighbours nearly as good) is a choice that survives small "
        "changes; a spike (neighbours much worse) is usually luck on these candles.</p>"
        + summary
        + f"<div style='max-height:420px;overflow:auto'>"
        f"{html_table(shown.reset_index(drop=True))}</div>"
    )


def _difference(metric: str, diff: float) -> str:
    """Format a metric's difference from the best (percentage points for percentages)."""
    if metric in fmt.SIGNED_PERCENT | fmt.PERCENT:
        return fmt.percent(diff, signed=True).replace("%", " pts")
    return "n/a" if pd.isna(diff) else f"{diff:+.2f}"
