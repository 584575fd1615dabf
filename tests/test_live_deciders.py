"""Decider processes (`signals live --deciders N`): a share of the streams decided elsewhere.

A runner of three streams whose candles land in one commit, with one decider: the decider
decides the third stream, and every stream still equals its `scan`, one seq across them. A
decider that hangs or is killed is noticed, logged, counted and replaced; its streams are
decided by the runner meanwhile, and nothing is lost or sent twice. A read error the decider
meets (a lock) defers the step and keeps the decider; a replaced database file is reopened by
the decider too; the idle window check of its streams runs in it (a rewrite reported once, a
read error skipping that check); a reload sends it the reloaded frozen set.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from live import runner_follow
from live.deciders import RESTART_AFTER_S, _split
from live.start import build_config
from live.stats import prometheus_text
from signals.config import parse_settings
from signals.data.store import connect_writable
from signals.frozen import freeze, write_frozen
from signals.scan import signal_records
from strategies import get_strategy
from tests.test_live_faults import copy_database, replace_database
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


def _equal_scans(case: OneCommitStreams, **want: list[tuple[int, str]]) -> list[dict[str, Any]]:
    """Assert seqs 1..n once each and each symbol's signals equal its scan (else `want`)."""
    signals = case.signals()
    assert [m["seq"] for m in signals] == list(range(1, len(signals) + 1))
    for symbol in case.SYMBOLS:
        got = [(m["candle_ts"], m["signal"]) for m in signals if m["symbol"] == symbol]
        assert got == want.get(symbol, case.scanned(symbol)), symbol
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


# -- faults and side paths of a decider ---------------------------------------------------------


def _answers(case: OneCommitStreams) -> list[str]:
    """Record each answer the runner reads from its deciders: "ok" or the error it raised."""
    deciders = case.runner.deciders
    receive = deciders._receive
    got: list[str] = []

    def watched(decider: Any) -> Any:
        try:
            value = receive(decider)
        except Exception as exc:
            got.append(f"{type(exc).__name__}: {exc}")
            raise
        got.append("ok")
        return value

    deciders._receive = watched  # type: ignore[method-assign]  # records, then reads as before
    return got


def _pid(case: OneCommitStreams) -> Any:
    return case.runner.deciders.status()[0]["pid"]  # None while it is lost


def _rollback_journal(case: OneCommitStreams) -> OneCommitStreams:
    """Put the case's store in rollback-journal mode, where a writer's lock fails a read."""
    case.runner.store.close()  # out of WAL mode only with no other connection
    case.conn.execute("PRAGMA journal_mode = DELETE")
    case.runner.store = case.runner._open_store()
    return case


class _Locked:
    """Another connection's write lock on the store while it is held (`with`)."""

    def __init__(self, db: Path) -> None:
        self.conn = sqlite3.connect(db, isolation_level=None)

    def __enter__(self) -> None:
        self.conn.execute("BEGIN EXCLUSIVE")

    def __exit__(self, *exc: object) -> None:
        self.conn.execute("ROLLBACK")
        self.conn.close()


def test_a_read_error_in_the_decider_defers_the_step_and_keeps_the_decider(
    tmp_path: Path, caplog: Any
) -> None:
    # The store in rollback-journal mode, where a writer's lock fails a read. At candle 150
    # another connection locks it from just before the runner asks the decider for SOLUSDT's
    # step until the decider has answered: the decider's read (which never waits) fails, it
    # answers with the error, and the runner defers the step to its worker thread, which
    # decides SOLUSDT itself once the lock is gone. The decider is kept and decides the rest.
    caplog.set_level(logging.INFO, logger="live.runner")
    case = _rollback_journal(OneCommitStreams(tmp_path, deciders=1))
    answers = _answers(case)
    local = _local_steps(case, 2)
    deciders, ask = case.runner.deciders, case.runner.deciders.ask
    armed: list[bool] = []
    locked: list[int] = []  # the index in `answers` of the answer to the locked step
    pids: list[Any] = []

    def ask_while_locked(slot: int, *args: Any) -> None:
        if not armed or locked:
            return ask(slot, *args)
        with _Locked(case.db):
            ask(slot, *args)
            assert deciders.pool[0].conn is not None and deciders.pool[0].conn.poll(5)
        locked.append(len(answers))

    def on_candle(i: int) -> None:
        pids.append(_pid(case))
        if i == 150:
            armed.append(True)

    deciders.ask = ask_while_locked  # type: ignore[method-assign]  # locks once, then asks
    case.on_candle = on_candle
    case.run()
    _equal_scans(case)
    assert locked, "the step was never asked of the decider while the store was locked"
    error = answers[locked[0]]
    assert error.startswith("DataError: decider 0:") and "locked" in error, answers
    assert local, "the deferred step of SOLUSDT was not decided by the runner"
    assert answers[locked[0] + 1 :].count("ok") >= 50  # the same decider decides the rest
    assert deciders.lost == 0 and deciders.pool[0].restarts == 0
    assert len(set(pids)) == 1 and None not in pids  # one decider process from start to end
    deferred = [r.getMessage() for r in caplog.records if "event=step_deferred" in r.getMessage()]
    assert any("decider 0:" in m and "locked" in m for m in deferred), deferred
    assert not any("event=decider_lost" in r.getMessage() for r in caplog.records)


