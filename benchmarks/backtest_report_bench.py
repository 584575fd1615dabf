"""Benchmark the backtest report on a year of 1m candles: build time, file size, page load.

A year of seeded synthetic 1m candles (525,600) is backtested once per strategy; the figures are
the report's own build (`write_backtest_report`, median of `--repeat`), the HTML file's size and,
when Debian's chromium is installed, the page's load in headless Chromium (until the `load`
event, every chart drawn). The report draws such a history as an OHLC overview (at most
`MAX_CANDLES` candles) and leaves markers out above `MAX_MARKERS` of a kind, both stated on the
page.

    .venv/bin/python benchmarks/backtest_report_bench.py [--repeat 3] [--write-results]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.results import load_average, machine, replace_section  # noqa: E402
from research.backtest.run import run_backtest  # noqa: E402
from research.render.backtest_figures import MAX_CANDLES, MAX_MARKERS  # noqa: E402
from research.render.backtest_report import write_backtest_report  # noqa: E402
from strategies import get_strategy  # noqa: E402
from tests.candles import random_walk  # noqa: E402

HEADING = "## Backtest report (a year of 1m candles)"
YEAR = 525_600
# (label, strategy, parameters): the defaults trade thousands of times a year on 1m candles;
# the slowest EMAs their ranges allow trade less, and their markers are drawn
STRATEGIES = (
    ("ema_cross", "ema_cross", {}),
    ("scalping", "scalping", {}),
    ("ema_cross fast=100 slow=400", "ema_cross", {"fast": 100, "slow": 400}),
)
LOAD_PROBE = """<script>window.addEventListener('load', function () {
  var out = document.createElement('pre'); out.id = 'load-ms';
  out.textContent = 'LOADED ' + Math.round(performance.now()); document.body.appendChild(out);
});</script>"""


def page_load_ms(page: Path) -> float | None:
    """Return the page's load time in headless Chromium (ms), None without chromium."""
    chromium = shutil.which("chromium")
    if chromium is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.html"
        probe.write_text(page.read_text(encoding="utf-8").replace("</body>", LOAD_PROBE))
        done = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             f"--user-data-dir={tmp}/profile", "--virtual-time-budget=60000", "--dump-dom",
             probe.as_uri()], capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    found = re.search(r"LOADED (\d+)", done.stdout)
    return float(found.group(1)) if found else None


def run(repeat: int) -> list[dict[str, Any]]:
    """Backtest a year of 1m candles per strategy, then measure its report."""
    candles = random_walk(YEAR, seed=3)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, (label, name, values) in enumerate(STRATEGIES):
            strategy = get_strategy(name)
            result = run_backtest(candles, strategy, strategy.params(values), timeframe="1m")
            page = Path(tmp) / f"report{k}.html"
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                report = write_backtest_report(
                    result, candles, page, strategy=strategy, symbol="BTCUSDT", timeframe="1m"
                )
                times.append(time.perf_counter() - started)
            rows.append({**report.summary, "strategy": label,
                         "build_s": statistics.median(times), "mib": page.stat().st_size / 2**20,
                         "load_ms": page_load_ms(page)})  # fmt: skip
    return rows


def section(rows: list[dict[str, Any]], repeat: int) -> str:
    """Return the RESULTS.md section for `rows`."""
    lines = []
    for r in rows:
        load = f"{r['load_ms'] / 1000:.1f} s" if r["load_ms"] is not None else "no chromium"
        marked = "yes" if sum(r["markers"].values()) else "no (too many)"
        lines.append(
            f"| `{r['strategy']}` | {r['trades']:,} | {r['drawn_candles']:,} x "
            f"{r['drawn_timeframe']} | {marked} | {r['build_s']:.2f} s | {r['mib']:.1f} MiB "
            f"| {load} |"
        )
    table = "\n".join(lines)
    return f"""{HEADING}

`.venv/bin/python benchmarks/backtest_report_bench.py --write-results` ({time.strftime("%Y-%m-%d")},
{machine()}; load average {load_average():.2f} at the end). {YEAR:,} seeded 1m candles
(`tests/candles.py::random_walk`); build: median of {repeat} `write_backtest_report` calls
after one `run_backtest`; load: headless Chromium until the page's `load` event. The overview
draws at most {MAX_CANDLES:,} candles and marks at most {MAX_MARKERS:,} signals or fills.

| strategy | trades | candles drawn | markers | build | file | load |
|---|---|---|---|---|---|---|
{table}
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
