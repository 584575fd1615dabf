"""Sweeps on a real Dask cluster: a scheduler and worker processes started here, as a user would
(``dask scheduler`` / ``dask worker``), equal to the local sweep; a worker killed mid-sweep; the
CLI with ``--cluster local:2``; an unreachable scheduler."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from research.backtest.execution import ExecutionModel
from research.inputs import prepare_run
from research.optimise.chunks import SweepJob
from research.optimise.cluster import ClusterError, _chunk, cluster_chunks, connect, parse_cluster
from research.optimise.grid import expand_grid
from research.optimise.sweep import run_sweep
from signals.costs import CostModel
from signals.data.synth import write_synth_db
from strategies import get_strategy
from tests.candles import random_walk

ROOT = Path(__file__).resolve().parents[1]
CANDLES = random_walk(4000, seed=3)
EMA = get_strategy("ema_cross")
COSTS = CostModel(fee_bps=5.5, slippage_bps=1.0)
LONG = ExecutionModel()
GRID = expand_grid(EMA, ["fast=2:40:2", "slow=10:100:6"])  # 269 valid combinations
KWARGS = {"timeframe": "1m", "execution": LONG, "costs": COSTS, "progress": False}


def sorted_table(table: pd.DataFrame, names: tuple[str, ...]) -> pd.DataFrame:
    return table.sort_values(list(names), kind="stable").reset_index(drop=True)


# The worker configuration the README gives (Scaling out): no MALLOC_TRIM_THRESHOLD_.
DASK_YAML = """distributed:
  nanny:
    pre-spawn-environ:
      MALLOC_TRIM_THRESHOLD_: null
"""


def _start(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    # A session of its own: killing its group kills a `dask worker` and its nanny's child too.
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", *args],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):  # its group is gone already
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


class Cluster:
    """A scheduler and `workers` worker processes (one thread each), killed by the finalizer."""

    def __init__(self, tmp: Path, workers: int) -> None:
        self.procs: list[subprocess.Popen] = []
        file = tmp / "scheduler.json"
        self.procs.append(
            _start(
                [
                    *("distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0"),
                    *("--scheduler-file", str(file), "--no-dashboard"),
                ],
                tmp / "scheduler.log",
            )
        )
        deadline = time.monotonic() + 30
        while not file.exists() or not file.read_text().strip():
            assert time.monotonic() < deadline, (tmp / "scheduler.log").read_text()
            time.sleep(0.1)
        time.sleep(0.2)  # the file is written in one go, but let its writer finish
        self.address = json.loads(file.read_text())["address"]
        (tmp / "dask").mkdir()
        (tmp / "dask" / "signals.yaml").write_text(DASK_YAML)
        for k in range(workers):
            self.procs.append(
                _start(
                    [
                        *("distributed.cli.dask_worker", "--scheduler-file", str(file)),
                        *("--nworkers", "1", "--nthreads", "1", "--no-dashboard"),
                    ],
                    tmp / f"worker{k}.log",
                    env={"DASK_CONFIG": str(tmp / "dask")},
                )
            )

    def close(self) -> None:
        for proc in reversed(self.procs):
            _kill(proc)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One scheduler and two workers for the module (the kill test, last, kills one)."""
    started = Cluster(tmp_path_factory.mktemp("dask"), workers=2)
    try:
        yield started
    finally:
        started.close()


@pytest.fixture(scope="module")
def local():
    return run_sweep(CANDLES, EMA, GRID, chunk_size=8, **KWARGS)


def test_cluster_sweep_equals_the_local_sweep_and_workers_load_the_numba_cache(
    local, cluster: Cluster
) -> None:
    spec = parse_cluster(cluster.address, timeout=30)
    with connect(spec) as client:
        client.wait_for_workers(2, timeout=60)
        result = run_sweep(CANDLES, EMA, GRID, chunk_size=8, cluster=spec, **KWARGS)

        def kernel_cache() -> tuple[int, int]:
            from research.backtest.kernel import equity_metrics_nb, orders_by_column_nb

            stats = [orders_by_column_nb.stats, equity_metrics_nb.stats]
            hits = sum(sum(s.cache_hits.values()) for s in stats)
            return hits, sum(sum(s.cache_misses.values()) for s in stats)

        trims = client.run(os.environ.get, "MALLOC_TRIM_THRESHOLD_")
        # Each worker ran chunks, and loaded the kernels the local sweep compiled from disk.
        caches = client.run(kernel_cache)
    assert result.cluster == cluster.address and result.jobs == 2
    assert len(result.table) == len(GRID.combos) == 269
    names = result.param_names
    pd.testing.assert_frame_equal(
        sorted_table(result.table, names), sorted_table(local.table, names)
    )
    assert len(caches) == 2 and all(hits > 0 and misses == 0 for hits, misses in caches.values())
    assert list(trims.values()) == [None, None]  # the README's worker configuration took


