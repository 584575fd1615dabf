"""The walk-forward HTML report opens offline: headless Chromium draws every chart, no JS errors.

Chromium comes from Debian (`make chromium`); the test skips, saying why, when it can't be had.
A screenshot is kept at reports/screenshots/walkforward.png for a human look.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "reports" / "screenshots" / "walkforward.png"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000")  # fmt: skip


@pytest.fixture(scope="module")
def chromium() -> str:
    """Path of Debian's chromium, installed through `make chromium` when missing."""
    if shutil.which("chromium") is None:
        done = subprocess.run(["make", "-C", str(ROOT), "chromium"], capture_output=True,
                              text=True, timeout=900)  # fmt: skip
        if shutil.which("chromium") is None:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            pytest.skip(f"chromium unavailable: `make chromium` failed ({tail[0]})")
    return str(shutil.which("chromium"))


def _render(chromium: str, page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [chromium, *FLAGS, f"--user-data-dir={profile}", *extra, page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _js_errors(log: str) -> list[str]:
    return [line for line in log.splitlines() if "CONSOLE" in line and "Uncaught" in line]


@pytest.fixture(scope="module")
def wf(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Any, str, Path]:
    """A real walk-forward run (library calls, as `signals walkforward`) on synthetic data."""
    from research.optimise.outputs import frozen_from_run, overfitting
    from research.optimise.walkforward import WalkForwardConfig, default_storage, run_walkforward
    from signals.data.load import load_candles
    from signals.data.synth import write_synth_db
    from strategies import get_strategy

    base = tmp_path_factory.mktemp("render")
    write_synth_db(base, days=30, seed=5)
    candles = load_candles(base / "candles.db", symbol="BTCUSDT", timeframe="15m")
    storage = default_storage(base / "run")
    # min_trades 3 on ~10-day train windows: some trials are rejected, as in real runs
    config = WalkForwardConfig(folds=2, trials=8, min_trades=3, seed=3)
    run = run_walkforward(candles, get_strategy("ema_cross"), timeframe="15m", config=config,
                          storage=storage, run="render", progress=False)  # fmt: skip
    stats = overfitting(run)
    frozen = frozen_from_run(run, stats, symbol="BTCUSDT", source="synthetic")
    return run, stats, frozen, storage, base


@pytest.fixture(scope="module")
def report(wf: tuple[Any, Any, Any, str, Path]) -> Path:
    """The report of `wf`, as `signals walkforward` writes it."""
    from research.render.walkforward_report import write_report

    run, stats, frozen, storage, base = wf
    return write_report(run, stats, frozen, base / "run" / "report.html", storage=storage,
                        study="render", symbol="BTCUSDT")  # fmt: skip


def test_the_error_detector_sees_a_broken_page(chromium: str, tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text("<html><body><script>notDefinedAnywhere()</script></body></html>")
    done = _render(chromium, page, tmp_path / "profile", "--dump-dom")
    assert _js_errors(done.stderr), done.stderr[-2000:]


@pytest.mark.slow
def test_walkforward_report_draws_every_chart_offline(
    chromium: str, report: Path, tmp_path: Path
) -> None:
    source = report.read_text(encoding="utf-8")
    figures = source.count("Plotly.newPlot(")
    # plotly.js is inlined, no script is fetched: the file opens offline
    assert figures >= 3 and not re.search(r"<script[^>]*\ssrc=", source)
    dom = _render(chromium, report, tmp_path / "profile", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert _js_errors(dom.stderr) == [], _js_errors(dom.stderr)
    drawn = re.findall(r'<div class="[^"]*plot-container plotly', dom.stdout)
    assert len(drawn) == figures, f"{len(drawn)} of {figures} charts drew"
    assert dom.stdout.count('class="main-svg"') >= 2 * figures
    assert "Stitched out-of-sample equity" in dom.stdout and 'class="scatterlayer' in dom.stdout
    assert 'class="heatmaplayer' in dom.stdout  # the monthly returns
    # no empty chart: every figure drew at least one trace with points in it
    for element_id, traces in embedded_figures(source).items():
        assert any(_points(t) > 0 for t in traces), f"figure {element_id} has no data"
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    SCREENSHOT.unlink(missing_ok=True)
    shot = _render(chromium, report, tmp_path / "profile2", f"--screenshot={SCREENSHOT}",
                   "--window-size=1280,2000")  # fmt: skip
    assert shot.returncode == 0 and SCREENSHOT.stat().st_size > 20_000, shot.stderr[-2000:]


def embedded_figures(page: str) -> dict[str, list[dict[str, Any]]]:
    """Every plotly figure of a page: element id -> its traces, as written in the page."""
    figures = {}
    for found in re.finditer(r'Plotly\.newPlot\(\s*"([^"]+)",', page):
        data_at = page.index("[", found.end())
        traces, _ = json.JSONDecoder().raw_decode(page, data_at)
        figures[found.group(1)] = list(traces)
    return figures


def _points(trace: dict[str, Any]) -> int:
    values = trace.get("y", trace.get("z", trace.get("x")))
    if isinstance(values, dict):  # a base64 typed array
        size = int(re.sub(r"\D", "", values["dtype"]))
        return len(base64.b64decode(values["bdata"])) // size
    return len(values or [])
