"""Candles from the future: a stored closed candle whose close time is after the clock.

`signals.data.validate.future_candles` is the one rule (the live runner calls it too);
`signals data check` reports such candles as violations and `signals scan` refuses them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from signals.config import Settings, parse_settings
from signals.data.check import check_database
from signals.data.store import connect_writable, write_candles
from signals.data.validate import future_candles, iso
from signals.scan import signal_records
from strategies import get_strategy
from tests.candles import random_walk

REPO = Path(__file__).resolve().parents[1]
HOUR = 3600


def test_future_candles_rule() -> None:
    ts = np.array([0, 60, 120, 180], dtype="int64")
    # a 1m candle opening at 120 closes at 180: closed at 180, and up to 5 s early (clock skew)
    assert future_candles(ts, "1m", now=180, tolerance_s=5).tolist() == [180]
    assert future_candles(ts, "1m", now=175, tolerance_s=5).tolist() == [180]
    assert future_candles(ts, "1m", now=174, tolerance_s=5).tolist() == [120, 180]
    assert future_candles(ts, "1m", now=174, tolerance_s=0).tolist() == [120, 180]
    assert future_candles(ts, "1m", now=240, tolerance_s=0).tolist() == []
    assert future_candles(ts, "1h", now=240, tolerance_s=5).tolist() == [0, 60, 120, 180]
    assert Settings().data.future_tolerance_s == 5.0
    settings = parse_settings({"data": {"future_tolerance_s": 30}})
    assert settings.data.future_tolerance_s == 30.0


def future_db(path: Path, now: float) -> tuple[Path, pd.DataFrame, int]:
    """A 1h database whose last closed candle opens a day ahead of `now`, with a signal on it.

    Returns the database, the candles as stored and the future candle's open time.
    """
    strategy = get_strategy("ema_cross")
    frame = random_walk(600, seed=11, freq="1h")
    listed = strategy.signals(frame, strategy.params()).signal_list(None)
    last = listed[-1][0]  # the position of the last signal: end the history on it
    frame = frame.iloc[: last + 1]
    hour = int(now) // HOUR * HOUR
    opens = hour - HOUR * (len(frame) + 1) + HOUR * np.arange(len(frame))  # all closed
    future = hour + 24 * HOUR
    opens[-1] = future
    frame.index = pd.DatetimeIndex(pd.to_datetime(opens, unit="s", utc=True), name="time")
    conn = connect_writable(path)
    try:
        write_candles(conn, frame, symbol="BTCUSDT", timeframe="1h", closed=True)
    finally:
        conn.close()
    return path, frame, future


def test_check_database_flags_future_candle_with_injected_clock(tmp_path: Path) -> None:
    now = 1_767_225_600.0  # 2026-01-01 00:00 UTC, fixed
    db, _, future = future_db(tmp_path / "c.db", now)
    report = check_database(db, clock=lambda: now)
    assert not report.ok
    (series,) = report.series
    (violation,) = series.violations
    assert (violation.symbol, violation.timeframe, violation.timestamp) == ("BTCUSDT", "1h", future)
    assert "from the future" in violation.message
    # a day and an hour later the same candle has closed: nothing to report
    assert check_database(db, clock=lambda: future + HOUR).ok
    # within the tolerance: 5 s early is clock skew, 6 s is not
    assert check_database(db, clock=lambda: future + HOUR - 5).ok
    assert not check_database(db, clock=lambda: future + HOUR - 6).ok


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "signals", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


@pytest.fixture(scope="module")
def ahead(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame, int]:
    return future_db(tmp_path_factory.mktemp("future") / "c.db", time.time())


def test_cli_check_reports_future_candle(ahead: tuple[Path, pd.DataFrame, int]) -> None:
    db, _, future = ahead
    result = run("data", "check", "--db", str(db))
    assert result.returncode == 1, result.stdout + result.stderr  # check's code for problems
    flagged = [line for line in result.stdout.splitlines() if "from the future" in line]
    assert len(flagged) == 1
    assert "1h BTCUSDT" in flagged[0] and iso(future) in flagged[0]
    assert "FAILED" in result.stdout


def test_cli_scan_refuses_future_candle(ahead: tuple[Path, pd.DataFrame, int]) -> None:
    db, frame, future = ahead
    strategy = get_strategy("ema_cross")
    params = strategy.params()
    # without the rule the scan lists a signal on the future candle
    unfiltered = signal_records(frame, strategy, params, symbol="BTCUSDT", timeframe="1h")
    assert unfiltered[-1]["candle_ts"] == future
    result = run("scan", "-s", "ema_cross", "--db", str(db), "-t", "1h", "-f", "jsonl")
    assert result.returncode == 0, result.stderr
    listed = [json.loads(line) for line in result.stdout.splitlines()]
    assert future not in [r["candle_ts"] for r in listed]
    expected = signal_records(frame.iloc[:-1], strategy, params, symbol="BTCUSDT", timeframe="1h")
    assert listed == json.loads(json.dumps(expected))  # every real candle as before
    (warning,) = [line for line in result.stderr.splitlines() if "warning" in line]
    assert "refused 1 candle from the future" in warning and iso(future) in warning
    table = run("scan", "-s", "ema_cross", "--db", str(db), "-t", "1h")
    assert table.returncode == 0 and iso(future) in table.stderr
    assert iso(future) not in table.stdout
