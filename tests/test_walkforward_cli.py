"""`signals walkforward` and `signals promote` end to end, in subprocesses, on a synthetic db."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from signals.data.synth import write_synth_db
from signals.frozen import load_frozen


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "signals", *args], capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def wf_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    base = tmp_path_factory.mktemp("wf")
    write_synth_db(base, days=45, seed=4, symbol="BTCUSDT")
    out = base / "run"
    result = run(
        "walkforward", "-s", "ema_cross", "--db", str(base / "candles.db"), "-t", "15m",
        "--folds", "3", "--trials", "6", "--min-trades", "2", "--seed", "9", "--out", str(out),
    )  # fmt: skip
    return out, result


def test_walkforward_writes_every_output(wf_run: tuple) -> None:
    out, result = wf_run
    assert result.returncode == 0, result.stderr[-2000:]
    for name in ("folds.csv", "oos_equity.csv", "parameter_stability.csv", "trial_ledger.parquet",
                 "summary.json", "frozen.json", "report.html", "optuna.db"):  # fmt: skip
        assert (out / name).exists(), name
    folds = pd.read_csv(out / "folds.csv")
    assert list(folds["fold"]) == [0, 1, 2]
    ledger = pd.read_parquet(out / "trial_ledger.parquet")
    assert len(ledger) == 18 and set(ledger["fold"]) == {0, 1, 2}
    frozen = load_frozen(out / "frozen.json")
    assert frozen.walkforward is not None and frozen.walkforward.seed == 9
    assert {"sharpe", "dsr", "pbo", "walkforward_efficiency"} <= set(frozen.metrics or {})
    last_best = folds.iloc[-1]
    assert frozen.params["fast"] == last_best["param_fast"]
    assert frozen.params["slow"] == last_best["param_slow"]
    html = (out / "report.html").read_text()
    assert "Stitched out-of-sample equity" in html and "plotly" in html.lower()
    assert "frozen.json" in result.stdout and "PBO" in result.stdout
    assert "walk-forward efficiency" in result.stdout and "a day" in result.stdout
    assert "id='gate-verdict'" in html and "Trials per fold" in html


def test_rerun_resumes_without_new_trials(wf_run: tuple) -> None:
    out, _ = wf_run
    db = Path(out).parent / "candles.db"
    again = run(
        "walkforward", "-s", "ema_cross", "--db", str(db), "-t", "15m", "--folds", "3",
        "--trials", "6", "--min-trades", "2", "--seed", "9", "--out", str(out),
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-2000:]
    assert len(pd.read_parquet(out / "trial_ledger.parquet")) == 18


def test_promote_refuses_then_forces_and_records_it(wf_run: tuple, tmp_path: Path) -> None:
    out, _ = wf_run
    target = tmp_path / "live.json"
    refused = run(
        "promote", str(out / "frozen.json"), "--to", str(target), "--min-trades", "100000"
    )
    assert refused.returncode == 1 and not target.exists()
    assert "trades" in refused.stderr and "< minimum 100000" in refused.stderr
    forced = run("promote", str(out / "frozen.json"), "--to", str(target), "--min-trades",
                 "100000", "--force")  # fmt: skip
    assert forced.returncode == 0, forced.stderr
    promoted = load_frozen(target)
    assert promoted.promotion is not None and promoted.promotion.forced
    assert any("trades" in f for f in promoted.promotion.failures)
    lenient = run(
        "promote", str(out / "frozen.json"), "--to", str(target), "--min-trades", "0",
        "--min-sharpe", "-100", "--min-dsr", "0", "--max-pbo", "1", "--max-drawdown", "1",
    )  # fmt: skip
    assert lenient.returncode == 0, lenient.stderr
    assert load_frozen(target).promotion.passed  # type: ignore[union-attr]  # the promotion was just written
