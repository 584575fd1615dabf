"""research.optimise.storage without a server: retries, journal files, run settings, --workers."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
import warnings
from pathlib import Path

import optuna
import pytest
import sqlalchemy.exc as sa

from research.optimise import storage as wf_storage
from research.optimise.storage import (
    RunMismatchError,
    forget_run,
    journal_path,
    open_storage,
    quiet,
    retrying,
)
from research.optimise.walkforward import WalkForwardConfig, run_walkforward
from signals.data.synth import write_synth_db
from signals.errors import SignalsError
from strategies import get_strategy
from tests.candles import random_walk
from tests.sharedrun import budget_met_once, narrow_folder


def outage(failures: int):
    calls = {"n": 0}

    def call() -> str:
        calls["n"] += 1
        if calls["n"] <= failures:
            raise sa.OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))
        return "answer"

    return call


def test_an_unreachable_database_is_retried_and_said(monkeypatch, caplog) -> None:
    waits: list[float] = []
    monkeypatch.setattr(wf_storage.time, "sleep", waits.append)
    with caplog.at_level(logging.WARNING, logger="research.optimise.storage"):
        assert retrying(outage(3))() == "answer"
    assert waits == [1.0, 2.0, 4.0]
    assert "optuna storage unreachable" in caplog.text and "reachable again" in caplog.text
    with pytest.raises(SignalsError, match="unreachable for 3 s, giving up"):
        retrying(outage(10), patience=3.0)()
    with pytest.raises(ValueError):  # anything else is not a connection fault: not retried
        retrying(lambda: int("x"))()


def test_journal_urls_and_run_settings_in_a_journal_file(tmp_path: Path) -> None:
    assert journal_path("journal:///tmp/x/run.log") == "/tmp/x/run.log"
    assert journal_path("runs/a.log") == "runs/a.log" and journal_path("sqlite:///a.log") is None
    storage = open_storage(f"journal:///{tmp_path / 'run.log'}", heartbeat=1)
    candles = random_walk(9000, seed=3, freq="5min")
    config = WalkForwardConfig(folds=2, trials=3, min_trades=0, seed=11)
    kwargs = {"timeframe": "5m", "storage": storage, "run": "j", "progress": False}
    first = run_walkforward(candles, get_strategy("ema_cross"), config=config, **kwargs)
    again = run_walkforward(candles, get_strategy("ema_cross"), config=config, **kwargs)
    assert again.folds[-1].best_params == first.folds[-1].best_params
    newer = random_walk(9100, seed=3, freq="5min")  # new candles arrived
    with pytest.raises(RunMismatchError, match="data_last"):
        run_walkforward(newer, get_strategy("ema_cross"), config=config, **kwargs)
    assert forget_run(storage, "j") == 5  # settings, 2 folds, 2 closing records
    run_walkforward(newer, get_strategy("ema_cross"), config=config, **kwargs)


def test_workers_share_one_run_in_a_journal_file(tmp_path: Path) -> None:
    write_synth_db(tmp_path, days=30, seed=4, symbol="BTCUSDT")
    journal = tmp_path / "run.log"
    folder = narrow_folder(tmp_path / "strategies")  # every trial valid (tests/sharedrun.py)
    done = subprocess.run(
        [sys.executable, "-m", "signals", "walkforward", "-s", "narrow_ema_cross", "--db",
         str(tmp_path / "candles.db"), "-t", "15m", "--folds", "2", "--trials", "6",
         "--min-trades", "2", "--seed", "9", "--out", str(tmp_path / "out"), "--no-report",
         "--storage", f"journal:///{journal}", "--workers", "2", "--heartbeat", "3",
         "--strategy-path", str(folder)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "helper" not in done.stderr  # the second process ended well too
    ledger = tmp_path / "out" / "trial_ledger.parquet"
    for completed in budget_met_once(f"journal:///{journal}", "out", ledger, trials=6):
        assert all("heartbeat" in t.system_attrs for t in completed)


def test_a_trial_whose_process_died_before_its_first_beat_is_failed(monkeypatch) -> None:
    from optuna.trial import TrialState

    from research.optimise import walkforward

    study = optuna.create_study(storage=open_storage(None))
    orphan, live = study.ask(), study.ask()
    live.set_user_attr("worker", "host:1")
    running = study.get_trials(states=(TrialState.RUNNING,))
    walkforward._fail_unstarted(study, running)
    assert {t.state for t in study.trials} == {TrialState.RUNNING}  # young: left alone
    monkeypatch.setattr(walkforward, "UNSTARTED", 0.0)
    walkforward._fail_unstarted(study, running)
    states = {t.number: t.state for t in study.trials}
    assert states == {orphan.number: TrialState.FAIL, live.number: TrialState.RUNNING}


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_a_trial_marked_by_a_process_that_then_died_is_failed_by_the_heartbeat(
    tmp_path: Path, kind: str
) -> None:
    # A process that dies after its objective marked the trial with its worker but before
    # optuna's heartbeat thread first beat left a trial no rule failed: every other process
    # waited for it forever. Here the objective runs without optuna's thread (as if it had not
    # beaten yet), then the "process" is gone: the trial must turn stale and be failed.
    from research.optimise.folds import make_folds
    from research.optimise.walkforward import _Objective

    url = f"journal:///{tmp_path}/s.log" if kind == "journal" else f"sqlite:///{tmp_path}/s.db"
    storage = open_storage(url, heartbeat=1)
    with quiet():
        study = optuna.create_study(storage=storage, study_name="f0", direction="maximize")
    candles = random_walk(3000, seed=5, freq="5min")
    fold = make_folds(len(candles), folds=1)[0]
    objective = _Objective(candles, get_strategy("ema_cross"), fold, "5m",
                           WalkForwardConfig(folds=1, trials=1))  # fmt: skip
    with warnings.catch_warnings():  # "heartbeat is supposed to be used with Study.optimize"
        warnings.simplefilter("ignore", UserWarning)
        trial = study.ask()
    objective(trial)  # marked with its worker; never told: its process "died" here
    assert study.trials[0].user_attrs["worker"]
    deadline = time.monotonic() + 15  # the grace period is 3 heartbeats (SQLite's clock: 1 s)
    while study.trials[0].state.name == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.5)
        with quiet():
            optuna.storages.fail_stale_trials(study)
    assert study.trials[0].state.name == "FAIL"
