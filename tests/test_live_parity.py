"""Parity: what ``signals live`` streams equals ``signals scan`` over the same stored candles.

Candles are written into a fresh database one per transaction while the runner runs as a
subprocess on a Unix socket; a client collects every line, resuming by seq. The runner is
SIGKILLed in the middle and restarted (candles keep arriving while it is down): the signals must
still equal the scan's exactly, with no duplicate and no loss.
"""

from __future__ import annotations

import math
import signal
from pathlib import Path

import pandas as pd
import pytest

from signals.data.load import load_candles
from signals.scan import signal_records
from strategies import get_strategy, strategy_names
from tests.candles import random_walk
from tests.conftest import SHARED_DATA
from tests.livekit import (
    FREQ,
    Collector,
    replay,
    runner_log,
    seed_db,
    start_runner,
    stop_runner,
    wait_caught_up,
    wait_listening,
    write_frozen_file,
)

# personality: timeframe, candles written before the runner's first start, candles replayed
CASES = {
    "scalping": ("1m", 760, 2 * 1440),
    "swing": ("15m", 760, 3 * 96),
    "ema_cross": ("5m", 760, 2 * 288),
    # 1h inputs on 5m: the runner's window (lookback + margin, in 5m candles) must hold the
    # hours of the 1h SMA whole; the history written first is longer than that window
    "trend_pullback": ("5m", 1400, 2 * 288),
}


def test_every_shipped_strategy_has_a_parity_case() -> None:
    # the package's own strategies (tests may register others in this process, e.g. faultkit)
    shipped = {
        n for n in strategy_names() if type(get_strategy(n)).__module__.startswith("strategies.")
    }
    assert set(CASES) == shipped


REAL_1M = SHARED_DATA / "BTCUSDT-1m-2023-04.csv.gz"


def candles_for(name: str, timeframe: str, n: int) -> pd.DataFrame:
    """Real 1m BTCUSDT candles for scalping when ../shared/data has them, else a random walk."""
    if timeframe == "1m" and REAL_1M.exists():
        frame = pd.read_csv(REAL_1M, nrows=n)
        frame.index = pd.DatetimeIndex(
            pd.to_datetime(frame.pop("timestamp"), unit="s", utc=True), name="time"
        )
        return frame.astype("float64")
    return random_walk(n, seed=10, freq=FREQ[timeframe])  # seed 10: 8 swing signals


def ts(candles: pd.DataFrame, i: int) -> int:
    return int(candles.index[i].timestamp())


@pytest.mark.parametrize("name", sorted(CASES))
def test_live_stream_equals_scan_across_a_kill(tmp_path: Path, name: str) -> None:
    timeframe, history, replayed = CASES[name]
    candles = candles_for(name, timeframe, history + replayed)
    total = len(candles)
    db, sock = tmp_path / "candles.db", tmp_path / "live.sock"
    frozen = write_frozen_file(tmp_path / "frozen.json", name, timeframe)
    seed_db(db, candles, timeframe, history)

    proc = start_runner(frozen, db, sock, "--heartbeat", "0.5")
    collector = Collector(sock)
    try:
        wait_listening(sock, proc)
        wait_caught_up(sock, ts(candles, history - 1))  # first start: after the newest candle
        collector.start()
        middle = history + replayed // 2
        replay(db, candles, timeframe, history, history + 40, pause_s=0.02)  # one at a time
        replay(db, candles, timeframe, history + 40, middle)  # faster than it decides
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        replay(db, candles, timeframe, middle, middle + 20)  # closed while it is down
        proc = start_runner(frozen, db, sock, "--heartbeat", "0.5")
        wait_listening(sock, proc)
        replay(db, candles, timeframe, middle + 20, total, pause_s=0.001)
        final = wait_caught_up(sock, ts(candles, total - 1))
        deadline = pd.Timestamp.now() + pd.Timedelta(seconds=10)
        while collector.last_seq < final["last_seq"] and pd.Timestamp.now() < deadline:
            collector.join(0.05)
    finally:
        collector.stop()
        code = stop_runner(proc)
    assert code == 0, runner_log(sock)
    assert collector.connections >= 2  # it really reconnected after the kill
    assert "event=resume_from_mark" in runner_log(sock)  # the restart caught up from the journal
    print(f"{name}: {len(collector.signals)} signals, {collector.connections} connections")

    strategy = get_strategy(name)
    stored = load_candles(db, symbol="BTCUSDT", timeframe=timeframe)
    assert len(stored) == total
    expected = signal_records(
        stored, strategy, strategy.params(), symbol="BTCUSDT", timeframe=timeframe,
        since=candles.index[history],
    )  # fmt: skip
    got = collector.signals
    assert len(expected) >= 3, "too few signals for a meaningful parity check"
    seqs = [s["seq"] for s in got]
    assert seqs == list(range(1, len(got) + 1)), "seq must increase by one, no gap, no duplicate"
    key = ("candle_ts", "signal", "price", "reasons", "symbol", "timeframe", "params_id")
    assert [tuple(s[k] for k in key) for s in got] == [tuple(e[k] for k in key) for e in expected]
    for s, e in zip(got, expected, strict=True):
        assert math.isclose(s["confidence"], e["confidence"], rel_tol=0, abs_tol=1e-9)
