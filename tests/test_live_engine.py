"""The live engine decides each new candle exactly as `scan` does over the whole history."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from live.engine import SignalEngine
from signals.data.load import load_candles
from signals.data.store import CandleStore, connect_writable, write_candles
from signals.frozen import freeze
from signals.scan import signal_records
from strategies import get_strategy, strategy_names
from tests.candles import random_walk

FREQ = {"1m": "1min", "5m": "5min", "15m": "15min", "1h": "1h"}


def setup(tmp_path: Path, name: str) -> tuple:
    strategy = get_strategy(name)
    timeframe = strategy.timeframes[0]
    frozen = freeze(strategy=name, timeframe=timeframe, params={})
    lookback = strategy.lookback(strategy.params())
    candles = random_walk(lookback + 600, seed=21, freq=FREQ[timeframe])
    db = tmp_path / "live.db"
    conn = connect_writable(db)
    start = lookback + 20
    write_candles(conn, candles.iloc[:start], symbol="BTCUSDT", timeframe=timeframe)
    return frozen, candles, db, conn, start, timeframe


@pytest.mark.parametrize("name", strategy_names())
def test_candle_by_candle_equals_scan(tmp_path: Path, name: str) -> None:
    frozen, candles, db, conn, start, timeframe = setup(tmp_path, name)
    engine = SignalEngine(frozen)
    emitted: list[dict] = []
    with CandleStore(db) as store:
        last = engine.newest_closed(store)
        for i in range(start, len(candles)):
            step = 1 if i < start + 300 else 25  # one at a time, then in catch-up batches
            if (i - start) % step:
                continue
            write_candles(conn, candles.iloc[i : i + step], symbol="BTCUSDT", timeframe=timeframe)
            decided = engine.step(store, last)
            emitted += decided.records
            last = decided.last_candle_ts
    full = load_candles(db, symbol="BTCUSDT", timeframe=timeframe)
    first_new = candles.index[start]
    expected = signal_records(
        full, engine.strategy, engine.params, symbol="BTCUSDT", timeframe=timeframe,
        since=first_new,
    )  # fmt: skip
    assert len(expected) > 3
    assert emitted == expected


def test_invalid_candle_is_skipped_and_reported(tmp_path: Path) -> None:
    frozen, candles, db, conn, start, timeframe = setup(tmp_path, "scalping")
    engine = SignalEngine(frozen)
    bad = candles.iloc[start : start + 1].copy()
    bad["high"] = bad["low"] - 1.0
    write_candles(conn, bad, symbol="BTCUSDT", timeframe=timeframe)
    with CandleStore(db) as store:
        decided = engine.step(store, int(candles.index[start - 1].timestamp()))
    assert decided.skipped == [int(candles.index[start].timestamp())]
    assert decided.last_candle_ts == int(candles.index[start].timestamp())


def test_open_candle_is_not_decided(tmp_path: Path) -> None:
    frozen, candles, db, conn, start, timeframe = setup(tmp_path, "scalping")
    engine = SignalEngine(frozen)
    forming = candles.iloc[start : start + 1]
    write_candles(conn, forming, symbol="BTCUSDT", timeframe=timeframe, closed=False)
    with CandleStore(db) as store:
        last = int(candles.index[start - 1].timestamp())
        assert engine.step(store, last).last_candle_ts == last
    conn.close()
    assert sqlite3.connect(db).execute("select count(*) from candles where closed=0").fetchone()[0]


def test_invalid_candle_is_logged_once_and_kept_out_of_later_windows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    frozen, candles, db, conn, start, timeframe = setup(tmp_path, "scalping")
    bad = candles.iloc[start : start + 1].copy()
    bad["high"] = bad["low"] - 1.0
    write_candles(conn, bad, symbol="BTCUSDT", timeframe=timeframe)
    engine, emitted = SignalEngine(frozen), []
    with caplog.at_level("WARNING", logger="live.engine"), CandleStore(db) as store:
        last = int(candles.index[start - 1].timestamp())
        for i in range(start, start + 120):
            if i > start:
                write_candles(conn, candles.iloc[i : i + 1], symbol="BTCUSDT", timeframe=timeframe)
            decided = engine.step(store, last)
            emitted += decided.records
            last = decided.last_candle_ts
    warnings = [r for r in caplog.records if "skipping invalid candle" in r.getMessage()]
    assert len(warnings) == 1  # not once per step while it sits in the window
    # the reference: scan over the stored candles without the invalid one
    with CandleStore(db) as store:
        full = store.history("BTCUSDT", timeframe).drop(candles.index[start])
    expected = signal_records(
        full, engine.strategy, engine.params, symbol="BTCUSDT", timeframe=timeframe,
        since=candles.index[start],
    )  # fmt: skip
    assert emitted == expected


def test_a_mark_away_from_the_window_end_reseeds_from_the_store(tmp_path: Path) -> None:
    frozen, candles, db, conn, start, timeframe = setup(tmp_path, "ema_cross")
    write_candles(conn, candles.iloc[start:], symbol="BTCUSDT", timeframe=timeframe)
    rolling, fresh = SignalEngine(frozen), SignalEngine(frozen)
    with CandleStore(db) as store:
        rolling.step(store, int(candles.index[start + 200].timestamp()))  # window ends at the end
        mark = int(candles.index[start].timestamp())  # a restart from an older mark
        again = rolling.step(store, mark)
        reference = fresh.step(store, mark)
    assert again.records == reference.records and len(reference.records) > 3
