"""Run the benchmarks side by side and write benchmarks/RESULTS.md (``make bench``).

Every scenario runs in a fresh process (benchmarks/scenarios.py) while this one samples the
resident memory of that process and all its children from /proc every 50 ms: "peak RSS" is the
largest sum seen (pages shared after a fork are counted once per process, so it errs high).
Numba: the first `signals` run uses an empty NUMBA_CACHE_DIR (cold: everything compiles), the
next ones reuse it (warm). vectorbt's simulate_from_signals_nb takes functions as arguments and
cannot be cached on disk, so every process compiles it (a few seconds), warm or not.

    .venv/bin/python benchmarks/run.py            # full run, writes benchmarks/RESULTS.md
    .venv/bin/python benchmarks/run.py --quick    # smoke run on 10 days, prints only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCENARIOS = HERE / "scenarios.py"
GIB = 2**30


def _tree_rss(pid: int) -> int:
    """Return the summed VmRSS (bytes) of `pid` and its descendants."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += next(
                int(x.split()[1]) * 1024 for x in status.splitlines() if x.startswith("VmRSS")
            )
            for task in Path(f"/proc/{current}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, StopIteration, ValueError):
            continue
    return total


def measure(
    name: str,
    env: dict[str, str] | None = None,
    *,
    cap_gib: float = 12.0,
    cap_s: float = 900.0,
    **kwargs: Any,
) -> dict[str, Any]:
    """Run one scenario in a subprocess; return its figures plus wall time and peak tree RSS."""
    cmd = [sys.executable, str(SCENARIOS), name, json.dumps(kwargs)]
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    peak, capped = 0, None
    while proc.poll() is None:
        peak = max(peak, _tree_rss(proc.pid))
        elapsed = time.perf_counter() - started
        if peak > cap_gib * GIB or elapsed > cap_s:
            capped = f"stopped at {peak / GIB:.1f} GiB after {elapsed:.0f} s"
            proc.kill()
            break
        time.sleep(0.05)
    out, err = proc.communicate()
    wall = time.perf_counter() - started
    figures: dict[str, Any] = {
        "scenario": name,
        **kwargs,
        "wall_s": wall,
        "peak_rss_gib": peak / GIB,
    }
    if capped:
        figures["capped"] = capped
        return figures
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        figures["error"] = (err.strip().splitlines() or ["no output"])[-1]
        return figures
    figures.update(json.loads(lines[-1][len("RESULT ") :]))
    return figures


def _log(figures: dict[str, Any]) -> None:
    shown = {
        k: (round(v, 3) if isinstance(v, float) else v)
        for k, v in figures.items()
        if k != "profile"
    }
    print(json.dumps(shown), flush=True)


def run_all(quick: bool) -> dict[str, Any]:
    """Run every scenario; return the figures by key."""
    days = 10 if quick else 365
    n_small, n_large, naive_windows, naive_big = (
        (100, 200, 8, 15) if quick else (1000, 10_000, 15, 46)
    )
    cache = tempfile.mkdtemp(prefix="signals-numba-")
    numba = {"NUMBA_CACHE_DIR": cache}
    real = (HERE.parent.parent / "shared" / "data" / "BTCUSDT-1m-2023-04.csv.gz").exists()
    plan: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
        ("ema_cold", "ours_sweep", {"strategy": "ema_cross", "combos": n_small, "jobs": 2}, {}),
        ("ema_1k_jobs2", "ours_sweep", {"strategy": "ema_cross", "combos": n_small, "jobs": 2}, {}),
        ("ema_1k_jobs1", "ours_sweep", {"strategy": "ema_cross", "combos": n_small, "jobs": 1}, {}),
        (
            "ema_10k",
            "ours_sweep",
            {"strategy": "ema_cross", "combos": n_large, "jobs": 2},
            {"cap_s": 3600.0},
        ),
        ("single", "ours_single", {}, {}),
        ("vbt_100", "vectorbt_naive", {"windows": naive_windows}, {}),
        ("vbt_1k", "vectorbt_naive", {"windows": naive_big}, {"cap_gib": 12.0, "cap_s": 600.0}),
        ("btpy", "backtesting_py", {}, {}),
        ("scalping_1k", "ours_sweep", {"strategy": "scalping", "combos": n_small, "jobs": 2}, {}),
        (
            "scalping_profile",
            "ours_sweep",
            {"strategy": "scalping", "combos": 27 if quick else 64, "jobs": 1, "profile": True},
            {},
        ),
    ]
    if real:
        plan += [
            (
                "real_ema_1k",
                "ours_sweep",
                {
                    "strategy": "ema_cross",
                    "combos": n_small,
                    "jobs": 2,
                    "source": "real",
                    "days": 0,
                },
                {},
            ),
            (
                "real_vbt_100",
                "vectorbt_naive",
                {"windows": naive_windows, "source": "real", "days": 0},
                {},
            ),
            ("real_btpy", "backtesting_py", {"source": "real", "days": 0}, {}),
        ]
    results: dict[str, Any] = {}
    for key, scenario, kwargs, limits in plan:
        kwargs = {"source": "synth", "days": days, **kwargs}
        results[key] = measure(scenario, numba, **limits, **kwargs)
        results[key]["key"] = key
        _log(results[key])
    return results


def _versions() -> dict[str, str]:
    code = (
        "import numpy, pandas, vectorbt, numba, backtesting, talib, sys;"
        " print(sys.version.split()[0],"
        " numpy.__version__, pandas.__version__, vectorbt.__version__, numba.__version__,"
        " backtesting.__version__, talib.__version__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True
    ).stdout.split()
    names = ("python", "numpy", "pandas", "vectorbt", "numba", "backtesting.py", "TA-Lib")
    return dict(zip(names, out, strict=False))


def _machine() -> str:
    model = "unknown CPU"
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(
            line.split(":", 1)[1].strip()
            for line in lscpu.splitlines()
            if line.startswith("Model name")
        )
    except (OSError, StopIteration):
        pass
    mem = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    return f"{model}, {os.cpu_count()} cores, {mem / 2**20:.1f} GiB RAM, {platform.platform()}"


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    from report import write_results

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 10 days, small grids")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results file (default: benchmarks/RESULTS.md; --quick: none)",
    )
    args = parser.parse_args()
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    figures = run_all(args.quick)
    out = args.out or (None if args.quick else HERE / "RESULTS.md")
    raw = {
        "date": stamp,
        "machine": _machine(),
        "versions": _versions(),
        "quick": args.quick,
        "results": figures,
    }
    if out is not None:
        write_results(raw, out)
        out.with_suffix(".json").write_text(json.dumps(raw, indent=1, default=str) + "\n")
        print(f"wrote {out}")
