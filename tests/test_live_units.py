"""Unit tests of the runner's parts: journal, hub on a fake transport, sockets, watcher, stale."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from live.hub import Client, Hub, MemoryTransport
from live.journal import Journal, SeriesKey
from live.runner import Runner, RunnerConfig
from live.sockets import bind_unix, check_tcp, parse_tcp, prepare_unix_path
from live.stats import Counters, prometheus_text
from live.watch import DbWatcher
from signals.data.store import CandleStore, connect_writable, upsert_candles, write_candles
from signals.errors import ConfigError
from signals.protocol import decode_server
from tests.candles import random_walk
from tests.livekit import write_frozen_file

KEY = SeriesKey("BTCUSDT", "1m", "pid")


def record(ts: int, side: str = "BUY") -> dict:
    return {
        "type": "signal", "signal": side, "symbol": "BTCUSDT", "timeframe": "1m",
        "candle_ts": ts, "price": 1.5, "confidence": 0.5, "reasons": ["r"],
        "strategy": "ema_cross", "params_id": "pid",
    }  # fmt: skip


def test_journal_seq_survives_reopen_and_never_duplicates(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db", clock=lambda: 100.0)
    assert journal.last_seq() == 0 and journal.last_processed(KEY) is None
    entries = journal.record(KEY, 120, [record(60), record(120, "SELL")])
    assert [e.seq for e in entries] == [1, 2] and journal.last_processed(KEY) == 120
    assert journal.record(KEY, 120, [record(120)]) == []  # same candle again: nothing
    journal.close()
    again = Journal(tmp_path / "j.db")
    assert again.last_seq() == 2 and again.last_processed(KEY) == 120
    # a journaled candle before a new one: the new one takes the next seq, none is skipped
    assert [e.seq for e in again.record(KEY, 180, [record(120), record(180)])] == [3]
    assert [s["candle_ts"] for s in again.signals(1)] == [120, 180]
    assert json.loads(again.since(2)[0].line)["seq"] == 3
    again.close()


def test_journal_signal_and_mark_commit_together(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db")
    with pytest.raises(KeyError):
        journal.record(KEY, 60, [record(60), {"bad": 1}])  # fails mid-way: all rolled back
    assert journal.last_seq() == 0 and journal.last_processed(KEY) is None
    journal.close()


def test_journal_checkpoint_runs_beside_the_writer(tmp_path: Path) -> None:
    # The runner checkpoints from the worker thread while the loop thread may be journaling.
    journal = Journal(tmp_path / "j.db")
    stop, results = threading.Event(), []

    def checkpoints() -> None:
        while not stop.is_set():
            results.append(journal.checkpoint())

    thread = threading.Thread(target=checkpoints)
    thread.start()
    for i in range(1, 301):
        journal.record(KEY, 60 * i, [record(60 * i)])
    stop.set()
    thread.join()
    assert [s["seq"] for s in journal.signals()] == list(range(1, 301))
    assert results and any(copied for _, copied in results)
    frames, copied = journal.checkpoint()
    assert frames == copied  # every committed frame is in the database file now
    alone = tmp_path / "alone.db"  # the database file without its WAL
    alone.write_bytes((tmp_path / "j.db").read_bytes())
    with sqlite3.connect(alone) as conn:
        assert conn.execute("SELECT COUNT(*), MAX(seq) FROM signals").fetchone() == (300, 300)
    journal.close()


def hub_with(tmp_path: Path) -> tuple[Hub, Journal]:
    journal = Journal(tmp_path / "j.db")
    from signals.protocol import Hello

    hello = Hello(strategy="s", params_id="pid", symbol="BTCUSDT", timeframe="1m", last_seq=0)
    hub = Hub(journal, hello=lambda: hello, status=lambda: {"ok": 1}, counters=Counters())
    return hub, journal


def kinds(transport: MemoryTransport) -> list[tuple[str, int | None]]:
    out = []
    for line in transport.lines:
        message = decode_server(line)
        out.append((message.type, getattr(message, "seq", None)))
    return out


def test_resume_then_live_has_no_gap_and_no_duplicate(tmp_path: Path) -> None:
    hub, journal = hub_with(tmp_path)
    hub.broadcast(journal.record(KEY, 120, [record(60), record(120)]))
    client = Client(MemoryTransport(), name="c")
    hub.connect(client)
    committed = journal.record(KEY, 180, [record(180)])  # committed, not yet broadcast

    async def scenario() -> None:
        await hub.resume(client, 0)

    asyncio.run(scenario())
    hub.broadcast(committed)  # arrives after the replay already sent it
    hub.broadcast(journal.record(KEY, 240, [record(240)]))
    assert kinds(client.transport) == [  # type: ignore[arg-type]  # a MemoryTransport here
        ("hello", None), ("signal", 1), ("signal", 2), ("signal", 3), ("signal", 4)
    ]  # fmt: skip
    journal.close()


def test_signals_between_hello_and_resume_are_sent_once_in_order(tmp_path: Path) -> None:
    # A client resumes a moment after its hello; signals committed in between went out live and
    # were then replayed again by the resume (the soak's three clients saw 4 duplicate seqs).
    journal = Journal(tmp_path / "j.db")
    from signals.protocol import Hello

    hello = Hello(strategy="s", params_id="pid", symbol="BTCUSDT", timeframe="1m", last_seq=0)
    hub = Hub(journal, hello=lambda: hello, status=dict, counters=Counters(), resume_grace_s=0.05)
    hub.broadcast(journal.record(KEY, 60, [record(60)]))
    resuming = Client(MemoryTransport(), name="resuming")
    listening = Client(MemoryTransport(), name="listening")  # never sends a line

    async def scenario() -> None:
        hub.connect(resuming)
        hub.connect(listening)
        hub.broadcast(journal.record(KEY, 120, [record(120)]))  # between hello and resume
        await hub.handle_line(resuming, b'{"type":"resume","since_seq":0}\n')
        await asyncio.sleep(0.1)  # the listening client's hold ends
        hub.broadcast(journal.record(KEY, 180, [record(180)]))

    asyncio.run(scenario())
    assert kinds(resuming.transport) == [  # type: ignore[arg-type]  # a MemoryTransport here
        ("hello", None), ("signal", 1), ("signal", 2), ("signal", 3)
    ]  # fmt: skip
    assert kinds(listening.transport) == [  # type: ignore[arg-type]  # a MemoryTransport here
        ("hello", None), ("signal", 2), ("signal", 3)
    ]  # fmt: skip
    journal.close()


def test_overflowing_client_is_dropped_others_continue(tmp_path: Path) -> None:
    hub, journal = hub_with(tmp_path)
    slow, fast = Client(MemoryTransport(300), name="slow"), Client(MemoryTransport(), name="fast")
    hub.connect(slow)
    hub.connect(fast)
    for ts in range(60, 600, 60):
        hub.broadcast(journal.record(KEY, ts, [record(ts)]))
    hub.heartbeat()
    assert slow.dropped and slow not in hub.clients and hub.counters.drops == 1
    assert [k for k in kinds(fast.transport) if k[0] == "signal"][-1] == ("signal", 9)  # type: ignore[arg-type]  # a MemoryTransport here
    journal.close()


def test_tcp_off_loopback_requires_a_token() -> None:
    assert parse_tcp("9000").host == "127.0.0.1"
    check_tcp(parse_tcp("127.0.0.1:9000"), None)
    check_tcp(parse_tcp("[::1]:9000"), None)
    with pytest.raises(ConfigError, match="requires a shared token"):
        check_tcp(parse_tcp("0.0.0.0:9000"), None)
    check_tcp(parse_tcp("10.0.0.5:9000"), "token")
    with pytest.raises(ConfigError):
        parse_tcp("host:port")


def test_socket_path_checks(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    live = bind_unix(path)
    assert oct(path.stat().st_mode & 0o777) == oct(0o660)
    with pytest.raises(Exception, match="already listening"):
        prepare_unix_path(path)
    live.close()
    prepare_unix_path(path)  # stale socket of ours: removed
    assert not path.exists()
    path.write_text("x")
    with pytest.raises(Exception, match="not a socket"):
        prepare_unix_path(path)
    if os.getuid() == 0:
        os.chown(path, 65534, 65534)
        with pytest.raises(Exception, match="owned by uid 65534"):
            prepare_unix_path(path)


@pytest.mark.parametrize("mode", ["inotify", "poll"])
def test_watcher_notices_a_commit(tmp_path: Path, mode: str) -> None:
    """A commit wakes the watcher: by inotify alone (its safety tick set to a minute), or by a poll.

    How fast is measured in benchmarks/live_latency.py (commit noticed within ~0.2 ms), not here.
    """
    db = tmp_path / "c.db"
    conn = connect_writable(db)
    candles = random_walk(5)
    write_candles(conn, candles.iloc[:1], symbol="BTCUSDT", timeframe="1m")
    poll = 60.0 if mode == "inotify" else 0.02  # inotify: no poll tick can wake it in time

    async def scenario() -> None:
        watcher = DbWatcher(db, use_inotify=mode == "inotify", poll_interval_s=poll)
        assert watcher.start() == mode
        await asyncio.sleep(0.05)
        while watcher._event.is_set():
            await watcher.wait()
        write_candles(conn, candles.iloc[1:2], symbol="BTCUSDT", timeframe="1m")
        await asyncio.wait_for(watcher.wait(), 10.0)
        watcher.close()

    asyncio.run(scenario())
    conn.close()


def test_prometheus_text_has_counters_and_gauges() -> None:
    text = prometheus_text({"drops": 2, "latency_ms": {"p99_ms": 1.5, "count": 3}, "x": "s"})
    assert "# TYPE signals_live_drops counter\nsignals_live_drops 2" in text
    assert "signals_live_latency_ms_p99_ms 1.5" in text and "_x" not in text


def test_catch_up_after_downtime_is_flagged_stale(tmp_path: Path) -> None:
    candles = random_walk(400, seed=4)
    db = tmp_path / "c.db"
    conn = connect_writable(db)
    write_candles(conn, candles.iloc[:100], symbol="BTCUSDT", timeframe="1m")
    frozen = write_frozen_file(tmp_path / "f.json", "ema_cross", "1m", {"fast": 2, "slow": 5})
    now = {"t": candles.index[99].timestamp() + 60.0}
    config = RunnerConfig(params=frozen, db=db, socket=tmp_path / "s.sock", stale_after_s=120)

    async def run_once(upto: int) -> list[dict]:
        runner = Runner(config, clock=lambda: now["t"])
        task = asyncio.create_task(runner.run(handle_signals=False))
        while runner.mark != int(candles.index[upto - 1].timestamp()):
            await asyncio.sleep(0.01)
        runner.stop()
        await task
        journal = Journal(config.journal_path())
        try:
            return journal.signals()
        finally:
            journal.close()

    asyncio.run(run_once(100))  # first start: marks candle 99, emits nothing
    write_candles(conn, candles.iloc[100:300], symbol="BTCUSDT", timeframe="1m")
    now["t"] = candles.index[299].timestamp() + 60.0  # the runner was down for 200 minutes
    signals = asyncio.run(run_once(300))
    assert signals, "expected signals from the catch-up"
    for s in signals:
        age = now["t"] - (s["candle_ts"] + 60)
        assert s["stale"] == (age > 120)
    assert any(s["stale"] for s in signals)
    assert not (tmp_path / "s.sock").exists()
    with CandleStore(db) as store:
        assert store.data_version() >= 0
    conn.close()


def _record_threads(runner: Runner) -> list[str]:
    # The name of the thread each engine step of `runner` runs in, in order.
    decide, threads = runner.engine.step, []

    def step(store: CandleStore, after_ts: int | None, **kwargs: object) -> object:
        threads.append(threading.current_thread().name)
        return decide(store, after_ts, **kwargs)

    runner.engine.step = step  # type: ignore[method-assign]  # the test records which thread steps
    return threads


def _ema_store(tmp_path: Path, candles: pd.DataFrame) -> tuple[Path, sqlite3.Connection, Path]:
    # A database with the first 100 candles, its writer connection and an ema_cross 2/5 file.
    db = tmp_path / "c.db"
    conn = connect_writable(db)
    write_candles(conn, candles.iloc[:100], symbol="BTCUSDT", timeframe="1m")
    frozen = write_frozen_file(tmp_path / "f.json", "ema_cross", "1m", {"fast": 2, "slow": 5})
    return db, conn, frozen


async def _until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


def _lockable_store(
    tmp_path: Path, candles: pd.DataFrame, *, busy_timeout_ms: int
) -> tuple[list[int], Path, sqlite3.Connection, RunnerConfig]:
    # `_ema_store` in rollback-journal mode (a writer's lock blocks readers), with its open
    # times and a runner config whose reads wait `busy_timeout_ms` in the worker thread
    db, conn, frozen = _ema_store(tmp_path, candles)
    conn.execute("PRAGMA journal_mode = DELETE")
    config = RunnerConfig(
        params=frozen, db=db, socket=tmp_path / "s.sock", busy_timeout_ms=busy_timeout_ms
    )
    return [int(t.timestamp()) for t in candles.index], db, conn, config


def test_a_step_that_meets_a_lock_moves_to_the_worker_and_waits(tmp_path: Path) -> None:
    # On the loop thread a read never waits: a writer's lock hands the step to the worker
    # thread, whose reads wait busy_timeout_ms (no failure, no retry). The journal is
    # checkpointed when idle.
    candles = random_walk(120, seed=8)
    ts, db, conn, config = _lockable_store(tmp_path, candles, busy_timeout_ms=5000)

    async def scenario() -> tuple[Runner, list[str]]:
        runner = Runner(config)
        threads = _record_threads(runner)
        task = asyncio.create_task(runner.run(handle_signals=False))
        await _until(lambda: runner.mark == ts[99])
        for i in range(100, 104):
            write_candles(conn, candles.iloc[i : i + 1], symbol="BTCUSDT", timeframe="1m")
            await _until(lambda i=i: runner.mark == ts[i])
        assert runner.counters.deferred_steps == 0
        threads.clear()
        locker = sqlite3.connect(db, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        upsert_candles(locker, candles.iloc[104:105], symbol="BTCUSDT", timeframe="1m")
        asyncio.get_running_loop().call_later(0.3, locker.execute, "COMMIT")
        await _until(lambda: runner.mark == ts[104])
        locker.close()
        await _until(lambda: runner.counters.checkpoints >= 1, timeout=5.0)
        runner.stop()
        await task
        return runner, threads

    runner, threads = asyncio.run(scenario())
    conn.close()
    assert runner.counters.deferred_steps >= 1
    assert runner.counters.db_retries == 0  # the worker's read waited for the lock: no failure
    assert threads and all(name.startswith("decide") for name in threads)
    assert runner.counters.candles_processed == 5


def test_steady_steps_run_on_the_loop_thread_a_catch_up_in_the_worker(tmp_path: Path) -> None:
    # A start with nothing to catch up primes the engine's window: every step reads only the
    # new candles, on the loop thread (two thread hand-offs saved). A restart behind the
    # newest candle decides the missed candles in the worker thread first.
    candles = random_walk(130, seed=9)
    ts = [int(t.timestamp()) for t in candles.index]
    db, conn, frozen = _ema_store(tmp_path, candles)
    config = RunnerConfig(params=frozen, db=db, socket=tmp_path / "s.sock")

    async def follow(start: int, stop: int) -> tuple[list[str], Counters]:
        runner = Runner(config)
        threads = _record_threads(runner)
        task = asyncio.create_task(runner.run(handle_signals=False))
        await _until(lambda: runner.mark == ts[start - 1])
        for i in range(start, stop):
            write_candles(conn, candles.iloc[i : i + 1], symbol="BTCUSDT", timeframe="1m")
            await _until(lambda i=i: runner.mark == ts[i])
        runner.stop()
        await task
        return threads, runner.counters

    first, counters = asyncio.run(follow(100, 104))
    assert first and set(first) == {"MainThread"}, first
    assert counters.candles_processed == 4
    write_candles(conn, candles.iloc[104:110], symbol="BTCUSDT", timeframe="1m")  # while down
    again, counters = asyncio.run(follow(110, 113))
    conn.close()
    caught_up = again.index(next(name for name in again if name.startswith("decide")))
    assert set(again[caught_up + 1 :]) == {"MainThread"} and len(again) > caught_up + 3, again
    assert counters.candles_processed == 6 + 3


def test_deploy_example_config_is_valid() -> None:
    from signals.config import load_settings

    root = Path(__file__).resolve().parents[1]
    settings = load_settings(root / "deploy" / "signals.example.yaml")
    assert settings.live.socket == Path("/run/signals/signals.sock")
    unit = (root / "deploy" / "signals-live.service").read_text()
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit and "RuntimeDirectory=signals" in unit


def test_runner_defaults_are_the_settings_defaults() -> None:
    # RunnerConfig takes its defaults from the config's data and live sections (declared there
    # once); the listener's own defaults are copies, so they are checked here.
    import inspect
    from dataclasses import MISSING, fields

    from live import server
    from signals.config import DataSettings, LiveSettings

    settings = {
        name: getattr(model, name)
        for model in (DataSettings(), LiveSettings())
        for name in type(model).model_fields
    }
    no_setting = []
    for field in fields(RunnerConfig):
        if field.default is MISSING:
            continue  # params and db: always given
        if field.name not in settings:
            no_setting.append(field.name)
        else:
            assert field.default == settings[field.name], field.name
    assert no_setting == ["allow_hash_mismatch"]  # a command-line flag only
    live = LiveSettings()
    listener = inspect.signature(server.Listener).parameters
    assert listener["max_buffer_bytes"].default == live.client_buffer_bytes
    assert listener["idle_line_s"].default == server.IDLE_LINE_S == live.client_idle_line_s
    assert server.ConnectionLimit().max_clients == server.MAX_CLIENTS == live.max_clients


def test_collections_run_between_steps_never_inside_one(tmp_path: Path) -> None:
    # Each step makes cyclic garbage past the collector's threshold. With automatic collection
    # a collection would start inside the step (on the latency path); the runner pauses it
    # from the check to the sent signals and collects right after (live/collect.py).
    import gc

    candles = random_walk(160, seed=5)
    db, conn, frozen = _ema_store(tmp_path, candles)
    now = {"t": candles.index[99].timestamp() + 60.0}
    runner = Runner(RunnerConfig(params=frozen, db=db, socket=tmp_path / "s.sock"),
                    clock=lambda: now["t"])  # fmt: skip
    inside = {"step": False}
    started: list[bool] = []  # per collection: whether it started inside a step
    decide, publish, step = runner._decide, runner._publish, runner.engine.step

    def deciding(*args: Any) -> Any:
        inside["step"] = True
        return decide(*args)

    def publishing(*args: Any, **kwargs: Any) -> None:
        publish(*args, **kwargs)
        inside["step"] = False

    def garbage_step(*args: Any, **kwargs: Any) -> Any:
        for _ in range(3 * gc.get_threshold()[0]):
            cycle: list[Any] = []
            cycle.append(cycle)
        return step(*args, **kwargs)

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started.append(inside["step"])

    runner._decide = deciding  # type: ignore[method-assign]  # the test marks the step
    runner._publish = publishing  # type: ignore[method-assign]  # the test marks the step
    runner.engine.step = garbage_step  # type: ignore[method-assign]  # garbage in every step

    async def scenario() -> dict[str, Any]:
        task = asyncio.create_task(runner.run(handle_signals=False))
        await _until(lambda: runner.mark == int(candles.index[99].timestamp()))
        gc.callbacks.append(on_gc)
        try:
            for i in range(100, 160):
                write_candles(conn, candles.iloc[i : i + 1], symbol="BTCUSDT", timeframe="1m")
                now["t"] += 60.0
                await _until(lambda i=i: runner.mark == int(candles.index[i].timestamp()))
        finally:
            gc.callbacks.remove(on_gc)
        status = runner.status()
        runner.stop()
        await task
        return status

    was_enabled = gc.isenabled()
    status = asyncio.run(scenario())
    conn.close()
    assert gc.isenabled() == was_enabled  # on between steps
    assert started and not any(started), f"{sum(started)} of {len(started)} inside a step"
    assert status["gc"]["gen0"] + status["gc"]["gen1"] + status["gc"]["gen2"] >= 30  # deferred


def test_collection_stays_on_while_a_step_waits_out_a_fault(tmp_path: Path) -> None:
    # A step that meets a fault is retried in the worker thread for as long as the fault lasts
    # (a lock here; an outage can last hours). Collection is paused only around a step's own
    # work, so clients and heartbeats meanwhile cannot pile up garbage; it is off again for the
    # publish of the retried step, and on when the runner stops.
    import gc

    candles = random_walk(110, seed=8)
    ts, db, conn, config = _lockable_store(tmp_path, candles, busy_timeout_ms=50)
    enabled_while_waiting: list[bool] = []

    async def scenario() -> Runner:
        runner = Runner(config)
        task = asyncio.create_task(runner.run(handle_signals=False))
        await _until(lambda: runner.mark == ts[99])
        locker = sqlite3.connect(db, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        upsert_candles(locker, candles.iloc[100:101], symbol="BTCUSDT", timeframe="1m")
        await _until(lambda: runner.counters.db_retries >= 2)  # waiting out the lock
        for _ in range(20):
            enabled_while_waiting.append(gc.isenabled())
            await asyncio.sleep(0.01)
        locker.execute("COMMIT")
        locker.close()
        await _until(lambda: runner.mark == ts[100])
        runner.stop()
        await task
        return runner

    was_enabled = gc.isenabled()
    try:
        runner = asyncio.run(scenario())
    finally:
        conn.close()
    assert was_enabled and gc.isenabled()
    assert enabled_while_waiting and all(enabled_while_waiting)
    assert runner.counters.candles_processed == 1
