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
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
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
from live.journal import Entry, Journal, SeriesKey
from live.protocol import Hello
from live.server import ConnectionLimit, Hub, Listener
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
from signals.errors import DataError, SignalsError
from signals.frozen import FrozenParams, load_frozen
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


_IN_WORKER = object()  # `Runner._decide_here`: this step runs in the worker thread


@dataclass(frozen=True, kw_only=True)
class RunnerConfig:
    """Everything `Runner` needs; `live.cli` builds it from options and the YAML config."""

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
    max_clients: int = 256
    client_idle_line_s: float = 5.0

    def journal_path(self) -> Path:
        """Return the journal path: as configured, else ``<params>.journal.db`` beside it."""
        return self.journal or self.params.with_name(self.params.stem + ".journal.db")


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
        self.store = CandleStore(
            config.db, analysis_db=config.analysis_db, source=config.source, busy_timeout_ms=0,
            clock=clock,
        )  # fmt: skip
        self.journal = Journal(config.journal_path(), durable=config.durable_journal, clock=clock)
        self.counters = Counters()
        self.mark: int | None = None
        self.started_at = clock()
        self._version: int | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decide")
        self._serial = asyncio.Lock()  # one step or reload at a time, whichever thread runs it
        self._checkpoint_timer: asyncio.TimerHandle | None = None
        self._stopping = asyncio.Event()
        self._socket_inode: int | None = None
        self.hub = Hub(
            self.journal, hello=self.hello, status=self.status, counters=self.counters, clock=clock
        )
        self.watcher = DbWatcher(
            config.db, use_inotify=config.watch != "poll", poll_interval_s=config.poll_interval_s
        )
        self.listeners: list[Listener] = []
        self._metrics: asyncio.AbstractServer | None = None

    # -- identity ----------------------------------------------------------------------------

    def _load(self, path: Path) -> FrozenParams:
        return load_frozen(path, allow_hash_mismatch=self.config.allow_hash_mismatch)

    @property
    def key(self) -> SeriesKey:
        """Return the journal key of the current parameter set."""
        return SeriesKey(self.frozen.symbol, self.frozen.timeframe, self.frozen.params_id)

    def hello(self) -> Hello:
        """Return the hello line for a new connection."""
        f = self.frozen
        return Hello(
            strategy=f.strategy, params_id=f.params_id, symbol=f.symbol, timeframe=f.timeframe,
            last_seq=self.hub.last_seq,
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
                asyncio.create_task(self._follow(), name="follow"),
                asyncio.create_task(self._heartbeats(), name="heartbeat"),
            ]
            await self._stopping.wait()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            await self._shutdown()
        return 0

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
            return await loop.run_in_executor(self._executor, self._waiting, self._reload_sync)

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
            mark = self.mark if same_series else (engine.newest_closed(self.store) or 0)
        except DataError as exc:
            self.counters.reload_failures += 1
            log.error("event=reload_failed kept=%s error=%r", old.params_id, str(exc))
            return False
        if mark is not None:
            try:
                engine.prime(self.store, mark)
            except DataError as exc:  # the first step reads the window instead
                log.warning("event=prime_failed error=%r", str(exc))
        self.frozen, self.engine, self.mark = frozen, engine, mark
        if frozen.params_id != old.params_id and mark is not None:
            self.journal.set_processed(self.key, mark)
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
        if self._checkpoint_timer is not None:
            self._checkpoint_timer.cancel()
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
            if await self._cycle(pending if pending is not None else self.perf()):
                pending = None
                self.watcher.settled()
            elif from_event:
                self.watcher.settle()  # the commit may become visible just after its event
            if pending is not None and self.perf() - pending > SETTLE_WINDOW_S:
                pending = None  # a notice that was no new commit
            noticed, from_event = await self.watcher.wait_event()
            if from_event:
                pending = noticed

    def _start_mark(self) -> None:
        mark = self.journal.last_processed(self.key)
        newest = self.engine.newest_closed(self.store) or 0
        if mark is None:
            mark = newest
            self.journal.set_processed(self.key, mark)
            log.info("event=first_start mark=%d (history is not emitted)", mark)
        else:
            log.info("event=resume_from_mark mark=%d", mark)
        self.mark = mark
        if mark == newest:  # nothing to catch up: the first new candle can be decided at once
            self.engine.prime(self.store, mark)

    async def _cycle(self, noticed: float) -> bool:
        async with self._serial:
            step = self._decide_here()
            if step is _IN_WORKER:
                step = await self._with_retry(self._decide)
        if step is None:
            return False
        self._publish(step, noticed)
        self._checkpoint_later()
        return True

    def _decide_here(self) -> Step | object | None:
        """Decide on the loop thread if that cannot wait or take long; else say `_IN_WORKER`."""
        if not self.engine.window_ends_at(self.mark):
            return _IN_WORKER  # first step after a start or reload: maybe hours of candles
        try:
            return self._decide()
        except (DataError, sqlite3.Error) as exc:
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
        asyncio.get_running_loop().run_in_executor(self._executor, self._checkpoint)

    def _checkpoint(self) -> None:
        try:
            frames, copied = self.journal.checkpoint()
        except sqlite3.Error as exc:
            log.warning("event=journal_checkpoint_failed error=%r", str(exc))
            return
        self.counters.checkpoints += 1
        log.debug("event=journal_checkpoint frames=%d copied=%d", frames, copied)

    async def _with_retry(self, func: Callable[[], Any]) -> Any:
        loop = asyncio.get_running_loop()
        delay = 0.05
        while True:
            try:
                return await loop.run_in_executor(self._executor, self._waiting, func)
            except (DataError, sqlite3.Error) as exc:
                self._version = None
                self.counters.db_retries += 1
                log.warning("event=db_retry error=%r retry_in_s=%.2f", str(exc), delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            if self._stopping.is_set():
                return None
            delay = min(delay * 2, MAX_BACKOFF_S)

    def _decide(self) -> Step | None:
        """Run in the worker thread: check for a commit, decide, journal. None if nothing new."""
        version = self.store.data_version()
        if version == self._version:
            self.counters.empty_checks += 1
            return None
        self._version = version
        previous = self.mark
        started = self.perf()
        decided = self.engine.step(self.store, previous)
        self.counters.decide.add(self.perf() - started)
        if decided.last_candle_ts is None or decided.last_candle_ts == previous:
            return None
        started = self.perf()
        entries = self.journal.record(
            self.key, decided.last_candle_ts, decided.records, stale=self._is_stale
        )
        self.counters.journal.add(self.perf() - started)
        self.mark = decided.last_candle_ts
        return Step(decided, entries, previous)

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
        self.counters.candles_processed += len(decided.timestamps)
        self.counters.skipped_candles += len(decided.skipped)
        self.counters.signals_emitted += len(step.entries)
        for ts in decided.skipped:
            log.warning("event=candle_skipped candle_ts=%d reason=invalid", ts)
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

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_s)
            self.hub.heartbeat()
