"""Sweeps: column k equals a single backtest; chunking, workers and the indicator memo change
nothing; outputs, heatmap and the CLI."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from research.backtest.execution import ExecutionModel, simulate
from research.backtest.metrics import METRIC_KEYS
from research.backtest.run import portfolio_metrics, run_backtest
from research.optimise.chunks import orders_table
from research.optimise.grid import expand_grid
from research.optimise.sweep import run_sweep, sweep_heatmap, write_heatmap, write_sweep
from signals.costs import CostModel
from signals.data.synth import write_synth_db
from strategies import get_strategy
from strategies import indicators as ind
from tests.candles import random_walk

CANDLES = random_walk(3000, seed=11)
EMA = get_strategy("ema_cross")
SCALPING = get_strategy("scalping")
COSTS = CostModel(fee_bps=5.5, slippage_bps=1.0)
LONG = ExecutionModel()
GRID = expand_grid(EMA, ["fast=3:15:4", "slow=5:45:8"])


def assert_metrics_equal(got: pd.Series | dict, want: pd.Series | dict) -> None:
    for key in METRIC_KEYS:
        a, b = float(got[key]), float(want[key])
        assert (np.isnan(a) and np.isnan(b)) or np.isclose(a, b, rtol=1e-9, atol=1e-12), (
            key,
            a,
            b,
        )


@pytest.fixture(scope="module")
def sweep():
    return run_sweep(
        CANDLES, EMA, GRID, timeframe="1m", execution=LONG, costs=COSTS, progress=False
    )


def test_table_has_params_then_metrics_one_row_per_combination(sweep) -> None:
    assert len(sweep.table) == len(GRID.combos) > 10
    assert list(sweep.table.columns) == ["threshold", "cooldown", "fast", "slow", *METRIC_KEYS]
    assert sweep.skipped == GRID.skipped > 0
    assert (sweep.table["fast"] < sweep.table["slow"]).all()


@pytest.mark.parametrize("k", [0, 5, 11, -1])
def test_column_k_equals_a_single_backtest(sweep, k: int) -> None:
    params = GRID.combos[k]
    row = sweep.table.iloc[k]
    assert (row["fast"], row["slow"]) == (params.fast, params.slow)
    single = run_backtest(CANDLES, EMA, params, timeframe="1m", execution=LONG, costs=COSTS)
    assert single.metrics["trades"] > 0
    assert_metrics_equal(row, single.metrics)


def test_scalping_both_directions_with_stops_equals_single_backtests() -> None:
    grid = expand_grid(SCALPING, ["ema_fast=5,9", "threshold=0.4,0.6", "cooldown=0,10"])
    execution = ExecutionModel(direction="both", stop_loss=0.01, take_profit=0.02)
    result = run_sweep(
        CANDLES, SCALPING, grid, timeframe="1m", execution=execution, costs=COSTS, progress=False
    )
    for k in (0, 3, 7):
        single = run_backtest(
            CANDLES, SCALPING, grid.combos[k], timeframe="1m", execution=execution, costs=COSTS
        )
        assert single.metrics["trades"] > 0
        assert_metrics_equal(result.table.iloc[k], single.metrics)


def test_fast_metrics_equal_the_reference_on_a_multi_column_portfolio() -> None:
    rng = np.random.default_rng(5)
    buy = pd.DataFrame(rng.random((len(CANDLES), 6)) < 0.01, index=CANDLES.index)
    sell = pd.DataFrame(rng.random((len(CANDLES), 6)) < 0.01, index=CANDLES.index)
    buy[5] = False  # a column that never trades
    execution = ExecutionModel(direction="both", stop_loss=0.005)
    pf = simulate(CANDLES, buy, sell, execution=execution, costs=COSTS, timeframe="1m")
    close = CANDLES["close"].to_numpy()
    fast = orders_table(pf.order_records, close, "1m", 6, init_cash=execution.init_cash)
    reference = portfolio_metrics(pf, CANDLES, "1m")
    for k in range(6):
        assert_metrics_equal(fast.iloc[k], reference.iloc[k])


def test_chunked_and_parallel_sweeps_equal_the_single_chunk(sweep) -> None:
    kwargs = {"timeframe": "1m", "execution": LONG, "costs": COSTS, "progress": False}
    chunked = run_sweep(CANDLES, EMA, GRID, chunk_size=4, **kwargs)
    parallel = run_sweep(CANDLES, EMA, GRID, chunk_size=5, jobs=2, **kwargs)
    assert chunked.chunk_size == 4 and parallel.jobs == 2
    pd.testing.assert_frame_equal(chunked.table, sweep.table)
    pd.testing.assert_frame_equal(parallel.table, sweep.table)


def test_indicator_cache_gives_identical_signals_and_computes_once() -> None:
    params = SCALPING.params({"cooldown": 0})
    plain = SCALPING.signals(CANDLES, params)
    with ind.indicator_cache():
        first = SCALPING.signals(CANDLES, params)
        memo = ind._CACHE.get()
        assert memo is not None
        size = len(memo)
        again = SCALPING.signals(CANDLES, params)
        assert len(memo) == size > 0  # the second call computed nothing new
        a, b = ind.ema(CANDLES["close"], 9), ind.ema(CANDLES["close"], 9)
        assert a is not b and a.equals(b)
    assert ind._CACHE.get() is None
    for frame in (first, again):
        for field in ("buy", "sell", "buy_score", "sell_score"):
            pd.testing.assert_series_equal(getattr(frame, field), getattr(plain, field))
        pd.testing.assert_frame_equal(frame.buy_rules, plain.buy_rules)


def test_ranking_puts_nan_last() -> None:
    result = run_sweep(
        CANDLES.iloc[:300],
        EMA,
        expand_grid(EMA, ["fast=2,3", "slow=150,290"]),
        timeframe="1m",
        execution=LONG,
        costs=COSTS,
        progress=False,
    )
    ranked = result.ranked("sharpe")
    values = ranked["sharpe"].to_numpy()
    assert np.isnan(values[-1])  # slow=290: no signal after its warm-up, so no trades
    finite = values[~np.isnan(values)]
    assert (np.diff(finite) <= 0).all()
    assert len(result.ranked("sharpe", top=1)) == 1


def test_outputs_are_written_and_readable(sweep, tmp_path: Path) -> None:
    paths = write_sweep(sweep, tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"sweep.parquet", "sweep.csv", "sweep.json"}
    pd.testing.assert_frame_equal(pd.read_parquet(paths["parquet"]), sweep.table)
    csv = pd.read_csv(paths["csv"])
    assert list(csv.columns) == list(sweep.table.columns)
    np.testing.assert_allclose(csv["sharpe"], sweep.table["sharpe"], rtol=1e-12)
    meta = json.loads(paths["json"].read_text())
    assert meta["strategy"] == "ema_cross" and meta["timeframe"] == "1m"
    assert meta["grid"] == ["fast=3:15:4", "slow=5:45:8"]
    assert meta["rows"] == len(sweep.table) and meta["skipped_combinations"] == GRID.skipped
    assert meta["seed"] is None and meta["elapsed_seconds"] >= 0
    assert meta["costs"]["fee_bps"] == 5.5 and meta["execution"]["direction"] == "long"
    assert meta["data"]["candles"] == len(CANDLES)


def test_heatmap_html_is_self_contained_and_holds_the_data(sweep, tmp_path: Path) -> None:
    figure = sweep_heatmap(sweep, "fast", "slow", "sharpe")
    z = np.asarray(figure.data[0].z, dtype="float64")
    want = sweep.table.pivot_table(index="slow", columns="fast", values="sharpe", aggfunc="max")
    np.testing.assert_allclose(z, want.to_numpy(), equal_nan=True)
    path = write_heatmap(sweep, "fast", "slow", "sharpe", tmp_path)
    html = path.read_text()
    assert path.name == "heatmap_fast_slow.html"
    assert "plotly.js v" in html or "Plotly" in html[:200_000]  # the bundle is inline
    assert '<script src="https://cdn.plot.ly' not in html
    assert '"x":["3","7","11","15"]' in html and '"y":["5","13","21","29","37","45"]' in html
    # plotly stores z as base64 float64 inside the page: decode it and compare with the table
    match = re.search(r'"z":\{"dtype":"f8","bdata":("[^"]*")', html)
    assert match is not None
    raw = base64.b64decode(json.loads(match.group(1)))
    np.testing.assert_allclose(np.frombuffer(raw).reshape(z.shape), want, equal_nan=True)
    with pytest.raises(KeyError, match="not a parameter"):
        sweep_heatmap(sweep, "fast", "sharpe")


def test_cli_sweep_in_a_subprocess(tmp_path: Path) -> None:
    write_synth_db(tmp_path / "data", days=10, seed=2)
    out = tmp_path / "out"
    code = "import typer; from signals.cli.sweep import sweep_command; typer.run(sweep_command)"
    args = [
        *("--strategy", "ema_cross", "--db", str(tmp_path / "data" / "candles.db")),
        *("--timeframe", "5m", "--grid", "fast=3:9:3", "--grid", "slow=5,10,20"),
        *("--metric", "total_return", "--top", "3", "--out", str(out)),
        *("--heatmap", "fast,slow", "--jobs", "2", "--no-progress", "--fee-bps", "2"),
    ]
    result = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "top 3 of 7 by total_return" in result.stdout
    assert "(2 invalid skipped)" in result.stderr
    table = pd.read_parquet(out / "sweep.parquet")
    assert len(table) == 7
    meta = json.loads((out / "sweep.json").read_text())
    assert meta["costs"]["fee_bps"] == 2.0 and meta["skipped_combinations"] == 2
    assert (out / "heatmap_fast_slow.html").exists()
    bad = subprocess.run(
        [sys.executable, "-c", code, *args[:8], "--grid", "fats=3"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode != 0
    assert "did you mean 'fast'" in bad.stderr + bad.stdout


def test_since_warms_up_on_earlier_candles_in_sweeps_and_backtests() -> None:
    since = CANDLES.index[700]
    grid = expand_grid(EMA, ["fast=5,9", "slow=60,90"])
    kwargs = {"timeframe": "1m", "execution": LONG, "costs": COSTS}
    warmed = run_sweep(CANDLES, EMA, grid, progress=False, since=since, **kwargs)
    assert warmed.candles == len(CANDLES) - 700 and warmed.first_candle == since
    for k, params in enumerate(grid.combos):
        full = EMA.signals(CANDLES, params)
        single = run_backtest(CANDLES, EMA, params, since=since, **kwargs)
        # the period's signals are full history's, including its first lookback candles
        pd.testing.assert_series_equal(single.signals.buy, full.buy.iloc[700:])
        pd.testing.assert_series_equal(single.signals.sell, full.sell.iloc[700:])
        assert single.equity.index[0] == since
        assert_metrics_equal(warmed.table.iloc[k], single.metrics)
    # without the warm-up the first lookback candles after `since` could not signal
    params = grid.combos[0]
    lookback = EMA.lookback(params)
    cold = EMA.signals(CANDLES.iloc[700:], params)
    full = EMA.signals(CANDLES, params)
    assert not (cold.buy.iloc[: lookback - 1] | cold.sell.iloc[: lookback - 1]).any()
    assert (full.buy.iloc[700 : 699 + lookback] | full.sell.iloc[700 : 699 + lookback]).any()
