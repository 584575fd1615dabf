"""Benchmark the bulk checks: candle validation, gap search, PBO (CSCV) and the real-data import.

Each figure is the median of `--repeat` runs (wall seconds, one process). The tests assert what
these functions return on the same inputs; how long they take is measured only here.

    .venv/bin/python benchmarks/checks_bench.py [--repeat 3] [--write-results]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks.results import load_average, machine, replace_section  # noqa: E402
from research.optimise.overfit import probability_of_backtest_overfitting  # noqa: E402
from signals.data.importers import import_files  # noqa: E402
from signals.data.validate import check_frame, find_gaps  # noqa: E402
from tests.candles import random_walk  # noqa: E402

HEADING = "## Validation, overfitting statistics, import"
SHARED_DATA = ROOT.parent / "shared" / "data"
REAL_FILES = ["BTCUSDT-1h-2017-08_2023-06.csv.gz"] + [
    f"BTCUSDT-1m-2023-{m:02d}.csv.gz" for m in (4, 5, 6)
]


def median_seconds(func: Callable[[], object], repeat: int) -> float:
    """Return the median wall time of `repeat` calls of `func`."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        func()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def run(repeat: int) -> dict[str, float | None]:
    """Measure every figure; the import is None when ../shared/data is absent."""
    frame = random_walk(1_000_000, seed=1)  # valid 1m candles, as the store returns them
    returns = np.random.default_rng(11).normal(0.0, 0.01, size=(2000, 200))
    out: dict[str, float | None] = {
        "check_frame_1m_rows_s": median_seconds(
            lambda: check_frame(frame, timeframe="1m", symbol="BTCUSDT", origin="bench"), repeat
        ),
        "find_gaps_1m_rows_s": median_seconds(lambda: find_gaps(frame, "1m"), repeat),
        "pbo_2000x200_s16_s": median_seconds(
            lambda: probability_of_backtest_overfitting(returns, n_splits=16), repeat
        ),
        "import_real_s": None,
    }
    files = [SHARED_DATA / name for name in REAL_FILES]
    if all(path.exists() for path in files):

        def import_once() -> None:
            with tempfile.TemporaryDirectory() as tmp:
                import_files(files, db=Path(tmp) / "candles.db", progress=False)

        out["import_real_s"] = median_seconds(import_once, repeat)
    return out


def section(r: dict[str, float | None], repeat: int) -> str:
    """Return the RESULTS.md section for `r`."""
    imported = (
        f"{r['import_real_s']:.1f} s"
        if r["import_real_s"] is not None
        else f"not measured: {SHARED_DATA} is absent"
    )
    return f"""{HEADING}

`.venv/bin/python benchmarks/checks_bench.py --write-results` ({time.strftime("%Y-%m-%d")},
{machine()}; load average {load_average():.2f} at the end). Median of {repeat} runs, one process.

| figure | wall time |
|---|---|
| `check_frame` on 1,000,000 clean 1m candles (every check) | {r["check_frame_1m_rows_s"]:.2f} s |
| `find_gaps` on the same candles | {r["find_gaps_1m_rows_s"]:.2f} s |
| PBO by CSCV, 2,000 periods x 200 trials, S = 16 | {r["pbo_2000x200_s16_s"]:.2f} s |
| import of the real BTCUSDT files (51,324 hourly + 131,040 1m candles) | {imported} |
"""


def main() -> None:
    """Parse arguments, run, print (and optionally record) the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--write-results", action="store_true", help="update RESULTS.md")
    args = parser.parse_args()
    text = section(run(args.repeat), args.repeat)
    print(text)
    if args.write_results:
        replace_section(HEADING, text)


if __name__ == "__main__":
    main()
