"""Parameter sweeps: every combination is a column of a chunk's BUY/SELL matrices.

`run_sweep` evaluates a list of parameter sets (see `research.optimise.grid`) on the same candles,
in chunks of combinations (`research.optimise.chunks`): each chunk computes its combinations'
signals with a shared indicator memo, simulates them as the columns of one BUY/SELL matrix
pair and reduces the order records to the metrics.

Chunks bound memory: their width is chosen from the candle count and the simulation path so
that one chunk's matrices and working arrays stay near `CHUNK_BUDGET_BYTES`. With ``jobs > 1``
chunks run in forked worker processes that share the candles copy-on-write and return only the
small metric rows. With a `research.optimise.cluster.ClusterSpec` the same chunks run on a Dask
cluster instead (see that module). Column k of a sweep equals
`research.backtest.run.run_backtest` with the k-th parameters.

The sweep table has the parameter columns (every field of the strategy's ``Params``), then the
metric columns named as in `research.backtest.metrics.METRIC_KEYS`. ``cost_break_even_bps`` is left
out: it needs a bisection of ~17 simulations per combination (run a backtest for it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import multiprocessing
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from research.backtest.execution import ExecutionModel
from research.backtest.metrics import METRIC_KEYS
from research.optimise.chunks import SweepJob, chunk_metrics, simulation_path
from research.optimise.grid import Grid
from signals.costs import CostModel
from signals.warmup import start_position
from strategies import Strategy

if TYPE_CHECKING:
    from distributed import Client

    from research.optimise.cluster import ClusterSpec

# Memory one chunk may use, and what a (candle, combination) cell costs at the peak of a chunk.
# The usual path keeps the BUY/SELL matrices and their fill-time copies (~4 B) and simulates
# column by column over signal candles only. Stops need every candle in one simulation (call
# sequence, copies: ~16 B). Funding goes through a full vectorbt Portfolio, whose candles x
# columns float64 arrays and DataFrame wraps under pandas 3 cost ~112 B. Measured: see
# benchmarks/RESULTS.md. Wider chunks than MAX_CHUNK gain nothing and coarsen the progress bar.
CHUNK_BUDGET_BYTES = 2**30
BYTES_PER_CELL = {"signals": 6, "stops": 16, "portfolio": 112}
MAX_CHUNK = 64


@dataclass(frozen=True)
class SweepResult:
    """The sweep table (one row per combination: parameters, then metrics) and its provenance."""

    table: pd.DataFrame
    param_names: tuple[str, ...]
    strategy: str
    timeframe: str
    execution: ExecutionModel
    costs: CostModel
    candles: int
    first_candle: pd.Timestamp | None
    last_candle: pd.Timestamp | None
    elapsed: float
    chunk_size: int
    jobs: int
    skipped: int = 0
    grid: tuple[str, ...] = ()
    cluster: str | None = None  # the Dask cluster the chunks ran on (``--cluster``), if any

    def ranked(self, metric: str = "sharpe", top: int | None = None) -> pd.DataFrame:
        """Return the rows sorted by `metric`, best first (NaN last), optionally the top N."""
        if metric not in self.table.columns:
            raise KeyError(f"unknown metric {metric!r}; one of {', '.join(METRIC_KEYS)}")
        ascending = metric in LOWER_IS_BETTER
        ordered = self.table.sort_values(
            metric, ascending=ascending, na_position="last", kind="stable"
        )
        return ordered if top is None else ordered.head(top)


# Metrics where smaller is better (ranking sorts them ascending).
LOWER_IS_BETTER = frozenset({"max_drawdown_days", "fees_paid"})


_WORKER_JOB: SweepJob | None = None  # set in the parent just before forking workers


def auto_chunk_size(
    n_candles: int, *, path: str = "signals", budget_bytes: int = CHUNK_BUDGET_BYTES
) -> int:
    """Return how many combinations one chunk holds so it stays near `budget_bytes`."""
    cell = BYTES_PER_CELL[path]
    return int(np.clip(budget_bytes // max(1, n_candles * cell), 1, MAX_CHUNK))


def run_sweep(
    candles: pd.DataFrame,
    strategy: Strategy,
    combos: Sequence[Any] | Grid,
    *,
    timeframe: str,
    execution: ExecutionModel,
    costs: CostModel,
    chunk_size: int | None = None,
    jobs: int = 1,
    progress: bool = True,
    since: pd.Timestamp | None = None,
    cluster: ClusterSpec | None = None,
    bar: Any | None = None,
    client: Client | None = None,
) -> SweepResult:
    """Backtest every parameter set in `combos` on `candles`; return one row per combination.

    `combos` is a list of the strategy's ``Params`` or a `research.optimise.grid.Grid` (whose
    skipped count and specs are then recorded). ``jobs > 1`` runs chunks in that many forked
    processes.
    With `since`, the candles before it only warm up the signals (as in `run_backtest`).
    With `cluster`, the chunks run on that Dask cluster (`jobs` is then its worker threads).
    `bar` (an open progress display) and `client` (connected to `cluster`) are then used as is.
    """
    from signals.progress import progress as progress_display

    started = time.perf_counter()
    grid = combos if isinstance(combos, Grid) else None
    combo_list = list(grid.combos if grid else combos)
    first = start_position(candles.index, since)
    period = candles.iloc[first:]
    if len(period) < 2:
        raise ValueError("a sweep needs at least 2 candles")
    size = chunk_size or auto_chunk_size(len(candles), path=simulation_path(execution, costs))
    bounds = [(a, min(a + size, len(combo_list))) for a in range(0, len(combo_list), size)]
    job = SweepJob(candles, strategy, combo_list, timeframe, execution, costs, first)
    with contextlib.ExitStack() as stack:
        if cluster is not None and client is None:
            from research.optimise.cluster import connect

            client = stack.enter_context(connect(cluster))
        if bar is None:  # a bar on a terminal, plain lines in a log (signals.progress)
            shown = {"desc": "sweep", "unit": "combo", "enabled": progress, "smoothing": 0.1}
            bar = stack.enter_context(progress_display(len(combo_list), **shown))
        if client is not None:
            from research.optimise.cluster import cluster_chunks, worker_threads

            jobs = worker_threads(client)
            parts = cluster_chunks(client, job, bounds, bar)
        else:
            jobs = max(1, min(jobs, len(bounds), os.cpu_count() or 1))
            parts = _run_chunks(job, bounds, jobs, bar)
    names = tuple(f.name for f in dataclasses.fields(strategy.Params))
    params = pd.DataFrame([dataclasses.asdict(p) for p in combo_list], columns=list(names))
    metrics = (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame(columns=list(METRIC_KEYS), dtype="float64")
    )
    table = pd.concat([params, metrics], axis=1)
    return SweepResult(
        table=table,
        param_names=names,
        strategy=strategy.name,
        timeframe=timeframe,
        execution=execution,
        costs=costs,
        candles=len(period),
        first_candle=period.index[0],
        last_candle=period.index[-1],
        elapsed=time.perf_counter() - started,
        chunk_size=size,
        jobs=jobs,
        skipped=grid.skipped if grid else 0,
        grid=tuple(s.text for s in grid.specs) if grid else (),
        cluster=None if cluster is None else cluster.text,
    )


def _run_chunks(job: SweepJob, bounds: list[tuple[int, int]], jobs: int, bar: Any) -> list:
    parts: list[pd.DataFrame | None] = [None] * len(bounds)
    if jobs == 1 or "fork" not in multiprocessing.get_all_start_methods():
        for i, (start, stop) in enumerate(bounds):
            parts[i] = chunk_metrics(job, start, stop)
            bar.update(stop - start)
        return parts
    # Compile (or load from numba's disk cache) every kernel a chunk uses once, here, so the
    # forked workers inherit them instead of each doing it; the stops and funding paths call
    # vectorbt's uncached simulate_from_signals_nb, which only compiles in-process.
    # Two columns, so the arrays have the chunks' memory layout (one column is also C-ordered).
    warm = dataclasses.replace(job, candles=job.candles.iloc[:64], combos=job.combos[:2], first=0)
    chunk_metrics(warm, 0, len(warm.combos))
    global _WORKER_JOB
    _WORKER_JOB = job  # forked workers inherit it: the candles are shared, never pickled
    try:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            futures = {pool.submit(_worker_chunk, a, b): i for i, (a, b) in enumerate(bounds)}
            for future in as_completed(futures):
                i = futures[future]
                parts[i] = future.result()
                bar.update(bounds[i][1] - bounds[i][0])
    finally:
        _WORKER_JOB = None
    return parts


def _worker_chunk(start: int, stop: int) -> pd.DataFrame:
    assert _WORKER_JOB is not None, "worker started without a job (fork start method needed)"
    return chunk_metrics(_WORKER_JOB, start, stop)


def sweep_metadata(result: SweepResult) -> dict[str, Any]:
    """Return the JSON-ready provenance of a sweep (written as ``sweep.json``)."""

    def iso(ts: pd.Timestamp | None) -> str | None:
        return None if ts is None else ts.isoformat()

    costs = result.costs
    dump = getattr(costs, "model_dump", None)
    return {
        "strategy": result.strategy,
        "timeframe": result.timeframe,
        "grid": list(result.grid),
        "param_names": list(result.param_names),
        "metrics": list(METRIC_KEYS),
        "costs": dump(mode="json") if dump else dataclasses.asdict(costs),
        "execution": dataclasses.asdict(result.execution),
        "data": {
            "candles": result.candles,
            "first_candle": iso(result.first_candle),
            "last_candle": iso(result.last_candle),
        },
        "rows": len(result.table),
        "skipped_combinations": result.skipped,
        "seed": None,  # a grid sweep draws nothing at random
        "elapsed_seconds": round(result.elapsed, 3),
        "chunk_size": result.chunk_size,
        "jobs": result.jobs,
        "cluster": result.cluster,
    }


def write_sweep(result: SweepResult, out_dir: Path) -> dict[str, Path]:
    """Write ``sweep.parquet``, ``sweep.csv`` and ``sweep.json`` into `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "parquet": out_dir / "sweep.parquet",
        "csv": out_dir / "sweep.csv",
        "json": out_dir / "sweep.json",
    }
    result.table.to_parquet(paths["parquet"], index=False)
    result.table.to_csv(paths["csv"], index=False)
    text = json.dumps(sweep_metadata(result), indent=2, allow_nan=False, default=str)
    paths["json"].write_text(text + "\n", encoding="utf-8")
    return paths


def sweep_heatmap(result: SweepResult, x: str, y: str, metric: str = "sharpe") -> Any:
    """Return a plotly heatmap of `metric` over parameters `x` and `y`.

    When other parameters vary too, each cell shows the best value over them (the maximum; the
    minimum for metrics where lower is better): "how good can (x, y) get". The same figure as
    the sweep report's (`research.render.sweep_figures.pair_heatmap`), over every combination.
    """

    table = result.table
    for name in (x, y):
        if name not in result.param_names:
            raise KeyError(f"{name!r} is not a parameter ({', '.join(result.param_names)})")
    if metric not in table.columns:
        raise KeyError(f"unknown metric {metric!r}; one of {', '.join(METRIC_KEYS)}")
    from research.render.sweep_figures import pair_heatmap  # the sweep report's heatmap

    figure = pair_heatmap(table, x, y, metric)
    return figure.update_layout(
        title_text=f"{result.strategy} {result.timeframe}: {figure.layout.title.text}"
    )


def write_heatmap(result: SweepResult, x: str, y: str, metric: str, out_dir: Path) -> Path:
    """Write `sweep_heatmap` as self-contained HTML (plotly.js inline) to ``heatmap_<x>_<y>``."""
    path = Path(out_dir) / f"heatmap_{x}_{y}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_heatmap(result, x, y, metric).write_html(path, include_plotlyjs=True, full_html=True)
    return path
