"""Helpers for the live-runner tests: databases, a runner subprocess, a line client."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd

from signals.data.store import connect_writable, write_candles
from signals.frozen import freeze, write_frozen

ROOT = Path(__file__).resolve().parents[1]
FREQ = {"1m": "1min", "5m": "5min", "15m": "15min", "1h": "1h"}


def write_frozen_file(
    path: Path, strategy: str, timeframe: str, params: dict[str, Any] | None = None
) -> Path:
    """Freeze `strategy` with `params` and write it to `path`."""
    return write_frozen(freeze(strategy=strategy, timeframe=timeframe, params=params or {}), path)


def free_port() -> int:
    """Return a TCP port of 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def seed_db(db: Path, candles: pd.DataFrame, timeframe: str, upto: int) -> None:
    """Write the first `upto` candles (closed) into a fresh reference database."""
    conn = connect_writable(db)
    write_candles(conn, candles.iloc[:upto], symbol="BTCUSDT", timeframe=timeframe)
    conn.close()


def replay(
    db: Path, candles: pd.DataFrame, timeframe: str, start: int, stop: int, pause_s: float = 0.0
) -> None:
    """Write candles[start:stop] one per transaction, as the pipeline would."""
    conn = connect_writable(db)
    for i in range(start, stop):
        write_candles(conn, candles.iloc[i : i + 1], symbol="BTCUSDT", timeframe=timeframe)
        if pause_s:
            time.sleep(pause_s)
    conn.close()


def start_runner(
    frozen: Path, db: Path, sock: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``signals live`` as a subprocess (stderr to a log file beside the socket)."""
    log = open(sock.with_suffix(".log"), "ab")  # noqa: SIM115 - closed by the child's exit
    cmd = [sys.executable, "-m", "signals", "live", "--params", str(frozen), "--db", str(db)]
    cmd += ["--socket", str(sock), *args]
    full_env = {**os.environ, **(env or {})}
    try:
        return subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=log, env=full_env)
    finally:
        log.close()


def wait_listening(sock: Path, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> float:
    """Wait until the runner accepts connections; return the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"runner exited with {proc.returncode}: {runner_log(sock)}")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.connect(str(sock))
                return time.monotonic() - started
        except OSError:
            time.sleep(0.01)
    raise AssertionError(f"runner not listening after {timeout}s: {runner_log(sock)}")


def runner_log(sock: Path) -> str:
    """Return the runner's log (its stderr)."""
    path = sock.with_suffix(".log")
    return path.read_text(errors="replace") if path.exists() else ""


def stop_runner(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    """Send `sig` and wait for the exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


class LineClient:
    """A blocking JSON-lines client of the runner's socket (Unix path or (host, port))."""

    def __init__(self, address: Path | tuple[str, int], timeout: float = 10.0) -> None:
        if isinstance(address, tuple):
            self.sock = socket.create_connection(address, timeout=timeout)
        else:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            try:
                self.sock.connect(str(address))
            except OSError:
                self.sock.close()
                raise
        self.file = self.sock.makefile("rb")

    def send(self, message: dict[str, Any]) -> None:
        """Send one message as a JSON line."""
        self.sock.sendall((json.dumps(message) + "\n").encode())

    def read(self) -> dict[str, Any] | None:
        """Read one message (None at end of stream)."""
        line = self.file.readline()
        return json.loads(line) if line else None

    def read_type(self, kind: str) -> dict[str, Any]:
        """Read messages until one of type `kind` arrives."""
        while True:
            message = self.read()
            assert message is not None, f"stream ended before a {kind!r} message"
            if message["type"] == kind:
                return message

    def close(self) -> None:
        """Close the connection."""
        self.file.close()
        self.sock.close()

    def __enter__(self) -> LineClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def status(sock: Path) -> dict[str, Any]:
    """Connect, ask for ``status``, return its data."""
    with LineClient(sock) as client:
        client.read_type("hello")
        client.send({"type": "status"})
        return client.read_type("status")["data"]


class Collector(threading.Thread):
    """Collect every signal; reconnect and ``resume`` by seq whenever the runner goes away."""

    def __init__(self, sock: Path) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.signals: list[dict[str, Any]] = []
        self.connections = 0
        self.halt = threading.Event()
        self._client: LineClient | None = None

    @property
    def last_seq(self) -> int:
        """Return the seq of the newest collected signal (0 when none)."""
        return self.signals[-1]["seq"] if self.signals else 0

    def run(self) -> None:
        """Connect, resume, read until halted, reconnecting after any failure."""
        while not self.halt.is_set():
            try:
                client = LineClient(self.sock, timeout=2.0)
            except OSError:
                time.sleep(0.02)
                continue
            client.sock.settimeout(None)
            self._client = client
            self.connections += 1
            try:
                self._read(client)
            except (OSError, ValueError):
                pass
            finally:
                client.close()

    def _read(self, client: LineClient) -> None:
        client.send({"type": "resume", "since_seq": self.last_seq})
        while not self.halt.is_set():
            message = client.read()
            if message is None:
                return
            if message["type"] == "signal":
                self.signals.append(message)

    def stop(self) -> None:
        """Stop collecting and wait for the thread."""
        self.halt.set()
        if self._client is not None:
            with contextlib.suppress(OSError):
                self._client.sock.shutdown(socket.SHUT_RDWR)
        self.join(timeout=5)


def wait_caught_up(sock: Path, candle_ts: int, timeout: float = 60.0) -> dict[str, Any]:
    """Wait until the runner's processed mark reaches `candle_ts`; return its status."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            last = status(sock)
        except OSError:
            time.sleep(0.05)
            continue
        if last.get("last_candle_ts") == candle_ts:
            return last
        time.sleep(0.05)
    raise AssertionError(f"runner did not reach {candle_ts}: {last}\n{runner_log(sock)}")
