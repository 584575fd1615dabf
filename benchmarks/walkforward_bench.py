"""Walk-forward benchmark: `scalping` on a year of 1m candles, 6 folds x 100 trials.

Run by ``make bench`` (or ``.venv/bin/python benchmarks/walkforward_bench.py --write-results``);
``--quick`` runs 2 folds x 5 trials on 30 days as a smoke test. Wall time, trials per second and
peak memory (ru_maxrss of this process) are recorded in benchmarks/RESULTS.md. Target: under
10 minutes on this 2-core machine.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.results import load_average, machine, replace_section
from research.optimise.outputs import overfitting
from research.optimise.walkforward import WalkForwardConfig, run_walkforward
from signals.data.synth import synth_market
from strategies import get_strategy

HEADING = "## Walk-forward"


def run(days: int, folds: int, trials: int) -> dict[str, float]:
    """Run the walk-forward once and return its figures."""
    candles = synth_market(days=days, seed=1)
    strategy = get_strategy("scalping")
    config = WalkForwardConfig(folds=folds, trials=trials, min_trades=5, seed=42)
    with tempfile.TemporaryDirectory() as tmp:
        storage = f"sqlite:///{Path(tmp) / 'optuna.db'}"
        start = time.perf_counter()
        result = run_walkforward(candles, strategy, timeframe="1m", config=config,
                                 storage=storage, run="bench", progress=True)  # fmt: skip
        tuned = time.perf_counter() - start
        stats = overfitting(result)
        total = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB
    return {
        "candles": len(candles), "folds": folds, "trials": result.trials_run,
        "seconds": total, "tuning_seconds": tuned, "trials_per_s": result.trials_run / tuned,
        "peak_mib": peak, "pbo": stats.pbo.pbo if stats.pbo else float("nan"),
        "load": load_average(),
    }  # fmt: skip


def section(r: dict[str, float], command: str) -> str:
    """Return the RESULTS.md section for the figures `r`."""
    verdict = "met" if r["seconds"] < 600 else "NOT met"
    return f"""{HEADING}

`{command}` ({datetime.now(UTC):%Y-%m-%d}, {machine()}; load average {r["load"]:.2f} at the end).
`scalping` on {r["candles"]:,} synthetic 1m candles (a year, seed 1), {r["folds"]} rolling folds
(train = 3 x test), {r["trials"]} optuna trials in all (TPE, seed 42, one job), costs 5.5 + 1 bps,
SQLite storage; then the ledger, DSR and PBO.

| figure | value |
|---|---|
| wall time, end to end | {r["seconds"]:.1f} s |
| of which tuning + test runs | {r["tuning_seconds"]:.1f} s |
| trials per second | {r["trials_per_s"]:.2f} |
| peak memory (RSS) | {r["peak_mib"]:.0f} MiB |

Target under 10 minutes: {verdict}.
"""


def main() -> None:
    """Parse arguments, run, print and optionally record."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 folds x 5 trials on 30 days")
    parser.add_argument("--write-results", action="store_true", help="update RESULTS.md")
    args = parser.parse_args()
    days, folds, trials = (30, 2, 5) if args.quick else (365, 6, 100)
    figures = run(days, folds, trials)
    text = section(figures, "benchmarks/walkforward_bench.py" + (" --quick" if args.quick else ""))
    print(text)
    if args.write_results and not args.quick:
        replace_section(HEADING, text)


if __name__ == "__main__":
    main()