class KillOnFirstResult:
    """A progress bar that SIGKILLs a worker busy with a chunk when the first chunk finishes."""

    def __init__(self, client, cluster: Cluster) -> None:
        self.client, self.cluster = client, cluster
        self.done = 0
        self.at_kill: int | None = None
        self.pids = client.run(os.getpid)  # worker address -> pid

    def update(self, n: int) -> None:
        self.done += n
        if self.at_kill is not None:
            return
        deadline = time.monotonic() + 10
        while not (busy := [a for a, keys in self.client.processing().items() if keys]):
            assert time.monotonic() < deadline, "no chunk running after the first one finished"
            time.sleep(0.01)
        group = os.getpgid(self.pids[busy[0]])
        victim = next(p for p in self.cluster.procs if p.pid == group)
        os.killpg(group, signal.SIGKILL)
        victim.wait(timeout=30)
        self.at_kill = self.done


def test_a_worker_killed_mid_sweep_loses_nothing(local, cluster: Cluster) -> None:
    spec = parse_cluster(cluster.address, timeout=30)
    size = 2  # 135 chunks: a sweep of a few seconds, most of it after the kill
    bounds = [(a, min(a + size, len(GRID.combos))) for a in range(0, len(GRID.combos), size)]
    job = SweepJob(CANDLES, EMA, GRID.combos, "1m", LONG, COSTS)
    with connect(spec) as client:
        client.wait_for_workers(2, timeout=60)
        bar = KillOnFirstResult(client, cluster)
        parts = cluster_chunks(client, job, bounds, bar)
        survivors = len(client.nthreads())
    assert bar.at_kill is not None and bar.at_kill < len(GRID.combos) // 2  # killed mid-sweep
    assert sum(p.returncode == -signal.SIGKILL for p in cluster.procs[1:]) == 1
    assert survivors == 1 and bar.done == len(GRID.combos)
    metrics = pd.concat(parts, ignore_index=True)
    pd.testing.assert_frame_equal(metrics, local.table[metrics.columns].reset_index(drop=True))


def test_a_worker_with_other_code_refuses_the_chunk() -> None:
    job = SweepJob(CANDLES, EMA, GRID.combos, "1m", LONG, COSTS)
    with pytest.raises(ClusterError, match="other code or packages"):
        _chunk(job, 0, 2, "0" * 64)


def _sweep_cli(db: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    args = [
        *("-m", "signals", "sweep", "-s", "ema_cross", "--db", str(db), "-t", "5m"),
        *("--grid", "fast=3:12:3", "--grid", "slow=5:40:5", "--no-progress", "--out", str(out)),
    ]
    return subprocess.run(
        [sys.executable, *args, *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_cluster_local_2_writes_the_local_table(tmp_path: Path) -> None:
    write_synth_db(tmp_path / "data", days=10, seed=2)
    db = tmp_path / "data" / "candles.db"
    ran = _sweep_cli(db, tmp_path / "dask", "--cluster", "local:2", "--chunk-size", "5")
    assert ran.returncode == 0, ran.stderr
    grid = expand_grid(EMA, ["fast=3:12:3", "slow=5:40:5"])
    run = prepare_run(strategy_name="ema_cross", db=db, timeframe="5m", warmup=0)
    want = run_sweep(run.candles, EMA, grid, **{**KWARGS, "timeframe": "5m"}).table
    got = pd.read_parquet(tmp_path / "dask" / "sweep.parquet")
    names = ("threshold", "cooldown", "fast", "slow")
    assert len(got) == 28  # 32 minus 4 with fast >= slow
    pd.testing.assert_frame_equal(sorted_table(got, names), sorted_table(want, names))
    meta = json.loads((tmp_path / "dask" / "sweep.json").read_text())
    assert meta["cluster"] == "local:2" and meta["jobs"] == 2 and meta["seed"] is None
    assert "Traceback" not in ran.stderr


def test_unreachable_scheduler_is_one_line_and_exit_2(tmp_path: Path) -> None:
    write_synth_db(tmp_path / "data", days=2, seed=2)
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    ran = _sweep_cli(
        tmp_path / "data" / "candles.db",
        tmp_path / "out",
        *("--cluster", f"tcp://127.0.0.1:{port}", "--cluster-timeout", "1"),
    )
    assert ran.returncode == 2
    assert time.monotonic() - started < 60
    assert "Traceback" not in ran.stderr
    last = ran.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: cannot reach the Dask scheduler at tcp://127.0.0.1:{port}")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text", ["local:0", "local", "local:x", ""])
def test_bad_cluster_specs_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="expected"):
        parse_cluster(text)


def test_a_scheduler_without_workers_is_a_clear_error(tmp_path: Path) -> None:
    lonely = Cluster(tmp_path, workers=0)
    try:
        spec = parse_cluster(lonely.address, timeout=1)
        with pytest.raises(ClusterError, match="has no worker after 1 s"), connect(spec):
            pass
    finally:
        lonely.close()