def _db_files(pid: int, db: Path) -> list[tuple[str, int]]:
    """Return (target, inode) of each descriptor process `pid` holds on the file at `db`."""
    held = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):  # a descriptor closed meanwhile
            target = os.readlink(fd)
            if target in (str(db), f"{db} (deleted)"):
                held.append((target, os.stat(fd).st_ino))
    return held


def test_a_replaced_database_is_reopened_by_the_decider(tmp_path: Path, caplog: Any) -> None:
    # At candle 150 the store is replaced as a restore or rotation does it: the same history
    # copied into a new file moved into place; the candles from 150 on are written there. The
    # runner reopens the path and asks with the new file's identity; the decider reopens it
    # too (it holds the new file, not the deleted one) and SOLUSDT keeps equalling its scan.
    # In the copy SOLUSDT's candle 145 has another volume: the decider's window differs from
    # the new file, and the runner logs it for that stream as for its own (db_window_changed).
    caplog.set_level(logging.WARNING, logger="live.runner")
    case = OneCommitStreams(tmp_path, deciders=1)
    differs = int(case.frames["SOLUSDT"].index[145].timestamp())
    db = case.db.resolve()
    deciders, ask = case.runner.deciders, case.runner.deciders.ask
    asked: list[tuple[int, int]] = []  # the file identity sent with each step of the decider
    held: dict[int, list[tuple[str, int]]] = {}
    pids: list[Any] = []

    def watched(slot: int, frozen: Any, mark: Any, until: int, identity: Any) -> None:
        asked.append(tuple(identity))
        ask(slot, frozen, mark, until, identity)

    def on_candle(i: int) -> None:
        pids.append(_pid(case))
        if i in (140, 170):
            held[i] = _db_files(pids[-1], db)
        if i == 150:
            case.conn.close()
            copy_database(case.db, tmp_path / "restored.db")
            with contextlib.closing(sqlite3.connect(tmp_path / "restored.db")) as restored:
                restored.execute(
                    "UPDATE candles SET volume = volume + 1 WHERE symbol = 'SOLUSDT' AND "
                    "timestamp = ?", (differs,),
                )  # fmt: skip
                restored.commit()
            replace_database(case.db, tmp_path / "restored.db")
            case.conn = connect_writable(case.db)
            held[150] = [("new", os.stat(db).st_ino)]
            asked.append((-1, -1))  # the replacement, among the identities asked

    deciders.ask = watched  # type: ignore[method-assign]  # records, then asks
    case.on_candle = on_candle
    case.run()
    _equal_scans(case)
    old, new = held[140][0][1], held[150][0][1]
    assert held[140] == [(str(db), old)] and old != new  # the decider read the first file
    assert held[170] == [(str(db), new)], held[170]  # then the new one, the old one closed
    before, after = asked[: asked.index((-1, -1))], asked[asked.index((-1, -1)) + 1 :]
    assert {ino for _, ino in before} == {old} and {ino for _, ino in after} == {new}
    assert len(after) >= 60  # the decider decided SOLUSDT on the new file
    assert case.runner.counters.db_reopens == 1
    assert deciders.lost == 0 and len(set(pids)) == 1 and None not in pids
    changed = [r.getMessage() for r in caplog.records if "db_window_changed" in r.getMessage()]
    assert len(changed) == 1 and f"first={differs}" in changed[0], changed
    assert "changed=1 missing=0" in changed[0] and "stream=SOLUSDT" in changed[0]


