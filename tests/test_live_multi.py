"""One runner, several frozen sets (`signals live --params A --params B ...`).

A real runner subprocess follows a real SQLite store that a writer fills while it runs, with
three streams: two symbols under the same frozen set (one ``params_id``) and a second strategy
on another timeframe. It is SIGKILLed in the middle and restarted; a client that resumes by seq
must get, for each stream, exactly the signals ``scan`` gives over that stream's stored candles,
with one ``seq`` across the streams: nothing lost, nothing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from live.journal import Journal, SeriesKey
from live.runner import Runner, RunnerConfig
from signals.data.load import load_candles
from signals.data.store import connect_writable, write_candles
from signals.data.write import upsert_candles
from signals.frozen import freeze, write_frozen
from signals.scan import signal_records
from strategies import get_strategy
from tests.candles import random_walk
from tests.livekit import (
    ROOT,
    Collector,
    LineClient,
    free_port,
    runner_log,
    start_runner,
    status,
    stop_runner,
    wait_listening,
)

HISTORY = 760  # candles of each series stored before the first start
HOURS = 48  # then written while the runner runs
END = pd.Timestamp("2024-03-01", tz="UTC")  # the first candle the runner decides opens here
# (symbol, strategy, timeframe, seed of the candles)
STREAMS = [
    ("BTCUSDT", "ema_cross", "5m", 10),
    ("ETHUSDT", "ema_cross", "5m", 11),  # the same frozen set as BTCUSDT: the same params_id
    ("ETHUSDT", "swing", "15m", 9),
]
MINUTES = {"5m": 5, "15m": 15}


def series(timeframe: str, seed: int) -> pd.DataFrame:
    """HISTORY candles before END and HOURS of candles from END on."""
    step = pd.Timedelta(minutes=MINUTES[timeframe])
    n = HISTORY + HOURS * 60 // MINUTES[timeframe]
    start = END - HISTORY * step
    return random_walk(
        n, seed=seed, freq=f"{MINUTES[timeframe]}min", start=str(start.tz_localize(None))
    )


def frozen_files(tmp_path: Path) -> list[Path]:
    """One frozen file per stream (default parameters)."""
    return [
        write_frozen(
            freeze(strategy=name, timeframe=tf, params={}, symbol=symbol),
            tmp_path / f"{symbol}-{name}-{tf}.json",
        )
        for symbol, name, tf, _ in STREAMS
    ]


class Writer:
    """Write the streams' candles in close-time order, one commit per series and candle."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.frames = {(s, tf): series(tf, seed) for s, _, tf, seed in STREAMS}
        events = []
        for (symbol, tf), frame in self.frames.items():
            step = pd.Timedelta(minutes=MINUTES[tf])
            for i, opened in enumerate(frame.index):
                events.append((opened + step, symbol, tf, i))
        self.events = sorted(events)
        self.done = 0
        self.newest: dict[tuple[str, str], int] = {}  # open time of each series' newest candle

    def history(self) -> None:
        """Store every candle that closed by END (what the pipeline had before the start)."""
        self.until(END)

    def until(self, close: pd.Timestamp, pause_s: float = 0.0) -> None:
        """Write every candle that closes at or before `close`."""
        conn = connect_writable(self.db)
        try:
            while self.done < len(self.events) and self.events[self.done][0] <= close:
                _, symbol, tf, i = self.events[self.done]
                frame = self.frames[(symbol, tf)]
                write_candles(conn, frame.iloc[i : i + 1], symbol=symbol, timeframe=tf)
                self.newest[(symbol, tf)] = int(frame.index[i].timestamp())
                self.done += 1
                if pause_s:
                    time.sleep(pause_s)
        finally:
            conn.close()


def marks(sock: Path) -> list[int | None]:
    """Return each stream's processed mark from the runner's status."""
    return [s["last_candle_ts"] for s in status(sock)["streams"]]


def wait_marks(sock: Path, wanted: list[int], timeout: float = 90.0) -> None:
    """Wait until every stream's mark is the wanted one."""
    deadline = time.monotonic() + timeout
    got: list[int | None] = []
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            got = marks(sock)
            if got == wanted:
                return
        time.sleep(0.05)
    raise AssertionError(f"marks {got}, wanted {wanted}\n{runner_log(sock)}")


