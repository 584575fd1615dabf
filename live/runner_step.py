"""One step of the runner: decide the newly closed candles, journal them, publish them.

`_decide` runs on either thread (see `live.runner_follow`): it checks ``PRAGMA data_version``
(and each stream's settle rule), asks each stream's `SignalEngine.step` for the decisions up to
its newest decidable candle, and journals them with every moved mark in one transaction;
`_publish` broadcasts the journaled entries and counts and logs the step (skipped candles, gaps,
latency), per stream and in total.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from live.journal import Entry
from live.runner_health import Monitoring
from live.runner_state import Part
from live.streams import Stream
from signals.data.validate import latest_closable
from signals.errors import SignalsError
from signals.timeframes import timeframe_seconds

log = logging.getLogger("live.runner")  # the runner's logger name: log lines stay as they were


class JournalWriteError(SignalsError):
    """The journal could not be written: the decided step waits and is retried."""


@dataclass
class Step:
    """One decided step: each stream's decisions and the journaled entries to broadcast.

    The first `sent` entries were broadcast already, while the step went on (`Deciding._decide`).
    """

    parts: list[Part]
    entries: list[Entry]
    sent: int = 0

    def add(self, other: Step) -> None:
        """Append another journaled step's parts and entries."""
        self.parts += other.parts
        self.entries += other.entries