def test_the_idle_window_check_goes_through_the_decider(
    tmp_path: Path, monkeypatch: Any, caplog: Any
) -> None:
    # The runner compares each window with the store once it has been idle CHECKPOINT_IDLE_S
    # (here 0: after every step, between the candles); SOLUSDT's window is in the decider,
    # which compares it. At candle 170 the volume of SOLUSDT's candle 160 is rewritten, too far
    # back for a step to read again (OVERLAP): the decider's check reports it, once; the runner
    # logs and counts it. Its signals (on the close only) stay those of scan.
    monkeypatch.setattr(runner_follow, "CHECKPOINT_IDLE_S", 0.0)
    case = OneCommitStreams(tmp_path, deciders=1)
    deciders, verify = case.runner.deciders, case.runner.deciders.verify
    checked: list[Any] = []  # the decider's answer to each check of SOLUSDT's window
    rewritten = int(case.frames["SOLUSDT"].index[160].timestamp())
    pids: list[Any] = []

    def watched(slot: int, identity: Any) -> Any:
        checked.append(verify(slot, identity))
        return checked[-1]

    def on_candle(i: int) -> None:
        pids.append(_pid(case))
        if i == 170:
            with case.conn:
                case.conn.execute(
                    "UPDATE candles SET volume = volume * 2 WHERE symbol = 'SOLUSDT' "
                    "AND timestamp = ?",
                    (rewritten,),
                )
            checked.append("rewrite")

    deciders.verify = watched  # type: ignore[method-assign]  # records, then checks
    case.on_candle = on_candle
    case.run()
    _equal_scans(case)
    at = checked.index("rewrite")
    assert len(checked[:at]) >= 20 and all(c == ([], 0) for c in checked[:at]), checked[:at]
    reported = [c for c in checked[at + 1 :] if c != ([], 0)]
    assert reported == [([rewritten], 0)], checked[at + 1 :]
    assert case.runner.counters.rewritten_candles == 1
    said = [r.getMessage() for r in caplog.records if "event=candle_rewritten" in r.getMessage()]
    assert len(said) == 1 and f"candle_ts={rewritten} " in said[0]
    assert deciders.lost == 0 and len(set(pids)) == 1 and None not in pids


def _scan(case: OneCommitStreams, symbol: str, params: dict[str, int]) -> list[tuple[int, str]]:
    """Return (candle_ts, side) of `scan`'s signals on `symbol` with `params`, candle 100 on."""
    strategy = get_strategy("ema_cross")
    first = int(case.frames[symbol].index[100].timestamp())
    records = signal_records(
        case.frames[symbol], strategy, strategy.params(params), symbol=symbol, timeframe="1m"
    )
    return [(r["candle_ts"], r["signal"]) for r in records if r["candle_ts"] >= first]


