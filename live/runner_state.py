"""What a live runner is configured with (`RunnerConfig`) and what it holds (`RunnerState`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from live.engine import Decisions, SignalEngine
from live.hub import Hub
from live.journal import Journal, SeriesKey
from live.server import Listener
from live.settle import Settle
from live.stats import Counters
from live.watch import DbWatcher
from signals.config import CandleSource
from signals.data.store import CandleStore
from signals.frozen import FrozenParams
from signals.timeframes import timeframe_seconds


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


class RunnerState:
    """What a `Runner` holds, declared once for the parts it inherits (set in its __init__)."""

    config: RunnerConfig
    clock: Callable[[], float]
    perf: Callable[[], float]
    frozen: FrozenParams
    engine: SignalEngine
    store: CandleStore
    journal: Journal
    counters: Counters
    hub: Hub
    watcher: DbWatcher
    listeners: list[Listener]
    mark: int | None  # open time of the newest decided candle
    started_at: float
    stalled: bool
    db_missing: bool
    follow_stuck: bool
    exit_code: int
    _version: int | None  # the store's PRAGMA data_version at the last check
    _settle: Settle | None  # None: the table has a closed flag
    _settle_timer: asyncio.TimerHandle | None
    _future_logged: set[int]
    _unjournaled: tuple[Decisions, int | None] | None  # decided, not journaled yet
    _last_arrival: float
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

    @property
    def key(self) -> SeriesKey:
        """Return the journal key of the current parameter set."""
        return SeriesKey(self.frozen.symbol, self.frozen.timeframe, self.frozen.params_id)
