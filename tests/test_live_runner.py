"""``signals live`` as a real process on real sockets: clients, security, signals, errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import stat
import struct
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from signals.frozen import FrozenParams, write_frozen
from tests.candles import random_walk
from tests.livekit import (
    ROOT,
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

TOKEN = "s3cret-token"
EMA = {"fast": 2, "slow": 5}  # signals every few candles


@dataclass
class Session:
    """A runner started once for the tests of this module that share it."""

    proc: subprocess.Popen[bytes]
    sock: Path
    db: Path
    frozen: Path
    candles: object
    next_candle: int
    tcp_port: int
    metrics_port: int
    startup_s: float

    def write(self, n: int, pause_s: float = 0.0) -> int:
        """Write the next `n` candles; return the open time of the last one."""
        start, self.next_candle = self.next_candle, self.next_candle + n
        replay(self.db, self.candles, "1m", start, self.next_candle, pause_s)  # type: ignore[arg-type]  # Session.candles is a frame, typed object
        return int(self.candles.index[self.next_candle - 1].timestamp())  # type: ignore[attr-defined]  # Session.candles is a frame, typed object


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    tmp = tmp_path_factory.mktemp("live")
    candles = random_walk(2000, seed=3)
    db, sock = tmp / "candles.db", tmp / "live.sock"
    frozen = write_frozen_file(tmp / "ema.json", "ema_cross", "1m", EMA)
    seed_db(db, candles, "1m", 200)
    config = tmp / "signals.yaml"
    config.write_text("live:\n  client_buffer_bytes: 16384\n  drain_s: 0.5\n")
    tcp_port, metrics_port = free_port(), free_port()
    started = time.monotonic()
    proc = start_runner(
        frozen, db, sock, "--config", str(config), "--heartbeat", "0.2",
        "--tcp", f"127.0.0.1:{tcp_port}", "--metrics-port", str(metrics_port),
        env={"SIGNALS_LIVE_TOKEN": TOKEN},
    )  # fmt: skip
    wait_listening(sock, proc)
    startup = time.monotonic() - started
    s = Session(proc, sock, db, frozen, candles, 200, tcp_port, metrics_port, startup)
    wait_caught_up(sock, int(candles.index[199].timestamp()))
    yield s
    stop_runner(proc, signal.SIGKILL)


def test_starts_thin_and_0660(session: Session) -> None:
    # thin is what makes it start fast; the time itself is measured in benchmarks, not here
    print(f"listening {session.startup_s:.2f} s after start")
    assert stat.S_IMODE(session.sock.stat().st_mode) == 0o660
    with LineClient(session.sock) as client:
        hello = client.read_type("hello")
    assert hello["strategy"] == "ema_cross" and hello["protocol"] == 1
    one = {k: hello[k] for k in ("symbol", "timeframe", "strategy", "params_id")}
    assert hello["streams"] == [one]  # a one-stream runner lists its one stream
    data = status(session.sock)
    assert data["heavy_modules"] == []
    assert [s["params_id"] for s in data["streams"]] == [one["params_id"]]
    assert data["watch_mode"] == "inotify"


def test_many_clients_get_the_same_stream_and_heartbeats(session: Session) -> None:
    clients = [LineClient(session.sock) for _ in range(6)]
    try:
        first = [c.read_type("hello")["last_seq"] for c in clients]
        last_ts = session.write(40)
        final = wait_caught_up(session.sock, last_ts)
        streams = []
        for client, since in zip(clients, first, strict=True):
            got, beats = [], 0
            while not got or got[-1]["seq"] < final["last_seq"]:
                message = client.read()
                assert message is not None
                beats += message["type"] == "heartbeat"
                if message["type"] == "signal":
                    got.append(message)
            assert got[0]["seq"] == since + 1
            streams.append(got)
            while beats == 0:
                beats += client.read_type("heartbeat")["type"] == "heartbeat"
        assert len(streams[0]) >= 5
        assert all(stream == streams[0] for stream in streams)
        figures = status(session.sock)
        for name in ("decide_ms", "journal_ms"):  # one figure per decided step
            assert figures[name]["count"] >= 1 and 0 < figures[name]["p50_ms"] < 1000
        assert figures["latency_ms"]["count"] >= len(streams[0])
        assert figures["empty_checks"] >= 0
    finally:
        for client in clients:
            client.close()


def test_slow_and_vanishing_clients_never_stop_the_others(session: Session) -> None:
    slow = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    slow.connect(str(session.sock))
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    vanishing = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    vanishing.connect(str(session.sock))
    vanishing.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    drops_before = status(session.sock)["drops"]
    with LineClient(session.sock) as good:
        good.read_type("hello")
        vanishing.close()  # reset by peer, mid-stream
        slow.setblocking(False)
        request = b'{"type":"status"}\n' * 200
        sent = 0
        for _ in range(200):  # asks a lot, reads nothing
            try:
                sent += slow.send(request)
            except BlockingIOError:
                time.sleep(0.01)
            except (BrokenPipeError, ConnectionResetError):
                break  # dropped by the runner: what we wanted
        last_ts = session.write(20)
        final = wait_caught_up(session.sock, last_ts)
        seen = 0
        while seen < final["last_seq"]:
            seen = max(seen, good.read_type("signal")["seq"])
        good.read_type("heartbeat")
    slow.close()
    data = status(session.sock)
    assert data["drops"] >= drops_before + 1
    assert "event=client_dropped" in runner_log(session.sock)
    assert session.proc.poll() is None


def test_resume_replays_in_order_then_goes_live(session: Session) -> None:
    last_seq = status(session.sock)["last_seq"]
    assert last_seq >= 5
    with LineClient(session.sock) as client:
        client.read_type("hello")
        client.send({"type": "resume", "since_seq": 2})
        replayed = [client.read_type("signal") for _ in range(last_seq - 2)]
        assert [s["seq"] for s in replayed] == list(range(3, last_seq + 1))
        last_ts = session.write(30)
        final = wait_caught_up(session.sock, last_ts)
        live = [client.read_type("signal") for _ in range(final["last_seq"] - last_seq)]
    assert [s["seq"] for s in live] == list(range(last_seq + 1, final["last_seq"] + 1))


def test_tcp_requires_the_token(session: Session) -> None:
    address = ("127.0.0.1", session.tcp_port)
    with LineClient(address) as anonymous:
        anonymous.send({"type": "status"})
        assert anonymous.read_type("error")["message"] == "authentication required"
        assert anonymous.read() is None
    with LineClient(address) as wrong:
        wrong.send({"type": "auth", "token": "nope"})
        assert wrong.read_type("error")
        assert wrong.read() is None
    with LineClient(address) as ok:
        ok.send({"type": "auth", "token": TOKEN})
        assert ok.read_type("hello")["strategy"] == "ema_cross"
    assert status(session.sock)["auth_failures"] >= 2


def test_metrics_endpoint(session: Session) -> None:
    url = f"http://127.0.0.1:{session.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        body = response.read().decode()
    assert "signals_live_signals_emitted " in body
    assert "signals_live_latency_ms_p99_ms " in body


def test_sighup_reload_keeps_the_old_file_when_the_new_one_is_bad(session: Session) -> None:
    before = status(session.sock)
    good = session.frozen.read_text()
    session.frozen.write_text("{ not json")
    session.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while status(session.sock)["reload_failures"] < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    after_bad = status(session.sock)
    assert after_bad["reload_failures"] == 1 and after_bad["params_id"] == before["params_id"]
    session.frozen.write_text(good)
    write_frozen_file(session.frozen, "ema_cross", "1m", {"fast": 3, "slow": 8})
    session.proc.send_signal(signal.SIGHUP)
    while status(session.sock)["reloads"] < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    after = status(session.sock)
    assert after["reloads"] == 1 and after["params_id"] != before["params_id"]
    with LineClient(session.sock) as client:
        assert client.read_type("hello")["params_id"] == after["params_id"]
        last_ts = session.write(40)
        wait_caught_up(session.sock, last_ts)
        new = client.read_type("signal")
    assert new["params_id"] == after["params_id"]
    assert new["candle_ts"] > before["last_candle_ts"]  # continues from the current candle
    assert "event=reload_failed" in runner_log(session.sock)


def test_sigterm_drains_and_removes_the_socket(session: Session) -> None:
    assert session.sock.exists()
    assert stop_runner(session.proc, signal.SIGTERM) == 0
    assert not session.sock.exists()
    assert "event=stopped" in runner_log(session.sock)


# -- start-time errors (each its own process) -------------------------------------------------


def run_live(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "signals", "live", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_corrupt_frozen_file_exits_2_with_a_clear_message(tmp_path: Path) -> None:
    frozen = tmp_path / "bad.json"
    frozen.write_text('{"schema_version": 1, ')
    db = tmp_path / "c.db"
    seed_db(db, random_walk(10), "1m", 10)
    done = run_live("--params", str(frozen), "--db", str(db), "--socket", str(tmp_path / "s"))
    assert done.returncode == 2
    assert "error:" in done.stderr and "not valid JSON" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "s").exists()


def test_missing_database_is_a_clear_error(tmp_path: Path) -> None:
    frozen = write_frozen_file(tmp_path / "f.json", "ema_cross", "1m", EMA)
    done = run_live("--params", str(frozen), "--db", str(tmp_path / "none.db"))
    assert done.returncode == 2 and "database not found" in done.stderr


def test_strategy_hash_mismatch_is_refused_unless_allowed(tmp_path: Path) -> None:
    frozen = write_frozen_file(tmp_path / "f.json", "ema_cross", "1m", EMA)
    raw = json.loads(frozen.read_text())
    raw.pop("identity")  # a file frozen before identity v2: the strategy_hash rule applies
    raw["strategy_hash"] = "0" * 64  # as if the code changed since: written sealed, not edited
    write_frozen(FrozenParams.model_validate(raw), frozen)
    db, sock = tmp_path / "c.db", tmp_path / "s.sock"
    seed_db(db, random_walk(50), "1m", 50)
    done = run_live("--params", str(frozen), "--db", str(db), "--socket", str(sock))
    assert done.returncode == 2 and "strategy_hash" in done.stderr
    assert "--allow-hash-mismatch" in done.stderr
    proc = start_runner(frozen, db, sock, "--allow-hash-mismatch")
    wait_listening(sock, proc)
    assert stop_runner(proc) == 0


def test_signals_carry_the_files_params_id_when_shared_code_changed_since(tmp_path: Path) -> None:
    # A file frozen under other shared strategy code (another strategy_hash, so another
    # params_id) whose behaviour is unchanged is accepted (identity v2): its signals must carry
    # the params_id the hello and the journal name, the file's own, not one recomputed today.
    from signals.frozen import load_frozen, typed_params
    from signals.identity import params_id
    from strategies import get_strategy

    frozen = write_frozen_file(tmp_path / "f.json", "ema_cross", "1m", EMA)
    raw = json.loads(frozen.read_text())
    typed = typed_params(load_frozen(frozen))
    raw["strategy_hash"] = "1" * 64  # written sealed by the freeze of that day, not edited
    raw["params_id"] = params_id(get_strategy("ema_cross"), "1m", typed, hash_="1" * 64)
    write_frozen(FrozenParams.model_validate(raw), frozen)
    assert load_frozen(frozen).params_id == raw["params_id"]  # accepted: behaviour unchanged
    candles = random_walk(200)
    db, sock = tmp_path / "c.db", tmp_path / "s.sock"
    seed_db(db, candles, "1m", 100)
    proc = start_runner(frozen, db, sock)
    try:
        wait_listening(sock, proc)
        with LineClient(sock) as client:
            hello = client.read_type("hello")
            replay(db, candles, "1m", 100, 200)
            signal_ = client.read_type("signal")
        assert [s["params_id"] for s in hello["streams"]] == [raw["params_id"]]
        assert signal_["params_id"] == raw["params_id"]
    finally:
        stop_runner(proc)


LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
conn.execute("UPDATE candles SET volume = volume WHERE rowid = 1")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""


def test_locked_database_is_retried_and_caught_up(tmp_path: Path) -> None:
    candles = random_walk(300, seed=5)
    db, sock = tmp_path / "c.db", tmp_path / "s.sock"
    seed_db(db, candles, "1m", 150)
    conn = sqlite3.connect(db)  # rollback journal: a writer blocks readers
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.close()
    config = tmp_path / "signals.yaml"
    config.write_text("data:\n  busy_timeout_ms: 100\n")
    frozen = write_frozen_file(tmp_path / "f.json", "ema_cross", "1m", EMA)
    proc = start_runner(frozen, db, sock, "--config", str(config), "--heartbeat", "0.1")
    try:
        wait_listening(sock, proc)
        wait_caught_up(sock, int(candles.index[149].timestamp()))
        with subprocess.Popen(
            [sys.executable, "-c", LOCKER, str(db), "1.5"], stdout=subprocess.PIPE, text=True
        ) as locker:
            assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
            with LineClient(sock) as client:  # served while the database is locked
                client.read_type("hello")
                assert client.read_type("heartbeat")
            assert locker.wait(timeout=10) == 0
        replay(db, candles, "1m", 150, 200)
        final = wait_caught_up(sock, int(candles.index[199].timestamp()))
    finally:
        code = stop_runner(proc)
    assert code == 0
    assert final["db_retries"] >= 1, runner_log(sock)
    assert "event=db_retry" in runner_log(sock)
    assert final["signals_emitted"] >= 5


HEAVY_CHECK = """
import sys
from signals.cli import main
sys.argv = ["signals", "live", "--help"]
try:
    main()
except SystemExit:
    pass
heavy = ("vectorbt", "optuna", "jupyter", "jupyterlab", "plotly", "numba", "matplotlib")
print("HEAVY", sorted({m.partition(".")[0] for m in sys.modules} & set(heavy)))
"""


def test_live_help_imports_no_heavy_library() -> None:
    done = subprocess.run(
        [sys.executable, "-c", HEAVY_CHECK], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "--params" in done.stdout
    assert "HEAVY []" in done.stdout


def test_socket_owned_by_someone_else_is_refused(tmp_path: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("needs root to create a file owned by another user")
    sock = tmp_path / "other.sock"
    sock.write_text("")
    os.chown(sock, 65534, 65534)
    frozen = write_frozen_file(tmp_path / "f.json", "ema_cross", "1m", EMA)
    db = tmp_path / "c.db"
    seed_db(db, random_walk(10), "1m", 10)
    done = run_live("--params", str(frozen), "--db", str(db), "--socket", str(sock))
    assert done.returncode == 2 and "owned by uid 65534" in done.stderr
    assert sock.exists()
