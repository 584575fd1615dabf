"""Sweep benchmark on Dask: 1,000 `ema_cross` combinations, local processes vs a Dask cluster.

Run by ``make bench`` (or ``.venv/bin/python benchmarks/dask_sweep_bench.py --write-results``);
``--quick`` runs 30 days as a smoke test and writes nothing. On the same candles and grid:

1. the local sweep, two forked processes (``signals sweep --jobs 2``);
2. ``--cluster local:2`` end to end: `run_sweep` starts a LocalCluster of two worker processes,
   warms them up, scatters the job, runs the chunks and stops the cluster;
3. a cluster already running (a LocalCluster of two workers started first, addressed by its
   ``tcp://`` address as a ``dask scheduler`` would be): a first sweep (the workers import the
   project and load the numba kernels), then the same sweep again (steady state).

Every table is checked equal to the local one. A thread samples VmRSS of every descendant
process every 50 ms: "peak per worker" is the largest any one worker process reached (pages a
forked worker shares with its parent count in full). Overhead per chunk is the time the two
workers of the steady sweep were not computing a chunk (Dask's task stream), per chunk.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.results import load_average, machine, replace_section

# Heavy imports happen inside `run`: a spawned Dask worker imports this module as __mp_main__,
# and the first sweep on a fresh cluster should pay the workers' imports as a user's would.
HEADING = "## Sweeps on a Dask cluster"
MIB = 2**20


class PeakRss:
    """Sample the VmRSS of every descendant of this process; keep each pid's peak (bytes)."""

    def __init__(self) -> None:
        self.peaks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid, rss in _descendants_rss(os.getpid()).items():
                self.peaks[pid] = max(rss, self.peaks.get(pid, 0))
            time.sleep(0.05)

    def worker_peak(self) -> int:
        """Return the largest peak of one descendant process."""
        return max(self.peaks.values(), default=0)


