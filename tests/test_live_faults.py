"""The live fault matrix: each fault a real pipeline can throw at ``signals live``, and proof that
it is detected, said (log line, ``status``, metrics) and recovered, with nothing lost or sent
twice. Every test runs the runner as a subprocess on a real SQLite file and a real Unix socket;
the README's fault table points here.

Faults served by other modules: clients and signals (tests/test_faults_clients.py), journal
identity (tests/test_live_stream.py), data entry (tests/test_import.py,
tests/test_fetch.py).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from live.settle import Settle
from signals.config import CandleSource, ColumnMap
from signals.data.store import CandleStore, connect_writable, write_candles
from signals.scan import signal_records
from strategies import get_strategy
from tests import faultkit
from tests.candles import random_walk
from tests.livekit import (
    ROOT,
    Collector,
    LineClient,
    free_port,
    replay,
    runner_log,
    seed_db,
    start_runner,
    status,
    stop_runner,
    wait_caught_up,
    wait_listening,
    write_frozen_file,
)

EMA = {"fast": 2, "slow": 5}  # a signal every few candles
HISTORY = 120  # candles stored before the runner starts (ema_cross 2/5 warms up in 98)
KEY = ("candle_ts", "signal", "price", "reasons")


def choppy(n: int, *, seed: int) -> pd.DataFrame:
    """`n` valid 1m candles of a seeded random walk with a 9-candle swing: EMA 2/5 crosses often."""
    walk = random_walk(n, seed=seed)
    swing = 1 + 0.004 * np.sin(2 * np.pi * np.arange(n) / 9)
    close = walk["close"].to_numpy() * swing
    open_ = np.concatenate([[close[0]], close[:-1]])
    spread = np.abs(walk["high"] - walk["low"]).to_numpy() / 2
    frame = walk.copy()
    frame["open"], frame["close"] = open_, close
    frame["high"] = np.maximum(open_, close) + spread
    frame["low"] = np.minimum(open_, close) - spread
    return frame


def ts(candles: pd.DataFrame, i: int) -> int:
    return int(candles.index[i].timestamp())


def stored_case(
    tmp_path: Path, more: int, *, seed: int, strategy: str = "ema_cross"
) -> tuple[pd.DataFrame, Path, Path, Path]:
    """Candles (HISTORY stored, `more` to write), the database, the socket and a frozen file."""
    candles = choppy(HISTORY + more, seed=seed)
    db, sock = tmp_path / "candles.db", tmp_path / "live.sock"
    seed_db(db, candles, "1m", HISTORY)
    if strategy == faultkit.NAME:
        faultkit.register()
    frozen = write_frozen_file(tmp_path / "f.json", strategy, "1m", EMA)
    return candles, db, sock, frozen


def expected(
    db: Path, since: pd.Timestamp, *, until: int | None = None, source: CandleSource | None = None
) -> list[tuple[Any, ...]]:
    """What ``signals scan`` of the stored candles gives from `since` (ema_cross 2/5, 1m)."""
    with CandleStore(db, source=source) as store:
        stored = store.history("BTCUSDT", "1m", end=until)
    strategy = get_strategy("ema_cross")
    records = signal_records(
        stored, strategy, strategy.params(EMA), symbol="BTCUSDT", timeframe="1m", since=since
    )
    return [tuple(r[k] for k in KEY) for r in records]


def got(collector: Collector) -> list[tuple[Any, ...]]:
    return [tuple(s[k] for k in KEY) for s in collector.signals]


def wait_for(predicate: Any, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def wait_signals(collector: Collector, n: int, timeout: float = 10.0) -> None:
    wait_for(lambda: len(collector.signals) >= n, timeout, f"{n} signals")


@contextlib.contextmanager
def running(frozen: Path, db: Path, sock: Path, *args: str, **kw: Any) -> Any:
    """A runner subprocess for the block; stopped (SIGTERM) at its end."""
    proc = start_runner(frozen, db, sock, "--heartbeat", "0.3", *args, **kw)
    try:
        wait_listening(sock, proc)
        yield proc
    finally:
        stop_runner(proc)


def collecting(sock: Path) -> Collector:
    collector = Collector(sock)
    collector.start()
    return collector


# -- 0. candles without a `closed` flag settle before they are decided ------------------------

SEED_SCHEMA = """
CREATE TABLE candles (symbol TEXT NOT NULL, timeframe TEXT NOT NULL, timestamp INTEGER NOT NULL,
    open REAL, high REAL, low REAL, close REAL, volume REAL,
    PRIMARY KEY (symbol, timeframe, timestamp))
