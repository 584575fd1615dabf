"""Faults of clients and signals against a real ``signals live`` process on real sockets.

Clients: a line over 64 KiB, a line left unfinished, too many connections, garbage lines, a
wrong token, a thousand clients that vanish. Signals: SIGTERM/SIGINT with clients in every
state, SIGHUP with a frozen file that cannot be used. Each fault is said (an error line with a
stable code, a log line), counted in ``status`` and ends at most its own connection.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import socket
import struct
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from live.journal import Journal, SeriesKey
from live.start import build_config
from signals.config import parse_settings
from signals.frozen import FrozenParams, dumps
from signals.protocol import MAX_LINE_BYTES
from tests.candles import random_walk
from tests.livekit import (
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

TOKEN = "fault-token"
EMA = {"fast": 2, "slow": 5}  # signals every few candles
IDLE_LINE_S = 0.5  # live.client_idle_line_s of the shared runner


@dataclass
class Runner:
    """A runner subprocess and what it follows."""

    proc: subprocess.Popen[bytes]
    sock: Path
    db: Path
    frozen: Path
    candles: pd.DataFrame
    next_candle: int
    tcp_port: int = 0

    def write(self, n: int) -> int:
        """Write the next `n` candles; return the open time of the last one."""
        start, self.next_candle = self.next_candle, self.next_candle + n
        replay(self.db, self.candles, "1m", start, self.next_candle)
        return int(self.candles.index[self.next_candle - 1].timestamp())

    def rss_kib(self) -> int:
        """Return the runner's resident set size (VmRSS) in KiB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


def launch(tmp: Path, *args: str, yaml: str = "", seed: int = 3) -> Runner:
    """Start a runner on 200 stored candles (of 3000) and wait until it listens and caught up."""
    candles = random_walk(3000, seed=seed)
    db, sock = tmp / "candles.db", tmp / "live.sock"
    frozen = write_frozen_file(tmp / "ema.json", "ema_cross", "1m", EMA)
    seed_db(db, candles, "1m", 200)
    config = tmp / "signals.yaml"
    config.write_text("live:\n  drain_s: 0.5\n" + yaml)
    proc = start_runner(
        frozen, db, sock, "--config", str(config), "--heartbeat", "0.2", *args,
        env={"SIGNALS_LIVE_TOKEN": TOKEN},
    )  # fmt: skip
    runner = Runner(proc, sock, db, frozen, candles, 200)
    try:
        wait_listening(sock, proc)
        wait_caught_up(sock, int(candles.index[199].timestamp()))
    except BaseException:
        stop_runner(proc, signal.SIGKILL)
        raise
    return runner


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    tmp = tmp_path_factory.mktemp("faults")
    port = free_port()
    runner = launch(
        tmp, "--tcp", f"127.0.0.1:{port}", yaml=f"  client_idle_line_s: {IDLE_LINE_S}\n"
    )
    runner.tcp_port = port
    yield runner
    stop_runner(runner.proc, signal.SIGKILL)


def read_raw(sock: socket.socket, timeout: float = 5.0) -> list[dict[str, Any]]:
    """Read every line until the server closes the connection; fail after `timeout` seconds."""
    data, deadline = b"", time.monotonic() + timeout
    sock.settimeout(timeout)
    while chunk := sock.recv(65536):
        data += chunk
        assert time.monotonic() < deadline, f"connection still open after {timeout} s: {data!r}"
    return [json.loads(line) for line in data.splitlines()]


