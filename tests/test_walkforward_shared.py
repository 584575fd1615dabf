"""Walk-forward on a shared optuna storage: a real PostgreSQL server, real processes.

One process on PostgreSQL gives the in-memory result; two processes on one run end with the
same folds and frozen file, each fold's budget met once; a process killed mid-run does not
stall the other, and restarted it rejoins; a process with other settings is refused; the
server away for a while, and for longer than the grace period; a process on another host
(emulated: its own hostname, candle file and working directory) joins the run.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from research.optimise.storage import open_storage
from signals.data.synth import write_synth_db
from signals.frozen import load_frozen
from tests.pgserver import ROOT, PgServer, start_server
from tests.sharedrun import (
    HEARTBEAT,
    KILLED_TRIALS,
    TRIALS,
    all_trials,
    both_ended_alike,
    command,
    frozen_without_stamp,
    killed_one_does_not_stall,
    one_process_equals_in_memory,
    other_settings_refused,
    run_two,
    slow_env,
    stop_mid_trial,
    trial_states,
)


@pytest.fixture(scope="module")
def pg() -> Iterator[PgServer]:
    server = start_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def candles_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("shared")
    write_synth_db(base, days=30, seed=4, symbol="BTCUSDT")
    return base / "candles.db"


def test_one_process_on_postgresql_gives_the_in_memory_result(pg: PgServer) -> None:
    one_process_equals_in_memory(pg.url("single"))


@pytest.fixture(scope="module")
def shared_run(pg: PgServer, candles_db: Path, tmp_path_factory: pytest.TempPathFactory):
    """Two processes started together on one run: the storage's URL, their outputs and ends."""
    url, base = pg.url("two"), tmp_path_factory.mktemp("two")
    return url, [base / "a", base / "b"], run_two(url, candles_db, base)


def test_two_processes_share_each_fold_and_end_with_the_same_frozen_file(shared_run) -> None:
    both_ended_alike(*shared_run)


def test_a_process_killed_mid_run_does_not_stall_the_other_and_rejoins(
    pg: PgServer, candles_db: Path, tmp_path: Path
) -> None:
    killed_one_does_not_stall(pg.url("killed"), candles_db, tmp_path)


def test_a_process_with_other_settings_is_refused_naming_the_difference(
    shared_run, candles_db: Path, tmp_path: Path
) -> None:
    other_settings_refused(shared_run[0], candles_db, tmp_path / "b")


def test_a_database_away_for_a_while_is_waited_for_and_said(
    pg: PgServer, candles_db: Path, tmp_path: Path
) -> None:
    url = pg.url("outage")
    # slow trials, and more of them: the run is still going when the server stops, however
    # late this loop sees the second trial complete (a fast run once finished before it)
    more = ("--heartbeat", "5", "--trials", str(KILLED_TRIALS), "-s", "slow_ema_cross")
    args = command(candles_db, tmp_path / "o", url, *more)
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=slow_env(tmp_path))  # fmt: skip
    storage = open_storage(url)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if sum(s.count("COMPLETE") for s in trial_states(storage).values()) >= 2:
            break
        time.sleep(0.5)
    pg.restart_after(3.0)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-2000:]
    assert "optuna storage unreachable" in err and "reachable again" in err, err[-2000:]
    assert "Traceback" not in err
    for name, fold_states in trial_states(open_storage(url)).items():
        assert fold_states.count("COMPLETE") >= TRIALS, (name, fold_states)


def _start(args: list[str], cwd: Path | None = None) -> subprocess.Popen:
    # elsewhere too, this checkout's code (another machine checks out the same commit)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(args, cwd=cwd, env=env, text=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)  # fmt: skip