"""
SEED_SOURCE = CandleSource(columns=ColumnMap(closed=None, trades=None, buy_volume=None))


def seed_pipeline_db(path: Path) -> sqlite3.Connection:
    """The seed pipeline's table: no `closed`, `trades` or `buy_volume` column."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(SEED_SCHEMA)
    return conn


def seed_config(path: Path) -> Path:
    path.write_text(
        "data:\n  source:\n    columns: {closed: null, trades: null, buy_volume: null}\n"
    )
    return path


def upsert(conn: sqlite3.Connection, stamp: int, o: float, h: float, lo: float, c: float, v: float):
    conn.execute(
        "INSERT OR REPLACE INTO candles VALUES ('BTCUSDT', '1m', ?, ?, ?, ?, ?, ?)",
        (stamp, o, h, lo, c, v),
    )


def test_settle_streams_the_final_values_of_a_pipeline_without_closed_flag(tmp_path: Path):
    # The seed pipeline: the forming candle is updated several times, the next minute's first
    # tick arrives, and the final values of the candle follow 0.05-0.35 s later. Decided on
    # forming values (the old behaviour), not one signal had the final candle's price.
    n = 50
    candles = choppy(HISTORY + n + 1, seed=3)
    db, sock = tmp_path / "candles.db", tmp_path / "live.sock"
    conn = seed_pipeline_db(db)
    rows = candles[["open", "high", "low", "close", "volume"]].to_numpy()

    def final(i: int) -> None:
        upsert(conn, ts(candles, i), *rows[i])

    for i in range(HISTORY):
        final(i)
    frozen = write_frozen_file(tmp_path / "f.json", "ema_cross", "1m", EMA)
    config = seed_config(tmp_path / "signals.yaml")
    rng = np.random.default_rng(5)
    with running(frozen, db, sock, "--config", str(config), "--settle", "0.6") as proc:
        wait_caught_up(sock, ts(candles, HISTORY - 1))
        collector = collecting(sock)
        for i in range(HISTORY, HISTORY + n):
            o, h, lo, c, v = rows[i]
            for _ in range(2):  # the forming candle, updated
                cf = c * (1 + rng.normal(0, 0.003))
                upsert(conn, ts(candles, i), o, max(o, cf, h), min(o, cf, lo), cf, v * 0.5)
            nxt = rows[i + 1][0]  # the next minute's first tick
            upsert(conn, ts(candles, i + 1), nxt, nxt, nxt, nxt, 0.1)
            time.sleep(rng.uniform(0.05, 0.35))  # the pipeline's confirmation lag
            final(i)
        final(HISTORY + n)  # the newest candle has no newer one yet: it waits
        last = ts(candles, HISTORY + n - 1)
        final_status = wait_caught_up(sock, last)
        want = expected(db, candles.index[HISTORY], until=last, source=SEED_SOURCE)
        wait_signals(collector, len(want))
        time.sleep(1.0)  # nothing more may come: the newest candle has not settled
        collector.stop()
        assert proc.poll() is None
    assert len(want) >= 5
    assert got(collector) == want
    assert final_status["settle_s"] == 0.6
    assert final_status["last_candle_ts"] == last


