"""Higher-timeframe inputs: the visibility rule, and a probe strategy in scan and in live.

The probe (a module in a strategy folder created here) reads the hourly candles and fires when
a new hour becomes visible: BUY if that hour closed up, SELL if down. It must fire only on the
15m candle that closes with the hour, in ``signals scan`` and in ``signals live``, also when the
pipeline commits the 1h row 20 ms after the 15m row. The 1h rows written here have their open
and close swapped: a strategy that read the store's 1h table would take every side the wrong way.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from research.backtest.bias import check_bias
from signals.data.load import load_candles
from signals.data.store import connect_writable, write_candles
from signals.scan import signal_records
from signals.strategy_paths import get_strategy
from signals.timeframes import TIMEFRAMES, higher_timeframes
from strategies import indicators as ind
from strategies.base import Rule, RuleSet, Strategy
from strategies.informative import aggregate, base_seconds, with_informative
from strategies.params import ScoringParams, fixed, param
from tests.candles import random_walk
from tests.livekit import (
    ROOT,
    Collector,
    runner_log,
    start_runner,
    stop_runner,
    wait_caught_up,
    wait_listening,
)

PROBE = """
from dataclasses import dataclass

from strategies.base import Rule, RuleSet, Strategy
from strategies.params import ScoringParams, fixed


@dataclass(frozen=True, kw_only=True)
class ProbeParams(ScoringParams):
    threshold: float = fixed(1.0)
    cooldown: int = fixed(0)


class HourProbe(Strategy[ProbeParams]):
    name = "hour_probe"
    timeframes = ("15m",)
    informative = ("1h",)
    Params = ProbeParams

    def warmup(self, params):
        return 1  # the previous row's visible hour

    def informative_warmup(self, params):
        return 1

    def informative_columns(self, timeframe, higher, params):
        return {"opened": higher.index.as_unit("s").asi8.astype(float)}

    def rules(self, candles, params):
        opened = candles["opened_1h"]
        new = opened.notna() & (opened != opened.shift(1))
        up = candles["close_1h"] > candles["open_1h"]
        down = candles["close_1h"] < candles["open_1h"]
        return RuleSet(
            buy=[Rule("a new hour is visible", new), Rule("the hour closed up", up)],
            sell=[Rule("a new hour is visible", new), Rule("the hour closed down", down)],
        )
