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
# # Explore a strategy
#
# Candles from a database, the strategy's BUY/SELL signals with their reasons, a backtest and a
# small parameter sweep. Every step calls the functions behind `signals scan`,
# `signals backtest` and `signals sweep`, so what you see here is what the CLI and the live
# runner do. Edit the parameters cell and run all cells; papermill runs this notebook in the
# tests with a tiny synthetic database.

# %% tags=["parameters"]
database = "reports/demo/candles.db"  # relative: from the working directory, else the repo root
symbol = "BTCUSDT"
timeframe = "1h"
strategy = "swing"
period_from = None  # ISO UTC date or epoch s; the candles before it still warm indicators up
period_to = None
params = {}  # overrides of the strategy's defaults, e.g. {"threshold": 0.6}
costs = None  # cost preset (bybit-spot, bybit-perp) or costs file; None: the config's
sweep_grid = None  # {"name": "start:stop:step" or "v1,v2"}; None: the score levels x cooldowns
heatmap = None  # two swept parameters; None: the first two of the grid
metric = "sharpe"
min_trades = 5  # the sweep's ranking and heatmap leave out combinations with fewer trades
config = None  # YAML config; None: ./signals.yaml if present, else the defaults

# %%
import plotly.io as pio
from IPython.display import display

from research.backtest.execution import ExecutionModel
from research.backtest.run import run_backtest
from research.inputs import prepare_run, resolve_costs
from research.notebook import default_sweep_grid, project_path
from research.optimise.grid import expand_grid
from research.optimise.ranking import rank_sweep, swept_names
from research.optimise.sweep import run_sweep
from research.render.backtest_report import build_report
from research.render.format import quote_currency
from research.render.frames import metrics_frame, ranking_frame, signals_frame, trades_frame
from research.render.sweep_figures import pair_heatmap
from signals.warmup import start_position, warmed_signals

pio.renderers.default = "plotly_mimetype+notebook"  # live in JupyterLab, offline in HTML exports
database, config = project_path(database), project_path(config)

# %% [markdown]
# ## Candles and signals
# The period starts at `period_from`; the candles loaded before it only warm the indicators up
# (as `signals scan --from`). The last signals, with the rules that fired:

# %%
run = prepare_run(
    strategy_name=strategy, db=database, timeframe=timeframe, symbol=symbol,
    assignments=[f"{k}={v}" for k, v in params.items()], start=period_from, end=period_to,
    config=config,
)  # fmt: skip
unit = quote_currency(run.symbol)
start = start_position(run.candles.index, run.since)
candles, frame = warmed_signals(run.candles, run.strategy, run.params, start=start)
print(f"{run.strategy.name} {run.symbol} {timeframe}: {len(candles)} candles "
      f"{candles.index[0]} .. {candles.index[-1]}; params {run.params}")  # fmt: skip
display(signals_frame(frame.signal_rows().tail(10), candles["close"]))

# %% [markdown]
# ## Backtest
# Next-open fills, long only, all-in, with the configured costs, trading from `period_from` (as
# `signals backtest --from`). The chart is the one of `signals backtest --report`: candles with
# the strategy's lines, its BUY/SELL signals (hover: the rules that fired), the fills (hover: the
# trade's P&L), its oscillator panels, the rule scores, equity against buy and hold, drawdown.

# %%
cost_model = resolve_costs(config, costs=costs)
result = run_backtest(run.candles, run.strategy, run.params, timeframe=timeframe,
                      costs=cost_model, since=run.since)  # fmt: skip
print(f"backtest: {int(result.metrics['trades'])} trades, "
      f"total return {result.metrics['total_return']:+.4%}")  # fmt: skip
display(metrics_frame(result.metrics, unit))
build_report(result, run.candles, strategy=run.strategy, symbol=run.symbol,
             timeframe=timeframe).figures[0].show()  # fmt: skip
display(trades_frame(result.trades, unit).tail(10))

# %% [markdown]
# ## Sweep
# Every combination of the grid (as `signals sweep`). By default the thresholds are the score
# levels the strategy actually reaches (a threshold between two levels repeats the one above).
# The ranking shows the swept parameters only, leaves out combinations with fewer than
# `min_trades` trades and merges identical results; the heatmap shows the best value of the
# metric for each pair of the two parameters (hover: the trade count).

# %%
grid_specs = sweep_grid or default_sweep_grid(run.strategy, frame)
grid = expand_grid(run.strategy, [f"{k}={v}" for k, v in grid_specs.items()])
sweep = run_sweep(run.candles, run.strategy, grid, timeframe=timeframe, execution=ExecutionModel(),
                  costs=cost_model, progress=False, since=run.since)  # fmt: skip
swept = swept_names(sweep.table, sweep.param_names)
print(f"{len(grid.combos)} combinations ({grid.skipped} invalid skipped): {grid_specs}")
ranked = rank_sweep(sweep.table, swept, metric, min_trades=min_trades, top=5)
display(ranking_frame(ranked, swept, metric, unit))
axes = heatmap or list(swept[:2])
if len(axes) == 2:
    pair_heatmap(sweep.table, axes[0], axes[1], metric, min_trades=min_trades, unit=unit).show()