def newest(writer: Writer) -> list[int]:
    """Return the open time of each stream's newest written candle."""
    return [writer.newest[(symbol, tf)] for symbol, _, tf, _ in STREAMS]


def test_several_streams_equal_their_scans_across_a_kill(tmp_path: Path) -> None:
    db, sock = tmp_path / "candles.db", tmp_path / "live.sock"
    files = frozen_files(tmp_path)
    args = [arg for path in files[1:] for arg in ("--params", str(path))]
    args += ["--heartbeat", "0.5", "--journal", str(tmp_path / "journal.db")]
    writer = Writer(db)
    writer.history()

    proc = start_runner(files[0], db, sock, *args)
    collector = Collector(sock)
    try:
        wait_listening(sock, proc)
        wait_marks(sock, newest(writer))  # first start: after each series' newest candle
        with LineClient(sock) as client:
            hello = client.read_type("hello")
        collector.start()
        hour = pd.Timedelta(hours=1)
        writer.until(END + 2 * hour, pause_s=0.005)  # one candle at a time
        writer.until(END + HOURS / 2 * hour)  # faster than it decides
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        writer.until(END + (HOURS / 2 + 2) * hour)  # closed while it is down
        proc = start_runner(files[0], db, sock, *args)
        wait_listening(sock, proc)
        writer.until(END + HOURS * hour)
        wait_marks(sock, newest(writer))
        final = status(sock)
        deadline = time.monotonic() + 10
        while collector.last_seq < final["last_seq"] and time.monotonic() < deadline:
            collector.join(0.05)
    finally:
        collector.stop()
        code = stop_runner(proc)
    assert code == 0, runner_log(sock)
    assert collector.connections >= 2  # it really reconnected after the kill
    assert runner_log(sock).count("event=resume_from_mark") == len(STREAMS)  # each caught up

    assert [(s["symbol"], s["strategy"], s["timeframe"]) for s in hello["streams"]] == [
        (symbol, name, tf) for symbol, name, tf, _ in STREAMS
    ]
    ids = [s["params_id"] for s in hello["streams"]]
    assert ids[0] == ids[1] != ids[2]  # two symbols share one frozen set
    assert (hello["symbol"], hello["params_id"]) == ("BTCUSDT", ids[0])  # the first stream's

    got = collector.signals
    seqs = [s["seq"] for s in got]
    assert seqs == list(range(1, len(got) + 1)), "one seq across streams, no gap, no duplicate"
    journal = Journal(tmp_path / "journal.db")
    try:
        assert [json.loads(e.line) for e in journal.since(0)] == got  # the journal's lines, sent
    finally:
        journal.close()
    key = ("candle_ts", "signal", "price", "reasons", "symbol", "timeframe", "strategy")
    for (symbol, name, tf, _), params_id, stream in zip(
        STREAMS, ids, final["streams"], strict=True
    ):
        mine = [
            s
            for s in got
            if (s["symbol"], s["timeframe"], s["params_id"]) == (symbol, tf, params_id)
        ]
        strategy = get_strategy(name)
        stored = load_candles(db, symbol=symbol, timeframe=tf)
        expected = signal_records(
            stored, strategy, strategy.params(), symbol=symbol, timeframe=tf, since=END
        )
        assert len(expected) >= 3, f"too few signals for {symbol} {name} {tf}"
        assert [tuple(s[k] for k in key) for s in mine] == [
            tuple(e[k] for k in key) for e in expected
        ]
        for s, e in zip(mine, expected, strict=True):
            assert math.isclose(s["confidence"], e["confidence"], rel_tol=0, abs_tol=1e-9)
        assert stream["stalled"] is False and stream["reload_error"] is None
        assert stream["candles_processed"] > 0
    print(f"{len(got)} signals over {len(STREAMS)} streams, {collector.connections} connections")


