"""The live runner: follow the candle store, decide each closed candle, journal it, stream it.

Streams
    A runner serves one or more frozen files (`RunnerConfig.params`), each a `live.streams.Stream`
    with its own engine, processed mark, settle rule and health; they share the store, the
    journal (one ``seq``), the sockets and the worker thread. Each step decides every stream
    and journals their signals and marks in one transaction. Start, catch-up, reload and stalls
    below apply to each stream on its own; a one-stream runner is a list of one.

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
    Each stream's frozen file is re-read and verified; on failure its old set stays and the
    failure is logged and kept in the stream's status (``reload_error``). If ``params_id``
    changes, the new set's mark starts at the current candle: it emits from the next closed
    candle on and never replays history. The runner only emits signals; an open position is the
    bot's business: the new parameters' next signal may be a BUY while the bot is long (the bot
    ignores it) or a SELL that closes a position the old set opened.

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

The runner is assembled from its parts, each a class it inherits (they share its attributes,
declared in `live.runner_state.RunnerState`): `live.runner_follow` (the follow loop, the worker
thread, the database file), `live.runner_step` (deciding, journaling and publishing one step),
`live.runner_health` (heartbeats, stalls, the watchdog). This module holds its start, reload and
stop, and what it tells clients (hello, status).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from live.collect import Collector
from live.deciders import Deciders, StoreSpec
from live.engine import SignalEngine
from live.hub import Hub
from live.journal import Journal
from live.runner_follow import Following
from live.runner_health import FOLLOW_STUCK_S
from live.runner_state import Part, RunnerConfig
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
from live.streams import Stream, check_distinct
from live.watch import DbWatcher
from signals.errors import DataError, SignalsError
from signals.frozen import FrozenParams, load_frozen
from signals.protocol import Hello
from signals.timeframes import timeframe_seconds

__all__ = ["Runner", "RunnerConfig"]

log = logging.getLogger(__name__)
# after the hello, live signals wait this long for a `resume` (see `Hub.connect`)
RESUME_GRACE_S = 0.2


class Runner(Following):
    """One or more frozen parameter sets (its streams), one store, one journal, its listeners."""

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
        self.streams = [self._new_stream(path, self._load(path)) for path in config.param_files()]
        check_distinct(self.streams)
        # Reads on the loop thread never wait for a lock; `_waiting` sets busy_timeout_ms for
        # the worker thread's reads.
        self.store = self._open_store()
        self.store.check_schema()  # no table or a mapped column missing: exit 2 now, not later
        self.journal = Journal(config.journal_path(), durable=config.durable_journal, clock=clock)
        self.counters = Counters()
        self.started_at = clock()
        self._version: int | None = None
        self._settle_timer: asyncio.TimerHandle | None = None
        self._unjournaled: list[Part] | None = None
        self.db_missing = False
        self._db_error: str | None = None
        self._error_since: float | None = None  # first of a run of persistent read errors
        self._follow_alive = perf()
        self.follow_stuck = False
        self._stuck_after_s = FOLLOW_STUCK_S
        self.exit_code = 0
        self.collector = Collector()
        self.deciders = Deciders(
            config.deciders, len(self.streams), StoreSpec(config.db, config.analysis_db,
            config.source), timeout_s=config.decider_timeout_s, perf=perf,
        )  # fmt: skip
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

    def _new_stream(self, path: Path, frozen: FrozenParams) -> Stream:
        return Stream(
            params=path, frozen=frozen, engine=SignalEngine(frozen),
            settle=self._new_settle(frozen), last_arrival=self.clock(),
        )  # fmt: skip

    def _new_settle(self, frozen: FrozenParams) -> Settle | None:
        if self.config.source.columns.closed:
            return None  # the table says which candles are final: nothing waits
        return Settle(timeframe_seconds(frozen.timeframe), self.config.settle_s)

    def hello(self) -> Hello:
        """Return the hello line for a new connection (top-level fields: the first stream)."""
        f = self.frozen
        return Hello(
            strategy=f.strategy, params_id=f.params_id, symbol=f.symbol, timeframe=f.timeframe,
            last_seq=self.hub.last_seq, stream=self.journal.stream,
            streams=[stream.info() for stream in self.streams],
        )  # fmt: skip

    def status(self) -> dict[str, Any]:
        """Return counters, latency figures, where the runner stands and each stream's health.

        The top-level series fields are the first stream's; ``last_candle_ts`` is the oldest
        mark, ``last_candle_age_s`` the oldest age and ``stalled`` whether any stream is.
        """
        f, now = self.frozen, self.clock()
        streams = [s.health(now, self.config.stall_after(s.frozen.timeframe)) for s in self.streams]
        marks = [s.mark for s in self.streams]
        return {
            "strategy": f.strategy,
            "params_id": f.params_id,
            "symbol": f.symbol,
            "timeframe": f.timeframe,
            "pid": os.getpid(),
            "uptime_s": round(now - self.started_at, 3),
            "last_seq": self.hub.last_seq,
            "last_candle_ts": None if None in marks else min(marks),  # type: ignore[type-var]  # no None
            "clients": len(self.hub.clients),
            "watch_mode": self.watcher.mode,
            "stalled": self.stalled,
            "last_candle_age_s": max(s["last_candle_age_s"] for s in streams),
            "stall_after_s": streams[0]["stall_after_s"],
            "db_missing": self.db_missing,
            "db_error": self._db_error,  # why a replaced database file cannot be opened yet
            "follow_stuck": self.perf() - self._follow_alive > self._stuck_after_s,
            "settle_s": streams[0]["settle_s"],
            **self.counters.as_dict(),
            "latency_ms": self.counters.latency.summary_ms(),
            "decide_ms": self.counters.decide.summary_ms(),
            "journal_ms": self.counters.journal.summary_ms(),
            "gc": self.collector.summary(),
            "decider_restarts": self.deciders.lost,
            "deciders": self.deciders.status(),
            "heavy_modules": heavy_modules_loaded(),
            "streams": streams,
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
                "event=listening socket=%s tcp=%s watch=%s params_id=%s last_seq=%d streams=%d",
                self.config.socket, self.config.tcp, mode, self.frozen.params_id,
                self.hub.last_seq, len(self.streams),
            )  # fmt: skip
            sd_notify("READY=1")
            self.deciders.start()
            # Everything imported so far lives as long as the process: keep it out of the
            # collector's full passes, which otherwise walk pandas' and numpy's objects and
            # stall a step for tens of milliseconds now and then.
            gc.freeze()
            await self._serve()
        finally:
            await self._shutdown()
        return self.exit_code

    async def _serve(self) -> None:
        """Run the follow loop and the monitor until stopped."""
        tasks = [
            asyncio.create_task(self._fatal_on_error(self._follow), name="follow"),
            asyncio.create_task(self._fatal_on_error(self._monitor), name="monitor"),
        ]
        await self._stopping.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

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
        """Re-read and verify each stream's frozen file; a bad one keeps its old set.

        Return whether every stream reloaded.
        """
        loop = asyncio.get_running_loop()
        ok = True
        async with self._serial:
            for stream in self.streams:
                try:
                    done = await loop.run_in_executor(
                        self._executor, self._waiting, partial(self._reload_sync, stream)
                    )
                except Exception as exc:  # any other failure of a reload keeps the old set too
                    done = self._reload_failed(stream, exc, trace=True)
                ok = ok and bool(done)
        return ok

    def _reload_failed(self, stream: Stream, exc: Exception, *, trace: bool = False) -> bool:
        """Count and log a stream's failed reload (it keeps its set); return False."""
        self.counters.reload_failures += 1
        stream.counters.reload_failures += 1
        stream.reload_error = str(exc)
        which = f" file={stream.params}{self._which(stream)}" if len(self.streams) > 1 else ""
        (log.exception if trace else log.error)(
            "event=reload_failed kept=%s error=%r%s", stream.frozen.params_id, str(exc), which
        )
        return False

    def _reload_sync(self, stream: Stream) -> bool:
        try:
            frozen = self._load(stream.params)
            engine = SignalEngine(frozen)
            others = [s for s in self.streams if s is not stream]
            check_distinct([*others, self._new_stream(stream.params, frozen)])
        except SignalsError as exc:
            return self._reload_failed(stream, exc)
        old = stream.frozen
        same_series = (frozen.symbol, frozen.timeframe) == (old.symbol, old.timeframe)
        settle = stream.settle if same_series else self._new_settle(frozen)
        try:
            if same_series:  # a rewrite of what the old set decided is reported, as when idle
                slot = self.streams.index(stream)  # (by its decider, if it has one)
                self._report_rewritten(self._window_changes(slot, self.store)[0])
                mark = stream.mark
            else:
                bound = self._start_bound(frozen.timeframe, settle)
                mark = engine.newest_closed(self.store, bound) or 0
        except (DataError, sqlite3.Error) as exc:
            return self._reload_failed(stream, exc)
        if mark is not None:
            try:
                engine.prime(self.store, mark)
            except (DataError, sqlite3.Error) as exc:  # the first step reads the window instead
                log.warning("event=prime_failed error=%r", str(exc))
        stream.frozen, stream.engine, stream.mark, stream.settle = frozen, engine, mark, settle
        stream.reload_error = None
        if frozen.params_id != old.params_id and mark is not None:
            try:
                self.journal.set_processed(stream.key, mark)
            except sqlite3.Error as exc:  # a restart then starts this set afresh: no history
                self.counters.journal_errors += 1
                log.warning("event=journal_error during=reload error=%r", str(exc))
        self.counters.reloads += 1
        stream.counters.reloads += 1
        log.info(
            "event=reloaded old=%s new=%s mark=%s%s",
            old.params_id, frozen.params_id, stream.mark, self._which(stream),
        )  # fmt: skip
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
        self.deciders.close()
        self._executor.shutdown(wait=True, cancel_futures=True)
        self.store.close()
        self.journal.close()
        log.info("event=stopped last_seq=%d mark=%s", self.hub.last_seq, self.mark)
