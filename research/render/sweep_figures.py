"""The sweep report's figures: heatmaps of two parameters, and each metric against each parameter.

A heatmap cell (x, y) shows the best value of the metric over the other swept parameters, among
the combinations with at least `min_trades` trades (a blank cell: none has); the hover names the
trade count of that best combination and how many combinations the cell holds. The sensitivity
grid shows, for each swept parameter, the best and the median of each metric over the others.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from research.optimise.ranking import LOWER_IS_BETTER
from research.render import format as fmt
from research.render.frames import value

SENSITIVITY_METRICS = ("sharpe", "total_return", "max_drawdown", "trades")
MAX_TEXT_CELLS = 400  # beyond this many cells the values are on hover only
PERCENT_AXES = fmt.SIGNED_PERCENT | fmt.PERCENT


def _best_rows(table: pd.DataFrame, x: str, y: str, metric: str) -> pd.DataFrame:
    """Return the best row (by `metric`) of each (x, y) cell, with ``cell_rows`` per cell."""
    ordered = table.sort_values(metric, ascending=metric in LOWER_IS_BETTER,
                                na_position="last", kind="stable")  # fmt: skip
    best = ordered.groupby([y, x], sort=True).head(1).set_index([y, x])
    best["cell_rows"] = table.groupby([y, x]).size()
    return best


def _hover(row: pd.Series | None, x: str, xv: object, y: str, yv: object, metric: str,
           cell: int, min_trades: int, unit: str) -> str:  # fmt: skip
    where = f"{x} = {value(xv)}, {y} = {value(yv)}"
    if row is None:
        return f"{where}<br>no combination with {min_trades}+ trades"
    return (
        f"{where}<br><b>{fmt.label(metric)}: {html.escape(fmt.metric(metric, row[metric], unit))}"
        f"</b><br>trades: {fmt.count(row['trades'])}, return "
        f"{fmt.percent(row['total_return'], signed=True)}, max DD "
        f"{fmt.percent(row['max_drawdown'], signed=True)}<br>best of {cell} combination"
        f"{'s' if cell != 1 else ''} in this cell"
    )


def pair_heatmap(
    table: pd.DataFrame, x: str, y: str, metric: str, *, min_trades: int = 0, unit: str = "",
    best: tuple[object, object] | None = None,
) -> go.Figure:  # fmt: skip
    """Return the heatmap of `metric` over parameters `x` (across) and `y` (down the side)."""
    xs, ys = sorted(table[x].unique()), sorted(table[y].unique())
    cells = table.groupby([y, x]).size()
    eligible = table[table["trades"].fillna(0) >= min_trades]
    rows = _best_rows(eligible, x, y, metric) if len(eligible) else None
    z = np.full((len(ys), len(xs)), np.nan)
    hover: list[list[str]] = []
    for i, yv in enumerate(ys):
        line = []
        for j, xv in enumerate(xs):
            row = rows.loc[(yv, xv)] if rows is not None and (yv, xv) in rows.index else None
            if row is not None:
                z[i, j] = float(row[metric])
            line.append(_hover(row, x, xv, y, yv, metric, int(cells.get((yv, xv), 0)),
                               min_trades, unit))  # fmt: skip
        hover.append(line)
    z[~np.isfinite(z)] = np.nan
    text = [[fmt.metric(metric, v, unit) if np.isfinite(v) else "" for v in r] for r in z]
    lower = metric in LOWER_IS_BETTER
    fig = go.Figure(go.Heatmap(
        z=z, x=[value(v) for v in xs], y=[value(v) for v in ys], hovertext=hover,
        hoverinfo="text", text=text, xgap=1, ygap=1,
        texttemplate="%{text}" if z.size <= MAX_TEXT_CELLS else None,
        colorscale="RdYlGn_r" if lower else "RdYlGn",
        zmid=0.0 if not lower and np.nanmin(z, initial=0) < 0 < np.nanmax(z, initial=0) else None,
        colorbar={"title": {"text": fmt.label(metric)},
                  "tickformat": ".0%" if metric in PERCENT_AXES else None},
    ))  # fmt: skip
    if best is not None:
        fig.add_trace(go.Scatter(
            x=[value(best[0])], y=[value(best[1])], mode="markers", name="best", meta="best",
            marker={"symbol": "circle-open", "size": 34, "color": "black", "line": {"width": 2}},
            hoverinfo="skip", showlegend=False,
        ))  # fmt: skip
    fig.update_xaxes(title_text=x, type="category")
    fig.update_yaxes(title_text=y, type="category")
    fig.update_layout(
        template="plotly_white", height=min(700, 160 + 32 * len(ys)),
        margin={"t": 40, "b": 50, "l": 70, "r": 20},
        title={"text": f"{fmt.label(metric)}: {y} against {x}", "font": {"size": 14}},
    )  # fmt: skip
    return fig


def sensitivity(
    table: pd.DataFrame, swept: Sequence[str], metrics: Sequence[str], *, min_trades: int = 0,
    best: pd.Series | None = None,
) -> go.Figure:  # fmt: skip
    """Return each metric (rows) against each swept parameter (columns): best and median."""
    eligible = table[table["trades"].fillna(0) >= min_trades]
    fig = make_subplots(rows=len(metrics), cols=len(swept), shared_yaxes=True,
                        horizontal_spacing=0.03, vertical_spacing=0.06,
                        column_titles=list(swept))  # fmt: skip
    for i, metric in enumerate(metrics, start=1):
        for j, name in enumerate(swept, start=1):
            grouped = eligible.groupby(name)[metric]
            top = grouped.min() if metric in LOWER_IS_BETTER else grouped.max()
            for series, label, style in ((top, "best over the others", "solid"),
                                         (grouped.median(), "median", "dot")):  # fmt: skip
                fig.add_trace(go.Scatter(
                    x=[value(v) for v in series.index], y=series.to_numpy(dtype="float64"),
                    mode="lines+markers", name=label, legendgroup=label,
                    showlegend=i == 1 and j == 1, line={"dash": style, "width": 1.5,
                    "color": "#2c5fa8" if style == "solid" else "#888"}, marker={"size": 5},
                    hovertemplate=f"{name}=%{{x}}<br>{label}: %{{y:.4g}}<extra></extra>",
                ), i, j)  # fmt: skip
            if best is not None:
                fig.add_trace(go.Scatter(
                    x=[value(best[name])], y=[float(best[metric])], mode="markers",
                    name="the best combination", legendgroup="best", meta="best",
                    showlegend=i == 1 and j == 1, hoverinfo="skip",
                    marker={"symbol": "star", "size": 12, "color": "#d73027"},
                ), i, j)  # fmt: skip
            fig.update_xaxes(type="category", row=i, col=j)
        fig.update_yaxes(title_text=fmt.label(metric), row=i, col=1,
                         tickformat=".0%" if metric in PERCENT_AXES else None)  # fmt: skip
    fig.update_layout(
        template="plotly_white", height=150 + 190 * len(metrics), hovermode="closest",
        margin={"t": 60, "b": 40, "l": 80, "r": 20},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.03, "x": 0},
    )  # fmt: skip
    return fig