def test_an_outage_longer_than_the_grace_period_drops_the_stale_trial_and_says_so(
    pg: PgServer, candles_db: Path, tmp_path: Path
) -> None:
    # The server goes away for 12 s (the grace period is 3 heartbeats of 3 s) while one process
    # is in a trial; that process stays frozen until the other, back first, has failed its
    # trial as stale. Resumed, it must drop that trial's result, say so and carry on.
    url, more = pg.url("long"), ("--trials", str(KILLED_TRIALS))
    paused, other = (_start(command(candles_db, tmp_path / name, url, *more)) for name in "po")
    storage = open_storage(url)
    caught = stop_mid_trial(paused, storage)
    assert caught is not None, "the process was never seen in the middle of a trial"
    pg.restart_after(3 * HEARTBEAT + 3.0)  # longer than the grace period
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and other.poll() is None:
        if {(s, t.number): t.state.name for s, t in all_trials(storage)}[caught] == "FAIL":
            break
        time.sleep(0.2)
    os.kill(paused.pid, signal.SIGCONT)
    errors = [p.communicate(timeout=300)[1] for p in (paused, other)]
    for process, err in zip((paused, other), errors, strict=True):
        assert process.returncode == 0, err[-2000:]
        assert "Traceback" not in err, err[-2000:]
    assert f"trial {caught[1]} was failed by another process while this one ran it" in errors[0]
    assert "stopped beating" in errors[1] and "reachable again" in errors[1]
    assert frozen_without_stamp(tmp_path / "p" / "frozen.json") == frozen_without_stamp(
        tmp_path / "o" / "frozen.json"
    )
    ledger = pd.read_parquet(tmp_path / "p" / "trial_ledger.parquet")
    pd.testing.assert_frame_equal(ledger, pd.read_parquet(tmp_path / "o" / "trial_ledger.parquet"))
    fold = int(caught[0].removeprefix("shared-fold"))
    assert caught[1] not in set(ledger[ledger["fold"] == fold]["trial"])  # counted nowhere
    for name, fold_states in trial_states(storage).items():
        done = fold_states.count("COMPLETE")
        assert KILLED_TRIALS <= done <= KILLED_TRIALS + 1, (name, fold_states)  # met once
        assert "RUNNING" not in fold_states
        assert len(ledger[ledger["fold"] == int(name.removeprefix("shared-fold"))]) == done


def _uts_namespace() -> list[str]:
    """The prefix that runs a command under another hostname, or skip saying why not."""
    unshare = shutil.which("unshare")
    if os.geteuid() != 0 or unshare is None:
        pytest.skip("another hostname needs root and unshare (util-linux)")
    probe = subprocess.run([unshare, "--uts", "hostname", "signals-node-b"], capture_output=True,
                           text=True, timeout=30)  # fmt: skip
    if probe.returncode != 0:
        pytest.skip(f"unshare --uts refused here: {probe.stderr.strip()}")
    return [unshare, "--uts", "sh", "-c", 'hostname signals-node-b && exec "$@"', "sh"]


def test_a_process_on_another_host_with_its_own_candle_copy_joins_the_run(
    pg: PgServer, candles_db: Path, tmp_path: Path
) -> None:
    # Emulated on this host: the second process has its own hostname (a UTS namespace), its
    # own copy of the candle database at another path and its own working directory; both
    # reach the server over TCP on 127.0.0.1.
    prefix = _uts_namespace()
    url = pg.url("hosts")
    elsewhere = tmp_path / "node-b"
    (elsewhere / "data").mkdir(parents=True)
    with sqlite3.connect(candles_db) as src, sqlite3.connect(elsewhere / "data" / "c.db") as dst:
        src.backup(dst)
    here = _start(command(candles_db, tmp_path / "a", url))
    there = _start([*prefix, *command(Path("data/c.db"), Path("out"), url)], cwd=elsewhere)
    errors = [p.communicate(timeout=300)[1] for p in (here, there)]
    codes = [(p.returncode, err) for p, err in zip((here, there), errors, strict=True)]
    both_ended_alike(url, [tmp_path / "a", elsewhere / "out"], codes, same_source=False)
    sources = {
        load_frozen(out / "frozen.json").data.source for out in (tmp_path / "a", elsewhere / "out")
    }
    assert sources == {str(candles_db), "data/c.db"}  # each says which copy it read
    hosts = {t.user_attrs["worker"].split(":")[0] for _, t in all_trials(open_storage(url))
             if t.state.name == "COMPLETE"}  # fmt: skip
    assert hosts == {socket.gethostname(), "signals-node-b"}  # both did trials
