"""What a live runner is configured with (`RunnerConfig`) and what it holds (`RunnerState`).

`RunnerConfig`'s defaults are those of the config's ``data`` and ``live`` sections
(`signals.config.DataSettings`, `LiveSettings`), declared there once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from live.collect import Collector
from live.deciders import Deciders
from live.engine import Decisions, SignalEngine
from live.hub import Hub
from live.journal import Journal, SeriesKey
from live.server import Listener
from live.stats import Counters
from live.streams import Stream
from live.watch import DbWatcher
from signals.config import CandleSource, DataSettings, LiveSettings
from signals.data.store import CandleStore
from signals.frozen import FrozenParams
from signals.timeframes import timeframe_seconds

_DATA, _LIVE = DataSettings(), LiveSettings()  # the defaults of a config without those sections


@dataclass(frozen=True, kw_only=True)
class RunnerConfig:
    """Everything `Runner` needs; `live.start` builds it from options and the YAML config."""

    params: Path | tuple[Path, ...]  # one frozen file per stream (see `param_files`)
    db: Path
    analysis_db: Path | None = _DATA.analysis_db
    source: CandleSource = _DATA.source
    busy_timeout_ms: int = _DATA.busy_timeout_ms
    socket: Path | None = _LIVE.socket
    socket_group: str | None = _LIVE.socket_group
    tcp: str | None = _LIVE.tcp
    token: str | None = _LIVE.token
    journal: Path | None = _LIVE.journal
    durable_journal: bool = _LIVE.durable_journal
    heartbeat_s: float = _LIVE.heartbeat_s
    stale_after_s: float = _LIVE.stale_after_s
    allow_hash_mismatch: bool = False  # a command-line flag only (--allow-hash-mismatch)
    metrics_port: int | None = _LIVE.metrics_port
    client_buffer_bytes: int = _LIVE.client_buffer_bytes
    watch: Literal["auto", "inotify", "poll"] = _LIVE.watch
    poll_interval_s: float = _LIVE.poll_interval_s
    drain_s: float = _LIVE.drain_s
    settle_s: float = _DATA.settle_s
    future_tolerance_s: float = _DATA.future_tolerance_s
    stall_after_s: float | None = _LIVE.stall_after_s  # None: three timeframes plus 30 s (+ settle)
    max_clients: int = _LIVE.max_clients
    client_idle_line_s: float = _LIVE.client_idle_line_s
    deciders: int = _LIVE.deciders  # processes that decide a share of the streams
    decider_timeout_s: float = _LIVE.decider_timeout_s

    def param_files(self) -> tuple[Path, ...]:
        """Return the frozen files of the streams, in order."""
        return (self.params,) if isinstance(self.params, Path) else tuple(self.params)

    def journal_path(self) -> Path:
        """Return the journal path: as configured, else ``<params>.journal.db`` beside the first."""
        first = self.param_files()[0]
        return self.journal or first.with_name(first.stem + ".journal.db")

    def stall_after(self, timeframe: str) -> float:
        """Return the stall threshold in seconds for `timeframe`."""
        if self.stall_after_s is not None:
            return self.stall_after_s
        settle = 0.0 if self.source.columns.closed else self.settle_s
        return 3 * timeframe_seconds(timeframe) + 30.0 + settle


class RunnerState:
    """What a `Runner` holds, declared once for the parts it inherits (set in its __init__)."""

    config: RunnerConfig
    clock: Callable[[], float]
    perf: Callable[[], float]
    streams: list[Stream]  # the frozen sets served, in the order of the --params files
    store: CandleStore
    journal: Journal
    counters: Counters
    collector: Collector
    deciders: Deciders
    hub: Hub
    watcher: DbWatcher
    listeners: list[Listener]
    started_at: float
    db_missing: bool
    follow_stuck: bool
    exit_code: int
    _version: int | None  # the store's PRAGMA data_version at the last check
    _settle_timer: asyncio.TimerHandle | None
    _unjournaled: list[Part] | None  # decided, not journaled yet
    _db_error: str | None
    _error_since: float | None
    _follow_alive: float
    _stuck_after_s: float
    _executor: ThreadPoolExecutor
    _serial: asyncio.Lock
    _checkpoint_timer: asyncio.TimerHandle | None
    _idle_task: asyncio.Task[None] | None
    _stopping: asyncio.Event
    _socket_inode: int | None
    _metrics: asyncio.AbstractServer | None

    # The first stream, for code and tests of one-stream runners.

    @property
    def frozen(self) -> FrozenParams:
        """Return the first stream's frozen set."""
        return self.streams[0].frozen

    @property
    def engine(self) -> SignalEngine:
        """Return the first stream's engine."""
        return self.streams[0].engine

    @property
    def mark(self) -> int | None:
        """Return the first stream's processed mark (open time of its newest decided candle)."""
        return self.streams[0].mark

    @property
    def stalled(self) -> bool:
        """Return whether any stream is stalled."""
        return any(stream.stalled for stream in self.streams)

    @property
    def key(self) -> SeriesKey:
        """Return the journal key of the first stream's parameter set."""
        return self.streams[0].key


@dataclass
class Part:
    """What one step decided for one stream: its decisions and its mark before them."""

    stream: Stream
    decisions: Decisions
    previous_mark: int | None