"""

# -- the visibility rule ------------------------------------------------------------------------

PAIRS = [(b, h) for b in TIMEFRAMES for h in higher_timeframes(b)]


@st.composite
def histories(draw: st.DrawFn, base: str, higher: str) -> tuple[pd.DataFrame, int, str]:
    b, ratio = TIMEFRAMES[base], TIMEFRAMES[higher] // TIMEFRAMES[base]
    offset = draw(st.integers(0, 2 * ratio - 1))  # where in a higher candle history starts
    n = draw(st.integers(3, min(3 * ratio + 3, 400)))
    candles = random_walk(n, seed=draw(st.integers(0, 99)), freq=f"{b}s")
    candles.index = candles.index + pd.Timedelta(seconds=offset * b)
    gaps = draw(st.lists(st.integers(2, n - 1), max_size=max(0, n // 4)))  # 2 consecutive kept
    keep = np.ones(n, dtype=bool)
    keep[gaps] = False
    return candles[keep], b, higher


@pytest.mark.parametrize(("base", "higher"), PAIRS)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_a_higher_candle_is_visible_from_the_base_candle_that_closes_with_or_after_it(
    base: str, higher: str, data: st.DataObject
) -> None:
    drawn = data.draw(histories(base, higher))
    candles, b, tf = drawn
    length = TIMEFRAMES[tf]
    assert base_seconds(candles.index) == b
    opened = lambda _tf, h: {"opened": h.index.as_unit("s").asi8.astype(float)}  # noqa: E731
    merged = with_informative(candles, (tf,), columns=opened)
    # the oracle: brute force over the higher candles that have base candles in the history
    t = candles.index.as_unit("s").asi8
    bucket = t - t % length
    groups = candles.groupby(bucket)
    starts = np.array(sorted(groups.groups), dtype="int64")
    closed = (starts[None, :] + length) <= (t[:, None] + b)  # rows x higher candles
    for row in range(len(candles)):
        visible = starts[closed[row]]
        got = merged.iloc[row]
        if not len(visible):
            assert np.isnan(got[f"opened_{tf}"]) and np.isnan(got[f"close_{tf}"])
            continue
        start = visible.max()
        part = groups.get_group(start)
        assert got[f"opened_{tf}"] == start
        assert start + length <= t[row] + b  # T + H <= t + b: no lookahead
        assert got[f"open_{tf}"] == part["open"].iloc[0]
        assert got[f"close_{tf}"] == part["close"].iloc[-1]
        assert got[f"high_{tf}"] == part["high"].max()
        assert got[f"low_{tf}"] == part["low"].min()
        assert np.isclose(got[f"volume_{tf}"], part["volume"].sum(), rtol=1e-12)
        assert np.isclose(got[f"buy_volume_{tf}"], part["buy_volume"].sum(), rtol=1e-12)


def test_the_15m_candle_that_closes_with_the_hour_sees_it_and_the_one_before_does_not() -> None:
    candles = random_walk(8, freq="15min", start="2024-01-01 10:00")
    merged = with_informative(candles, ("1h",))
    hour = aggregate(candles, "1h").iloc[0]
    assert merged["close_1h"].iloc[:3].isna().all()  # 10:00, 10:15, 10:30: the hour is open
    assert merged["close_1h"].iloc[3] == hour["close"] == candles["close"].iloc[3]  # 10:45
    assert merged["high_1h"].iloc[4:7].eq(hour["high"]).all()  # until 11:45 closes 11:00's hour


def test_one_candle_sees_no_higher_candle() -> None:
    candles = random_walk(1, freq="15min", start="2024-01-01 10:45")
    assert with_informative(candles, ("1h",))["close_1h"].isna().all()
    probe = DeclaredHourWarmup()
    assert not probe.signals(candles).buy.any()


def test_buy_volume_of_an_hour_is_unknown_when_a_quarter_of_it_is() -> None:
    candles = random_walk(8, freq="15min")
    candles.loc[candles.index[5], "buy_volume"] = np.nan
    merged = with_informative(candles, ("1h",))
    assert not np.isnan(merged["buy_volume_1h"].iloc[3])
    assert np.isnan(merged["buy_volume_1h"].iloc[7]) and not np.isnan(merged["volume_1h"].iloc[7])


# -- the probe in scan and live -----------------------------------------------------------------


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the CLI of this checkout; `cwd` holds the fingerprint cache."""
    env = {**__import__("os").environ, "SIGNALS_CACHE_DIR": str(cwd / ".cache"), "COLUMNS": "300"}
    return subprocess.run(
        [sys.executable, "-m", "signals", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def hours_of(quarters: pd.DataFrame) -> pd.DataFrame:
    """The 1h candles of whole hours, open and close swapped (valid, every direction wrong)."""
    hours = aggregate(quarters, "1h")
    whole = quarters.groupby(quarters.index.floor("1h")).size().reindex(hours.index) == 4
    hours = hours[whole.to_numpy()].copy()
    hours["open"], hours["close"] = hours["close"].to_numpy(), hours["open"].to_numpy()
    hours["trades"] = 1.0
    return hours


def expected_signals(quarters: pd.DataFrame, lookback: int) -> list[tuple[int, str]]:
    """(candle_ts, side) of each 15m candle closing an hour, the side from its quarters."""
    out = []
    for i in range(lookback - 1, len(quarters)):
        at = quarters.index[i]
        if at.minute == 45 and i >= 3 and quarters.index[i - 3] == at - pd.Timedelta("45min"):
            first, last = quarters["open"].iloc[i - 3], quarters["close"].iloc[i]
            if first != last:
                out.append((int(at.timestamp()), "BUY" if last > first else "SELL"))
    return out


@pytest.fixture
def probe_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "mystrats"
    folder.mkdir()
    (folder / "probe.py").write_text(PROBE)
    return folder


def test_strategies_lists_the_timeframes_a_strategy_reads(
    probe_folder: Path, tmp_path: Path
) -> None:
    listed = cli("strategies", "--strategy-path", str(probe_folder), cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = {line.split("│")[1].strip(): line for line in listed.stdout.splitlines() if "│" in line}
    assert "15m (reads 1h)" in rows["hour_probe"] and "15m 5m (reads 1h)" in rows["trend_pullback"]
    assert "reads" not in rows["swing"]


def test_scan_fires_the_probe_only_on_the_quarter_that_closes_the_hour(
    probe_folder: Path, tmp_path: Path
) -> None:
    quarters = random_walk(203, seed=3, freq="15min", start="2024-01-01 00:30")  # mid-hour start
    db = tmp_path / "candles.db"
    conn = connect_writable(db)
    write_candles(conn, quarters, symbol="BTCUSDT", timeframe="15m")
    write_candles(conn, hours_of(quarters), symbol="BTCUSDT", timeframe="1h")
    conn.close()
    done = cli("scan", "--strategy-path", str(probe_folder), "-s", "hour_probe", "--db", str(db),
               "-t", "15m", "-f", "jsonl", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    got = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    lookback = get_strategy("hour_probe", paths=[probe_folder]).lookback(
        get_strategy("hour_probe", paths=[probe_folder]).params()
    )
    assert {s["candle_ts"] % 3600 for s in got} == {2700}  # :45, the quarter closing the hour
    assert [(s["candle_ts"], s["signal"]) for s in got] == expected_signals(quarters, lookback)
    assert len(got) > 40


def write_live(db: Path, quarters: pd.DataFrame, start: int, stop: int, lag_s: float) -> None:
    """Commit each 15m candle; an hour's 1h candle `lag_s` after the quarter that closes it."""
    hours = hours_of(quarters)
    conn = connect_writable(db)
    for i in range(start, stop):
        write_candles(conn, quarters.iloc[i : i + 1], symbol="BTCUSDT", timeframe="15m")
        hour = quarters.index[i].floor("1h")
        if quarters.index[i].minute == 45 and hour in hours.index:
            time.sleep(lag_s)
            write_candles(conn, hours.loc[[hour]], symbol="BTCUSDT", timeframe="1h")
        time.sleep(0.005)
    conn.close()


def test_live_fires_the_probe_with_the_hour_when_the_1h_row_comes_20ms_later(
    probe_folder: Path, tmp_path: Path
) -> None:
    quarters = random_walk(260, seed=4, freq="15min", start="2024-01-01 00:15")
    db, sock, frozen = tmp_path / "live.db", tmp_path / "live.sock", tmp_path / "probe.json"
    history = 40
    write_live(db, quarters, 0, history, lag_s=0.0)
    made = cli("freeze", "--strategy-path", str(probe_folder), "-s", "hour_probe", "-t", "15m",
               "-o", str(frozen), cwd=tmp_path)  # fmt: skip
    assert made.returncode == 0, made.stderr
    env = {"SIGNALS_CACHE_DIR": str(tmp_path / ".cache")}
    proc = start_runner(frozen, db, sock, "--strategy-path", str(probe_folder), env=env)
    collector = Collector(sock)
    try:
        wait_listening(sock, proc)
        wait_caught_up(sock, int(quarters.index[history - 1].timestamp()))
        collector.start()
        write_live(db, quarters, history, len(quarters), lag_s=0.02)
        final = wait_caught_up(sock, int(quarters.index[-1].timestamp()))
        deadline = time.monotonic() + 10
        while collector.last_seq < final["last_seq"] and time.monotonic() < deadline:
            collector.join(0.05)
    finally:
        collector.stop()
        code = stop_runner(proc)
    assert code == 0, runner_log(sock)
    strategy = get_strategy("hour_probe", paths=[probe_folder])
    stored = load_candles(db, symbol="BTCUSDT", timeframe="15m")
    scan = signal_records(stored, strategy, strategy.params(), symbol="BTCUSDT", timeframe="15m",
                          since=quarters.index[history])  # fmt: skip
    got = [(s["candle_ts"], s["signal"]) for s in collector.signals]
    assert got == [(s["candle_ts"], s["signal"]) for s in scan]
    assert got == [
        e for e in expected_signals(quarters, 0) if e[0] >= quarters.index[history].timestamp()
    ]
    assert {ts % 3600 for ts, _ in got} == {2700} and len(got) > 40
    # the store's 1h rows say the opposite of every hour: live did not read them
    hours = load_candles(db, symbol="BTCUSDT", timeframe="1h")
    assert len(hours) >= 60
    assert (
        (hours["close"] > hours["open"])
        == (
            aggregate(stored, "1h")["close"].reindex(hours.index)
            < aggregate(stored, "1h")["open"].reindex(hours.index)
        )
    ).all()


# -- signals bias with higher-timeframe inputs ---------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class HourParams(ScoringParams):
    threshold: float = fixed(1.0)
    cooldown: int = fixed(0)
    period: int = param(20, low=5, high=50)


class NextHourPeek(Strategy[HourParams]):
    """The classic bug: the hour merged by its open time (it sees its own, unfinished close)."""

    name = "next_hour_peek"
    timeframes = ("15m",)
    informative = ("1h",)
    Params = HourParams

    def warmup(self, params: HourParams) -> int:
        return 2

    def informative_columns(self, timeframe: str, higher: pd.DataFrame, params: HourParams) -> dict:
        return {"following": higher["close"].shift(-1)}  # the next hour's close: lookahead

    def rules(self, candles: pd.DataFrame, params: HourParams) -> RuleSet:
        up = candles["following_1h"] > candles["close_1h"]
        return RuleSet(buy=[Rule("next hour up", up)], sell=[Rule("next hour down", ~up)])


class ShortHourWarmup(NextHourPeek):
    """An SMA of 1h closes with its warm-up left undeclared."""

    name = "short_hour_warmup"

    def informative_columns(self, timeframe: str, higher: pd.DataFrame, params: HourParams) -> dict:
        return {"sma": ind.sma(higher["close"], params.period)}

    def rules(self, candles: pd.DataFrame, params: HourParams) -> RuleSet:
        up = candles["close"] > candles["sma_1h"]
        return RuleSet(buy=[Rule("above", up)], sell=[Rule("below", ~up)])


class DeclaredHourWarmup(ShortHourWarmup):
    """The same, with the hours of its SMA declared."""

    name = "declared_hour_warmup"

    def informative_warmup(self, params: HourParams) -> int:
        return params.period


def inside_an_hour(at: pd.Timestamp) -> bool:
    return (at + pd.Timedelta("15min")).minute != 0


def test_bias_cuts_inside_an_hour_catch_a_peek_at_the_unfinished_hour() -> None:
    candles = random_walk(1500, seed=5, freq="15min")
    report = check_bias(NextHourPeek(), candles, cuts=0, starts=1, seed=1)
    assert report.inside and all(inside_an_hour(at) for at in report.inside)
    assert any((at + pd.Timedelta("30min")).minute == 0 for at in report.inside)  # :30 cuts
    assert not report.ok and report.findings[0].check == "lookahead"
    assert "inside a higher-timeframe candle" in report.verdict()


def test_bias_starts_inside_an_hour_catch_an_undeclared_hourly_warmup() -> None:
    candles = random_walk(1500, seed=5, freq="15min")
    assert not check_bias(ShortHourWarmup(), candles, cuts=0, starts=0, seed=2).ok
    declared = DeclaredHourWarmup()
    assert declared.lookback(declared.params()) == 2 + (20 + 1) * 4 + 0 + 2
    assert check_bias(declared, candles, seed=2).ok


@pytest.mark.parametrize("timeframe", ["15m", "5m"])
def test_trend_pullback_passes_bias_with_cuts_inside_hours(timeframe: str) -> None:
    strategy = get_strategy("trend_pullback")
    candles = random_walk(4000, seed=6, freq=f"{TIMEFRAMES[timeframe]}s")
    report = check_bias(strategy, candles, seed=3)
    assert report.ok, report.verdict()
    assert report.inside


def test_trend_pullback_warms_up_its_hourly_sma_in_base_candles() -> None:
    strategy = get_strategy("trend_pullback")
    p = strategy.params()
    hourly = (p.trend_period + p.trend_slope + 1) * 12  # the 5m candles of 56 whole hours
    assert strategy.lookback(p) == strategy.warmup(p) + hourly + p.cooldown + 2 == 1195
    assert strategy.lookback(p, "15m") == 1195  # one number for every declared timeframe
    assert strategy.lookback(p, "1m") == strategy.warmup(p) + 56 * 60 + p.cooldown + 2
