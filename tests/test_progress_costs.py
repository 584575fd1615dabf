"""Progress on a terminal only (plain lines in a log, nothing with --no-progress), and --costs
on sweep exactly as on backtest, through real `signals` subprocesses on a synthetic database."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from signals.data.synth import write_synth_db
from signals.progress import PlainLines, Silent, progress


def signals(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `signals ARGS`; stdout and stderr are pipes, not terminals."""
    return subprocess.run([sys.executable, "-m", "signals", *args], capture_output=True,
                          text=True, timeout=600)  # fmt: skip


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("progress")
    write_synth_db(base, days=30, seed=6, symbol="BTCUSDT")
    return base / "candles.db"


def _progress_lines(stderr: str, prefix: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(prefix)]


GRID = ("--grid", "fast=5:15:5", "--grid", "slow=40,80")


def test_sweep_to_a_log_writes_plain_lines_and_costs_equal_backtest(
    db: Path, tmp_path: Path
) -> None:
    out = tmp_path / "sweep"
    done = signals("sweep", "-s", "ema_cross", "--db", str(db), "-t", "15m", *GRID, "--jobs",
                   "1", "--costs", "bybit-perp", "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "\r" not in done.stderr  # no bar redrawn into the log
    lines = _progress_lines(done.stderr, "sweep: ")
    assert lines and lines[-1].startswith("sweep: 6/6 combos (100%)") and "done" in lines[-1]
    assert "funding 0.0100%/8h" in done.stderr  # what was run is said
    table = pd.read_csv(out / "sweep.csv")
    cell = table[(table["fast"] == 10) & (table["slow"] == 80)].iloc[0]
    bt = signals("backtest", "-s", "ema_cross", "--db", str(db), "-t", "15m", "--set", "fast=10",
                 "--set", "slow=80", "--costs", "bybit-perp", "--json")  # fmt: skip
    assert bt.returncode == 0, bt.stderr[-2000:]
    metrics = json.loads(bt.stdout)
    assert metrics["funding_paid"] != 0 and metrics["trades"] == cell["trades"] > 0
    for key in ("total_return", "sharpe", "max_drawdown", "fees_paid", "expectancy"):
        assert cell[key] == pytest.approx(metrics[key], rel=1e-9, abs=1e-12), key
    # the costs matter: without --costs (fee 5.5 bps, no funding) the same cell differs
    plain = signals("sweep", "-s", "ema_cross", "--db", str(db), "-t", "15m", *GRID, "--jobs",
                    "1", "--no-progress", "--out", str(tmp_path / "plain"))  # fmt: skip
    assert plain.returncode == 0, plain.stderr[-2000:]
    assert _progress_lines(plain.stderr, "sweep: ") == [] and "\r" not in plain.stderr
    other = pd.read_csv(tmp_path / "plain" / "sweep.csv")
    same = other[(other["fast"] == 10) & (other["slow"] == 80)].iloc[0]
    assert same["total_return"] != pytest.approx(cell["total_return"], rel=1e-9)


def test_walkforward_to_a_log_writes_plain_lines_and_no_progress_none(
    db: Path, tmp_path: Path
) -> None:
    args = ("walkforward", "-s", "ema_cross", "--db", str(db), "-t", "15m", "--folds", "2",
            "--trials", "4", "--min-trades", "1", "--no-report",
            "--costs", "bybit-perp")  # fmt: skip
    done = signals(*args, "--out", str(tmp_path / "a"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "\r" not in done.stderr
    lines = _progress_lines(done.stderr, "walk-forward trials: ")
    assert lines[-1].startswith("walk-forward trials: 8/8 trials (100%)"), lines
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert "funding 0.0100%/8h" in summary["config"]["costs"]
    quiet = signals(*args, "--no-progress", "--out", str(tmp_path / "b"))
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert _progress_lines(quiet.stderr, "walk-forward") == [] and "\r" not in quiet.stderr


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_only_on_a_terminal() -> None:
    from tqdm import tqdm

    assert isinstance(progress(10, desc="x", unit="step", stream=_Terminal()), tqdm)
    assert isinstance(progress(10, desc="x", unit="step", stream=io.StringIO()), PlainLines)
    assert isinstance(progress(10, desc="x", unit="step", enabled=False), Silent)


def test_plain_lines_every_tenth_or_every_30_seconds() -> None:
    now = [0.0]
    stream = io.StringIO()
    with PlainLines(1000, "sweep", "combo", stream, clock=lambda: now[0]) as bar:
        for _ in range(1000):
            bar.update(1)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10 and lines[0].startswith("sweep: 100/1000 combos (10%)")
    assert lines[-1] == "sweep: 1000/1000 combos (100%), 0 s elapsed done"
    stream = io.StringIO()
    slow = PlainLines(1000, "trials", "trial", stream, clock=lambda: now[0])
    for _ in range(5):  # 5 units, 31 s apart: far below 10% each, but a line every 30 s
        now[0] += 31.0
        slow.update(1)
    assert len(stream.getvalue().splitlines()) == 5
    assert "about 8 h 34 min left" in stream.getvalue().splitlines()[-1]