@given(
    st.lists(
        st.tuples(st.integers(0, 5), st.floats(0, 5)), min_size=1, max_size=12
    ),  # (candles the pipeline moves on, seconds until the runner looks)
    st.floats(0.1, 3),
)
def test_settle_never_releases_a_candle_early(steps: list[tuple[int, float]], settle: float):
    # For any order of observations: candle t is decidable only when `settle` has passed since
    # a newer candle was first seen and since t's own close.
    tf = 60
    rule = Settle(tf, settle)
    now, newest = 1_000_000.0, 1_000_000 - 1_000_000 % tf
    first_newer: dict[int, float] = {}
    for moved, wait in steps:
        newest += moved * tf
        rule.observe(newest, now)
        for t in range(newest - 6 * tf, newest, tf):
            first_newer.setdefault(t, now)
        until = rule.until(now)
        if until is not None:
            for t, seen in first_newer.items():
                if t <= until:
                    assert now >= max(seen, t + tf) + settle - 1e-9
        now += wait


def test_with_a_closed_column_nothing_waits(tmp_path: Path) -> None:
    candles, db, sock, frozen = stored_case(tmp_path, 5, seed=3)
    with running(frozen, db, sock, "--settle", "30"):
        wait_caught_up(sock, ts(candles, HISTORY - 1))
        replay(db, candles, "1m", HISTORY, HISTORY + 1)
        data = wait_caught_up(sock, ts(candles, HISTORY), timeout=5)
    assert data["settle_s"] == 0.0


# -- 1. candles from the future ------------------------------------------------------------


