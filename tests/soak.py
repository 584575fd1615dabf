"""The live soak: a simulated month of 1m candles through `signals live`, 3 clients, a kill -9.

A writer thread appends one candle per transaction as fast as SQLite takes them; the runner
decides them (in batches when it falls behind, as after any pause). Three clients collect every
signal, resuming by seq across the kill. The runner's resident memory is sampled from
/proc/<pid>/status. `run_soak` returns the figures; tests/test_live_soak.py asserts them and
benchmarks/live_soak.py records them in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import signal
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from signals.data.store import CandleStore, connect_writable, write_candles
from signals.scan import signal_records
from strategies import get_strategy
from tests.candles import random_walk
from tests.livekit import (
    Collector,
    runner_log,
    start_runner,
    status,
    stop_runner,
    wait_caught_up,
    wait_listening,
    write_frozen_file,
)

PARAMS = {"fast": 5, "slow": 20}
WARMUP_CANDLES = 2_000  # candles after a start before the memory baseline is taken
HISTORY = 500


@dataclass
class SoakResult:
    """What one soak run measured."""

    candles: int
    seconds: float
    signals: int
    expected: int
    clients: int
    duplicates: int
    equal_to_scan: bool
    rss_mb: list[tuple[int, float]] = field(default_factory=list)  # (candles written, MB)
    growth_mb: float = 0.0  # after warm-up, second process
    killed_at: int = 0
    exit_code: int | None = None


def rss_mb(pid: int) -> float:
    """Return the resident set size of `pid` in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def _writer(db: Path, rows: list[tuple[Any, ...]], start: int, stop: int) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA synchronous = NORMAL")
    sql = (
        "INSERT INTO candles (symbol, timeframe, timestamp, open, high, low, close, volume, "
        "buy_volume, trades, closed) VALUES ('BTCUSDT','1m',?,?,?,?,?,?,?,?,1)"
    )
    for i in range(start, stop):
        conn.execute(sql, rows[i])  # one candle per transaction (autocommit)
    conn.close()


def run_soak(tmp: Path, *, days: int = 30, clients: int = 3, seed: int = 21) -> SoakResult:
    """Run the soak in `tmp` and return its figures (see the module docstring)."""
    total = HISTORY + days * 1440
    candles = random_walk(total, seed=seed)
    db, sock = tmp / "candles.db", tmp / "live.sock"
    conn = connect_writable(db)
    write_candles(conn, candles.iloc[:HISTORY], symbol="BTCUSDT", timeframe="1m")
    conn.close()
    stamps = candles.index.as_unit("s").asi8
    values = candles[["open", "high", "low", "close", "volume", "buy_volume", "trades"]]
    rows = [(int(t), *map(float, v)) for t, v in zip(stamps, values.to_numpy(), strict=True)]
    frozen = write_frozen_file(tmp / "frozen.json", "ema_cross", "1m", PARAMS)

    started = time.monotonic()
    proc = start_runner(frozen, db, sock, "--heartbeat", "1")
    wait_listening(sock, proc)
    wait_caught_up(sock, int(stamps[HISTORY - 1]))
    collectors = [Collector(sock) for _ in range(clients)]
    for c in collectors:
        c.start()
    middle = HISTORY + (total - HISTORY) // 2
    result = SoakResult(0, 0.0, 0, 0, clients, 0, False, killed_at=middle)

    def write_and_sample(start: int, stop: int, pid: int) -> None:
        step = max(1, (stop - start) // 10)
        for at in range(start, stop, step):
            end = min(stop, at + step)
            _writer(db, rows, at, end)
            wait_caught_up(sock, int(stamps[end - 1]), timeout=300)
            result.rss_mb.append((end, round(rss_mb(pid), 1)))

    write_and_sample(HISTORY, middle, proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    _writer(db, rows, middle, middle + 60)  # an hour closes while it is down
    proc = start_runner(frozen, db, sock, "--heartbeat", "1")
    wait_listening(sock, proc)
    wait_caught_up(sock, int(stamps[middle + 59]), timeout=120)
    warm = middle + 60 + WARMUP_CANDLES
    _writer(db, rows, middle + 60, warm)
    wait_caught_up(sock, int(stamps[warm - 1]), timeout=120)
    baseline = rss_mb(proc.pid)
    write_and_sample(warm, total, proc.pid)
    final = status(sock)
    result.growth_mb = round(result.rss_mb[-1][1] - baseline, 1)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(c.last_seq < final["last_seq"] for c in collectors):
        time.sleep(0.1)
    for c in collectors:
        c.stop()
    result.exit_code = stop_runner(proc)
    result.seconds = round(time.monotonic() - started, 1)
    result.candles = total - HISTORY

    with CandleStore(db) as store:
        stored = store.history("BTCUSDT", "1m")
    strategy = get_strategy("ema_cross")
    want = signal_records(
        stored, strategy, strategy.params(PARAMS), symbol="BTCUSDT", timeframe="1m",
        since=pd.Timestamp(int(stamps[HISTORY]), unit="s", tz="UTC"),
    )  # fmt: skip
    key = ("candle_ts", "signal", "price", "reasons")
    expected = [tuple(r[k] for k in key) for r in want]
    result.expected = len(expected)
    equal = True
    for c in collectors:
        got = [tuple(s[k] for k in key) for s in c.signals]
        seqs = np.array([s["seq"] for s in c.signals])
        result.duplicates += int(len(seqs) - len(np.unique(seqs)))
        equal = equal and got == expected
    result.signals = len(collectors[0].signals)
    result.equal_to_scan = equal
    if not equal or result.exit_code != 0:
        print(runner_log(sock)[-5000:])
    return result