def test_a_reload_sends_the_decider_its_streams_new_frozen_set(tmp_path: Path, caplog: Any) -> None:
    # Two reloads (what SIGHUP runs): at candle 150 of the same files, at candle 180 with new
    # parameters in SOLUSDT's file. Each time the decider is sent SOLUSDT's reloaded set before
    # its next step, and SOLUSDT's signals are scan's with the old parameters up to the mark
    # of the second reload and with the new ones after it: none lost, none twice. Before the
    # first, SOLUSDT's candle 145 gets another volume: the reload's check of the window (in
    # the decider) reports it, once.
    caplog.set_level(logging.INFO, logger="live.runner")
    case = OneCommitStreams(tmp_path, deciders=1)
    deciders, runner = case.runner.deciders, case.runner
    sent: list[Any] = []  # what the runner sent the decider
    sets: list[Any] = [runner.streams[2].frozen]  # SOLUSDT's set: at the start, then reloaded
    new = {"fast": 3, "slow": 8}
    pids: list[Any] = []
    rewritten = int(case.frames["SOLUSDT"].index[145].timestamp())

    def on_candle(i: int) -> None:
        pids.append(_pid(case))
        if i == 100:  # before the first step: record what the runner sends its decider
            conn = deciders.pool[0].conn
            assert conn is not None
            send = conn.send

            def watched(message: Any) -> None:
                sent.append(message)
                send(message)

            conn.send = watched  # type: ignore[method-assign]  # records, then sends
        if i == 150:
            with case.conn:
                case.conn.execute(
                    "UPDATE candles SET volume = volume + 1 WHERE symbol = 'SOLUSDT' AND "
                    "timestamp = ?", (rewritten,),
                )  # fmt: skip
        if i in (150, 180):
            if i == 180:
                sets.append(runner.streams[2].frozen)  # the set of the first reload
                frozen = freeze(strategy="ema_cross", timeframe="1m", params=new, symbol="SOLUSDT")
                write_frozen(frozen, tmp_path / "SOLUSDT.json")
            sent.append("reload")
            runner.request_reload()

    case.on_candle = on_candle
    case.run()
    sets.append(runner.streams[2].frozen)
    loads = [k for k, m in enumerate(sent) if m == "reload" or m[0] == "load"]
    kinds = [sent[k][0] if sent[k] != "reload" else "reload" for k in loads]
    assert kinds == ["load", "reload", "load", "reload", "load"]  # once, then after each reload
    for k, frozen in zip(loads[::2], sets, strict=True):  # each set, then a step of it
        assert sent[k][1:] == (2, frozen) and sent[k][2] is frozen
        assert sent[k + 1][:2] == ("step", 2)
    assert sets[0] is not sets[1] and sets[0].params_id == sets[1].params_id  # the same file
    assert sets[2].params_id != sets[0].params_id and runner.counters.reloads == 6
    reloaded = [r.getMessage() for r in caplog.records if "event=reloaded" in r.getMessage()]
    mark = int(reloaded[-1].split("mark=")[1].split()[0])  # SOLUSDT's, at the second reload
    assert "stream=SOLUSDT" in reloaded[-1] and f"new={sets[2].params_id}" in reloaded[-1]
    old, then = case.scanned("SOLUSDT"), _scan(case, "SOLUSDT", new)
    want = [s for s in old if s[0] <= mark] + [s for s in then if s[0] > mark]
    assert want != old and [s for s in then if s[0] > mark]  # the new set decides otherwise
    signals = _equal_scans(case, SOLUSDT=want)
    ids = {m["params_id"] for m in signals if m["symbol"] == "SOLUSDT" and m["candle_ts"] > mark}
    assert ids == {sets[2].params_id}
    assert deciders.lost == 0 and len(set(pids)) == 1 and None not in pids
    said = [r.getMessage() for r in caplog.records if "event=candle_rewritten" in r.getMessage()]
    assert len(said) == 1 and f"candle_ts={rewritten}" in said[0], said


def test_a_read_error_in_the_deciders_idle_check_skips_that_check(
    tmp_path: Path, monkeypatch: Any, caplog: Any
) -> None:
    # The store is locked by another connection while the decider checks SOLUSDT's window
    # (after candle 150): the check is skipped and said, as when the runner's own check meets
    # a lock; nothing is raised, the decider is kept and checks again after the next steps.
    caplog.set_level(logging.INFO, logger="live.runner")
    monkeypatch.setattr(runner_follow, "CHECKPOINT_IDLE_S", 0.0)
    case = _rollback_journal(OneCommitStreams(tmp_path, deciders=1))
    deciders, verify = case.runner.deciders, case.runner.deciders.verify
    idle_work = case.runner._idle_work
    checked: list[Any] = []
    failed: list[Exception] = []  # what an idle check raised
    pids: list[Any] = []

    def watched(slot: int, identity: Any) -> Any:
        if len(pids) < 50 or "locked" in checked:
            checked.append(verify(slot, identity))
            return checked[-1]
        checked.append("locked")
        with _Locked(case.db):
            return verify(slot, identity)

    async def idle() -> None:
        try:
            await idle_work()
        except Exception as exc:
            failed.append(exc)
            raise

    def on_candle(i: int) -> None:
        pids.append(_pid(case))

    deciders.verify = watched  # type: ignore[method-assign]  # locks once, then checks
    case.runner._idle_work = idle  # type: ignore[method-assign]  # records what it raises
    case.on_candle = on_candle
    case.run()
    _equal_scans(case)
    assert not failed, [str(e)[:60] for e in failed]
    at = checked.index("locked")
    assert checked[at + 1 :].count(([], 0)) >= 20  # checked again afterwards
    skipped = [
        r.getMessage() for r in caplog.records if "event=window_check_skipped" in r.getMessage()
    ]
    assert any("decider 0:" in m and "locked" in m for m in skipped), skipped
    assert deciders.lost == 0 and len(set(pids)) == 1 and None not in pids
