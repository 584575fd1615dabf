"""One step of the runner: decide the newly closed candles, journal them, publish them.

`_decide` runs on either thread (see `live.runner_follow`): it checks ``PRAGMA data_version``
(and the settle rule), asks `SignalEngine.step` for the decisions up to the newest decidable
candle, and journals them with the new mark in one transaction; `_publish` broadcasts the
journaled entries and counts and logs the step (skipped candles, gaps, latency).
"""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
from dataclasses import dataclass

from live.engine import Decisions
from live.journal import Entry
from live.runner_health import Monitoring
from signals.data.validate import latest_closable
from signals.errors import SignalsError
from signals.timeframes import timeframe_seconds

log = logging.getLogger("live.runner")  # the runner's logger name: log lines stay as they were


class JournalWriteError(SignalsError):
    """The journal could not be written: the decided step waits and is retried."""


@dataclass
class Step:
    """One decided step: the engine's decisions and the journaled entries to broadcast."""

    decisions: Decisions
    entries: list[Entry]
    previous_mark: int | None


class Deciding(Monitoring):
    """The deciding part of a `Runner`: one step from the store to the journal to clients."""

    def _decide(self) -> Step | None:
        """Check for a commit, decide, journal. None if nothing new (either thread)."""
        if self._unjournaled is not None:  # decided before, not journaled yet: that first
            decided, previous = self._unjournaled
            return self._journal_step(decided, previous)
        now = self.clock()
        version = self.store.data_version()
        due = self._settle is not None and (self._settle.next_due() or math.inf) <= now
        if version == self._version and not due:
            self.counters.empty_checks += 1
            return None
        self._version = version
        until = self._until(now)
        if until is None:
            return None
        previous = self.mark
        started = self.perf()
        decided = self.engine.step(self.store, previous, until=until)
        self.counters.decide.add(self.perf() - started)
        self._report_rewritten(decided.rewritten)
        if self._settle is None:  # with a closed flag, only future candles lie beyond `until`
            for stamp in decided.beyond:
                self._refuse_future(stamp)
        if decided.last_candle_ts is None or decided.last_candle_ts == previous:
            return None
        return self._journal_step(decided, previous)

    def _journal_step(self, decided: Decisions, previous: int | None) -> Step:
        started = self.perf()
        try:
            entries = self.journal.record(
                self.key,
                decided.last_candle_ts,  # type: ignore[arg-type]  # _decide checked: not None
                decided.records,
                stale=self._is_stale,
            )
        except sqlite3.Error as exc:
            self._unjournaled = (decided, previous)
            self.counters.journal_errors += 1
            raise JournalWriteError(
                f"{self.journal.path}: cannot write the journal: {exc} (candles up to "
                f"{decided.last_candle_ts} decided, {len(decided.records)} signal(s) held "
                "until it can)"
            ) from None
        self._unjournaled = None
        self.counters.journal.add(self.perf() - started)
        self.mark = decided.last_candle_ts
        return Step(decided, entries, previous)

    def _until(self, now: float) -> int | None:
        """Return the newest open time this step may decide (None: nothing yet)."""
        f = self.frozen
        step = timeframe_seconds(f.timeframe)
        bound = latest_closable(f.timeframe, now, self.config.future_tolerance_s)
        if self._settle is None:
            return bound
        # without a closed flag the store hides rows that have not closed: a row that has not
        # even opened yet is the sign of a bad clock upstream
        newest = self.store.newest_open(f.symbol, f.timeframe, at_most=2**62)
        if newest is not None and newest > bound + step:
            self._refuse_future(newest)
            newest = self.store.newest_open(f.symbol, f.timeframe, at_most=bound + step)
        self._settle.observe(newest, now)
        settled = self._settle.until(now)
        return None if settled is None else min(settled, bound)

    def _refuse_future(self, stamp: int) -> None:
        """Log (once per candle) and count a candle that closes after the wall clock."""
        if stamp in self._future_logged:
            return
        if len(self._future_logged) > 10_000:
            self._future_logged.clear()
        self._future_logged.add(stamp)
        self.counters.future_candles += 1
        self.counters.skipped_candles += 1
        log.warning(
            "event=future_candle candle_ts=%d closes_in_s=%.0f (refused: it cannot have closed; "
            "the mark stays at %s)",
            stamp, stamp + timeframe_seconds(self.frozen.timeframe) - self.clock(), self.mark,
        )  # fmt: skip

    def _schedule_settle_wake(self) -> None:
        """Wake the follow loop when the next settling candle becomes decidable."""
        if self._settle is None or (due := self._settle.next_due()) is None:
            return
        if self._settle_timer is not None:
            self._settle_timer.cancel()
        delay = max(0.0, due - self.clock()) + 0.001
        self._settle_timer = asyncio.get_running_loop().call_later(delay, self.watcher.notify)

    def _is_stale(self, candle_ts: int) -> bool:
        closed_at = candle_ts + timeframe_seconds(self.frozen.timeframe)
        return self.clock() - closed_at > self.config.stale_after_s

    def _publish(self, step: Step, noticed: float) -> None:
        self.hub.broadcast(step.entries)
        if step.entries:
            latency = self.perf() - noticed
            for _ in step.entries:
                self.counters.latency.add(latency)
        decided = step.decisions
        if decided.timestamps:
            self._arrived()
        self.counters.candles_processed += len(decided.timestamps)
        self.counters.skipped_candles += len(decided.skipped) + len(decided.failed)
        self.counters.strategy_errors += len(decided.failed)
        self.counters.signals_emitted += len(step.entries)
        for ts in decided.skipped:
            log.warning("event=candle_skipped candle_ts=%d reason=invalid", ts)
        for ts, error in decided.failed:
            log.warning(
                "event=candle_skipped candle_ts=%d reason=strategy_error error=%r", ts, error
            )
        self._log_gaps(step.previous_mark, decided.timestamps)
        for entry in step.entries:
            log.info("event=signal seq=%d line=%s", entry.seq, entry.line.decode().strip())

    def _log_gaps(self, previous: int | None, timestamps: list[int]) -> None:
        step = timeframe_seconds(self.frozen.timeframe)
        last = previous if previous else None
        for ts in timestamps:
            if last is not None and ts - last > step:
                self.counters.gaps += 1
                log.warning(
                    "event=gap after=%d before=%d missing=%d rule=strategy_sees_existing_candles",
                    last, ts, (ts - last) // step - 1,
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
