"""The live runner: follow the candle store, decide each closed candle, journal it, stream it.

Start
    The frozen file is loaded and verified (a ``strategy_hash`` mismatch is refused unless
    ``allow_hash_mismatch``), the store opened read-only (a missing database is a clear error),
    the journal opened, and the sockets bound, all before anything is decided, so the runner is
    listening within a second. Then it catches up from the journal's processed mark: candles that
    closed while it was down are decided with their original ``candle_ts``, flagged
    ``stale: true`` when they closed more than ``stale_after_s`` ago. On the FIRST start of a
    parameter set (no mark in the journal) it starts after the newest candle already stored and
    emits nothing from history: signals of the past were never sent, so sending them now would
    be a lie about time. (An empty store marks 0: every candle that arrives is new.) When the
    mark is the newest candle (nothing to catch up) the engine is primed: its window is read and
    the strategy run once, so the first new candle is decided at once by warm code.

Follow
    A `DbWatcher` notice leads to one step: ``PRAGMA data_version`` → `SignalEngine.step` from
    the mark → `Journal.record` (signals and the new mark in one transaction) → broadcast.
    The usual step (the engine's window is seeded, so it reads only the new candles) runs on the
    event loop's own thread, with a read that never waits for a lock: two thread hand-offs cost
    more than a whole step on a small VM. A step that would wait (a writer holds the lock), and
    the first step after a start or reload (which may decide hours of missed candles), run in
    the worker thread instead, where reads wait up to ``busy_timeout_ms`` and failures are
    retried with backoff (never fatal), so clients and heartbeats are served meanwhile.
    Invalid candles are skipped by the engine and logged; gaps are logged, and signals across a
    gap follow the engine's rule (the strategy sees the candles that exist, exactly as
    ``signals scan`` over the same stored candles). The journal is checkpointed half a second
    after the last step, off the path of any signal.

Reload (SIGHUP)
    The frozen file is re-read and verified; on failure the old one stays and the failure is
    logged. If ``params_id`` changes, the new set's mark starts at the current candle: it emits
    from the next closed candle on and never replays history. The runner only emits signals; an
    open position is the bot's business: the new parameters' next signal may be a BUY while the
    bot is long (the bot ignores it) or a SELL that closes a position the old set opened.

Stop (SIGTERM/SIGINT)
    Stop accepting, flush client buffers for up to ``drain_s``, close, remove the socket, exit 0.

Faults (README, "Live: faults"): candles from the future are refused (`live.settle`); a table
without a ``closed`` flag is decided by the settle rule; a deleted or replaced database file is
noticed by its (device, inode) within a second and reopened; a stall (no new closed candle for
``stall_after_s``) is logged and flagged in status, heartbeats and metrics; a journal that
cannot be written holds the decided step and retries it, sending nothing before it is
journaled; a rewritten candle is logged and counted. A start that cannot work (no table, a
mapped column missing, an unreadable frozen file or journal) exits 2; an unexpected error in
the follow path exits 1 after logging it (systemd restarts the unit); a strategy that raises
on one candle skips that candle. While the follow loop is alive, and only then, the runner
sends systemd ``WATCHDOG=1``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import os
import signal
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from live.engine import Decisions, SignalEngine
from live.hub import Hub
from live.journal import Entry, Journal, SeriesKey
from live.server import ConnectionLimit, Listener
from live.settle import Settle
from live.sockets import (
    bind_tcp,
    bind_unix,
    check_tcp,
    parse_tcp,
    remove_unix,
    sd_notify,
    socket_inode,
)
from live.stats import Counters, heavy_modules_loaded, start_metrics
from live.watch import DbWatcher
from signals.config import CandleSource
from signals.data.store import CandleStore
from signals.data.validate import latest_closable
from signals.errors import DataError, SignalsError
from signals.frozen import FrozenParams, load_frozen
from signals.protocol import Hello
from signals.timeframes import timeframe_seconds

log = logging.getLogger(__name__)
MAX_BACKOFF_S = 2.0
# How long an event whose check found nothing still starts the latency clock: a commit becomes
# visible within a millisecond of its last write; an older event was a commit's trailing write
# (already decided) or not a commit, and must not date the next one.
SETTLE_WINDOW_S = 0.005
# The journal's WAL is copied back into its database this long after the last step: never
# inside the COMMIT of a signal (see live.journal).
CHECKPOINT_IDLE_S = 0.5
# after the hello, live signals wait this long for a `resume` (see `Hub.connect`)
RESUME_GRACE_S = 0.2
MONITOR_S = 1.0  # the monitor's tick: stalls, heartbeats, the watchdog
FOLLOW_STUCK_S = 10.0  # a follow loop that has not turned for this long is stuck
PERSISTENT_ERROR_S = 10.0  # a read error that is not a lock, retried this long, is fatal


class JournalWriteError(SignalsError):
    """The journal could not be written: the decided step waits and is retried."""


_IN_WORKER = object()  # `Runner._decide_here`: this step runs in the worker thread


@dataclass(frozen=True, kw_only=True)
class RunnerConfig:
    """Everything `Runner` needs; `signals.cli.live` builds it from options and the YAML config."""

    params: Path
    db: Path
    analysis_db: Path | None = None
    source: CandleSource = field(default_factory=CandleSource)
    busy_timeout_ms: int = 5000
    socket: Path | None = Path("signals.sock")
    socket_group: str | None = None
    tcp: str | None = None
    token: str | None = None
    journal: Path | None = None
    durable_journal: bool = False
    heartbeat_s: float = 5.0
    stale_after_s: float = 300.0
    allow_hash_mismatch: bool = False
    metrics_port: int | None = None
    client_buffer_bytes: int = 1 << 20
    watch: Literal["auto", "inotify", "poll"] = "auto"
    poll_interval_s: float = 0.05
    drain_s: float = 2.0
    settle_s: float = 2.0
    future_tolerance_s: float = 5.0
    stall_after_s: float | None = None  # None: three timeframes plus 30 s (plus the settle)
    max_clients: int = 256
    client_idle_line_s: float = 5.0

    def journal_path(self) -> Path:
        """Return the journal path: as configured, else ``<params>.journal.db`` beside it."""
        return self.journal or self.params.with_name(self.params.stem + ".journal.db")

    def stall_after(self, timeframe: str) -> float:
        """Return the stall threshold in seconds for `timeframe`."""
        if self.stall_after_s is not None:
            return self.stall_after_s
        settle = 0.0 if self.source.columns.closed else self.settle_s
        return 3 * timeframe_seconds(timeframe) + 30.0 + settle


@dataclass
class Step:
    """One decided step: the engine's decisions and the journaled entries to broadcast."""

    decisions: Decisions
    entries: list[Entry]
    previous_mark: int | None


