"""Walk-forward on a shared PostgreSQL storage: `scalping`, a year of 1m, 1 and 2 processes.

Run by ``make bench`` (or ``.venv/bin/python benchmarks/walkforward_shared_bench.py
--write-results``); ``--quick`` runs 2 folds x 5 trials on 30 days as a smoke test. A PostgreSQL
server is started for it as the tests start theirs (tests/pgserver.py; ``make postgresql``).
The same run is timed in memory (one process), then on PostgreSQL with one process and with
two; each process imports everything, compiles numba's kernels (a small warm-up run) and
generates the candles before a barrier, so the times are of the walk-forward alone.
Overhead per trial = (PostgreSQL, 1 process - in memory) / trials.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import queue
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.results import load_average, machine, replace_section

HEADING = "## Walk-forward on a shared PostgreSQL storage"


def _worker(url: str | None, days: int, folds: int, trials: int, barrier: Any, out: Any) -> None:
    from research.optimise.outputs import frozen_from_run, overfitting
    from research.optimise.storage import open_storage
    from research.optimise.walkforward import WalkForwardConfig, run_walkforward
    from signals.data.synth import synth_market
    from signals.errors import SignalsError
    from strategies import get_strategy

    candles = synth_market(days=days, seed=1)
    config = WalkForwardConfig(folds=folds, trials=trials, min_trades=5, seed=42)
    warm = WalkForwardConfig(folds=2, trials=2, min_trades=0, seed=1)  # numba compiles here
    with contextlib.suppress(SignalsError):  # a warm-up fold without a valid trial is fine
        run_walkforward(candles.iloc[:20_000], get_strategy("scalping"), timeframe="1m",
                        config=warm, storage=None, run="warm", progress=False)  # fmt: skip
    start = time.perf_counter()
    storage = open_storage(url)  # connect; the first process creates optuna's tables
    opened = time.perf_counter() - start
    barrier.wait()
    start = time.perf_counter()
    result = run_walkforward(candles, get_strategy("scalping"), timeframe="1m", config=config,
                             storage=storage, run="bench", progress=False)  # fmt: skip
    seconds = time.perf_counter() - start
    stats = overfitting(result)
    frozen = frozen_from_run(result, stats, symbol="BTCUSDT", source="synth")
    out.put({"seconds": seconds, "opened": opened, "params_id": frozen.params_id,
             "trials": result.trials_run, "candles": len(candles)})  # fmt: skip


def timed(url: str | None, processes: int, days: int, folds: int, trials: int) -> list[dict]:
    """Run `processes` workers on `url` together; return what each reported."""
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(processes), ctx.Queue()
    workers = [ctx.Process(target=_worker, args=(url, days, folds, trials, barrier, out))
               for _ in range(processes)]  # fmt: skip
    for w in workers:
        w.start()
    reports: list[dict] = []
    while len(reports) < processes:
        try:
            reports.append(out.get(timeout=5))
        except queue.Empty:
            if any(w.exitcode not in (None, 0) for w in workers):
                for w in workers:
                    w.kill()
                raise RuntimeError("a benchmark process failed (its traceback is above)") from None
    for w in workers:
        w.join()
    return reports


def run(days: int, folds: int, trials: int) -> dict[str, Any]:
    """Time in memory, then PostgreSQL with 1 and 2 processes."""
    import pytest

    from tests.pgserver import start_server

    try:
        server = start_server()
    except pytest.skip.Exception as exc:
        raise SystemExit(f"no PostgreSQL server for the benchmark: {exc}") from exc
    try:
        memory = timed(None, 1, days, folds, trials)[0]
        one = timed(server.url("bench1"), 1, days, folds, trials)[0]
        two = timed(server.url("bench2"), 2, days, folds, trials)
    finally:
        server.stop()
    wall_two = max(r["seconds"] for r in two)
    return {
        "days": days, "candles": one["candles"], "folds": folds, "trials": trials,
        "memory": memory, "one": one, "two": two, "wall_two": wall_two,
        "speedup": one["seconds"] / wall_two,
        "overhead_ms": 1000 * (one["seconds"] - memory["seconds"]) / one["trials"],
        "load": load_average(),
    }  # fmt: skip


def section(r: dict[str, Any], command: str) -> str:
    """Return the RESULTS.md section for the figures `r`."""
    two = r["two"]
    same = "the same" if two[0]["params_id"] == two[1]["params_id"] else "DIFFERENT"
    equal = "equal to" if r["one"]["params_id"] == r["memory"]["params_id"] else "DIFFERENT from"
    return f"""{HEADING}

`{command}` ({datetime.now(UTC):%Y-%m-%d}, {machine()}; load average {r["load"]:.2f} at the end).
`scalping` on {r["candles"]:,} synthetic 1m candles ({r["days"]} days, seed 1), {r["folds"]}
rolling folds x {r["trials"]} optuna trials (TPE, seed 42), PostgreSQL 15 on the same machine
(a local server, so network latency is not in these figures). Times are of `run_walkforward`
alone (each process has imported everything, compiled numba's kernels on a small warm-up run and
generated the candles before a barrier).

| figure | value |
|---|---|
| in memory, 1 process | {r["memory"]["seconds"]:.1f} s ({r["memory"]["trials"]} trials) |
| PostgreSQL, 1 process | {r["one"]["seconds"]:.1f} s ({r["one"]["trials"]} trials) |
| PostgreSQL, 2 processes (wall) | {r["wall_two"]:.1f} s ({two[0]["trials"]} trials) |
| speed-up, 2 processes vs 1 | {r["speedup"]:.2f} x |
| storage overhead per trial (PostgreSQL - in memory, 1 process) | {r["overhead_ms"]:.0f} ms |
| connecting, creating optuna's tables (once, not in the above) | {r["one"]["opened"]:.1f} s |

One process on PostgreSQL: params_id {r["one"]["params_id"]}, {equal} the in-memory run's.
Two processes: {same} params_id in both ({two[0]["params_id"]}, {two[1]["params_id"]}), which
may differ from the one-process run (concurrent TPE suggestions; README "Scaling out").
The machine has {os.cpu_count()} cores: two processes and the server share them. A load average
above that count means other processes shared the machine too; the figures are then pessimistic.
A process waits on the database for each of its dozen storage calls per trial; two processes
overlap that waiting, so the speed-up over one process on PostgreSQL can reach or pass 2.
"""


def main() -> None:
    """Parse arguments, run, print and optionally record."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 folds x 5 trials on 30 days")
    parser.add_argument("--write-results", action="store_true", help="update RESULTS.md")
    args = parser.parse_args()
    days, folds, trials = (30, 2, 5) if args.quick else (365, 6, 100)
    figures = run(days, folds, trials)
    name = "benchmarks/walkforward_shared_bench.py" + (" --quick" if args.quick else "")
    text = section(figures, name)
    print(text)
    if args.write_results and not args.quick:
        replace_section(HEADING, text)


if __name__ == "__main__":
    main()
