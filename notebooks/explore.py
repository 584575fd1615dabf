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
database = "../reports/demo/candles.db"  # `make lab` (or `make demo`) builds this one
symbol = "BTCUSDT"
timeframe = "1h"
strategy = "swing"
period_from = None  # ISO UTC date or epoch s; the candles before it still warm indicators up
period_to = None
params = {}  # overrides of the strategy's defaults, e.g. {"threshold": 0.6}
costs = None  # cost preset (bybit-spot, bybit-perp) or costs file; None: the config's
sweep_grid = {"threshold": "0.4:0.7:0.1", "cooldown": "8:32:8"}  # start:stop:step or v1,v2
heatmap = ["threshold", "cooldown"]  # two swept parameters
metric = "sharpe"
config = None  # YAML config; None: ./signals.yaml if present, else the defaults

# %%
import pandas as pd
import plotly.io as pio
from IPython.display import display

from research.backtest.execution import ExecutionModel
from research.backtest.run import run_backtest
from research.inputs import prepare_run, resolve_costs
from research.optimise.grid import expand_grid
from research.optimise.sweep import run_sweep, sweep_heatmap
from research.render.charts import equity_chart, indicator_lines, signal_chart
from signals.warmup import from_since, start_position, warmed_signals

pio.renderers.default = "plotly_mimetype+notebook"  # live in JupyterLab, offline in HTML exports

# %% [markdown]
# ## Candles and signals
# The period starts at `period_from`; the candles loaded before it only warm the indicators up
# (as `signals scan --from`). Hover a marker to read the rules that fired. The lower panel shows
# the BUY score and the (negated) SELL score against the threshold.

# %%
run = prepare_run(
    strategy_name=strategy, db=database, timeframe=timeframe, symbol=symbol,
    assignments=[f"{k}={v}" for k, v in params.items()], start=period_from, end=period_to,
    config=config,
)  # fmt: skip
start = start_position(run.candles.index, run.since)
candles, frame = warmed_signals(run.candles, run.strategy, run.params, start=start)
lines = {name: from_since(line, run.since)
         for name, line in indicator_lines(run.candles, run.params).items()}  # fmt: skip
print(f"{run.strategy.name} {run.symbol} {timeframe}: {len(candles)} candles "
      f"{candles.index[0]} .. {candles.index[-1]}; params {run.params}")  # fmt: skip
signal_chart(
    candles, frame, lines, title=f"{run.strategy.name} {run.symbol} {timeframe}",
    threshold=run.params.threshold,
).show()  # fmt: skip
display(frame.signal_rows().tail(10))

# %% [markdown]
# ## Backtest
# Next-open fills, long only, all-in, with the configured costs, trading from `period_from` (as
# `signals backtest --from`).

# %%
cost_model = resolve_costs(config, costs=costs)
result = run_backtest(run.candles, run.strategy, run.params, timeframe=timeframe,
                      costs=cost_model, since=run.since)  # fmt: skip
print(f"backtest: {int(result.metrics['trades'])} trades, "
      f"total return {result.metrics['total_return']:+.4%}")  # fmt: skip
display(pd.Series(result.metrics, name="value").to_frame())
equity_chart(result.equity, candles["close"], title="Backtest equity").show()
display(result.trades.tail(10))

# %% [markdown]
# ## Sweep
# Every combination of the grid in one vectorised simulation (as `signals sweep`); the heatmap
# shows the best value of the metric for each pair of the two parameters.

# %%
grid = expand_grid(run.strategy, [f"{k}={v}" for k, v in sweep_grid.items()])
sweep = run_sweep(run.candles, run.strategy, grid, timeframe=timeframe, execution=ExecutionModel(),
                  costs=cost_model, progress=False, since=run.since)  # fmt: skip
print(f"{len(grid.combos)} combinations ({grid.skipped} invalid skipped)")
display(sweep.ranked(metric, top=5))
sweep_heatmap(sweep, heatmap[0], heatmap[1], metric).show()