def unix(path: Path, timeout: float = 5.0) -> socket.socket:
    """Return a connected Unix socket with a timeout."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(str(path))
    return sock


def tcp(port: int, timeout: float = 5.0) -> socket.socket:
    """Return a connected TCP socket with a timeout."""
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def wait_status(sock: Path, ready: Any, timeout: float = 10.0) -> dict[str, Any]:
    """Poll ``status`` until `ready(data)` holds; return the data."""
    deadline = time.monotonic() + timeout
    data: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            data = status(sock)
        except (OSError, AssertionError):  # refused while full, or gone: ask again
            data = {}
        if data and ready(data):
            return data
        time.sleep(0.05)
    raise AssertionError(f"status never ready: {data}\n{runner_log(sock)[-3000:]}")


# -- fault 8: clients --------------------------------------------------------------------------


def test_line_reader_frames_bounds_and_times_out_only_unfinished_lines() -> None:
    from live.server import LineError, LineReader  # here: the other tests run on older code

    async def scenario() -> None:
        reader = asyncio.StreamReader()
        lines = LineReader(reader, idle_line_s=0.1)
        reader.feed_data(b'{"a":1}\n{"b"')
        assert await lines.readline() == b'{"a":1}\n'
        reader.feed_data(b":2}\n" + b"x" * (MAX_LINE_BYTES - 1) + b"\n")
        assert await lines.readline() == b'{"b":2}\n'
        assert len(await lines.readline() or b"") == MAX_LINE_BYTES  # at the bound: served
        reader.feed_data(b"y" * MAX_LINE_BYTES + b"\n")
        with pytest.raises(LineError) as too_long:
            await lines.readline()
        assert too_long.value.code == "line_too_long"

        silent = LineReader(asyncio.StreamReader(), idle_line_s=0.05)
        with pytest.raises(TimeoutError):  # nothing sent: no fault, only the caller's timeout
            await asyncio.wait_for(silent.readline(), 0.3)

        reader = asyncio.StreamReader()
        unfinished = LineReader(reader, idle_line_s=0.1)
        reader.feed_data(b'{"type":"sta')
        started = time.monotonic()
        with pytest.raises(LineError) as idle:
            await unfinished.readline()
        assert idle.value.code == "idle_partial_line"
        assert 0.09 <= time.monotonic() - started < 1.0

        reader = asyncio.StreamReader()
        ending = LineReader(reader)
        reader.feed_data(b'{"type":"sta')
        reader.feed_eof()
        assert await ending.readline() is None  # an unfinished last line is not a request

    asyncio.run(scenario())


@pytest.mark.parametrize("transport", ["unix", "tcp"])
@pytest.mark.parametrize("newline", [True, False])
def test_a_line_over_64_kib_gets_line_too_long_and_only_its_connection_closes(
    shared: Runner, transport: str, newline: bool
) -> None:
    before = status(shared.sock)["closed_clients"]
    with LineClient(shared.sock) as bystander:
        bystander.read_type("hello")
        conn = unix(shared.sock) if transport == "unix" else tcp(shared.tcp_port)
        with conn:
            if transport == "tcp":
                conn.sendall(json.dumps({"type": "auth", "token": TOKEN}).encode() + b"\n")
            huge = b'{"type":"status","pad":"' + b"x" * 70_000 + b'"}' + (b"\n" if newline else b"")
            conn.sendall(huge)
            messages = read_raw(conn)  # ends: the server closed this connection
        errors = [m for m in messages if m["type"] == "error"]
        assert [e["code"] for e in errors] == ["line_too_long"], messages
        assert not any(m["type"] == "status" for m in messages)
        bystander.send({"type": "status"})  # the others are served as before
        assert bystander.read_type("status")["data"]["closed_clients"] == before + 1
    assert "code=line_too_long" in runner_log(shared.sock)


def test_an_unfinished_line_is_closed_but_a_silent_client_stays(shared: Runner) -> None:
    with LineClient(shared.sock) as silent:
        silent.read_type("hello")
        with unix(shared.sock) as partial:
            started = time.monotonic()
            partial.sendall(b'{"type":"sta')
            partial_messages = read_raw(partial)
            elapsed = time.monotonic() - started
        with unix(shared.sock) as dribbler:
            for byte in b'{"type":"status"' * 2:  # a byte every 50 ms, never a newline
                try:
                    dribbler.send(bytes([byte]))
                except OSError:  # closed by the server, as it should be
                    break
                time.sleep(0.05)
            dribbler_messages = read_raw(dribbler)
        for messages in (partial_messages, dribbler_messages):
            kinds = [m["type"] for m in messages if m["type"] != "heartbeat"]
            assert kinds == ["hello", "error"], messages
            assert messages[-1]["code"] == "idle_partial_line"
        assert IDLE_LINE_S * 0.8 <= elapsed < IDLE_LINE_S + 2.0
        # the silent client has now said nothing for more than three idle periods
        assert silent.read_type("heartbeat")
        silent.send({"type": "status"})
        data = silent.read_type("status")["data"]
    assert data["clients"] >= 1
    assert runner_log(shared.sock).count("code=idle_partial_line") >= 2


def test_garbage_lines_get_bad_request_and_the_connection_stays(shared: Runner) -> None:
    garbage = [
        b"not json\n",
        b"\n",
        b"[1, 2]\n",
        b'{"type":"hello"}\n',  # a server message sent by a client
        b'{"type":"resume","since_seq":-1}\n',
        b'{"type":"resume","since_seq":"x"}\n',
        b'{"type":"status","extra":1}\n',
        b"\xff\xfe\n",
    ]
    before = status(shared.sock)["bad_requests"]
    with LineClient(shared.sock) as client:
        client.read_type("hello")
        for line in garbage:
            client.sock.sendall(line)
            error = client.read_type("error")
            assert error["code"] == "bad_request" and error["message"], line
        client.send({"type": "status"})
        data = client.read_type("status")["data"]
    assert data["bad_requests"] == before + len(garbage)


def test_a_wrong_or_missing_token_gets_auth_required(shared: Runner) -> None:
    before = status(shared.sock)["auth_failures"]
    for first_line in (b'{"type":"auth","token":"nope"}\n', b'{"type":"status"}\n', b"junk\n"):
        with tcp(shared.tcp_port) as conn:
            conn.sendall(first_line)
            messages = read_raw(conn)
        assert [(m["type"], m["code"]) for m in messages] == [("error", "auth_required")]
    with tcp(shared.tcp_port) as conn:
        conn.sendall(b'{"type":"auth","token":"' + b"x" * 70_000)  # a token over 64 KiB
        messages = read_raw(conn)
    assert [(m["type"], m["code"]) for m in messages] == [("error", "line_too_long")]
    assert status(shared.sock)["auth_failures"] == before + 3


def vanish(kind: int, runner: Runner) -> None:
    """One client that connects and goes away without a goodbye, in one of five ways."""
    if kind in (0, 1, 2):
        conn = unix(runner.sock)
        if kind == 1:
            conn.sendall(b'{"type":"resu')  # half a line
        elif kind == 2:
            conn.sendall(b'{"type":"resume","since_seq":0}\n{"type":"stat')
        conn.close()  # unread hello: the runner sees a reset
        return
    conn = tcp(runner.tcp_port)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST on close
    if kind == 3:
        conn.sendall(json.dumps({"type": "auth", "token": TOKEN}).encode() + b'\n{"type":')
        conn.recv(1)  # the hello has started: this client is registered
    conn.close()


def test_a_thousand_vanishing_clients_leave_memory_flat(shared: Runner) -> None:
    shared.write(40)  # a few signals in the journal, so resumes replay something
    with LineClient(shared.sock) as steady:
        steady.read_type("hello")
        base = status(shared.sock)["connections"]
        for i in range(100):  # warm-up: allocator arenas, caches, first-use imports
            vanish(i % 5, shared)
        # every cycle served and gone: `steady` and this probe remain
        data = wait_status(
            shared.sock, lambda d: d["connections"] > base + 100 and d["clients"] == 2
        )
        warm, base = shared.rss_kib(), data["connections"]
        started = time.monotonic()
        for i in range(1000):
            vanish(i % 5, shared)
        data = wait_status(
            shared.sock, lambda d: d["connections"] > base + 1000 and d["clients"] == 2
        )
        took = time.monotonic() - started
        after = shared.rss_kib()
        steady.send({"type": "status"})  # the steady client was served throughout
        assert steady.read_type("status")["data"]["pid"] == shared.proc.pid
    print(f"VmRSS after warm-up {warm} KiB, after 1000 more cycles {after} KiB ({took:.2f} s)")
    assert after - warm < 3 * 1024, (warm, after)
    assert data["clients"] == 2
    assert shared.proc.poll() is None


@pytest.fixture
def small(tmp_path: Path) -> Iterator[Runner]:
    port = free_port()
    runner = launch(tmp_path, "--max-clients", "3", "--metrics-port", str(port))
    runner.tcp_port = port  # here: the metrics port
    yield runner
    stop_runner(runner.proc, signal.SIGKILL)


def test_max_clients_refuses_extra_connections_with_too_many_clients(small: Runner) -> None:
    time.sleep(0.1)  # the last status probe of the start has gone
    clients = [LineClient(small.sock) for _ in range(3)]
    try:
        for client in clients:
            client.read_type("hello")
        for _ in range(20):  # a flood of refusals
            with unix(small.sock) as extra:
                messages = read_raw(extra)
            assert [(m["type"], m["code"]) for m in messages] == [("error", "too_many_clients")]
        clients.pop().close()
        data = wait_status(small.sock, lambda d: d["clients"] == 3)  # a slot is free again
    finally:
        for client in clients:
            client.close()
    assert data["refused_clients"] >= 20
    url = f"http://127.0.0.1:{small.tcp_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        body = response.read().decode()
    assert "# TYPE signals_live_refused_clients counter" in body
    assert 1 <= runner_log(small.sock).count("event=client_refused") <= 3  # a line per second


def test_max_clients_setting_and_option(tmp_path: Path) -> None:
    settings = parse_settings({"live": {"max_clients": 7, "client_idle_line_s": 2.5}})
    base = {"params": tmp_path / "f.json", "db": tmp_path / "c.db"}
    config = build_config(settings, **base)
    assert (config.max_clients, config.client_idle_line_s) == (7, 2.5)
    assert build_config(settings, **base, max_clients=9).max_clients == 9
    assert build_config(parse_settings({}), **base).max_clients == 256


# -- fault 10: signals -------------------------------------------------------------------------


def fill_journal(path: Path, n: int) -> None:
    """Journal `n` signals of another parameter set, so a resume from 0 replays a lot."""
    key = SeriesKey("BTCUSDT", "1m", "older")
    common = {
        "type": "signal", "symbol": "BTCUSDT", "timeframe": "1m", "confidence": 0.5,
        "reasons": ["filler for a long replay " * 4], "strategy": "ema_cross",
        "params_id": "older",
    }  # fmt: skip
    records = [
        {**common, "signal": "BUY" if i % 2 else "SELL", "candle_ts": 60 * i, "price": 100.0 + i}
        for i in range(1, n + 1)
    ]
    journal = Journal(path)
    journal.record(key, 60 * n, records)
    journal.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_signal_with_clients_in_every_state_exits_cleanly(
    tmp_path: Path, sig: signal.Signals
) -> None:
    fill_journal(tmp_path / "ema.journal.db", 6000)  # ~2 MB to replay
    runner = launch(tmp_path)
    reading = LineClient(runner.sock)
    resuming = unix(runner.sock)
    never_reads = unix(runner.sock)
    half = unix(runner.sock)
    try:
        reading.read_type("hello")
        resuming.sendall(b'{"type":"resume","since_seq":0}\n')
        first = b""
        while b'"seq":1,' not in first:  # the replay has begun; it cannot end: nobody reads
            chunk = resuming.recv(4096)
            assert chunk, first
            first += chunk
        never_reads.sendall(b'{"type":"status"}\n' * 50)
        half.sendall(b'{"type":"resume","since')
        time.sleep(0.3)
        assert runner.proc.poll() is None
        started = time.monotonic()
        code = stop_runner(runner.proc, sig)
        took = time.monotonic() - started
        replayed = first + b"".join(iter(lambda: resuming.recv(1 << 16), b""))
    finally:
        for conn in (resuming, never_reads, half):
            conn.close()
        reading.close()
    log = runner_log(runner.sock)
    assert code == 0, log
    assert took < 5.0, took
    assert "Traceback" not in log and "CancelledError" not in log, log
    assert "event=stopped" in log
    assert "event=client_dropped" not in log
    assert not runner.sock.exists()
    assert 1 <= replayed.count(b'"type":"signal"') < 6000  # the signal came mid-replay


def hup_and_wait_failure(runner: Runner, failures: int) -> dict[str, Any]:
    """Send SIGHUP and wait until ``reload_failures`` reaches `failures`."""
    runner.proc.send_signal(signal.SIGHUP)
    return wait_status(runner.sock, lambda d: d["reload_failures"] >= failures)


def test_sighup_with_an_unusable_frozen_file_keeps_the_old_parameters(tmp_path: Path) -> None:
    runner = launch(tmp_path)
    try:
        good = runner.frozen.read_text()
        before = status(runner.sock)
        mismatch = json.loads(
            write_frozen_file(tmp_path / "other.json", "ema_cross", "1m", {"fast": 3, "slow": 8})
            .read_text()
        )  # fmt: skip
        mismatch["strategy_hash"] = "0" * 64  # otherwise valid, with other parameters
        mismatch = json.loads(dumps(FrozenParams.model_validate(mismatch)))  # sealed: not an edit

        def garbage() -> None:
            runner.frozen.write_text('{"schema_version": 1, "strat')

        def missing() -> None:
            runner.frozen.unlink()

        def directory() -> None:  # unreadable: reading it raises IsADirectoryError
            runner.frozen.unlink()
            runner.frozen.mkdir()

        def hash_mismatch() -> None:
            runner.frozen.write_text(json.dumps(mismatch))

        for n, spoil in enumerate((garbage, missing, directory, hash_mismatch), start=1):
            spoil()
            data = hup_and_wait_failure(runner, n)
            assert data["reload_failures"] == n and data["reloads"] == 0, spoil.__name__
            assert data["params_id"] == before["params_id"], spoil.__name__
            with LineClient(runner.sock) as client:
                assert client.read_type("hello")["params_id"] == before["params_id"]
                wait_caught_up(runner.sock, runner.write(30))
                signal_line = client.read_type("signal")
            assert signal_line["params_id"] == before["params_id"], spoil.__name__
            if runner.frozen.is_dir():
                shutil.rmtree(runner.frozen)
            runner.frozen.write_text(good)
        log = runner_log(runner.sock)
        assert log.count("event=reload_failed") == 4
        assert "Traceback" not in log
        assert runner.proc.poll() is None
    finally:
        stop_runner(runner.proc, signal.SIGKILL)
