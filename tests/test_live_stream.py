"""The journal's identity on the wire: ``stream`` in the hello, ``unknown_seq``, a damaged journal.

A real ``signals live`` process on a real Unix socket, each test with its own runner.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
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
