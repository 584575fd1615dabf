"""Decider processes (`signals live --deciders N`): a share of the streams decided elsewhere.

A runner of three streams whose candles land in one commit, with one decider: the decider
decides the third stream, and every stream still equals its `scan`, one seq across them. A
decider that hangs or is killed is noticed, logged, counted and replaced; its streams are
decided by the runner meanwhile, and nothing is lost or sent twice.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from live.deciders import RESTART_AFTER_S, _split
from live.start import build_config
from live.stats import prometheus_text
from signals.config import parse_settings
from tests.test_live_multi import OneCommitStreams


def _local_steps(case: OneCommitStreams, slot: int) -> list[int]:
    """Record the loop thread's own steps of `slot` (the runner deciding it itself)."""
    calls: list[int] = []
    engine = case.runner.streams[slot].engine
    step = engine.step

    def watched(store: Any, after_ts: Any, **kw: Any) -> Any:
        calls.append(after_ts)
        return step(store, after_ts, **kw)

    engine.step = watched  # type: ignore[method-assign]  # counts, then decides as before
    return calls


def _equal_scans(case: OneCommitStreams) -> list[dict[str, Any]]:
    signals = case.signals()
    assert [m["seq"] for m in signals] == list(range(1, len(signals) + 1))
    for symbol in case.SYMBOLS:
        got = [(m["candle_ts"], m["signal"]) for m in signals if m["symbol"] == symbol]
        assert got == case.scanned(symbol), symbol
    return signals


def test_a_decider_decides_its_share_and_every_stream_equals_its_scan(tmp_path: Path) -> None:
    case = OneCommitStreams(tmp_path, deciders=1)
    local = _local_steps(case, 2)
    pids: list[Any] = []
    case.on_candle = lambda i: pids.append(case.runner.deciders.status()[0]["pid"])
    case.run()
    signals = _equal_scans(case)
    assert any(m["symbol"] == "SOLUSDT" for m in signals)
    assert local == [], "the runner decided the decider's stream itself"
    assert case.runner.deciders.lost == 0
    assert len(set(pids)) == 1 and pids[0] not in (None, os.getpid())
    assert [d.slots for d in case.runner.deciders.pool] == [[2]]  # the runner keeps 0 and 1


def test_a_hung_decider_is_replaced_and_nothing_is_lost_or_repeated(
    tmp_path: Path, caplog: Any
) -> None:
    # The decider stops answering (SIGSTOP) at candle 150: the step waits decider_timeout_s,
    # the decider is killed and the step decided by the runner; a new decider takes over.
    case = OneCommitStreams(tmp_path, deciders=1, decider_timeout_s=0.3)
    local = _local_steps(case, 2)
    stopped: list[int] = []

    def hang(i: int) -> None:
        if i == 150:
            pid = case.runner.deciders.status()[0]["pid"]
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)

    case.on_candle = hang
    case.run()
    _equal_scans(case)
    assert stopped and case.runner.deciders.lost == 1
    assert local, "the runner did not decide the stream while its decider was lost"
    lost = [r.getMessage() for r in caplog.records if "event=decider_lost" in r.getMessage()]
    assert len(lost) == 1 and f"pid={stopped[0]}" in lost[0] and "no answer" in lost[0]
    assert case.runner.deciders.pool[0].restarts == 1
    assert not _alive(stopped[0])


def test_a_killed_decider_is_replaced_and_nothing_is_lost_or_repeated(
    tmp_path: Path, caplog: Any
) -> None:
    case = OneCommitStreams(tmp_path, candles=260, deciders=1)
    killed: list[int] = []
    later: list[Any] = []

    def kill(i: int) -> None:
        if i == 150:
            killed.append(case.runner.deciders.status()[0]["pid"])
            os.kill(killed[0], signal.SIGKILL)
        elif i > 150:
            if i == 152:  # the loss was seen at 150; a new decider may start a second later
                time.sleep(RESTART_AFTER_S + 0.1)
            later.append(case.runner.deciders.status()[0])

    case.on_candle = kill
    case.run()
    _equal_scans(case)
    assert case.runner.deciders.lost == 1
    assert any("event=decider_lost" in r.getMessage() for r in caplog.records)
    status = case.runner.status()
    assert status["decider_restarts"] == 1
    assert "# TYPE signals_live_decider_restarts counter\nsignals_live_decider_restarts 1\n" in (
        prometheus_text(status)
    )
    restarted = {d["pid"] for d in later if d["pid"] not in (None, killed[0])}
    assert len(restarted) == 1, "no new decider was started"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is not alive
        return f.read().split(")")[-1].split()[0] != "Z"


@given(st.integers(0, 40), st.integers(1, 8))
def test_streams_are_split_in_order_the_first_shares_longest(streams: int, parts: int) -> None:
    shares = _split(list(range(streams)), parts)
    assert len(shares) == parts
    assert [slot for share in shares for slot in share] == list(range(streams))
    sizes = [len(share) for share in shares]
    assert sizes == sorted(sizes, reverse=True) and max(sizes) - min(sizes) <= 1


def test_deciders_come_from_the_option_else_the_config(tmp_path: Path) -> None:
    settings = parse_settings({"live": {"deciders": 2, "decider_timeout_s": 1.5}})
    base = {"params": tmp_path / "f.json", "db": tmp_path / "c.db"}
    config = build_config(settings, **base)
    assert (config.deciders, config.decider_timeout_s) == (2, 1.5)
    assert build_config(settings, **base, deciders=1).deciders == 1
    assert build_config(parse_settings({}), **base).deciders == 0


def test_no_decider_for_a_runner_of_one_stream() -> None:
    from live.deciders import Deciders, StoreSpec
    from signals.config import DataSettings

    spec = StoreSpec(Path("c.db"), None, DataSettings().source)
    assert Deciders(3, 1, spec).pool == []
    assert [d.slots for d in Deciders(5, 3, spec).pool] == [[1], [2]]  # at most one each
