"""The walk-forward report: one self-contained HTML file (plotly.js inlined, opens offline)."""

from __future__ import annotations

import contextlib
import html
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from research.backtest.run import cost_break_even_bps
from research.optimise.outputs import Overfitting
from research.optimise.walkforward import (
    WalkForwardRun,
    fold_table,
    parameter_stability,
    study_name,
)
from research.render.page import figure_blocks, write_page
from research.render.page import table as _table
from signals.frozen import FrozenParams, dumps


def equity_figure(run: WalkForwardRun) -> go.Figure:
    """Out-of-sample equity against buy-and-hold over the same candles, with the drawdown."""
    equity = run.oos_equity
    close = run.candles["close"].reindex(equity.index)
    hold = run.config.execution.init_cash * close / close.iloc[0]
    drawdown = equity / equity.cummax() - 1.0
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3])
    fig.add_trace(go.Scatter(x=equity.index, y=equity, name="walk-forward (out of sample)"), 1, 1)
    fig.add_trace(go.Scatter(x=hold.index, y=hold, name="buy and hold", opacity=0.6), 1, 1)
    fig.add_trace(go.Scatter(x=drawdown.index, y=drawdown, name="drawdown", fill="tozeroy"), 2, 1)
    for fold in run.folds:
        fig.add_vline(x=run.candles.index[fold.fold.test_start], line_dash="dot", opacity=0.3)
    fig.update_layout(height=520, title="Stitched out-of-sample equity (each fold starts flat)")
    fig.update_yaxes(tickformat=".0%", row=2, col=1)
    return fig


def stability_figure(run: WalkForwardRun) -> go.Figure:
    """Best value of each searched parameter per fold, normalised to its declared range."""
    from strategies.params import ranges

    spaces = ranges(run.strategy.Params)
    fig = go.Figure()
    for name, space in spaces.items():
        values = [f.best_params[name] for f in run.folds]
        scaled = [(v - space.low) / ((space.high - space.low) or 1.0) for v in values]
        fig.add_trace(go.Scatter(x=[f.fold.index for f in run.folds], y=scaled, name=name,
                                 mode="lines+markers", text=[str(v) for v in values]))  # fmt: skip
    fig.update_layout(height=380, title="Parameter stability (position within declared range)",
                      xaxis_title="fold", yaxis_range=[-0.05, 1.05])  # fmt: skip
    return fig


def optuna_figures(
    run: WalkForwardRun, storage: str | optuna.storages.BaseStorage | None, name: str | None
) -> list[go.Figure]:
    """Optimisation history and parameter importance of the most recent fold's study."""
    if storage is None or name is None:
        return []
    fold = run.folds[-1].fold
    study = optuna.load_study(study_name=study_name(name, fold), storage=storage)
    figures = [optuna.visualization.plot_optimization_history(study)]
    # importance is undefined when every trial scored the same
    with contextlib.suppress(RuntimeError, ValueError, ZeroDivisionError):
        figures.append(optuna.visualization.plot_param_importances(study))
    for fig in figures:
        fig.update_layout(height=380)
    return figures


def _break_even(run: WalkForwardRun) -> float:
    from research.backtest.windows import window_signals

    start, end = run.folds[0].fold.test_start, run.folds[-1].fold.test_end
    params = run.strategy.params(run.folds[-1].best_params)
    buy, sell = window_signals(run.candles, run.strategy, params, start, end)
    return cost_break_even_bps(run.candles.iloc[start:end], buy, sell, timeframe=run.timeframe,
                               execution=run.config.execution, costs=run.config.costs)  # fmt: skip


def write_report(
    run: WalkForwardRun,
    stats: Overfitting,
    frozen: FrozenParams,
    path: Path,
    *,
    storage: str | optuna.storages.BaseStorage | None = None,
    study: str | None = None,
) -> Path:
    """Write the self-contained HTML report of a walk-forward run and return its path."""
    figures = [equity_figure(run), stability_figure(run), *optuna_figures(run, storage, study)]
    blocks = figure_blocks(figures)
    trades = pd.concat([f.test.trades.assign(fold=f.fold.index) for f in run.folds])
    body = _body(run, stats, frozen, blocks, trades)
    return write_page(path, f"walk-forward {run.strategy.name}", body)


def _body(run: WalkForwardRun, stats: Overfitting, frozen: FrozenParams, blocks: list[str],
          trades: pd.DataFrame) -> str:  # fmt: skip
    m: dict[str, Any] = frozen.metrics or {}
    cfg = run.config
    head = (
        f"<h1>Walk-forward: {html.escape(run.strategy.name)} {run.timeframe}</h1>"
        f"<p>{cfg.folds} folds ({cfg.scheme}, gap {cfg.gap}), {cfg.trials} trials per fold "
        f"(objective {cfg.objective}, min trades {cfg.min_trades}, seed {cfg.seed}); "
        f"costs: {html.escape(cfg.costs.describe())}; {stats.trials_run} trials run.</p>"
        f"<div class='verdict'><b>Overfitting:</b> {html.escape(stats.verdict)}<br>"
        f"Per-fold PBO: {', '.join(f'{p:.2f}' for p in stats.fold_pbo) or 'n/a'}. "
        f"Walk-forward efficiency: {m.get('walkforward_efficiency') or float('nan'):.2f}. "
        f"Cost break-even (last parameters over the out-of-sample span): "
        f"{_break_even(run):.1f} bps per side.</div>"
    )
    metrics = pd.DataFrame([{k: v for k, v in m.items()}])
    return "".join([
        head, "<h2>Out-of-sample equity</h2>", blocks[0],
        "<h2>Out-of-sample metrics</h2>", _table(metrics),
        "<h2>Folds</h2>", _table(fold_table(run)),
        "<h2>Parameter stability</h2>", blocks[1], _table(parameter_stability(run).reset_index()),
        "<h2>Optuna (most recent fold)</h2>", *blocks[2:],
        "<h2>Frozen parameters</h2><pre>", html.escape(dumps(frozen)), "</pre>",
        "<h2>Out-of-sample trades</h2>", _table(trades),
    ])  # fmt: skip
