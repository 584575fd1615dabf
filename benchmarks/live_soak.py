"""Soak the live runner: a month of 1m candles, three clients, a kill -9 (tests/soak.py).

.venv/bin/python benchmarks/live_soak.py [--days 30] [--write-results]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.results import load_average, machine, replace_section  # noqa: E402
from tests.soak import SoakResult, run_soak  # noqa: E402

HEADING = "## Live soak: a month of candles, three clients, a kill -9"


def section(result: SoakResult, days: int) -> str:
    """Return the RESULTS.md section for one soak run."""
    samples = ", ".join(f"{mb:.1f}" for _, mb in result.rss_mb)
    return "\n".join(
        [
            HEADING,
            "",
            f"{time.strftime('%Y-%m-%d')}, {machine()}, load {load_average():.2f}.",
            f"`benchmarks/live_soak.py --days {days}` (the scenario of tests/test_live_soak.py):"
            f" {result.candles:,} 1m candles written one per transaction as fast as the runner"
            " keeps up (the writer waits for the runner every tenth of each half), ema_cross"
            f" 5/20, {result.clients} clients resuming by seq, SIGKILL after candle"
            f" {result.killed_at - 500:,} and an hour of candles written while it is down.",
            "",
            "| figure | value |",
            "|---|---|",
            f"| wall time | {result.seconds:.1f} s |",
            f"| signals per client (scan gives) | {result.signals:,} ({result.expected:,}) |",
            f"| every client equal to scan | {'yes' if result.equal_to_scan else 'NO'} |",
            f"| duplicate seqs | {result.duplicates} |",
            f"| RSS growth after warm-up (second process) | {result.growth_mb:+.1f} MB |",
            f"| RSS samples (MB) | {samples} |",
            f"| exit code after SIGTERM | {result.exit_code} |",
            "",
        ]
    )


def main() -> None:
    """Run the soak once and print (or record) its figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = run_soak(Path(tmp), days=args.days)
    text = section(result, args.days)
    print(text)
    if args.write_results:
        replace_section(HEADING, text)


if __name__ == "__main__":
    main()