def test_sighup_reloads_each_stream_and_a_bad_file_keeps_its_old_set(tmp_path: Path) -> None:
    db, sock = tmp_path / "candles.db", tmp_path / "live.sock"
    first, second = frozen_files(tmp_path)[1:]  # ETHUSDT ema_cross 5m, ETHUSDT swing 15m
    Writer(db).history()
    port = free_port()
    proc = start_runner(first, db, sock, "--params", str(second), "--metrics-port", str(port))
    try:
        wait_listening(sock, proc)
        before = status(sock)["streams"]
        good = first.read_text()
        first.write_text('{"schema_version": 1, "strat')  # a file cut in the middle
        tighter = freeze(strategy="swing", timeframe="15m", params={"threshold": 0.8},
                         symbol="ETHUSDT")  # fmt: skip
        write_frozen(tighter, second)
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        after = before
        while after[1]["params_id"] != tighter.params_id and time.monotonic() < deadline:
            time.sleep(0.05)
            after = status(sock)["streams"]
        assert after[1]["params_id"] == tighter.params_id, runner_log(sock)
        assert after[1]["reloads"] == 1 and after[1]["reload_error"] is None
        assert after[0]["params_id"] == before[0]["params_id"]  # the bad file kept its old set
        assert after[0]["reload_failures"] == 1 and after[0]["reload_error"]
        assert f"event=reload_failed kept={before[0]['params_id']}" in runner_log(sock)
        assert f"file={first}" in runner_log(sock)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            metrics = reply.read().decode()
        kept = after[0]["params_id"]
        eth = f'symbol="ETHUSDT",timeframe="5m",strategy="ema_cross",params_id="{kept}"'
        swing = f'symbol="ETHUSDT",timeframe="15m",strategy="swing",params_id="{tighter.params_id}"'
        assert f"signals_stream_reload_failures{{{eth}}} 1" in metrics.splitlines()
        assert f"signals_stream_reloads{{{swing}}} 1" in metrics.splitlines()
        assert f"signals_stream_stalled{{{swing}}} 0" in metrics.splitlines()
        assert metrics.count("# TYPE signals_stream_reloads counter") == 1
        with LineClient(sock) as client:
            listed = [s["params_id"] for s in client.read_type("hello")["streams"]]
        assert listed == [before[0]["params_id"], tighter.params_id]

        first.write_text(good)  # mended: the next SIGHUP clears the error
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while status(sock)["streams"][0]["reload_error"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert status(sock)["streams"][0]["reload_error"] is None
    finally:
        code = stop_runner(proc)
    assert code == 0, runner_log(sock)


def test_the_same_stream_given_twice_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "candles.db"
    Writer(db).history()
    one = frozen_files(tmp_path)[0]
    copy = tmp_path / "copy.json"
    copy.write_text(one.read_text())
    cmd = [sys.executable, "-m", "signals", "live", "--params", str(one), "--params", str(copy)]
    cmd += ["--db", str(db), "--socket", str(tmp_path / "s.sock")]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert f"{copy} and {one} are the same stream (BTCUSDT/5m/ema_cross/" in done.stderr


def test_a_journal_before_symbols_is_rebuilt_and_two_symbols_share_a_params_id(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    line = {"type": "signal", "seq": 1, "signal": "BUY", "symbol": "BTCUSDT", "timeframe": "5m",
            "candle_ts": 300, "price": 1.0, "confidence": 0.5, "reasons": [], "strategy": "s",
            "params_id": "p", "emitted_at": 0.0, "stale": False}  # fmt: skip
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(
            "CREATE TABLE signals (seq INTEGER PRIMARY KEY, params_id TEXT NOT NULL, "
            "candle_ts INTEGER NOT NULL, line TEXT NOT NULL, emitted_at REAL NOT NULL, "
            "UNIQUE (params_id, candle_ts))"
        )
        conn.execute("INSERT INTO signals VALUES (1, 'p', 300, ?, 0.0)", (json.dumps(line),))
    journal = Journal(path)
    try:
        record = {k: line[k] for k in line if k not in ("type", "seq", "emitted_at", "stale")}
        btc, eth = SeriesKey("BTCUSDT", "5m", "p"), SeriesKey("ETHUSDT", "5m", "p")
        assert journal.record(btc, 300, [record]) == []  # journaled before the rebuild: once
        entries = journal.record_streams(
            [(btc, 600, lambda _ts: False), (eth, 600, lambda _ts: True)],
            [{**record, "candle_ts": 600}, {**record, "symbol": "ETHUSDT", "candle_ts": 600}],
        )
        assert [e.seq for e in entries] == [2, 3]  # one seq across the symbols
        sent = [json.loads(e.line) for e in entries]
        assert [(s["symbol"], s["stale"]) for s in sent] == [("BTCUSDT", False), ("ETHUSDT", True)]
        assert journal.last_processed(btc) == journal.last_processed(eth) == 600
    finally:
        journal.close()


def ledger_signals(ledger: Path) -> list[tuple[Any, ...]]:
    """The (seq, symbol, timeframe, candle_ts, signal) the paper bot recorded."""
    if not ledger.exists():
        return []
    with (
        contextlib.closing(sqlite3.connect(ledger)) as conn,
        contextlib.suppress(sqlite3.OperationalError),
    ):
        return conn.execute(
            "SELECT seq, symbol, timeframe, candle_ts, signal FROM signals ORDER BY seq"
        ).fetchall()
    return []


def test_the_paper_bot_trades_the_stream_it_is_told_of_a_runner_of_several(
    tmp_path: Path,
) -> None:
    db, sock, ledger = tmp_path / "candles.db", tmp_path / "live.sock", tmp_path / "paper.db"
    files = frozen_files(tmp_path)
    writer = Writer(db)
    writer.history()
    proc = start_runner(files[0], db, sock, "--params", str(files[2]))
    paper = [sys.executable, "-m", "signals", "paper", "--socket", str(sock), "--db", str(db)]
    bot: subprocess.Popen[str] | None = None
    try:
        wait_listening(sock, proc)
        unchosen = subprocess.run(
            [*paper, "--ledger", str(tmp_path / "other.db")],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert unchosen.returncode == 2, unchosen.stderr
        assert "the runner serves 2 stream(s) (BTCUSDT 5m ema_cross" in unchosen.stderr
        assert "choose one with --symbol" in unchosen.stderr
        bot = subprocess.Popen(
            [*paper, "--ledger", str(ledger), "--symbol", "ETHUSDT", "--since-seq", "0"],
            cwd=ROOT, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        writer.until(END + pd.Timedelta(hours=HOURS))
        wait_marks(sock, [writer.newest[("BTCUSDT", "5m")], writer.newest[("ETHUSDT", "15m")]])
        journal = [json.loads(line) for line in _journal_lines(files[0])]
        wanted = [
            (s["seq"], s["symbol"], s["timeframe"], s["candle_ts"], s["signal"])
            for s in journal
            if s["symbol"] == "ETHUSDT"
        ]
        assert wanted and len(wanted) < len(journal)  # both streams signalled
        deadline = time.monotonic() + 30
        while ledger_signals(ledger) != wanted and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ledger_signals(ledger) == wanted  # its stream's signals, each once, no other
    finally:
        if bot is not None:
            bot.send_signal(signal.SIGTERM)
            _, stderr = bot.communicate(timeout=15)
            assert bot.returncode == 0, stderr
        assert stop_runner(proc) == 0, runner_log(sock)


def _journal_lines(first: Path) -> list[bytes]:
    """The lines journaled by a runner whose journal is beside its first frozen file."""
    journal = Journal(first.with_name(first.stem + ".journal.db"))
    try:
        return [entry.line for entry in journal.since(0)]
    finally:
        journal.close()


SYMBOLS = ("BTCUSDT", "ETHUSDT")
STEPS = st.lists(  # steps of (symbol, candle index, BUY or SELL) records, in any order
    st.lists(st.tuples(st.sampled_from(SYMBOLS), st.integers(1, 6), st.booleans()), max_size=4),
    max_size=6,
)


@settings(max_examples=60, deadline=None)
@given(steps=STEPS)
def test_one_seq_across_streams_each_candle_once(tmp_path_factory: Any, steps: list) -> None:
    # Whatever the streams decide and in whatever steps, the journal numbers every new signal
    # 1..n across the streams and journals each (symbol, params_id, candle) once.
    journal = Journal(tmp_path_factory.mktemp("j") / "journal.db")
    keys = {symbol: SeriesKey(symbol, "5m", "p") for symbol in SYMBOLS}
    seen: set[tuple[str, int]] = set()
    sent: list[dict[str, Any]] = []
    try:
        for step in steps:
            records = [
                {"signal": "BUY" if buy else "SELL", "symbol": symbol, "timeframe": "5m",
                 "candle_ts": 300 * i, "price": 1.0, "confidence": 0.5, "reasons": [],
                 "strategy": "s", "params_id": "p"}
                for symbol, i, buy in step
            ]  # fmt: skip
            marks = [(keys[s], 300 * 6, lambda _ts: False) for s in {s for s, _, _ in step}]
            entries = journal.record_streams(marks, records)
            sent += [json.loads(entry.line) for entry in entries]
            seen |= {(symbol, 300 * i) for symbol, i, _ in step}
        assert [s["seq"] for s in sent] == list(range(1, len(sent) + 1))
        assert sorted((s["symbol"], s["candle_ts"]) for s in sent) == sorted(seen)
        assert [json.loads(e.line) for e in journal.since(0)] == sent
    finally:
        journal.close()


def test_a_stream_without_candles_stalls_alone(tmp_path: Path) -> None:
    db, sock = tmp_path / "candles.db", tmp_path / "live.sock"
    files = frozen_files(tmp_path)
    writer = Writer(db)
    writer.history()
    proc = start_runner(files[0], db, sock, "--params", str(files[2]), "--stall-after", "1.5")
    frame = writer.frames[("BTCUSDT", "5m")]
    try:
        wait_listening(sock, proc)
        conn = connect_writable(db)
        deadline = time.monotonic() + 30
        data = status(sock)
        for i in range(HISTORY, len(frame)):  # BTCUSDT goes on, ETHUSDT 15m stops
            write_candles(conn, frame.iloc[i : i + 1], symbol="BTCUSDT", timeframe="5m")
            time.sleep(0.2)
            data = status(sock)
            if data["streams"][1]["stalled"] or time.monotonic() > deadline:
                break
        conn.close()
    finally:
        assert stop_runner(proc) == 0, runner_log(sock)
    assert [s["stalled"] for s in data["streams"]] == [False, True]
    assert data["stalled"] is True  # any stream
    stalled = [line for line in runner_log(sock).splitlines() if "event=stalled" in line]
    assert any("stream=ETHUSDT/15m/swing/" in line for line in stalled)  # named, with its series
    assert all(" stream=" in line for line in stalled)


def test_a_commit_of_one_series_does_not_step_a_stream_that_has_nothing_due(
    tmp_path: Path,
) -> None:
    # Real time, two 1m symbols committed one after the other: once a stream has decided the
    # newest candle that can have closed, the other symbol's commit does not step it again.
    db = tmp_path / "c.db"
    frames = {
        s: random_walk(102, seed=k, freq="1min") for k, s in enumerate(("BTCUSDT", "ETHUSDT"))
    }
    conn = connect_writable(db)
    for symbol, frame in frames.items():
        write_candles(conn, frame.iloc[:100], symbol=symbol, timeframe="1m")
    files = [
        write_frozen(freeze(strategy="ema_cross", timeframe="1m", params={}, symbol=s),
                     tmp_path / f"{s}.json")
        for s in frames
    ]  # fmt: skip
    close = {"t": frames["BTCUSDT"].index[99].timestamp() + 60.5}
    config = RunnerConfig(params=tuple(files), db=db, socket=tmp_path / "s.sock")
    runner = Runner(config, clock=lambda: close["t"])
    steps: list[str] = []
    for stream in runner.streams:
        step, symbol = stream.engine.step, stream.frozen.symbol

        def counted(*args: Any, _step: Any = step, _symbol: str = symbol, **kw: Any) -> Any:
            steps.append(_symbol)
            return _step(*args, **kw)

        stream.engine.step = counted  # type: ignore[method-assign]  # the test counts steps
    try:
        runner._start_mark()
        close["t"] += 60  # candle 100 of both symbols closes
        write_candles(conn, frames["BTCUSDT"].iloc[100:101], symbol="BTCUSDT", timeframe="1m")
        assert runner._decide() is not None
        assert steps == ["BTCUSDT", "ETHUSDT"]  # ETHUSDT's candle 100 may come: it looks
        write_candles(conn, frames["ETHUSDT"].iloc[100:101], symbol="ETHUSDT", timeframe="1m")
        assert runner._decide() is not None
        assert steps == ["BTCUSDT", "ETHUSDT", "ETHUSDT"]  # BTCUSDT has nothing due: not stepped
        want = int(frames["BTCUSDT"].index[100].timestamp())
        assert [s.mark for s in runner.streams] == [want, want]
    finally:
        runner.store.close()
        runner.journal.close()
        runner._executor.shutdown()
        conn.close()


class OneCommitStreams:
    """A runner in this process on three 1m symbols whose candles land in one commit each,
    with a real client on its socket (resumed from 0, so it gets the live stream)."""

    SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
    PARAMS: ClassVar[dict[str, int]] = {"fast": 2, "slow": 5}

    def __init__(self, tmp_path: Path, candles: int = 220, **config: Any) -> None:
        self.db, self.sock = tmp_path / "c.db", tmp_path / "s.sock"
        self.frames = {
            s: random_walk(candles, seed=20 + k, freq="1min") for k, s in enumerate(self.SYMBOLS)
        }
        self.conn = connect_writable(self.db)
        for symbol, frame in self.frames.items():
            write_candles(self.conn, frame.iloc[:100], symbol=symbol, timeframe="1m")
        files = [
            write_frozen(freeze(strategy="ema_cross", timeframe="1m", params=self.PARAMS,
                                symbol=s), tmp_path / f"{s}.json")
            for s in self.SYMBOLS
        ]  # fmt: skip
        self.now = self.frames["BTCUSDT"].index[99].timestamp() + 60.5
        settings = RunnerConfig(params=tuple(files), db=self.db, socket=self.sock, **config)
        self.runner = Runner(settings, clock=lambda: self.now)
        self.on_candle: Callable[[int], None] = lambda i: None  # before candle i is written
        self.count = len(self.SYMBOLS)
        self.client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.received = bytearray()
        self.loop_thread: threading.Thread | None = None

    def messages(self) -> list[dict[str, Any]]:
        """Read what the client has been sent so far (without waiting); return every line."""
        with contextlib.suppress(BlockingIOError):
            while chunk := self.client.recv(65536, socket.MSG_DONTWAIT):
                self.received.extend(chunk)
        return [json.loads(line) for line in bytes(self.received).splitlines()]

    def signals(self) -> list[dict[str, Any]]:
        """Return the signals the client has been sent so far."""
        return [m for m in self.messages() if m["type"] == "signal"]

    def run(self) -> None:
        """Start the runner, connect, write candles 100 on one commit each, stop."""

        async def until(condition: Callable[[], bool], what: str) -> None:
            deadline = time.monotonic() + 60
            while not condition():
                assert time.monotonic() < deadline, f"timed out waiting for {what}"
                await asyncio.sleep(0.002)

        async def scenario() -> None:
            self.loop_thread = threading.current_thread()
            runner = self.runner
            task = asyncio.create_task(runner.run(handle_signals=False))
            start = int(self.frames["BTCUSDT"].index[99].timestamp())
            await until(
                lambda: (
                    [s.mark for s in runner.streams] == [start] * self.count and self.sock.exists()
                ),
                "the start",
            )
            self.client.connect(str(self.sock))
            await until(self.messages, "the hello")
            self.client.sendall(b'{"type":"resume","since_seq":0}\n')  # ends the hold
            await until(lambda: not any(c.replaying for c in runner.hub.clients), "live")
            await until(lambda: all(d["ready"] for d in runner.deciders.status()), "the deciders")
            for i in range(100, len(self.frames["BTCUSDT"])):
                self.on_candle(i)
                with self.conn:  # both symbols' candle in one commit
                    for symbol, frame in self.frames.items():
                        upsert_candles(self.conn, frame.iloc[i : i + 1], symbol=symbol,
                                       timeframe="1m")  # fmt: skip
                self.now += 60.0
                want = int(self.frames["BTCUSDT"].index[i].timestamp())
                await until(
                    lambda w=want: [s.mark for s in runner.streams] == [w] * self.count,
                    f"candle {i}",
                )
            await asyncio.sleep(0.05)
            runner.stop()
            await task

        try:
            asyncio.run(scenario())
        finally:
            self.conn.close()

    def scanned(self, symbol: str) -> list[tuple[int, str]]:
        """Return (candle_ts, side) of `scan`'s signals on `symbol` from candle 100 on."""
        strategy = get_strategy("ema_cross")
        first = int(self.frames[symbol].index[100].timestamp())
        records = signal_records(
            self.frames[symbol], strategy, strategy.params(self.PARAMS), symbol=symbol,
            timeframe="1m",
        )  # fmt: skip
        return [(r["candle_ts"], r["signal"]) for r in records if r["candle_ts"] >= first]


def test_a_streams_signals_are_sent_before_the_next_stream_is_decided(tmp_path: Path) -> None:
    # Both symbols' candles land in one commit. On the loop thread the runner journals and
    # sends each stream's signals as soon as that stream is decided: when ETHUSDT's step
    # starts, BTCUSDT's signal on the same candle is already readable on the client's socket.
    case = OneCommitStreams(tmp_path)
    seen: dict[int, set[int]] = {}  # ETHUSDT's step, by its candle: the BTCUSDT signals sent
    eth = case.runner.streams[1]
    eth_step = eth.engine.step

    def watched(store: Any, after_ts: Any, **kw: Any) -> Any:
        if threading.current_thread() is case.loop_thread:  # the loop thread's steps
            newest = store.closed_since_arrays("ETHUSDT", "1m", after_ts)[0]
            if len(newest):
                btc = [m for m in case.signals() if m["symbol"] == "BTCUSDT"]
                seen[int(newest[-1])] = {m["candle_ts"] for m in btc}
        return eth_step(store, after_ts, **kw)

    eth.engine.step = watched  # type: ignore[method-assign]  # the test looks at the client
    case.run()
    checked = [ts for ts, _ in case.scanned("BTCUSDT") if ts in seen]
    assert len(checked) >= 10
    late = [ts for ts in checked if ts not in seen[ts]]
    assert not late, f"BTCUSDT signals not yet sent when ETHUSDT's step began: {late}"


def test_a_journal_failure_after_a_stream_was_sent_loses_and_repeats_nothing(
    tmp_path: Path,
) -> None:
    # The journal write of ETHUSDT's signal fails once, after BTCUSDT's signal of the same
    # commit was journaled and sent, before SOLUSDT is decided. The retry journals the held
    # signal and decides SOLUSDT; each stream still equals its scan, with one seq across the
    # three, each signal once.
    case = OneCommitStreams(tmp_path)
    journal = case.runner.journal
    record = journal.record_streams
    both = sorted(
        set(ts for ts, _ in case.scanned("BTCUSDT")) & set(ts for ts, _ in case.scanned("ETHUSDT"))
    )
    failed: list[int] = []

    def failing(marks: Any, records: Any) -> Any:
        records = list(records)
        eth = [r["candle_ts"] for r in records if r["symbol"] == "ETHUSDT"]
        if not failed and eth and eth[0] in both:
            sent = {m["candle_ts"] for m in case.signals() if m["symbol"] == "BTCUSDT"}
            assert eth[0] in sent  # BTCUSDT's signal of this commit is out already
            failed.append(eth[0])
            raise sqlite3.OperationalError("disk I/O error")
        return record(marks, records)

    journal.record_streams = failing  # type: ignore[method-assign]  # fails once
    case.run()
    assert failed, "no commit gave both streams a signal"
    signals = case.signals()
    assert [m["seq"] for m in signals] == list(range(1, len(signals) + 1))
    for symbol in case.SYMBOLS:
        got = [(m["candle_ts"], m["signal"]) for m in signals if m["symbol"] == symbol]
        assert got == case.scanned(symbol)
    assert case.runner.counters.journal_errors == 1
    # what was sent before the failure is counted like any sent signal
    assert case.runner.counters.signals_emitted == len(signals)
    for stream in case.runner.streams:
        sent = [m for m in signals if m["symbol"] == stream.frozen.symbol]
        assert stream.counters.signals_emitted == len(sent)