def _descendants_rss(root: int) -> dict[int, int]:
    out: dict[int, int] = {}
    stack = [root]
    while stack:
        pid = stack.pop()
        try:
            for task in Path(f"/proc/{pid}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
            if pid != root:
                status = Path(f"/proc/{pid}/status").read_text()
                line = next(x for x in status.splitlines() if x.startswith("VmRSS"))
                out[pid] = int(line.split()[1]) * 1024
        except (FileNotFoundError, ProcessLookupError, StopIteration, ValueError):
            continue
    return out


def timed(func: Callable[[], Any]) -> tuple[Any, float, int]:
    """Return the result of `func`, its wall seconds and the peak RSS of one worker."""
    with PeakRss() as rss:
        started = time.perf_counter()
        result = func()
        seconds = time.perf_counter() - started
    return result, seconds, rss.worker_peak()


def run(days: int, combos: int) -> dict[str, Any]:
    """Run the sweeps; return their figures."""
    import dask
    import pandas as pd
    from distributed import Client, LocalCluster

    from benchmarks.scenarios import FEE_BPS, SLIPPAGE_BPS, ema_grid
    from research.backtest.execution import ExecutionModel
    from research.optimise.chunks import SweepJob
    from research.optimise.cluster import _TRIM_KEY, _quiet, parse_cluster
    from research.optimise.grid import expand_grid
    from research.optimise.sweep import run_sweep
    from signals.costs import CostModel
    from signals.data.synth import synth_market
    from strategies import get_strategy

    candles = synth_market(days=days, seed=1)
    strategy = get_strategy("ema_cross")
    grid = expand_grid(strategy, ema_grid(combos))
    kwargs = {
        "timeframe": "1m",
        "execution": ExecutionModel(),
        "costs": CostModel(fee_bps=FEE_BPS, slippage_bps=SLIPPAGE_BPS),
        "progress": False,
    }
    run_sweep(candles.iloc[:2000], strategy, grid.combos[:4], jobs=1, **kwargs)  # numba cache

    def sweep(**extra: Any) -> Any:
        return timed(lambda: run_sweep(candles, strategy, grid, **kwargs, **extra))

    figures: dict[str, Any] = {}
    results = []
    for name, extra in (("local", {"jobs": 2}), ("fresh", {"cluster": parse_cluster("local:2")})):
        result, figures[f"{name}_s"], figures[f"{name}_peak"] = sweep(**extra)
        results.append(result)
    # The running cluster is configured as `--cluster local:N` configures its own (and as the
    # README tells `dask worker` users): without Dask's MALLOC_TRIM_THRESHOLD_.
    with (
        dask.config.set({_TRIM_KEY: None}),
        _quiet("distributed.nanny"),
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as watcher,
    ):
        watcher.get_task_stream()  # installs the scheduler's task-stream recorder
        spec = parse_cluster(cluster.scheduler_address, timeout=120)
        for name in ("first", "steady"):
            since = time.time()
            result, figures[f"{name}_s"], figures[f"{name}_peak"] = sweep(cluster=spec)
            results.append(result)
            chunks = [
                t for t in watcher.get_task_stream(start=since) if t["key"].startswith("_chunk")
            ]
            compute = [
                s["stop"] - s["start"]
                for t in chunks
                for s in t["startstops"]
                if s["action"] == "compute"
            ]
            figures[f"{name}_compute_s"] = sum(compute)
            figures[f"{name}_chunk_max_s"] = max(compute)
            figures[f"{name}_chunk_median_s"] = sorted(compute)[len(compute) // 2]
    figures["trim_off_ms"], figures["trim_on_ms"] = _trim_effect()
    for other in results[1:]:
        pd.testing.assert_frame_equal(other.table, results[0].table)
    chunks = -(-len(grid.combos) // results[0].chunk_size)
    job = SweepJob(candles, strategy, grid.combos, "1m", kwargs["execution"], kwargs["costs"])
    idle = figures["steady_s"] * 2 - figures["steady_compute_s"]  # two single-thread workers
    return {
        **figures,
        "candles": len(candles), "combos": len(grid.combos), "grid": " ".join(ema_grid(combos)),
        "chunk_size": results[0].chunk_size, "chunks": chunks,
        "job_mib": len(pickle.dumps(job, protocol=5)) / MIB,
        "overhead_per_chunk_ms": idle / chunks * 1000,
        "load": load_average(),
    }  # fmt: skip


_TRIM_PROBE = """
import time
from signals.costs import CostModel
from research.backtest.execution import ExecutionModel
from research.optimise.grid import expand_grid
from research.optimise.chunks import SweepJob, chunk_metrics
from signals.data.synth import synth_market
from strategies import get_strategy

candles = synth_market(days=30, seed=1)
strategy = get_strategy("ema_cross")
grid = expand_grid(strategy, ["fast=5:54:1", "slow=60:250:10"])
job = SweepJob(candles, strategy, grid.combos, "1m", ExecutionModel(), CostModel(fee_bps=5.5))
chunk_metrics(job, 0, 2)
times = []
for i in range(5):
    started = time.perf_counter()
    chunk_metrics(job, 64 * i, 64 * (i + 1))
    times.append(time.perf_counter() - started)
print(sorted(times)[2])
"""


def _trim_effect() -> tuple[float, float]:
    """Return the median ms of a 64-combination chunk without and with Dask's malloc trim."""
    import subprocess

    out = []
    for trim in (None, "65536"):
        env = {k: v for k, v in os.environ.items() if k != "MALLOC_TRIM_THRESHOLD_"}
        if trim:
            env["MALLOC_TRIM_THRESHOLD_"] = trim
        ran = subprocess.run(
            [sys.executable, "-c", _TRIM_PROBE],
            env=env,
            cwd=Path(__file__).resolve().parents[1],
            capture_output=True,
            text=True,
            check=True,
        )
        out.append(float(ran.stdout.strip()) * 1000)
    return out[0], out[1]


def section(r: dict[str, Any], command: str) -> str:
    """Return the RESULTS.md section for the figures `r`."""

    busy = (
        f"- The machine was shared during this run (load average {r['load']:.1f} on "
        f"{os.cpu_count()} cores): compare the rows of this section with each other rather "
        "than with other sections' figures.\n"
        if r["load"] > (os.cpu_count() or 1)
        else ""
    )

    def row(name: str, key: str, note: str) -> str:
        return f"| {name} | {r[key + '_s']:.1f} s | {r[key + '_peak'] / MIB:.0f} MiB | {note} |"

    return f"""{HEADING}

`{command}` ({datetime.now(UTC):%Y-%m-%d}, {machine()}; load average {r["load"]:.2f} at the end).
`ema_cross` on {r["candles"]:,} synthetic 1m candles (seed 1), {r["combos"]:,} combinations
(`{r["grid"]}`), {r["chunks"]} chunks of {r["chunk_size"]}, costs 5.5 + 1 bps; the pickled job
(candles, combinations, costs) sent to each Dask worker once: {r["job_mib"]:.1f} MiB. Every
table equals the local one. Wall time is `run_sweep` alone (data generated beforehand, numba's
disk cache warm); peak RSS is the largest of any single worker process, sampled every 50 ms.

| run | wall | peak RSS per worker | what the wall time includes |
|---|---|---|---|
{row("local, 2 forked processes (`--jobs 2`)", "local", "fork, the chunks")}
{row("`--cluster local:2`", "fresh", "start 2 worker processes, their imports and kernels, scatter, chunks, stop")}
{row("running 2-worker cluster, first sweep", "first", "the workers' imports and kernels, scatter, chunks")}
{row("running 2-worker cluster, next sweep", "steady", "scatter, chunks")}

- Overhead per chunk on a running cluster (next sweep): {r["overhead_per_chunk_ms"]:.0f} ms, the
  time the two workers were not computing a chunk (2 x wall minus the chunks' compute time in
  Dask's task stream: connecting, the warm-up call, scatter, scheduling, results), per chunk.
- A chunk computes in {r["steady_chunk_median_s"] * 1000:.0f} ms on a worker (median of the next
  sweep; slowest {r["steady_chunk_max_s"] * 1000:.0f} ms).
- First sweep on the running cluster: the workers' imports (vectorbt, numba, TA-Lib) and the
  loading of the sweep kernels from numba's disk cache happen in a warm-up call before the job
  is scattered; its chunks took {r["first_chunk_median_s"] * 1000:.0f} ms (median; slowest
  {r["first_chunk_max_s"] * 1000:.0f} ms). A worker that joins mid-sweep pays the warm-up in its
  first chunk.
- Dask's default worker setting `MALLOC_TRIM_THRESHOLD_=65536` slows chunks down: 64
  combinations on 30 days in one process, median of 5, {r["trim_off_ms"]:.0f} ms without it and
  {r["trim_on_ms"]:.0f} ms with it. `--cluster local:N` unsets it; the README says how for
  `dask worker`.
{busy}"""  # noqa: E501


def main() -> None:
    """Parse arguments, run, print and optionally record."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="30 days instead of a year")
    parser.add_argument("--write-results", action="store_true", help="update RESULTS.md")
    args = parser.parse_args()
    figures = run(30 if args.quick else 365, 1000)
    text = section(figures, "benchmarks/dask_sweep_bench.py" + (" --quick" if args.quick else ""))
    print(text)
    if args.write_results and not args.quick:
        replace_section(HEADING, text)


if __name__ == "__main__":
    main()
