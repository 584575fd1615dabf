"""`signals replay`: candle by candle into a real SQLite file, one commit each, paced, warm-up."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from signals.data.aggregate import aggregate
from signals.data.replay import replay
from signals.data.store import CandleStore, connect_writable, write_candles
from tests.candles import random_walk

N = 60  # 1m candles in the source, 2024-01-01 00:00 .. 00:59


@pytest.fixture
def src(tmp_path: Path) -> Path:
    path = tmp_path / "src.db"
    frame = random_walk(N, seed=5)
    conn = connect_writable(path)
    write_candles(conn, frame, symbol="BTCUSDT", timeframe="1m")
    five = aggregate(frame, base="1m", target="5m").drop(columns="complete")
    write_candles(conn, five, symbol="BTCUSDT", timeframe="5m")
    conn.close()
    return path


def _source(path: Path, timeframe: str = "1m") -> pd.DataFrame:
    with CandleStore(path) as store:
        return store.history("BTCUSDT", timeframe)


class Probe:
    """An injected `sleep`/`clock` pair: time moves only when slept; each sleep inspects `dst`."""

    def __init__(self, dst: Path, advance_per_clock: float = 0.0) -> None:
        self.dst = dst
        self.now = 1000.0
        self.advance = advance_per_clock
        self.sleeps: list[float] = []
        self.seen: list[dict[str, int]] = []
        self.reader: sqlite3.Connection | None = None

    def clock(self) -> float:
        self.now += self.advance
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.reader is None:
            self.reader = sqlite3.connect(f"file:{self.dst}?mode=ro", uri=True)
        rows = self.reader.execute(
            "SELECT timeframe, closed, COUNT(*) FROM candles GROUP BY 1, 2"
        ).fetchall()
        version = self.reader.execute("PRAGMA data_version").fetchone()[0]
        counts = {f"{tf}/{closed}": n for tf, closed, n in rows}
        self.seen.append({"version": version, **counts})

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()


def test_one_commit_per_candle_seen_by_a_reader(src: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst.db"
    probe = Probe(dst)
    summary = replay(
        from_db=src, to_db=dst, timeframe="1m", speed=100.0, progress=False,
        sleep=probe.sleep, clock=probe.clock,
    )  # fmt: skip
    probe.close()
    assert summary.candles == N and summary.commits == N and summary.warmup == 0
    # before candle k (from 1) is written the reader sees exactly k - 1 closed candles
    assert [s.get("1m/1", 0) for s in probe.seen] == list(range(N))
    versions = [s["version"] for s in probe.seen]
    assert len(set(versions)) == len(versions)  # changed before every candle
    pd.testing.assert_frame_equal(_source(dst), _source(src))


def test_speed_is_honoured_by_deadlines(src: Path, tmp_path: Path) -> None:
    probe = Probe(tmp_path / "dst.db")
    replay(
        from_db=src, to_db=tmp_path / "dst.db", timeframe="1m", speed=20.0, progress=False,
        sleep=probe.sleep, clock=probe.clock,
    )  # fmt: skip
    probe.close()
    # candle k is due at t0 + k / 20: with instant writes every wait is 50 ms, N in total
    assert len(probe.sleeps) == N
    assert probe.sleeps == pytest.approx([0.05] * N)
    assert probe.now - 1000.0 == pytest.approx(N / 20.0)


def test_slow_writes_are_not_slept_on_top(src: Path, tmp_path: Path) -> None:
    # every clock reading costs 30 ms of "work": deadlines 50 ms apart leave ~20 ms to sleep
    probe = Probe(tmp_path / "dst.db", advance_per_clock=0.03)
    replay(
        from_db=src, to_db=tmp_path / "dst.db", timeframe="1m", speed=20.0, progress=False,
        sleep=probe.sleep, clock=probe.clock,
    )  # fmt: skip
    probe.close()
    assert max(probe.sleeps) < 0.05
    assert sum(probe.sleeps) < N * 0.05


def test_no_speed_never_sleeps(src: Path, tmp_path: Path) -> None:
    calls: list[float] = []
    summary = replay(
        from_db=src, to_db=tmp_path / "dst.db", timeframe="1m", progress=False, sleep=calls.append
    )
    assert calls == [] and summary.candles == N


def test_warmup_is_one_transaction_before_the_replay(src: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst.db"
    probe = Probe(dst)
    summary = replay(
        from_db=src, to_db=dst, timeframe="1m", start="2024-01-01T00:40Z", speed=10.0,
        warmup=25, progress=False, sleep=probe.sleep, clock=probe.clock,
    )  # fmt: skip
    probe.close()
    assert summary.warmup == 25 and summary.candles == 20 and summary.commits == 21
    assert [s["1m/1"] for s in probe.seen] == list(range(25, 45))
    stored = _source(dst)
    assert stored.index[0] == pd.Timestamp("2024-01-01T00:15Z")
    pd.testing.assert_frame_equal(stored, _source(src).iloc[15:])


def test_warmup_without_from_takes_the_first_candles(src: Path, tmp_path: Path) -> None:
    summary = replay(
        from_db=src, to_db=tmp_path / "d.db", timeframe="1m", warmup=10, end="2024-01-01T00:29Z",
        progress=False,
    )  # fmt: skip
    assert (summary.warmup, summary.candles, summary.commits) == (10, 20, 21)
    assert summary.first_ts == int(pd.Timestamp("2024-01-01T00:10Z").timestamp())


def test_forming_then_closed(src: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst.db"
    probe = Probe(dst)
    summary = replay(
        from_db=src, to_db=dst, timeframe="1m", end="2024-01-01T00:09Z", speed=10.0,
        forming=True, progress=False, sleep=probe.sleep, clock=probe.clock,
    )  # fmt: skip
    probe.close()
    assert summary.commits == 20
    # while waiting for candle k to close, it is stored as forming and k - 1 are closed
    assert [(s.get("1m/1", 0), s.get("1m/0", 0)) for s in probe.seen] == [(k, 1) for k in range(10)]
    with sqlite3.connect(dst) as conn:
        assert conn.execute("SELECT COUNT(*) FROM candles WHERE closed = 0").fetchone()[0] == 0
    pd.testing.assert_frame_equal(_source(dst), _source(src).iloc[:10])


def test_also_timeframes_interleave_by_close_time(src: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst.db"
    probe = Probe(dst)
    summary = replay(
        from_db=src, to_db=dst, timeframe="1m", also_timeframes=["5m"], speed=10.0,
        progress=False, sleep=probe.sleep, clock=probe.clock,
    )  # fmt: skip
    probe.close()
    assert summary.also == {"5m": N // 5}
    # before 1m candle k is written, the 5m candles closed by candle k - 1 are all there
    assert [s.get("5m/1", 0) for s in probe.seen] == [(k - 1) // 5 for k in range(1, N + 1)]
    pd.testing.assert_frame_equal(_source(dst, "5m"), _source(src, "5m"))


def test_replay_cli(src: Path, tmp_path: Path) -> None:
    dst = tmp_path / "out" / "dst.db"
    result = subprocess.run(
        [sys.executable, "-m", "signals", "replay", "--from-db", str(src),
         "--to-db", str(dst), "-t", "1m", "--from", "2024-01-01T00:30Z", "--warmup", "5",
         "--speed", "500", "--quiet"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "replayed 30 BTCUSDT 1m candles" in result.stdout
    assert "5 warm-up, 31 commits" in result.stdout
    pd.testing.assert_frame_equal(_source(dst), _source(src).iloc[25:])


def test_replay_cli_usage_errors(src: Path, tmp_path: Path) -> None:
    base = [sys.executable, "-m", "signals", "replay", "--from-db", str(src)]
    bad_speed = subprocess.run(
        [*base, "--to-db", str(tmp_path / "d.db"), "-t", "1m", "--speed", "0"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad_speed.returncode == 2 and "--speed" in bad_speed.stderr
    empty = subprocess.run(
        [*base, "--to-db", str(tmp_path / "d.db"), "-t", "1h"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert empty.returncode == 2 and "no closed BTCUSDT 1h candles" in empty.stderr