class Deciding(Monitoring):
    """The deciding part of a `Runner`: one step from the store to the journal to clients."""

    def _decide(self, send: Callable[[list[Entry]], None] | None = None) -> Step | None:
        """Check for a commit, decide every stream, journal. None if nothing new (either thread).

        With `send` (the loop thread's steps), a stream's signals are journaled and sent as
        soon as that stream is decided, before the next stream is: the first streams of a
        commit do not wait for the last. Streams with nothing to send are journaled with the
        next that has, or at the end. Counting and logging wait for `_publish`.
        """
        done = Step([], [])
        if self._unjournaled is not None:  # decided before, not journaled yet: that first
            done.add(self._journal_step(self._unjournaled))
        now = self.clock()
        version = self.store.data_version()
        due = any(s.settle is not None and (s.settle.next_due() or math.inf) <= now
                  for s in self.streams)  # fmt: skip
        if version == self._version and not due:
            if done.parts:
                return done
            self.counters.empty_checks += 1
            return None
        self._version = version
        waiting: list[Part] = []  # decided, not journaled yet
        try:
            asked = self._ask_deciders(now) if send is not None else {}
            for slot in [s for s in range(len(self.streams)) if s not in asked] + list(asked):
                part = self._decide_stream(slot, now, asked)
                if part is None:
                    continue
                waiting.append(part)
                if send is not None and part.decisions.records:
                    done.add(self._journal_step(waiting))
                    send(done.entries[done.sent :])
                    done.sent, waiting = len(done.entries), []
        except BaseException:
            self.deciders.forget()
            if done.sent:  # what was sent is counted and logged, as any sent step
                self._account(Step(done.parts, done.entries[: done.sent], done.sent))
            raise
        if waiting:
            done.add(self._journal_step(waiting))
        return done if done.parts else None

    def _ask_deciders(self, now: float) -> dict[int, int | None]:
        """Ask the deciders for their streams' steps; return slot -> `until` (None: nothing)."""
        asked: dict[int, int | None] = {}
        for slot, stream in enumerate(self.streams):
            if self.deciders.usable(slot) is None:
                continue
            until = self._plan(stream, now, self.deciders.synced(slot) == stream.mark)
            if until is not None:
                identity = self.store.file_identity()
                self.deciders.ask(slot, stream.frozen, stream.mark, until, identity)
            asked[slot] = until
        return asked

    def _decide_stream(self, slot: int, now: float, asked: dict[int, int | None]) -> Part | None:
        """Decide one stream's newly closed candles (None: nothing new for it).

        A stream in `asked` was asked of its decider: its answer is read here.
        """
        stream = self.streams[slot]
        previous = stream.mark
        if slot in asked:
            if asked[slot] is None:
                return None
            decided, seconds = self.deciders.answer(slot)
            self.counters.decide.add(seconds)
        else:
            until = self._plan(stream, now, stream.engine.window_ends_at(stream.mark))
            if until is None:
                return None
            started = self.perf()
            decided = stream.engine.step(self.store, previous, until=until)
            self.counters.decide.add(self.perf() - started)
        self._report_rewritten(decided.rewritten)
        if stream.settle is None:  # with a closed flag, only future candles lie beyond `until`
            for stamp in decided.beyond:
                self._refuse_future(stream, stamp)
        if decided.last_candle_ts is None or decided.last_candle_ts == previous:
            return None
        return Part(stream, decided, previous)

    def _plan(self, stream: Stream, now: float, synced: bool) -> int | None:
        """Return the newest open time to decide for `stream` (None: nothing to read).

        `synced`: its engine's window ends at its mark.
        """
        until = self._until(stream, now)
        if until is None:
            return None
        if (
            len(self.streams) > 1
            and stream.settle is None
            and stream.mark is not None
            and until < stream.mark + timeframe_seconds(stream.frozen.timeframe)
            and synced
        ):  # the next candle of its series cannot have closed yet: another series' commit
            return None  # (a rewrite of its window is still seen by the idle check)
        return until

    def _journal_step(self, parts: list[Part]) -> Step:
        started = self.perf()
        if len(parts) == 1:
            records = parts[0].decisions.records
        else:  # signals of several streams in candle order (a stream's own order kept)
            records = sorted(
                (r for p in parts for r in p.decisions.records), key=lambda r: r["candle_ts"]
            )
        marks = [
            (p.stream.key, p.decisions.last_candle_ts, partial(self._is_stale, p.stream))
            for p in parts
        ]
        try:
            entries = self.journal.record_streams(marks, records)  # type: ignore[arg-type]  # _decide_stream checked: not None
        except sqlite3.Error as exc:
            self._unjournaled = parts
            self.counters.journal_errors += 1
            held = sum(len(p.decisions.records) for p in parts)
            newest = ", ".join(f"{p.stream.name} {p.decisions.last_candle_ts}" for p in parts)
            raise JournalWriteError(
                f"{self.journal.path}: cannot write the journal: {exc} (candles up to "
                f"{newest} decided, {held} signal(s) held until it can)"
            ) from None
        self._unjournaled = None
        self.counters.journal.add(self.perf() - started)
        for part in parts:
            part.stream.mark = part.decisions.last_candle_ts
        return Step(parts, entries)

    def _until(self, stream: Stream, now: float) -> int | None:
        """Return the newest open time this step may decide for `stream` (None: nothing yet)."""
        f = stream.frozen
        step = timeframe_seconds(f.timeframe)
        bound = latest_closable(f.timeframe, now, self.config.future_tolerance_s)
        if stream.settle is None:
            return bound
        # without a closed flag the store hides rows that have not closed: a row that has not
        # even opened yet is the sign of a bad clock upstream
        newest = self.store.newest_open(f.symbol, f.timeframe, at_most=2**62)
        if newest is not None and newest > bound + step:
            self._refuse_future(stream, newest)
            newest = self.store.newest_open(f.symbol, f.timeframe, at_most=bound + step)
        stream.settle.observe(newest, now)
        settled = stream.settle.until(now)
        return None if settled is None else min(settled, bound)

    def _refuse_future(self, stream: Stream, stamp: int) -> None:
        """Log (once per candle) and count a candle that closes after the wall clock."""
        if stamp in stream.future_logged:
            return
        if len(stream.future_logged) > 10_000:
            stream.future_logged.clear()
        stream.future_logged.add(stamp)
        self.counters.future_candles += 1
        self.counters.skipped_candles += 1
        stream.counters.skipped_candles += 1
        log.warning(
            "event=future_candle candle_ts=%d closes_in_s=%.0f (refused: it cannot have closed; "
            "the mark stays at %s)%s",
            stamp, stamp + timeframe_seconds(stream.frozen.timeframe) - self.clock(), stream.mark,
            self._which(stream),
        )  # fmt: skip

    def _which(self, stream: Stream) -> str:
        """Return `` stream=NAME`` for a log line of a runner of several streams, else ''."""
        return f" stream={stream.name}" if len(self.streams) > 1 else ""

    def _schedule_settle_wake(self) -> None:
        """Wake the follow loop when the next settling candle becomes decidable."""
        dues = [d for s in self.streams if s.settle is not None and (d := s.settle.next_due())]
        if not dues:
            return
        if self._settle_timer is not None:
            self._settle_timer.cancel()
        delay = max(0.0, min(dues) - self.clock()) + 0.001
        self._settle_timer = asyncio.get_running_loop().call_later(delay, self.watcher.notify)

    def _is_stale(self, stream: Stream, candle_ts: int) -> bool:
        closed_at = candle_ts + timeframe_seconds(stream.frozen.timeframe)
        return self.clock() - closed_at > self.config.stale_after_s

    def _publish(self, step: Step, noticed: float) -> None:
        """Broadcast what the step has not sent yet, then count and log all of it."""
        self._send(step.entries[step.sent :], noticed)
        self._account(step)

    def _send(self, entries: list[Entry], noticed: float) -> None:
        """Broadcast journaled entries; their latency runs from `noticed` to now."""
        self.hub.broadcast(entries)
        if entries:
            latency = self.perf() - noticed
            for _ in entries:
                self.counters.latency.add(latency)
            # the woken clients may be queued on this CPU behind the rest of the step (the
            # next streams, logging, a collection): let them read their line first
            os.sched_yield()

    def _account(self, step: Step) -> None:
        """Count and log a sent step: signals, candles, skips, per stream and in total."""
        self.counters.signals_emitted += len(step.entries)
        for part in step.parts:
            self._count(part)
        for entry in step.entries:
            log.info("event=signal seq=%d line=%s", entry.seq, entry.line.decode().strip())

    def _count(self, part: Part) -> None:
        """Count and log one stream's share of a published step."""
        decided, stream, mine = part.decisions, part.stream, part.stream.counters
        if decided.timestamps:
            self._arrived(stream)
        skipped = len(decided.skipped) + len(decided.failed)
        self.counters.candles_processed += len(decided.timestamps)
        self.counters.skipped_candles += skipped
        self.counters.strategy_errors += len(decided.failed)
        mine.candles_processed += len(decided.timestamps)
        mine.skipped_candles += skipped
        mine.signals_emitted += len(decided.records)
        which = self._which(stream)
        for ts in decided.skipped:
            log.warning("event=candle_skipped candle_ts=%d reason=invalid%s", ts, which)
        for ts, error in decided.failed:
            log.warning(
                "event=candle_skipped candle_ts=%d reason=strategy_error error=%r%s",
                ts, error, which,
            )  # fmt: skip
        self._log_gaps(stream, part.previous_mark, decided.timestamps)

    def _log_gaps(self, stream: Stream, previous: int | None, timestamps: list[int]) -> None:
        step = timeframe_seconds(stream.frozen.timeframe)
        last = previous if previous else None
        for ts in timestamps:
            if last is not None and ts - last > step:
                self.counters.gaps += 1
                stream.counters.gaps += 1
                log.warning(
                    "event=gap after=%d before=%d missing=%d rule=strategy_sees_existing_candles%s",
                    last, ts, (ts - last) // step - 1, self._which(stream),
                )  # fmt: skip
            last = ts

    def _report_rewritten(self, rewritten: list[int]) -> None:
        for ts in rewritten:
            self.counters.rewritten_candles += 1
            log.warning(
                "event=candle_rewritten candle_ts=%d (decided before; its signal stands, later "
                "decisions use the new values)",
                ts,
            )
