"""The journal's identity on the wire: ``stream`` in the hello, ``unknown_seq``, a damaged journal.

A real ``signals live`` process on a real Unix socket, each test with its own runner.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from live.journal import Journal
from tests.candles import random_walk
from tests.livekit import (
    ROOT,
    LineClient,
    replay,
    runner_log,
    seed_db,
    start_runner,
    stop_runner,
    wait_caught_up,
    wait_listening,
    write_frozen_file,
)

EMA = {"fast": 2, "slow": 5}  # signals every few candles


def remove_journal(path: Path) -> None:
    """Delete a SQLite journal and its WAL files."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def hello(sock: Path) -> dict:
    """Connect and return the hello."""
    with LineClient(sock) as client:
        return client.read_type("hello")


def read_type(client: LineClient, kind: str, seconds: float = 10.0) -> dict:
    """Read messages until one of type `kind`; fail after `seconds` (heartbeats keep coming)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        message = client.read()
        assert message is not None, f"stream ended before a {kind!r} message"
        if message["type"] == kind:
            return message
    raise AssertionError(f"no {kind!r} message in {seconds:g} s")


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    """A seeded candle database, a frozen file, a socket path and a journal path."""
    db, sock, journal = tmp_path / "candles.db", tmp_path / "live.sock", tmp_path / "j.db"
    seed_db(db, random_walk(400, seed=3), "1m", 200)
    return db, write_frozen_file(tmp_path / "ema.json", "ema_cross", "1m", EMA), sock, journal


def test_stream_survives_a_restart_and_changes_with_a_new_journal(setup: tuple) -> None:
    db, frozen, sock, journal = setup
    streams = []
    for fresh in (False, False, True):
        if fresh:
            remove_journal(journal)
        proc = start_runner(frozen, db, sock, "--journal", str(journal))
        try:
            wait_listening(sock, proc)
            streams.append(hello(sock)["stream"])
        finally:
            assert stop_runner(proc) == 0, runner_log(sock)
    assert re.fullmatch(r"[0-9a-f]{32}", streams[0])
    assert streams[1] == streams[0]  # same journal, same stream, across a restart
    assert streams[2] != streams[0]  # the journal file was deleted: a new stream


def test_resume_beyond_the_journal_is_an_error_then_live(setup: tuple) -> None:
    db, frozen, sock, journal = setup
    candles = random_walk(400, seed=3)
    proc = start_runner(frozen, db, sock, "--journal", str(journal), "--heartbeat", "0.2")
    try:
        wait_listening(sock, proc)
        replay(db, candles, "1m", 200, 240)
        last = wait_caught_up(sock, int(candles.index[239].timestamp()))["last_seq"]
        assert last >= 1
        with LineClient(sock) as client:
            stream = client.read_type("hello")["stream"]
            client.send({"type": "resume", "since_seq": last + 100})
            error = read_type(client, "error")
            assert error["code"] == "unknown_seq"
            assert f"last seq {last} " in error["message"] and stream in error["message"]
            replay(db, candles, "1m", 240, 300)
            first = read_type(client, "signal")
            assert first["seq"] == last + 1  # live from the journal's end, nothing skipped
    finally:
        stop_runner(proc)


@pytest.mark.parametrize("where", ["header", "pages"])
def test_damaged_journal_exits_2_with_one_line(setup: tuple, where: str) -> None:
    db, frozen, sock, journal = setup
    Journal(journal).close()
    data = bytearray(journal.read_bytes())
    assert len(data) > 8192
    if where == "header":
        data[:100] = b"\xa5" * 100
    else:  # the header is fine, the pages after the first are garbage
        data[4096:] = bytes((i * 37 + 11) % 256 for i in range(len(data) - 4096))
    journal.write_bytes(data)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "signals", "live", "--params", str(frozen), "--db", str(db),
         "--socket", str(sock), "--journal", str(journal)],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert time.monotonic() - started < 10
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(journal) in errors[0] and "journal is damaged" in errors[0], (
        result.stderr
    )


def start_bot(sock: Path, db: Path, ledger: Path, *args: str) -> subprocess.Popen[str]:
    """Start ``signals paper`` on the runner's socket."""
    return subprocess.Popen(
        [sys.executable, "-m", "signals", "paper", "--socket", str(sock), "--db", str(db),
         "--ledger", str(ledger), "--since-seq", "0", *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def ledger_rows(ledger: Path) -> list[tuple[str, int, int, str]]:
    """Return (stream, seq, candle_ts, side) of every recorded signal (none before it exists)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)) as conn:
            return conn.execute(
                "SELECT stream, seq, candle_ts, signal FROM signals ORDER BY id"
            ).fetchall()
    except sqlite3.Error:
        return []


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Poll `condition` until it holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def journal_rows(journal: Path) -> list[tuple[int, int, str]]:
    """Return (seq, candle_ts, side) of every journaled signal."""
    with contextlib.closing(sqlite3.connect(f"file:{journal}?mode=ro", uri=True)) as conn:
        lines = conn.execute("SELECT line FROM signals ORDER BY seq").fetchall()
    return [(m["seq"], m["candle_ts"], m["signal"]) for m in (json.loads(r[0]) for r in lines)]


def test_paper_bot_refuses_a_new_stream_unless_told_to_follow_it(setup: tuple) -> None:
    db, frozen, sock, journal = setup
    candles = random_walk(400, seed=3)
    ledger = sock.parent / "paper.db"

    def run_runner(start: int, stop: int) -> tuple[str, list[tuple[int, int, str]]]:
        """Start a runner, write candles[start:stop], return its stream and journal."""
        proc = start_runner(frozen, db, sock, "--journal", str(journal))
        try:
            wait_listening(sock, proc)
            stream = hello(sock)["stream"]
            replay(db, candles, "1m", start, stop)
            wait_caught_up(sock, int(candles.index[stop - 1].timestamp()))
            return stream, journal_rows(journal)
        finally:
            stop_runner(proc)

    # stream A: the bot records its signals
    proc = start_runner(frozen, db, sock, "--journal", str(journal))
    try:
        wait_listening(sock, proc)
        stream_a = hello(sock)["stream"]
        bot = start_bot(sock, db, ledger)
        try:
            wait_for(lambda: _meta(ledger, "stream") == stream_a, "the bot's first hello")
            replay(db, candles, "1m", 200, 260)
            wait_caught_up(sock, int(candles.index[259].timestamp()))
            old = journal_rows(journal)
            assert old
            wait_for(lambda: len(ledger_rows(ledger)) == len(old), "stream A's signals")
        finally:
            bot.terminate()
            bot.communicate(timeout=10)
    finally:
        stop_runner(proc)
    # the journal is lost: a new one is stream B, and its seqs restart at 1
    remove_journal(journal)
    stream_b, new = run_runner(260, 330)
    assert stream_b != stream_a and new and new[0][0] == 1
    proc = start_runner(frozen, db, sock, "--journal", str(journal))
    try:
        wait_listening(sock, proc)
        bot = start_bot(sock, db, ledger)
        try:
            _, stderr = bot.communicate(timeout=20)
        finally:
            if bot.poll() is None:
                bot.kill()
                bot.communicate()
        print(stderr)
        assert bot.returncode == 2, stderr
        assert "Traceback" not in stderr
        (line,) = [x for x in stderr.splitlines() if x.startswith("error:")]
        assert stream_a in line and stream_b in line and "--follow-new-stream" in line
        assert ledger_rows(ledger) == [(stream_a, *row) for row in old]  # nothing recorded
        bot = start_bot(sock, db, ledger, "--follow-new-stream")
        try:
            wait_for(lambda: len(ledger_rows(ledger)) == len(old) + len(new), "stream B")
        finally:
            bot.terminate()
            _, stderr = bot.communicate(timeout=10)
        assert bot.returncode == 0, stderr
        assert "event=stream_switch" in stderr and stream_b in stderr
    finally:
        stop_runner(proc)
    # every signal of both streams is in the ledger, none dropped as a duplicate seq
    assert ledger_rows(ledger) == [(stream_a, *r) for r in old] + [(stream_b, *r) for r in new]
    assert _meta(ledger, "stream") == stream_b


def _meta(ledger: Path, key: str) -> object:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)) as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    except sqlite3.Error:
        return None
    return None if row is None else json.loads(row[0])


def test_a_journal_from_before_streams_gets_one_and_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(
            "CREATE TABLE signals (seq INTEGER PRIMARY KEY, params_id TEXT NOT NULL, "
            "candle_ts INTEGER NOT NULL, line TEXT NOT NULL, emitted_at REAL NOT NULL, "
            "UNIQUE (params_id, candle_ts))"
        )
        conn.execute("INSERT INTO signals VALUES (5, 'p', 60, '{}', 0.0)")
    first = Journal(path)
    stream = first.stream
    first.close()
    again = Journal(path)
    try:
        assert re.fullmatch(r"[0-9a-f]{32}", stream) and again.stream == stream
        assert again.last_seq() == 5
    finally:
        again.close()
