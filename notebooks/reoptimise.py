# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Re-optimise, compare, promote
#
# A walk-forward run (the functions behind `signals walkforward`), its report's figures, a
# comparison of the new frozen parameters with the ones the live runner uses now, and the
# promotion gate (`signals promote`): the new file replaces the live one only if it passes.
# `signals reoptimise` runs this notebook through papermill every quarter into
# `reports/<quarter>/` and reads the `outcome.json` it leaves there.

# %% tags=["parameters"]
strategy = "ema_cross"
database = "reports/demo/candles.db"  # None: the config's data.candles_db; relative: see below
timeframe = "1h"
symbol = None  # None: data.symbol of the config (BTCUSDT)
period_from = None  # ISO UTC date or epoch s; None: from last_days
period_to = None  # last candle open time to use; None: the newest stored
last_days = 180  # keep only the last N days of the period; None: all of it
folds = 6
trials = 100
train_min_trades = 5  # trials with fewer trades on their train window score badly
seed = 42
costs = None  # cost preset or costs file; None: the config's
fee_bps = None
slippage_bps = None
gate_min_sharpe = None  # gate thresholds; None: the config's gate section
gate_min_dsr = None
gate_max_pbo = None
gate_min_trades = None
gate_max_drawdown = None
current = None  # the frozen file the live runner reads now (None: nothing promoted yet)
promote_to = None  # where a passing file is promoted (None: check the gate only)
recent_days = 14  # compare the signals of both sets over this many recent days
config = None  # YAML config; None: ./signals.yaml if present, else the defaults
progress = False  # walk-forward progress lines on stderr (`signals reoptimise` shows them)
output_dir = "reports/reoptimise-lab"  # relative paths: from the working dir, else the repo root

# %%
from pathlib import Path

import plotly.io as pio
from IPython.display import display

from research.inputs import prepare_run, resolve_costs
from research.notebook import project_path
from research.optimise.pipeline import run_pipeline
from research.optimise.walkforward import WalkForwardConfig, default_storage, fold_table
from research.promote.compare import gate_settings
from research.promote.decision import compare_with_promoted, decide_promotion
from research.promote.reoptimise import select_period
from research.render.walkforward_report import equity_figure, optuna_figures, stability_figure

pio.renderers.default = "plotly_mimetype+notebook"  # live in JupyterLab, offline in HTML exports
database, config, output_dir = (project_path(p) for p in (database, config, output_dir))
current, promote_to = project_path(current), project_path(promote_to)

# %% [markdown]
# ## Candles

# %%
out = Path(output_dir)
run = prepare_run(strategy_name=strategy, db=database, timeframe=timeframe, symbol=symbol,
                  start=period_from, end=period_to, config=config)  # fmt: skip
period = select_period(run.candles, run.since, last_days)
period_start = period.index[0]  # the candles before it only warm up (`walkforward --from`)
print(f"{run.symbol} {timeframe} from {run.db}: {len(period)} candles "
      f"{period.index[0]} .. {period.index[-1]}")  # fmt: skip

# %% [markdown]
# ## Walk-forward
# One optuna study per fold, tuned on its train window and judged once on its test window, then
# the overfitting statistics, the frozen file, the tables and the report: the pipeline of
# `signals walkforward`. The studies are stored in `optuna.db` in the output folder: re-running
# resumes them.

# %%
wf = WalkForwardConfig(
    folds=folds, trials=trials, min_trades=train_min_trades, seed=seed,
    costs=resolve_costs(config, costs=costs, fee_bps=fee_bps, slippage_bps=slippage_bps),
)  # fmt: skip
# the promotion gate: its verdict heads the report, and decides the promotion below
gate = gate_settings(config, min_sharpe=gate_min_sharpe, min_dsr=gate_min_dsr,
                     max_pbo=gate_max_pbo, min_trades=gate_min_trades,
                     max_drawdown=gate_max_drawdown)  # fmt: skip
result = run_pipeline(run, config=wf, out=out, storage=default_storage(out), run=out.name,
                      since=period_start, progress=progress, gate=gate)  # fmt: skip
print(result.stats.verdict)
print(f"frozen: {result.paths['frozen']} (params_id {result.frozen.params_id}); "
      f"report: {result.paths['report']}")  # fmt: skip
display(fold_table(result.run))

# %% [markdown]
# ## The report's figures

# %%
equity_figure(result.run).show()
stability_figure(result.run).show()
for figure in optuna_figures(result.run, result.storage, result.study):
    figure.show()

# %% [markdown]
# ## New parameters against the promoted ones
# Parameters; the out-of-sample metrics each file records from its own walk-forward; both sets
# on the most recent test window (unseen by both); and the signals both give recently.

# %%
comparison = compare_with_promoted(result, current, recent_days=recent_days)
print(comparison.headline())
display(comparison.params)
display(comparison.metrics)
display(comparison.head_to_head)
display(comparison.recent_signals)

# %% [markdown]
# ## Gate and promotion
# The new file is promoted (atomically, with the gate's verdict recorded in it) only if it
# passes every check; otherwise the live file is left untouched. `outcome.json` records the
# decision for `signals reoptimise`.

# %%
decision = decide_promotion(result, comparison, gate=gate, promote_to=promote_to,
                            outcome=out / "outcome.json")  # fmt: skip
print(decision.summary())
