"""The walk-forward report's figures: out-of-sample equity, its monthly returns and rolling
Sharpe, parameter stability, and optuna's plots drawn over the valid trials only.

Rejected trials (too few trades, invalid parameters, undefined score) carry the fixed
`BAD_SCORE` (-100): drawn with the others they flatten the optimisation history into a line
at the top, so the optuna figures are built from a copy of the study holding the valid trials
alone, drawn at their original trial numbers.
"""

from __future__ import annotations

import contextlib
import math
import warnings

import numpy as np
import optuna
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from research.backtest.windows import daily_returns
from research.optimise.outputs import trial_outcomes
from research.optimise.walkforward import WalkForwardRun, study_name
from research.render import format as fmt
from research.render.backtest_figures import monthly_heatmap
from research.render.backtest_stats import monthly_returns, yearly_returns

TEMPLATE = "plotly_white"


def equity_figure(run: WalkForwardRun, unit: str = "") -> go.Figure:
    """Out-of-sample equity against buy-and-hold over the same candles, with the drawdown."""
    equity = run.oos_equity
    close = run.candles["close"].reindex(equity.index)
    init = run.config.execution.init_cash
    hold = init * close / close.iloc[0]
    drawdown = equity / equity.cummax() - 1.0
    mine = fmt.percent(float(equity.iloc[-1]) / init - 1.0, signed=True)
    held = fmt.percent(float(hold.iloc[-1]) / init - 1.0, signed=True)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3],
                        vertical_spacing=0.04)  # fmt: skip
    fig.add_trace(go.Scatter(x=equity.index, y=equity, name=f"walk-forward, out of sample ({mine})",
                             line={"color": "#1f77b4"}), 1, 1)  # fmt: skip
    fig.add_trace(go.Scatter(x=hold.index, y=hold, name=f"buy and hold ({held})",
                             line={"color": "#999999"}), 1, 1)  # fmt: skip
    fig.add_trace(go.Scatter(x=drawdown.index, y=drawdown, name="drawdown", fill="tozeroy",
                             line={"color": "#d62728"}), 2, 1)  # fmt: skip
    for fold in run.folds:
        start = run.candles.index[fold.fold.test_start]
        fig.add_vline(x=start, line_dash="dot", opacity=0.4)
        fig.add_annotation(x=start, y=1.0, yref="paper", text=f"fold {fold.fold.index}",
                           showarrow=False, xanchor="left", font={"size": 10})  # fmt: skip
    fig.update_layout(template=TEMPLATE, height=520, legend={"orientation": "h", "y": -0.08},
                      title="Stitched out-of-sample equity (each fold starts flat)")  # fmt: skip
    fig.update_yaxes(title_text=f"equity{f' ({unit})' if unit else ''}", row=1, col=1)
    fig.update_yaxes(tickformat=".0%", title_text="drawdown", row=2, col=1)
    return fig


def monthly_figure(run: WalkForwardRun) -> go.Figure:
    """Monthly returns of the out-of-sample equity as a heatmap (each year's total)."""
    init = run.config.execution.init_cash
    return monthly_heatmap(
        monthly_returns(run.oos_equity, init), yearly_returns(run.oos_equity, init)
    )


