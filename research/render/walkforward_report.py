"""The walk-forward report: one self-contained HTML file (plotly.js inlined, opens offline).

From the top: the promotion gate's verdict (each check, its value and threshold) with the
overfitting verdict, walk-forward efficiency and cost break-even; the stitched out-of-sample
equity, its metrics, monthly returns and rolling Sharpe; the folds (never annualising a window
shorter than a month); the trials per fold, valid and rejected by reason; parameter stability;
optuna's history and importance over the valid trials; the frozen parameters as tables; the
out-of-sample trades. Numbers are formatted by research/render/format.py, as in the backtest
report. What the page drew is embedded as JSON (``#walkforward-summary``) for tests and tools.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import optuna

from research.backtest.run import cost_break_even_bps
from research.optimise.outputs import Overfitting, trial_outcomes
from research.optimise.walkforward import (
    WalkForwardRun,
    parameter_stability,
    walkforward_efficiency,
)
from research.render import format as fmt
from research.render.page import figure_blocks, json_block, write_page
from research.render.page import table as html_table
from research.render.walkforward_figures import (
    equity_figure,
    monthly_figure,
    optuna_figures,
    rolling_sharpe_figure,
    stability_figure,
)
from research.render.walkforward_tables import (
    SHORT_NOTE,
    efficiency_text,
    fold_rows,
    frozen_tables,
    gate_block,
    metric_cards,
    stability_rows,
    trade_rows,
    trial_rows,
)
from signals.config import GateSettings
from signals.frozen import FrozenParams

__all__ = ["equity_figure", "optuna_figures", "stability_figure", "write_report"]

STYLE = """<style>
.gate{padding:0.8em 1em;margin:1em 0;border-left:6px solid}
.gate.pass{background:#eefaf0;border-color:#2a9d3a}.gate.fail{background:#fdeeee;border-color:#c62828}
.gate table{margin:0.6em 0}.gate tr.fail td{color:#c62828;font-weight:600}
.gate td:first-child{text-align:left}
</style>"""


def _break_even(run: WalkForwardRun) -> float:
    from research.backtest.windows import window_signals

    start, end = run.folds[0].fold.test_start, run.folds[-1].fold.test_end
    params = run.strategy.params(run.folds[-1].best_params)
    buy, sell = window_signals(run.candles, run.strategy, params, start, end)
    return cost_break_even_bps(run.candles.iloc[start:end], buy, sell, timeframe=run.timeframe,
                               execution=run.config.execution, costs=run.config.costs)  # fmt: skip


def report_summary(run: WalkForwardRun, frozen: FrozenParams, gate: GateSettings,
                   figures: int) -> dict[str, Any]:  # fmt: skip
    """Return what the page shows, counted: trials per outcome per fold, gate result, figures."""
    from research.promote.gate import gate_failures

    per_fold = []
    for r in run.folds:
        counts = trial_outcomes(r.trials, run.config.min_trades).value_counts()
        per_fold.append({"fold": r.fold.index, "trials": len(r.trials),
                         **{str(k): int(v) for k, v in counts.items()}})  # fmt: skip
    wfe = walkforward_efficiency(run)
    return {
        "strategy": run.strategy.name, "timeframe": run.timeframe, "params_id": frozen.params_id,
        "trials": per_fold, "gate_failures": gate_failures(frozen, gate),
        "walkforward_efficiency": wfe.value, "walkforward_efficiency_why": wfe.why or None,
        "figures": figures,
    }  # fmt: skip


def write_report(
    run: WalkForwardRun,
    stats: Overfitting,
    frozen: FrozenParams,
    path: Path,
    *,
    storage: str | optuna.storages.BaseStorage | None = None,
    study: str | None = None,
    symbol: str = "",
    gate: GateSettings | None = None,
) -> Path:
    """Write the self-contained HTML report of a walk-forward run and return its path.

    `gate` is the promotion gate whose verdict heads the page (default: the default gate);
    `storage` and `study` locate the optuna studies for their figures (none without them).
    """
    gate = gate or GateSettings()
    unit = fmt.quote_currency(symbol or frozen.symbol)
    optuna_figs = optuna_figures(run, storage, study)
    figures = [equity_figure(run, unit), monthly_figure(run), rolling_sharpe_figure(run),
               stability_figure(run), *optuna_figs]  # fmt: skip
    blocks = figure_blocks(figures)
    summary = report_summary(run, frozen, gate, len(figures))
    body = _body(run, stats, frozen, gate, blocks, unit) + json_block(
        "walkforward-summary", summary
    )
    return write_page(path, f"walk-forward {run.strategy.name} {run.timeframe}", STYLE + body)


def _head(run: WalkForwardRun, stats: Overfitting, frozen: FrozenParams, gate: GateSettings) -> str:
    cfg = run.config
    index = run.oos_equity.index
    per_fold = ", ".join(fmt.ratio(p) for p in stats.fold_pbo) or "n/a"
    return (
        f"<h1>Walk-forward: {html.escape(run.strategy.name)} {html.escape(frozen.symbol)} "
        f"{run.timeframe}</h1>"
        f"<p>{cfg.folds} folds ({cfg.scheme}, purge gap {cfg.gap} candles), {cfg.trials} trials "
        f"per fold (objective: train {cfg.objective}; trials under {cfg.min_trades} trades "
        f"rejected; seed {cfg.seed}); {fmt.count(stats.trials_run)} distinct trials run. "
        f"Out of sample: {index[0]:%Y-%m-%d %H:%M} to {index[-1]:%Y-%m-%d %H:%M} UTC. Costs: "
        f"{html.escape(cfg.costs.describe())}.</p>"
        + gate_block(frozen, gate, stats.verdict)
        + f"<p>{html.escape(efficiency_text(walkforward_efficiency(run)))} Per-fold PBO: "
        f"{per_fold}. Cost break-even (the last parameters over the out-of-sample span): "
        f"{fmt.bps(_break_even(run))} per side.</p>"
    )


def _body(run: WalkForwardRun, stats: Overfitting, frozen: FrozenParams, gate: GateSettings,
          blocks: list[str], unit: str) -> str:  # fmt: skip
    trades, total = trade_rows(run, unit)
    cut = (
        f" (the last {fmt.count(len(trades))} of {fmt.count(total)})" if total > len(trades) else ""
    )
    note = f"<p class='note'>{html.escape(SHORT_NOTE)}</p>"
    return "".join([
        _head(run, stats, frozen, gate),
        "<h2>Out-of-sample equity</h2>", blocks[0],
        "<h2>Out-of-sample metrics</h2><div class='cards'>",
        metric_cards(run, frozen.metrics or {}, unit), "</div>", note,
        "<h2>Monthly returns (out of sample)</h2><p class='note'>Each month's return on the "
        "equity at the end of the month before; each year's total in brackets.</p>", blocks[1],
        "<h2>Rolling Sharpe (out of sample)</h2>", blocks[2],
        "<h2>Folds</h2><p class='note'>Each fold is tuned on its train window and judged once on "
        "its test window. Returns are totals and average daily returns (compounded per day), "
        "never annualised.</p>", html_table(fold_rows(run)), note,
        "<h2>Trials per fold</h2><p class='note'>Rejected trials score a fixed "
        f"{_bad()} and cannot be chosen: below {run.config.min_trades} train trades, parameters "
        "the strategy refuses (e.g. fast &ge; slow), or an undefined score (e.g. a Sharpe ratio "
        "without any variance).</p>", html_table(trial_rows(run)),
        "<h2>Parameter stability</h2>", blocks[3],
        html_table(stability_rows(run, parameter_stability(run))),
        "<h2>Optuna (most recent fold, valid trials only)</h2>", *blocks[4:],
        "<h2>Frozen parameters</h2>", frozen_tables(frozen, run),
        f"<h2>Out-of-sample trades{html.escape(cut)}</h2>",
        f"<div style='max-height:420px;overflow:auto'>{html_table(trades)}</div>",
    ])  # fmt: skip


def _bad() -> str:
    from research.optimise.walkforward import BAD_SCORE

    return f"{BAD_SCORE:g}"