class Runner:
    """One frozen parameter set, one store, one journal, its listeners."""

    def __init__(
        self,
        config: RunnerConfig,
        *,
        clock: Callable[[], float] = time.time,
        perf: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.config = config
        self.clock, self.perf = clock, perf
        self.tcp = parse_tcp(config.tcp) if config.tcp else None
        if self.tcp is not None:
            check_tcp(self.tcp, config.token)
        self.frozen = self._load(config.params)
        self.engine = SignalEngine(self.frozen)
        # Reads on the loop thread never wait for a lock; `_waiting` sets busy_timeout_ms for
        # the worker thread's reads.
        self.store = self._open_store()
        self.store.check_schema()  # no table or a mapped column missing: exit 2 now, not later
        self.journal = Journal(config.journal_path(), durable=config.durable_journal, clock=clock)
        self.counters = Counters()
        self.mark: int | None = None
        self.started_at = clock()
        self._version: int | None = None
        self._settle = self._new_settle()
        self._settle_timer: asyncio.TimerHandle | None = None
        self._future_logged: set[int] = set()
        self._unjournaled: tuple[Decisions, int | None] | None = None
        self._last_arrival = self.started_at  # wall time of the newest candle's decision
        self.stalled = False
        self.db_missing = False
        self._db_error: str | None = None
        self._error_since: float | None = None  # first of a run of persistent read errors
        self._follow_alive = perf()
        self.follow_stuck = False
        self._stuck_after_s = FOLLOW_STUCK_S
        self.exit_code = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decide")
        self._serial = asyncio.Lock()  # one step or reload at a time, whichever thread runs it
        self._checkpoint_timer: asyncio.TimerHandle | None = None
        self._idle_task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._socket_inode: int | None = None
        self.hub = Hub(
            self.journal, hello=self.hello, status=self.status, counters=self.counters,
            clock=clock, resume_grace_s=RESUME_GRACE_S,
        )  # fmt: skip
        self.watcher = DbWatcher(
            config.db, use_inotify=config.watch != "poll", poll_interval_s=config.poll_interval_s
        )
        self.listeners: list[Listener] = []
        self._metrics: asyncio.AbstractServer | None = None

    # -- identity ----------------------------------------------------------------------------

    def _load(self, path: Path) -> FrozenParams:
        return load_frozen(path, allow_hash_mismatch=self.config.allow_hash_mismatch)

    def _open_store(self) -> CandleStore:
        cfg = self.config
        return CandleStore(
            cfg.db, analysis_db=cfg.analysis_db, source=cfg.source, busy_timeout_ms=0,
            clock=self.clock,
        )  # fmt: skip

    def _new_settle(self) -> Settle | None:
        if self.config.source.columns.closed:
            return None  # the table says which candles are final: nothing waits
        return Settle(timeframe_seconds(self.frozen.timeframe), self.config.settle_s)

    @property
    def key(self) -> SeriesKey:
        """Return the journal key of the current parameter set."""
        return SeriesKey(self.frozen.symbol, self.frozen.timeframe, self.frozen.params_id)

    def hello(self) -> Hello:
        """Return the hello line for a new connection."""
        f = self.frozen
        return Hello(
            strategy=f.strategy, params_id=f.params_id, symbol=f.symbol, timeframe=f.timeframe,
            last_seq=self.hub.last_seq, stream=self.journal.stream,
        )  # fmt: skip

    def status(self) -> dict[str, Any]:
        """Return counters, latency figures and where the runner stands."""
        f = self.frozen
        return {
            "strategy": f.strategy,
            "params_id": f.params_id,
            "symbol": f.symbol,
            "timeframe": f.timeframe,
            "pid": os.getpid(),
            "uptime_s": round(self.clock() - self.started_at, 3),
            "last_seq": self.hub.last_seq,
            "last_candle_ts": self.mark,
            "clients": len(self.hub.clients),
            "watch_mode": self.watcher.mode,
            "stalled": self.stalled,
            "last_candle_age_s": round(self.clock() - self._last_arrival, 3),
            "stall_after_s": self.config.stall_after(f.timeframe),
            "db_missing": self.db_missing,
            "db_error": self._db_error,  # why a replaced database file cannot be opened yet
            "follow_stuck": self.perf() - self._follow_alive > self._stuck_after_s,
            "settle_s": 0.0 if self._settle is None else self._settle.settle_s,
            **self.counters.as_dict(),
            "latency_ms": self.counters.latency.summary_ms(),
            "decide_ms": self.counters.decide.summary_ms(),
            "journal_ms": self.counters.journal.summary_ms(),
            "heavy_modules": heavy_modules_loaded(),
        }

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self, *, handle_signals: bool = True) -> int:
        """Serve until stopped; return the exit code (0)."""
        loop = asyncio.get_running_loop()
        try:
            if handle_signals:  # before the socket exists, so a SIGTERM always cleans up
                loop.add_signal_handler(signal.SIGTERM, self.stop, "SIGTERM")
                loop.add_signal_handler(signal.SIGINT, self.stop, "SIGINT")
                loop.add_signal_handler(signal.SIGHUP, self.request_reload)
            await self._open_listeners()
            mode = self.watcher.start()
            log.info(
                "event=listening socket=%s tcp=%s watch=%s params_id=%s last_seq=%d",
                self.config.socket, self.config.tcp, mode, self.frozen.params_id,
                self.hub.last_seq,
            )  # fmt: skip
            sd_notify("READY=1")
            # Everything imported so far lives as long as the process: keep it out of the
            # collector's full passes, which otherwise walk pandas' and numpy's objects and
            # stall a step for tens of milliseconds now and then.
            gc.freeze()
            tasks = [
                asyncio.create_task(self._fatal_on_error(self._follow), name="follow"),
                asyncio.create_task(self._fatal_on_error(self._monitor), name="monitor"),
            ]
            await self._stopping.wait()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            await self._shutdown()
        return self.exit_code

    async def _fatal_on_error(self, body: Callable[[], Any]) -> None:
        """Run a task body; an unexpected error is logged with its traceback and ends the run.

        A runner whose follow loop died must not go on heartbeating: it exits 1 so that its
        supervisor (systemd) restarts it.
        """
        try:
            await body()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception(
                "event=fatal task=%s mark=%s error=%r (exiting 1 for a restart)",
                body.__name__.lstrip("_"), self.mark, str(exc),
            )  # fmt: skip
            self.exit_code = 1
            self.stop("fatal")

    def stop(self, reason: str = "requested") -> None:
        """Ask the runner to drain and exit."""
        if not self._stopping.is_set():
            log.info("event=stopping reason=%s", reason)
            sd_notify("STOPPING=1")
            self._stopping.set()

    def request_reload(self) -> None:
        """Reload the frozen file (SIGHUP) without blocking the loop."""
        asyncio.get_running_loop().create_task(self.reload())

    async def reload(self) -> bool:
        """Re-read and verify the frozen file; keep the old one on failure. Return success."""
        loop = asyncio.get_running_loop()
        async with self._serial:
            try:
                return await loop.run_in_executor(self._executor, self._waiting, self._reload_sync)
            except Exception as exc:  # any other failure of a reload keeps the old set too
                self.counters.reload_failures += 1
                log.exception(
                    "event=reload_failed kept=%s error=%r", self.frozen.params_id, str(exc)
                )
                return False

    def _reload_sync(self) -> bool:
        try:
            frozen = self._load(self.config.params)
            engine = SignalEngine(frozen)
        except SignalsError as exc:
            self.counters.reload_failures += 1
            log.error("event=reload_failed kept=%s error=%r", self.frozen.params_id, str(exc))
            return False
        old = self.frozen
        same_series = (frozen.symbol, frozen.timeframe) == (old.symbol, old.timeframe)
        try:
            if same_series:  # a rewrite of what the old set decided is reported, as when idle
                self._report_rewritten(self.engine.verify_window(self.store)[0])
            mark = (
                self.mark
                if same_series
                else (engine.newest_closed(self.store, self._start_bound()) or 0)
            )
        except (DataError, sqlite3.Error) as exc:
            self.counters.reload_failures += 1
            log.error("event=reload_failed kept=%s error=%r", old.params_id, str(exc))
            return False
        if mark is not None:
            try:
                engine.prime(self.store, mark)
            except (DataError, sqlite3.Error) as exc:  # the first step reads the window instead
                log.warning("event=prime_failed error=%r", str(exc))
        self.frozen, self.engine, self.mark = frozen, engine, mark
        if frozen.params_id != old.params_id and mark is not None:
            try:
                self.journal.set_processed(self.key, mark)
            except sqlite3.Error as exc:  # a restart then starts this set afresh: no history
                self.counters.journal_errors += 1
                log.warning("event=journal_error during=reload error=%r", str(exc))
        self.counters.reloads += 1
        log.info("event=reloaded old=%s new=%s mark=%s", old.params_id, frozen.params_id, self.mark)
        return True

    async def _open_listeners(self) -> None:
        cfg = self.config
        limit = ConnectionLimit(cfg.max_clients)  # one limit over both listeners
        idle = cfg.client_idle_line_s
        if cfg.socket is not None:
            sock = bind_unix(cfg.socket, group=cfg.socket_group)
            self._socket_inode = socket_inode(cfg.socket)
            self.listeners.append(
                Listener(
                    self.hub,
                    sock,
                    max_buffer_bytes=cfg.client_buffer_bytes,
                    limit=limit,
                    idle_line_s=idle,
                )
            )
        if self.tcp is not None:
            self.listeners.append(
                Listener(
                    self.hub,
                    bind_tcp(self.tcp),
                    token=cfg.token,
                    max_buffer_bytes=cfg.client_buffer_bytes,
                    limit=limit,
                    idle_line_s=idle,
                )
            )
        for listener in self.listeners:
            await listener.start()
        if cfg.metrics_port is not None:
            self._metrics = await start_metrics(self.status, cfg.metrics_port)

    async def _shutdown(self) -> None:
        for listener in self.listeners:
            await listener.close()
        await self.hub.drain(self.config.drain_s)
        for listener in self.listeners:
            await listener.close_connections()
        if self.config.socket is not None:
            remove_unix(self.config.socket, self._socket_inode)
        if self._metrics is not None:
            self._metrics.close()
            await self._metrics.wait_closed()
        for timer in (self._checkpoint_timer, self._settle_timer):
            if timer is not None:
                timer.cancel()
        if self._idle_task is not None:
            self._idle_task.cancel()
            await asyncio.gather(self._idle_task, return_exceptions=True)
        self.watcher.close()
        self._executor.shutdown(wait=True, cancel_futures=True)
        self.store.close()
        self.journal.close()
        log.info("event=stopped last_seq=%d mark=%s", self.hub.last_seq, self.mark)

    # -- following the store -----------------------------------------------------------------

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
        mark = self.journal.last_processed(self.key)
        newest = self.engine.newest_closed(self.store, self._start_bound()) or 0
        if mark is None:
            mark = newest
            self.journal.set_processed(self.key, mark)
            log.info("event=first_start mark=%d (history is not emitted)", mark)
        else:
            log.info("event=resume_from_mark mark=%d", mark)
        self.mark = mark
        if mark == newest:  # nothing to catch up: the first new candle can be decided at once
            self.engine.prime(self.store, mark)

    def _start_bound(self) -> int:
        """Return the newest open time a start or a reload may take as decided history."""
        now, step = self.clock(), timeframe_seconds(self.frozen.timeframe)
        bound = latest_closable(self.frozen.timeframe, now, self.config.future_tolerance_s)
        if self._settle is not None:  # a candle that closed just now may not be final yet
            bound = min(bound, math.floor(now - self._settle.settle_s) - step)
        return bound

    async def _cycle(self, noticed: float) -> bool:
        async with self._serial:
            if not await self._database_ready():
                return False
            step = self._decide_here()
            if step is _IN_WORKER:
                step = await self._with_retry(self._decide)
        if step is None:
            return False
        self._publish(step, noticed)
        self._checkpoint_later()
        return True

    # -- the database file: deleted, replaced, rotated ---------------------------------------

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
            rewritten, missing = self.engine.verify_window(store)
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
        if rewritten or missing:
            self.engine.reset()  # the next step reads the window from the new file
            log.warning(
                "event=db_window_changed changed=%d missing=%d first=%s (window re-read; the "
                "mark stays at %s)",
                len(rewritten), missing, rewritten[0] if rewritten else None, self.mark,
            )  # fmt: skip
        return True

    def _decide_here(self) -> Step | object | None:
        """Decide on the loop thread if that cannot wait or take long; else say `_IN_WORKER`."""
        if self._unjournaled is not None or not self.engine.window_ends_at(self.mark):
            return _IN_WORKER  # a step to journal again, or the first after a start or reload
        try:
            return self._decide()
        except (DataError, sqlite3.Error, JournalWriteError) as exc:
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
        try:
            rewritten, _missing = self.engine.verify_window(self.store)
        except (DataError, sqlite3.Error) as exc:
            log.info("event=window_check_skipped reason=%r", str(exc))
            return
        self._report_rewritten(rewritten)

    def _report_rewritten(self, rewritten: list[int]) -> None:
        for ts in rewritten:
            self.counters.rewritten_candles += 1
            log.warning(
                "event=candle_rewritten candle_ts=%d (decided before; its signal stands, later "
                "decisions use the new values)",
                ts,
            )

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

    # -- deciding ----------------------------------------------------------------------------

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
                self.key, decided.last_candle_ts, decided.records, stale=self._is_stale
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

    # -- the monitor: heartbeats, stalls, the watchdog ---------------------------------------

    async def _monitor(self) -> None:
        heartbeat_s = self.config.heartbeat_s
        watchdog_s = _watchdog_interval()
        tick = min(MONITOR_S, heartbeat_s, watchdog_s or MONITOR_S)
        if watchdog_s is not None:  # stop the pings well before systemd's interval runs out
            self._stuck_after_s = min(FOLLOW_STUCK_S, max(3.0, 2 * watchdog_s))
        next_beat = self.perf() + heartbeat_s
        while True:
            await asyncio.sleep(tick)
            self._check_stall()
            self._check_follow()
            if watchdog_s is not None and not self.follow_stuck:
                sd_notify("WATCHDOG=1")
            if self.perf() >= next_beat:
                self.hub.heartbeat(stalled=self.stalled)
                while next_beat <= self.perf():
                    next_beat += heartbeat_s

    def _check_stall(self) -> None:
        age = self.clock() - self._last_arrival
        limit = self.config.stall_after(self.frozen.timeframe)
        if age > limit and not self.stalled:
            self.stalled = True
            self.counters.stalls += 1
            log.warning(
                "event=stalled last_candle_age_s=%.1f stall_after_s=%.1f mark=%s db_missing=%s",
                age, limit, self.mark, self.db_missing,
            )  # fmt: skip

    def _arrived(self) -> None:
        self._last_arrival = self.clock()
        if self.stalled:
            self.stalled = False
            log.info("event=stall_ended mark=%s", self.mark)

    def _check_follow(self) -> None:
        stuck = self.perf() - self._follow_alive > self._stuck_after_s
        if stuck and not self.follow_stuck:
            log.error(
                "event=follow_stuck seconds=%.1f mark=%s (no WATCHDOG=1 until it turns again)",
                self.perf() - self._follow_alive, self.mark,
            )  # fmt: skip
        elif self.follow_stuck and not stuck:
            log.info("event=follow_resumed mark=%s", self.mark)
        self.follow_stuck = stuck


def _can_pass(exc: Exception) -> bool:
    """Return whether a read error can pass by itself (a lock, a file being replaced)."""
    text = str(exc).lower()
    return any(word in text for word in ("locked", "busy", "not found", "unable to open"))


def _watchdog_interval() -> float | None:
    """Return half of systemd's watchdog interval ($WATCHDOG_USEC) in seconds, if one is set."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(int(usec) / 2e6, 0.01)
    except ValueError:
        return None
