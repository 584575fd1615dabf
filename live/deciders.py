"""Decide some streams of a runner in other processes: one commit, several CPUs.

pandas holds the GIL, so one process decides the streams of a commit one after another and
the last waits for the others (0.7-1 ms each on a small VM). With ``deciders: N`` the runner
starts N decider processes and gives each a share of its streams (the runner keeps the first
share). On a commit it asks the deciders first, decides its own share meanwhile, then journals
and sends every stream in turn, its own first.

A decider holds only an engine window per stream: the marks, the journal and the sockets stay
in the runner, so a decider that dies or hangs loses and repeats nothing. The runner notices
it (its pipe closed, or no answer within ``timeout_s``), logs ``event=decider_lost``, counts it
(``decider_restarts``), decides that step itself on its worker thread, and starts a new
decider (at most one start per ``RESTART_AFTER_S``); until that one is ready, its streams are
decided by the runner. A read error a decider meets (a lock, a replaced file) comes back as
that error and the step is deferred exactly as a local one is. The runner passes the identity
(device, inode) of the database file it reads with each request: a decider whose file differs
opens the path again and re-reads its windows. When idle, the runner asks each decider to
compare its windows with the store (a rewritten candle is reported as usual).

CPUs: a write on a pipe wakes the reader on the writer's CPU (a "sync" wake-up), where it
preempts the runner. Measured on a 2-vCPU VM, that made a decider slower than none. So when the
process may use more CPUs than it runs processes, the runner pins itself to the first and
decider k to the (k+1)-th (``os.sched_setaffinity``); otherwise it logs that it does not pin.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import sqlite3
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from live.engine import Decisions, SignalEngine
from signals.config import CandleSource
from signals.data.store import CandleStore
from signals.errors import DataError, SignalsError
from signals.frozen import FrozenParams
from signals.strategy_paths import strategy_paths, use_strategy_paths

log = logging.getLogger("live.runner")
_CONTEXT = multiprocessing.get_context("spawn")  # the runner has threads: no fork
RESTART_AFTER_S = 1.0  # a lost decider is started again at most this often
DECIDER_TIMEOUT_S = 5.0  # a decider that has not answered a step by then is lost


class DeciderLostError(SignalsError):
    """A decider process died, hung or failed: the runner decides the step itself."""


@dataclass(frozen=True)
class StoreSpec:
    """What a decider needs to open the store the runner reads."""

    db: Path
    analysis_db: Path | None
    source: CandleSource


@dataclass(eq=False)
class Decider:
    """One decider process and the stream slots (indexes in the runner's list) it decides."""

    number: int
    slots: list[int]
    cpu: int | None
    process: Any = None  # multiprocessing.Process while started
    conn: Connection | None = None
    ready: bool = False
    restarts: int = 0
    restart_at: float = 0.0  # after a loss: when it may start again
    loaded: dict[int, FrozenParams] = field(default_factory=dict)  # slot -> its frozen set
    synced: dict[int, int | None] = field(default_factory=dict)  # slot -> its window's end
    asked: list[int] = field(default_factory=list)  # slots asked, answers not read yet

    def status(self) -> dict[str, Any]:
        """Return what `status` shows of this decider."""
        alive = self.process is not None and self.process.is_alive()
        return {
            "pid": self.process.pid if self.process is not None else None,
            "slots": list(self.slots),
            "cpu": self.cpu,
            "ready": self.ready and alive,
            "restarts": self.restarts,
        }


class Deciders:
    """The decider processes of a runner: start, ask, answer, lose, restart."""

    def __init__(
        self,
        count: int,
        streams: int,
        spec: StoreSpec,
        *,
        timeout_s: float = DECIDER_TIMEOUT_S,
        pin: bool = True,
        perf: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.spec, self.timeout_s, self.perf = spec, timeout_s, perf
        count = max(0, min(count, streams - 1))  # the runner keeps a share: at most one each
        shares = _split(list(range(streams)), count + 1)
        self.cpus = _cpus(count + 1) if pin and count else None
        self.pool = [
            Decider(k, shares[k + 1], self.cpus[k + 1] if self.cpus else None) for k in range(count)
        ]
        self._by_slot = {slot: d for d in self.pool for slot in d.slots}
        self.lost = 0  # deciders lost since the start (`decider_restarts`)

    def start(self) -> None:
        """Pin the runner (when it can) and start every decider; they get ready meanwhile."""
        if not self.pool:
            return
        if self.cpus:
            os.sched_setaffinity(0, {self.cpus[0]})
        log.info(
            "event=deciders count=%d slots=%s cpus=%s", len(self.pool),
            [d.slots for d in self.pool], self.cpus or "not pinned (fewer CPUs than processes)",
        )  # fmt: skip
        for decider in self.pool:
            self._spawn(decider)

    def _spawn(self, decider: Decider) -> None:
        ours, theirs = _CONTEXT.Pipe()
        process = _CONTEXT.Process(
            target=serve, args=(theirs, self.spec, strategy_paths(), decider.cpu),
            name=f"signals-decider-{decider.number}", daemon=True,
        )  # fmt: skip
        process.start()
        theirs.close()
        decider.process, decider.conn, decider.ready = process, ours, False
        decider.loaded.clear()
        decider.synced.clear()
        decider.asked.clear()

    def close(self) -> None:
        """Stop every decider (their pipes close; they exit)."""
        for decider in self.pool:
            self._end(decider)

    def _end(self, decider: Decider) -> None:
        if decider.conn is not None:
            decider.conn.close()
            decider.conn = None
        process, decider.process = decider.process, None
        if process is not None:
            process.kill()
            process.join(1.0)
        decider.ready = False

    # -- the runner's side of a step ---------------------------------------------------------

    def usable(self, slot: int) -> Decider | None:
        """Return the decider of `slot` if it can take a step now (else the runner decides)."""
        decider = self._by_slot.get(slot)
        if decider is None:
            return None
        if decider.conn is None:  # lost: started again when due
            if self.perf() >= decider.restart_at:
                self._spawn(decider)
            return None
        return decider if self._check_ready(decider) else None

    def _check_ready(self, decider: Decider) -> bool:
        """Return whether `decider` is ready (it says so once, after its imports)."""
        if decider.conn is not None and not decider.ready:
            try:
                if decider.conn.poll(0):
                    decider.ready = decider.conn.recv() == ("ready",)
            except (EOFError, OSError) as exc:
                self._lose(decider, f"it exited before it was ready ({exc!r})")
        return decider.ready

    def takes(self, slot: int) -> bool:
        """Return whether `slot` belongs to a decider (whether or not it is ready)."""
        return slot in self._by_slot

    def synced(self, slot: int) -> int | None:
        """Return the open time the decider's window of `slot` ends at (None: unknown)."""
        decider = self._by_slot.get(slot)
        return None if decider is None else decider.synced.get(slot)

    def ask(
        self, slot: int, frozen: FrozenParams, mark: int | None, until: int,
        identity: tuple[int, int],
    ) -> None:  # fmt: skip
        """Ask `slot`'s decider to decide from `mark` to `until` (read with `answer`)."""
        decider = self._by_slot[slot]
        self._drain(decider)
        try:
            assert decider.conn is not None
            if decider.loaded.get(slot) is not frozen:  # new, restarted, or reloaded
                decider.conn.send(("load", slot, frozen))
                decider.loaded[slot] = frozen
                decider.synced.pop(slot, None)
            decider.conn.send(("step", slot, mark, until, identity))
        except (OSError, ValueError) as exc:
            self._lose(decider, f"its pipe is closed ({exc!r})")
            raise DeciderLostError(f"decider {decider.number} is lost: {exc}") from None
        decider.asked.append(slot)

    def answer(self, slot: int) -> tuple[Decisions, float]:
        """Return the decisions asked for `slot` and the seconds the decider spent on them.

        Answers are read in the order they were asked.
        """
        decider = self._by_slot[slot]
        if not decider.asked or decider.asked[0] != slot:
            raise RuntimeError(f"decider {decider.number}: slot {slot} was not asked next")
        decider.asked.pop(0)
        decisions, seconds = self._receive(decider)
        decider.synced[slot] = decisions.last_candle_ts
        return decisions, seconds

    def verify(self, slot: int, identity: tuple[int, int]) -> tuple[list[int], int] | None:
        """Ask `slot`'s decider to compare its window with the store (None: it cannot now)."""
        decider = self.usable(slot)
        if decider is None or slot not in decider.loaded:
            return None
        self._drain(decider)
        assert decider.conn is not None
        try:
            decider.conn.send(("verify", slot, identity))
        except (OSError, ValueError) as exc:
            self._lose(decider, f"its pipe is closed ({exc!r})")
            return None
        try:
            return self._receive(decider)
        except DeciderLostError:
            return None

    def forget(self) -> None:
        """Drop the answers a failed step did not read (their windows re-read when needed)."""
        for decider in self.pool:
            with contextlib.suppress(DeciderLostError, DataError, sqlite3.Error):
                self._drain(decider)

    def _drain(self, decider: Decider) -> None:
        while decider.asked:  # answers a failed step did not read: dropped
            decider.asked.pop(0)
            decider.synced.clear()
            with contextlib.suppress(DataError):
                self._receive(decider)

    def _receive(self, decider: Decider) -> Any:
        conn = decider.conn
        try:
            if conn is None or not conn.poll(self.timeout_s):
                reason = "it exited" if conn is None else f"no answer in {self.timeout_s:g} s"
                self._lose(decider, reason)
                raise DeciderLostError(f"decider {decider.number} is lost: {reason}")
            kind, value = conn.recv()
        except (EOFError, OSError) as exc:
            self._lose(decider, f"its pipe closed ({exc!r})")
            raise DeciderLostError(f"decider {decider.number} is lost: {exc!r}") from None
        if kind == "ok":
            return value
        if kind == "read_error":  # the store could not be read: deferred like a local step
            raise DataError(f"decider {decider.number}: {value}")
        self._lose(decider, f"it failed: {value}")
        raise DeciderLostError(f"decider {decider.number} failed: {value}")

    def _lose(self, decider: Decider, reason: str) -> None:
        pid = decider.process.pid if decider.process is not None else None
        self._end(decider)
        decider.asked.clear()
        decider.restarts += 1
        decider.restart_at = self.perf() + RESTART_AFTER_S
        self.lost += 1
        log.warning(
            "event=decider_lost decider=%d pid=%s slots=%s reason=%r (its streams are decided "
            "by the runner; started again within %g s)",
            decider.number, pid, decider.slots, reason, RESTART_AFTER_S,
        )  # fmt: skip

    def status(self) -> list[dict[str, Any]]:
        """Return each decider's status."""
        for decider in self.pool:
            self._check_ready(decider)
        return [d.status() for d in self.pool]


def serve(
    conn: Connection, spec: StoreSpec, paths: tuple[Path, ...], cpu: int | None
) -> None:  # pragma: no cover - runs in the decider process (tests/test_live_deciders.py)
    """A decider process: answer the runner's requests until its pipe closes."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    use_strategy_paths(paths)
    engines: dict[int, SignalEngine] = {}
    store: CandleStore | None = None
    changed: dict[int, tuple[list[int], int]] = {}  # windows that differed in a new file
    conn.send(("ready",))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        kind, slot = message[0], message[1]
        if kind == "load":
            engines[slot] = SignalEngine(message[2])
            continue
        try:
            store = _store_for(store, spec, message[-1], engines, changed)
            if kind == "step":
                started = time.perf_counter()
                decided = engines[slot].step(store, message[2], until=message[3])
                reply: tuple[str, Any] = ("ok", (decided, time.perf_counter() - started))
            elif slot in changed:  # what a new file changed in the window, told once
                reply = ("ok", changed.pop(slot))
            else:
                reply = ("ok", engines[slot].verify_window(store))
        except (DataError, sqlite3.Error, OSError) as exc:
            reply = ("read_error", str(exc))
        except Exception:
            reply = ("failed", traceback.format_exc(limit=5))
        conn.send(reply)


def _store_for(
    store: CandleStore | None, spec: StoreSpec, identity: tuple[int, int],
    engines: dict[int, SignalEngine], changed: dict[int, tuple[list[int], int]],
) -> CandleStore:  # fmt: skip
    """Return a store of the file the runner reads (open the path again when it changed).

    On a new file each window is compared with it, as the runner does with its own
    (`Following._reopen`): a window that differs is read again, and `changed` keeps what
    differed for the runner's next check of that stream.
    """
    if store is not None and store.file_identity() == tuple(identity):
        return store
    new = CandleStore(spec.db, analysis_db=spec.analysis_db, source=spec.source, busy_timeout_ms=0)
    if new.file_identity() != tuple(identity):
        new.close()
        raise DataError(f"{spec.db}: the database file changed while it was opened")
    if store is not None:
        with contextlib.suppress(sqlite3.Error):
            store.close()
        for slot, engine in engines.items():
            try:
                rewritten, missing = engine.verify_window(new)
            except (DataError, sqlite3.Error):
                rewritten, missing = [], 0
                engine.reset()  # not compared: read again
            if rewritten or missing:
                engine.reset()  # the next step reads the window from the new file
                changed[slot] = (rewritten, missing)
    return new


def _split(slots: list[int], parts: int) -> list[list[int]]:
    """Split `slots` into `parts` runs in order, the first ones longest."""
    size, extra = divmod(len(slots), parts)
    out, at = [], 0
    for k in range(parts):
        n = size + (1 if k < extra else 0)
        out.append(slots[at : at + n])
        at += n
    return out


def _cpus(processes: int) -> list[int] | None:
    """Return a CPU for each process (the runner first), or None if there are too few."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux: no pinning
        return None
    return allowed[:processes] if len(allowed) >= processes else None