def rolling_window_days(days: int) -> int:
    """Return the rolling-Sharpe window: 30 days, or a third of a shorter record (>= 7)."""
    return 30 if days >= 90 else max(7, days // 3)


def rolling_sharpe(run: WalkForwardRun) -> tuple[pd.Series, int]:
    """Return the out-of-sample rolling Sharpe (annualised, sqrt 365) and its window in days."""
    daily = daily_returns(run.oos_equity, run.config.execution.init_cash)
    window = rolling_window_days(len(daily))
    rolling = daily.rolling(window, min_periods=window)
    sharpe = rolling.mean() / rolling.std(ddof=1) * math.sqrt(365.0)
    return sharpe.replace([np.inf, -np.inf], np.nan), window


def rolling_sharpe_figure(run: WalkForwardRun) -> go.Figure:
    """The rolling Sharpe of the out-of-sample daily returns, with the folds' boundaries."""
    sharpe, window = rolling_sharpe(run)
    fig = go.Figure(go.Scatter(x=sharpe.index, y=sharpe, name=f"{window}-day Sharpe",
                               line={"color": "#2ca02c"}, connectgaps=False))  # fmt: skip
    fig.add_hline(y=0.0, line_color="#444", line_width=1)
    if not sharpe.notna().any():
        fig.add_annotation(text=f"fewer than {window} days out of sample: no rolling Sharpe",
                           x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False)  # fmt: skip
    for fold in run.folds:
        fig.add_vline(x=run.candles.index[fold.fold.test_start], line_dash="dot", opacity=0.4)
    fig.update_layout(template=TEMPLATE, height=300, margin={"t": 50},
                      title=f"Rolling {window}-day Sharpe ratio of the out-of-sample daily "
                            "returns (annualised with √365)",
                      yaxis_title="Sharpe")  # fmt: skip
    return fig


def stability_figure(run: WalkForwardRun) -> go.Figure:
    """Best value of each searched parameter per fold, normalised to its declared range."""
    from strategies.params import ranges

    spaces = ranges(run.strategy.Params)
    fig = go.Figure()
    folds = [f.fold.index for f in run.folds]
    for name, space in spaces.items():
        values = [f.best_params[name] for f in run.folds]
        scaled = [(v - space.low) / ((space.high - space.low) or 1.0) for v in values]
        hover = [f"{name} = {v:g} (range {space.low:g} to {space.high:g})" for v in values]
        fig.add_trace(go.Scatter(x=folds, y=scaled, name=name, mode="lines+markers",
                                 hovertext=hover, hoverinfo="text+x"))  # fmt: skip
    fig.update_layout(template=TEMPLATE, height=340,
                      title="Parameter stability: each fold's best value within its declared range",
                      xaxis={"title": "fold", "tickmode": "array", "tickvals": folds},
                      yaxis={"title": "position in range", "range": [-0.05, 1.05],
                             "tickformat": ".0%"})  # fmt: skip
    return fig


def valid_study(run: WalkForwardRun, storage: str | optuna.storages.BaseStorage,
                name: str, fold: int = -1) -> tuple[optuna.Study, list[int]]:  # fmt: skip
    """Return an in-memory copy of a fold's study with its valid trials, and their numbers."""
    result = run.folds[fold]
    outcomes = trial_outcomes(result.trials, run.config.min_trades)
    valid = set(result.trials.loc[outcomes == "valid", "trial"].astype(int))
    source = optuna.load_study(study_name=study_name(name, result.fold), storage=storage)
    kept = [t for t in source.get_trials(deepcopy=False) if t.number in valid]
    copy = optuna.create_study(direction="maximize")
    copy.add_trials(kept)
    return copy, [t.number for t in kept]


def optuna_figures(
    run: WalkForwardRun, storage: str | optuna.storages.BaseStorage | None, name: str | None
) -> list[go.Figure]:
    """Optimisation history and parameter importance of the most recent fold's valid trials."""
    if storage is None or name is None:
        return []
    study, numbers = valid_study(run, storage, name)
    total = len(run.folds[-1].trials)
    history = optuna.visualization.plot_optimization_history(study)
    for trace in history.data:  # the copy numbers its trials 0..n-1: draw them at their own
        if trace.x is not None:
            trace.x = [numbers[int(i)] for i in trace.x]
    history.update_layout(
        title=f"Optimisation history, fold {run.folds[-1].fold.index}: the {len(numbers)} valid "
        f"trials of {total} (rejected trials are not drawn)",
        xaxis_title="trial number", yaxis_title=f"train {run.config.objective}",
    )  # fmt: skip
    figures = [history]
    # importance is undefined with too few valid trials (optuna warns and shows them all
    # equal: not drawn) or when all scored the same
    undefined = (RuntimeError, ValueError, ZeroDivisionError, UserWarning)
    with warnings.catch_warnings(), contextlib.suppress(*undefined):
        warnings.simplefilter("error", UserWarning)
        importance = optuna.visualization.plot_param_importances(study)
        importance.update_layout(title=f"Parameter importance over the {len(numbers)} valid "
                                 "trials (fANOVA)")  # fmt: skip
        figures.append(importance)
    for fig in figures:
        fig.update_layout(template=TEMPLATE, height=360)
    return figures
