"""The runner's follow loop: wait for a commit, step on the right thread, retry faults.

The usual step runs on the event loop's thread with reads that never wait for a lock; a step
that would wait, or the first after a start or reload, runs in the worker thread with reads
that wait up to ``busy_timeout_ms``, retried with backoff (`_with_retry`). The database file is
watched by its (device, inode): a deleted or replaced file is reopened (`_reopen`). When idle,
the journal is checkpointed and the engine's window compared with the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import sqlite3
from collections.abc import Callable
from functools import partial
from typing import Any

from live.deciders import DeciderLostError
from live.runner_step import Deciding, JournalWriteError, Step
from live.settle import Settle
from live.streams import Stream
from signals.data.store import CandleStore
from signals.data.validate import latest_closable
from signals.errors import DataError
from signals.timeframes import timeframe_seconds

log = logging.getLogger("live.runner")  # the runner's logger name: log lines stay as they were
MAX_BACKOFF_S = 2.0
# How long an event whose check found nothing still starts the latency clock: a commit becomes
# visible within a millisecond of its last write; an older event was a commit's trailing write
# (already decided) or not a commit, and must not date the next one.
SETTLE_WINDOW_S = 0.005
# The journal's WAL is copied back into its database this long after the last step: never
# inside the COMMIT of a signal (see live.journal).
CHECKPOINT_IDLE_S = 0.5
PERSISTENT_ERROR_S = 10.0  # a read error that is not a lock, retried this long, is fatal

_IN_WORKER = object()  # `Runner._decide_here`: this step runs in the worker thread


class Following(Deciding):
    """The follow part of a `Runner`: its loop, the worker thread, the database file."""

    async def _follow(self) -> None:
        async with self._serial:
            await self._with_retry(self._start_mark)
        # `pending` starts the latency clock of the next step: the latest file event since the
        # last successful check (a commit's last write precedes its visibility), else the
        # notice that led to the check (a settle or safety tick).
        pending: float | None = self.perf()
        from_event = False
        while not self._stopping.is_set():
            self._follow_alive = self.perf()
            if await self._cycle(pending if pending is not None else self.perf()):
                pending = None
                self.watcher.settled()
            elif from_event:
                self.watcher.settle()  # the commit may become visible just after its event
            if pending is not None and self.perf() - pending > SETTLE_WINDOW_S:
                pending = None  # a notice that was no new commit
            self._schedule_settle_wake()
            noticed, from_event = await self.watcher.wait_event()
            if from_event:
                pending = noticed

    def _start_mark(self) -> None:
        for stream in self.streams:
            self._start_stream(stream)

    def _start_stream(self, stream: Stream) -> None:
        """Set a stream's mark from the journal (first start: the newest stored candle)."""
        mark = self.journal.last_processed(stream.key)
        bound = self._start_bound(stream.frozen.timeframe, stream.settle)
        newest = stream.engine.newest_closed(self.store, bound) or 0
        which = self._which(stream)
        if mark is None:
            mark = newest
            self.journal.set_processed(stream.key, mark)
            log.info("event=first_start mark=%d (history is not emitted)%s", mark, which)
        else:
            log.info("event=resume_from_mark mark=%d%s", mark, which)
        stream.mark = mark
        if mark == newest:  # nothing to catch up: the first new candle can be decided at once
            stream.engine.prime(self.store, mark)

    def _start_bound(self, timeframe: str, settle: Settle | None) -> int:
        """Return the newest open time a start or a reload may take as decided history."""
        now, step = self.clock(), timeframe_seconds(timeframe)
        bound = latest_closable(timeframe, now, self.config.future_tolerance_s)
        if settle is not None:  # a candle that closed just now may not be final yet
            bound = min(bound, math.floor(now - settle.settle_s) - step)
        return bound

    async def _cycle(self, noticed: float) -> bool:
        async with self._serial:
            if not await self._database_ready():
                return False
            with self.collector.paused():  # no collection between a commit and its signals
                step = self._decide_here(noticed)
                if step is not _IN_WORKER and step is not None:
                    self._publish(step, noticed)  # type: ignore[arg-type]  # a Step
            if step is _IN_WORKER:  # collection stays on while it waits: a fault may last
                step = await self._with_retry(self._decide)
                if step is not None:
                    with self.collector.paused():
                        self._publish(step, noticed)
        if step is None:
            return False
        self._checkpoint_later()
        return True

    # -- the database file: deleted, replaced, rotated ---------------------------------------

    def _open_store(self) -> CandleStore:
        cfg = self.config
        return CandleStore(
            cfg.db, analysis_db=cfg.analysis_db, source=cfg.source, busy_timeout_ms=0,
            clock=self.clock,
        )  # fmt: skip

    async def _database_ready(self) -> bool:
        """Return whether the store reads the file at the database path (reopen it if not)."""
        try:
            info = os.stat(self.config.db)
        except FileNotFoundError:
            if not self.db_missing:
                self.db_missing = True
                log.warning(
                    "event=db_missing path=%s mark=%s (clients stay served; reopened when back)",
                    self.config.db, self.mark,
                )  # fmt: skip
            return False
        if (info.st_dev, info.st_ino) == self.store.file_identity():
            if self.db_missing:
                self.db_missing = False
                log.info("event=db_back path=%s (the same file)", self.config.db)
            return True
        loop = asyncio.get_running_loop()
        return bool(await loop.run_in_executor(self._executor, self._reopen))

    def _reopen(self) -> bool:
        """Open the new file at the database path (worker thread); False if it cannot be yet."""
        store: CandleStore | None = None
        try:
            store = self._open_store()
            store.set_busy_timeout(self.config.busy_timeout_ms)
            store.check_schema()
            changed = [
                (s, *self._window_changes(slot, store)) for slot, s in enumerate(self.streams)
            ]
        except (DataError, sqlite3.Error, OSError) as exc:
            if store is not None:
                with contextlib.suppress(sqlite3.Error):
                    store.close()
            if str(exc) != self._db_error:
                self._db_error = str(exc)
                log.warning("event=db_reopen_failed error=%r (retried)", str(exc))
            return False
        store.set_busy_timeout(0)
        old, self.store = self.store, store
        with contextlib.suppress(sqlite3.Error):
            old.close()
        self._db_error = None
        self._version = None
        self.db_missing = False
        self.counters.db_reopens += 1
        log.warning("event=db_reopened path=%s mark=%s", self.config.db, self.mark)
        for stream, rewritten, missing in changed:
            if rewritten or missing:
                stream.engine.reset()  # the next step reads the window from the new file
                log.warning(
                    "event=db_window_changed changed=%d missing=%d first=%s (window re-read; "
                    "the mark stays at %s)%s",
                    len(rewritten), missing, rewritten[0] if rewritten else None, stream.mark,
                    self._which(stream),
                )  # fmt: skip
        return True

    def _window_changes(self, slot: int, store: CandleStore) -> tuple[list[int], int]:
        """Compare `slot`'s window with a new file: (rewritten, missing) candles.

        A decider's stream is compared in its decider, which reads the new file from now on;
        the runner's own window of it is of the old file (read again if ever needed).
        """
        stream = self.streams[slot]
        if not self.deciders.takes(slot):
            return stream.engine.verify_window(store)
        stream.engine.reset()
        checked = self.deciders.verify(slot, store.file_identity())
        return checked if checked is not None else ([], 0)

    def _decide_here(self, noticed: float) -> Step | object | None:
        """Decide on the loop thread if that cannot wait or take long; else say `_IN_WORKER`.

        There, each stream's signals are sent as soon as it is decided (`_decide`'s `send`).
        """
        if self._unjournaled is not None:
            return _IN_WORKER  # a step to journal again
        for slot, stream in enumerate(self.streams):
            if self.deciders.usable(slot) is not None:
                continue  # its decider reads the window it needs
            if not stream.engine.window_ends_at(stream.mark):
                return _IN_WORKER  # the first step after a start or reload
        try:
            return self._decide(partial(self._send, noticed=noticed))
        except (DataError, sqlite3.Error, JournalWriteError, DeciderLostError) as exc:
            self._version = None
            self.counters.deferred_steps += 1
            log.info("event=step_deferred reason=%r (to the worker thread)", str(exc))
            return _IN_WORKER

    def _waiting(self, func: Callable[[], Any]) -> Any:
        """Run `func` (in the worker thread) with reads waiting up to busy_timeout_ms."""
        self.store.set_busy_timeout(self.config.busy_timeout_ms)
        try:
            return func()
        finally:
            self.store.set_busy_timeout(0)

    def _checkpoint_later(self) -> None:
        if self._checkpoint_timer is not None:
            self._checkpoint_timer.cancel()
        loop = asyncio.get_running_loop()
        self._checkpoint_timer = loop.call_later(CHECKPOINT_IDLE_S, self._checkpoint_now)

    def _checkpoint_now(self) -> None:
        self._checkpoint_timer = None
        self._idle_task = asyncio.get_running_loop().create_task(self._idle_work())

    async def _idle_work(self) -> None:
        """When idle: checkpoint the journal and compare the whole window with the store."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._checkpoint)
        async with self._serial:
            await loop.run_in_executor(self._executor, self._verify_window)

    def _verify_window(self) -> None:
        for slot, stream in enumerate(self.streams):
            try:
                if self.deciders.takes(slot):  # its window is in its decider
                    checked = self.deciders.verify(slot, self.store.file_identity())
                    rewritten = checked[0] if checked else []
                else:
                    rewritten, _missing = stream.engine.verify_window(self.store)
            except (DataError, sqlite3.Error) as exc:  # a decider's read error (DataError) too
                log.info("event=window_check_skipped reason=%r", str(exc))
                return
            self._report_rewritten(rewritten)

    def _checkpoint(self) -> None:
        try:
            frames, copied = self.journal.checkpoint()
        except sqlite3.Error as exc:
            log.warning("event=journal_checkpoint_failed error=%r", str(exc))
            return
        self.counters.checkpoints += 1
        log.debug("event=journal_checkpoint frames=%d copied=%d", frames, copied)

    async def _with_retry(self, func: Callable[[], Any]) -> Any:
        """Run `func` in the worker thread until it succeeds, with backoff, logging each fault.

        A lock, a missing file, or a journal that cannot be written can pass: retried as long
        as it lasts. Any other read error is retried for `PERSISTENT_ERROR_S`, then raised
        (the runner exits 1).
        """
        loop = asyncio.get_running_loop()
        delay = 0.05
        while True:
            try:
                result = await loop.run_in_executor(self._executor, self._waiting, func)
                self._error_since = None
                return result
            except JournalWriteError as exc:
                log.warning("event=journal_retry error=%r retry_in_s=%.2f", str(exc), delay)
            except (DataError, sqlite3.Error) as exc:
                self._version = None
                self.counters.db_retries += 1
                log.warning("event=db_retry error=%r retry_in_s=%.2f", str(exc), delay)
                if not _can_pass(exc) and not self.db_missing:
                    now = self.perf()
                    self._error_since = self._error_since or now
                    if now - self._error_since > PERSISTENT_ERROR_S:
                        raise
            self._follow_alive = self.perf()  # retrying a known fault is not being stuck
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            if self._stopping.is_set():
                return None
            delay = min(delay * 2, MAX_BACKOFF_S)


def _can_pass(exc: Exception) -> bool:
    """Return whether a read error can pass by itself (a lock, a file being replaced)."""
    text = str(exc).lower()
    return any(word in text for word in ("locked", "busy", "not found", "unable to open"))