def test_a_candle_from_the_future_is_refused_and_never_moves_the_mark(tmp_path: Path) -> None:
    # Before: one closed candle a day ahead moved the mark past every later real candle, for
    # good (journaled): 0 signals, no log line, skipped_candles 0.
    candles, db, sock, frozen = stored_case(tmp_path, 80, seed=4)
    tomorrow = (int(time.time()) // 60 + 24 * 60) * 60
    ahead = candles.iloc[:1].set_axis(
        pd.DatetimeIndex([pd.Timestamp(tomorrow, unit="s", tz="UTC")])
    )
    with running(frozen, db, sock):
        wait_caught_up(sock, ts(candles, HISTORY - 1))
        collector = collecting(sock)
        conn = connect_writable(db)
        write_candles(conn, ahead, symbol="BTCUSDT", timeframe="1m")
        conn.close()
        replay(db, candles, "1m", HISTORY, HISTORY + 60)
        data = wait_caught_up(sock, ts(candles, HISTORY + 59))
    assert data["future_candles"] == 1 and data["skipped_candles"] == 1
    assert runner_log(sock).count(f"event=future_candle candle_ts={tomorrow}") == 1
    # a restart resumes from the real mark (the future candle was never journaled as decided)
    with running(frozen, db, sock):
        replay(db, candles, "1m", HISTORY + 60, HISTORY + 80)
        wait_caught_up(sock, ts(candles, HISTORY + 79))
        want = expected(db, candles.index[HISTORY], until=ts(candles, HISTORY + 79))
        wait_signals(collector, len(want))
        collector.stop()
    assert len(want) >= 10
    assert got(collector) == want


# -- 2. the database file deleted, replaced or rotated -------------------------------------


def replace_database(db: Path, new: Path) -> None:
    """Put `new` at `db` as a restore or rotation does: the old file and its WAL go."""
    for suffix in ("-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    os.replace(new, db)


def copy_database(db: Path, to: Path) -> None:
    src, dst = sqlite3.connect(db), sqlite3.connect(to)
    src.backup(dst)
    dst.execute("PRAGMA journal_mode = WAL")
    src.close()
    dst.close()


def test_a_replaced_database_is_reopened_and_followed(tmp_path: Path) -> None:
    # Before: the runner kept reading the deleted file, heartbeating, silent.
    candles, db, sock, frozen = stored_case(tmp_path, 70, seed=6)
    with running(frozen, db, sock):
        wait_caught_up(sock, ts(candles, HISTORY - 1))
        collector = collecting(sock)
        replay(db, candles, "1m", HISTORY, HISTORY + 20)
        wait_caught_up(sock, ts(candles, HISTORY + 19))
        # rotation: the same history and ten more candles, in a new file moved into place
        new = tmp_path / "restored.db"
        copy_database(db, new)
        replay(new, candles, "1m", HISTORY + 20, HISTORY + 30)
        replace_database(db, new)
        replay(db, candles, "1m", HISTORY + 30, HISTORY + 50)
        data = wait_caught_up(sock, ts(candles, HISTORY + 49))
        assert data["db_reopens"] == 1
        want = expected(db, candles.index[HISTORY])
        wait_signals(collector, len(want))
        assert got(collector) == want and len(want) >= 8

        # deleted: noticed within a second or two, clients still served, reopened when back
        kept = tmp_path / "kept.db"
        copy_database(db, kept)
        started = time.monotonic()
        for suffix in ("", "-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
        wait_for(lambda: status(sock)["db_missing"], 3.0, "db_missing")
        assert time.monotonic() - started < 3.0
        # a file that is not a database yet (a copy in progress): said, retried
        garbage = tmp_path / "partial.db"
        garbage.write_bytes(b"not a database" * 100)
        os.replace(garbage, db)
        wait_for(lambda: status(sock)["db_error"] is not None, 3.0, "db_error")
        # back, with one decided candle changed: the runner says so and re-reads its window
        conn = sqlite3.connect(kept)
        changed = ts(candles, HISTORY + 48)
        conn.execute("UPDATE candles SET close = close * 1.01 WHERE timestamp = ?", (changed,))
        conn.commit()
        conn.close()
        replace_database(db, kept)
        replay(db, candles, "1m", HISTORY + 50, HISTORY + 70)
        data = wait_caught_up(sock, ts(candles, HISTORY + 69))
        collector.stop()
    log = runner_log(sock)
    assert data["db_reopens"] == 2 and not data["db_missing"]
    assert "event=db_missing" in log and log.count("event=db_reopened") == 2
    assert log.count("event=db_reopen_failed") == 1 and data["db_error"] is None
    assert "event=db_window_changed changed=1" in log
    seqs = [s["seq"] for s in collector.signals]
    assert seqs == list(range(1, len(seqs) + 1))


# -- 3. stalls -----------------------------------------------------------------------------


def metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        return reply.read().decode()


def test_a_stall_is_said_in_log_status_heartbeat_and_metrics(tmp_path: Path) -> None:
    candles, db, sock, frozen = stored_case(tmp_path, 2, seed=7)
    port = free_port()
    with running(frozen, db, sock, "--stall-after", "1.5", "--metrics-port", str(port)):
        with LineClient(sock) as client:
            beat = client.read_type("heartbeat")
            assert beat["stalled"] is False
            deadline = time.monotonic() + 5
            while not beat["stalled"] and time.monotonic() < deadline:
                beat = client.read_type("heartbeat")
            assert beat["stalled"] is True
        data = status(sock)
        assert data["stalled"] is True and data["last_candle_age_s"] >= 1.5
        text = metrics(port)
        assert "signals_stalled 1" in text
        assert "signals_last_candle_age_seconds " in text
        time.sleep(1.0)
        assert runner_log(sock).count("event=stalled") == 1  # one line, not one a second
        replay(db, candles, "1m", HISTORY, HISTORY + 1)
        data = wait_caught_up(sock, ts(candles, HISTORY))
        assert data["stalled"] is False and data["last_candle_age_s"] < 1.5
        with LineClient(sock) as client:
            assert client.read_type("heartbeat")["stalled"] is False
        assert "signals_stalled 0" in metrics(port)
    assert "event=stall_ended" in runner_log(sock)


# -- 4. no zombie --------------------------------------------------------------------------


def run_live(tmp_path: Path, *args: str, timeout: float = 30.0) -> tuple[int, str, float]:
    sock = tmp_path / "live.sock"
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "signals", "live", "--socket", str(sock), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    return result.returncode, result.stderr, time.monotonic() - started


def test_a_runner_that_cannot_work_exits_2_at_once(tmp_path: Path) -> None:
    # Before: a wrong database or mapping retried forever, looking healthy under systemd.
    frozen = write_frozen_file(tmp_path / "f.json", "ema_cross", "1m", EMA)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE trades (x)").connection.commit()
    code, err, took = run_live(tmp_path, "--params", str(frozen), "--db", str(other))
    assert code == 2 and took < 15, err
    assert "no table 'candles'" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1

    good = tmp_path / "candles.db"
    seed_db(good, random_walk(10, seed=1), "1m", 10)
    config = tmp_path / "signals.yaml"
    config.write_text("data:\n  source:\n    columns: {volume: vol}\n")
    code, err, _ = run_live(
        tmp_path, "--params", str(frozen), "--db", str(good), "--config", str(config)
    )
    assert code == 2 and "volume -> 'vol'" in err and "Traceback" not in err, err

    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    code, err, _ = run_live(tmp_path, "--params", str(broken), "--db", str(good))
    assert code == 2 and "not valid JSON" in err and "Traceback" not in err, err


def start_faulty(frozen: Path, db: Path, sock: Path, env: dict[str, str]) -> subprocess.Popen:
    log = open(sock.with_suffix(".log"), "ab")  # noqa: SIM115 - the child holds it
    cmd = [sys.executable, "-m", "tests.faultkit", "live", "--params", str(frozen)]
    cmd += ["--db", str(db), "--socket", str(sock), "--heartbeat", "0.3"]
    try:
        return subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=log, env={**os.environ, **env})
    finally:
        log.close()


def test_a_strategy_error_on_one_candle_skips_that_candle_only(tmp_path: Path) -> None:
    candles, db, sock, frozen = stored_case(tmp_path, 30, seed=8, strategy=faultkit.NAME)
    bad = ts(candles, HISTORY + 10)
    proc = start_faulty(frozen, db, sock, {"FAULT_RAISE_AT": str(bad)})
    try:
        wait_listening(sock, proc)
        wait_caught_up(sock, ts(candles, HISTORY - 1))
        collector = collecting(sock)
        replay(db, candles, "1m", HISTORY, HISTORY + 30, pause_s=0.01)
        data = wait_caught_up(sock, ts(candles, HISTORY + 29))
        want = [w for w in expected(db, candles.index[HISTORY]) if w[0] != bad]
        wait_signals(collector, len(want))
        collector.stop()
        assert proc.poll() is None
    finally:
        stop_runner(proc)
    assert data["strategy_errors"] == 1 and data["skipped_candles"] == 1
    log = runner_log(sock)
    assert f"event=strategy_error candle_ts={bad}" in log
    assert "planted failure on candle" in log and "Traceback" in log
    assert got(collector) == want and len(want) >= 5


def test_an_unexpected_error_in_the_follow_path_exits_1(tmp_path: Path) -> None:
    # Before: the follow task died, the process stayed up and kept heartbeating.
    candles, db, sock, frozen = stored_case(tmp_path, 3, seed=8)
    proc = start_faulty(frozen, db, sock, {"FAULT_PUBLISH_RAISE": "1"})
    try:
        wait_listening(sock, proc)
        wait_caught_up(sock, ts(candles, HISTORY - 1))
        replay(db, candles, "1m", HISTORY, HISTORY + 3)
        code = proc.wait(timeout=15)
    finally:
        stop_runner(proc)
    log = runner_log(sock)
    assert code == 1, log
    assert "event=fatal task=follow" in log and "planted failure in the follow path" in log
    assert "Traceback" in log
    assert not sock.exists()


def test_a_read_error_that_does_not_pass_ends_the_runner_with_1(tmp_path: Path) -> None:
    # The pipeline renames the candles table away under a running runner: every read fails with
    # "no such table". That is no lock and no file being replaced: after 10 s of retries the
    # runner exits 1 (for systemd to restart it; the start then exits 2 naming the table).
    candles, db, sock, frozen = stored_case(tmp_path, 2, seed=8)
    proc = start_runner(frozen, db, sock, "--heartbeat", "0.3")
    try:
        wait_listening(sock, proc)
        wait_caught_up(sock, ts(candles, HISTORY - 1))
        conn = sqlite3.connect(db)
        conn.execute("ALTER TABLE candles RENAME TO candles_old")
        conn.commit()
        conn.close()
        code = proc.wait(timeout=30)
    finally:
        stop_runner(proc)
    log = runner_log(sock)
    assert code == 1, log
    assert "event=db_retry" in log and "no such table" in log
    assert "event=fatal task=follow" in log


class NotifySocket(threading.Thread):
    """A stand-in for systemd's $NOTIFY_SOCKET: record each datagram with its arrival time."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            with contextlib.suppress(TimeoutError):
                data = self.sock.recv(4096)
                self.messages.append((time.monotonic(), data.decode()))

    def watchdog_times(self) -> list[float]:
        return [t for t, m in self.messages if m == "WATCHDOG=1"]

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=2)
        self.sock.close()


def test_watchdog_pings_only_while_the_follow_loop_turns(tmp_path: Path) -> None:
    # A catch-up step that hangs in the worker thread: heartbeats and status go on, but
    # WATCHDOG=1 stops (so systemd restarts a runner that heartbeats without following).
    candles, db, sock, frozen = stored_case(tmp_path, 10, seed=9, strategy=faultkit.NAME)
    proc = start_faulty(frozen, db, sock, {})  # the first start sets the mark
    wait_listening(sock, proc)
    wait_caught_up(sock, ts(candles, HISTORY - 1))
    assert stop_runner(proc) == 0
    replay(db, candles, "1m", HISTORY, HISTORY + 10)  # closed while it was down
    notify = NotifySocket(tmp_path / "notify.sock")
    notify.start()
    env = {
        "NOTIFY_SOCKET": str(notify.path),
        "WATCHDOG_USEC": "2000000",
        "FAULT_HANG_AT": str(ts(candles, HISTORY + 9)),
        "FAULT_HANG_S": "7",
    }
    proc = start_faulty(frozen, db, sock, env)
    try:
        wait_listening(sock, proc)
        hang_started = time.monotonic()
        wait_for(lambda: status(sock)["follow_stuck"], 8.0, "follow_stuck")
        with LineClient(sock) as client:  # heartbeats still flow while it is stuck
            client.read_type("heartbeat")
        wait_caught_up(sock, ts(candles, HISTORY + 9), timeout=15)
        # the step that hung is published before its loop turn ends and marks the loop alive
        wait_for(lambda: not status(sock)["follow_stuck"], 5.0, "follow_stuck cleared")
        resumed = time.monotonic()
        time.sleep(1.5)
    finally:
        stop_runner(proc)
        notify.stop()
    pings = notify.watchdog_times()
    during = [t for t in pings if hang_started + 3.5 < t < hang_started + 6.5]
    assert during == [], "WATCHDOG=1 sent while the follow loop was stuck"
    assert any(t > resumed for t in pings), "WATCHDOG=1 did not resume"
    assert "READY=1" in [m for _, m in notify.messages]
    assert "event=follow_stuck" in runner_log(sock)


# -- 6. the journal cannot be written ------------------------------------------------------


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str = "1m") -> Any:
    """Mount a small tmpfs at `path` for the block (skip when this machine does not allow it)."""
    path.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command: cannot make a small filesystem for a full-disk test")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}): needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> Path:
    """Fill the filesystem of `directory` to the last byte; return the filler file."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)
    return filler


def test_a_full_journal_disk_holds_signals_until_they_are_journaled(tmp_path: Path) -> None:
    candles, db, sock, frozen = stored_case(tmp_path, 60, seed=11)
    with small_tmpfs(tmp_path / "jfs") as jfs:
        journal = jfs / "journal.db"
        with running(frozen, db, sock, "--journal", str(journal)):
            wait_caught_up(sock, ts(candles, HISTORY - 1))
            collector = collecting(sock)
            replay(db, candles, "1m", HISTORY, HISTORY + 20)
            wait_caught_up(sock, ts(candles, HISTORY + 19))
            filler = fill(jfs)
            before = len(collector.signals)
            replay(db, candles, "1m", HISTORY + 20, HISTORY + 60)
            wait_for(lambda: status(sock)["journal_errors"] >= 3, 15, "journal_errors")
            time.sleep(0.5)
            assert len(collector.signals) == before  # nothing is sent unless journaled
            assert status(sock)["last_candle_ts"] < ts(candles, HISTORY + 59)
            filler.unlink()
            data = wait_caught_up(sock, ts(candles, HISTORY + 59))
            want = expected(db, candles.index[HISTORY])
            wait_signals(collector, len(want))
            time.sleep(0.3)
            collector.stop()
    assert data["journal_errors"] >= 3
    assert got(collector) == want and len(want) >= 8
    seqs = [s["seq"] for s in collector.signals]
    assert seqs == list(range(1, len(seqs) + 1))
    assert "event=journal_retry" in runner_log(sock)


# -- 7. a closed candle rewritten after it was decided -------------------------------------


def test_a_rewritten_candle_is_detected_counted_and_its_signal_stands(tmp_path: Path) -> None:
    candles, db, sock, frozen = stored_case(tmp_path, 40, seed=12)
    with running(frozen, db, sock):
        wait_caught_up(sock, ts(candles, HISTORY - 1))
        collector = collecting(sock)
        replay(db, candles, "1m", HISTORY, HISTORY + 20)
        wait_caught_up(sock, ts(candles, HISTORY + 19))
        emitted = list(collector.signals)
        conn = sqlite3.connect(db)
        recent, older = ts(candles, HISTORY + 19), ts(candles, HISTORY + 4)
        conn.execute("UPDATE candles SET close = close * 1.002 WHERE timestamp = ?", (recent,))
        conn.commit()
        replay(db, candles, "1m", HISTORY + 20, HISTORY + 21)  # the next step sees it
        data = wait_caught_up(sock, ts(candles, HISTORY + 20))
        assert data["rewritten_candles"] == 1
        conn.execute("UPDATE candles SET volume = volume + 1 WHERE timestamp = ?", (older,))
        conn.commit()
        conn.close()  # no new candle: the idle check of the whole window finds it
        wait_for(lambda: status(sock)["rewritten_candles"] == 2, 5, "the idle window check")
        replay(db, candles, "1m", HISTORY + 21, HISTORY + 40)
        wait_caught_up(sock, ts(candles, HISTORY + 39))
        time.sleep(0.3)
        collector.stop()
    log = runner_log(sock)
    assert f"event=candle_rewritten candle_ts={recent}" in log
    assert f"event=candle_rewritten candle_ts={older}" in log
    assert collector.signals[: len(emitted)] == emitted  # no retraction, no re-emission
    seqs = [s["seq"] for s in collector.signals]
    assert seqs == list(range(1, len(seqs) + 1))
    # later decisions are those of the rewritten store
    later = expected(db, candles.index[HISTORY + 21])
    assert [g for g in got(collector) if g[0] >= ts(candles, HISTORY + 21)] == later
