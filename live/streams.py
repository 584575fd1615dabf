"""The streams of one runner: each frozen parameter set it serves, with its own state and health.

A runner started with several ``--params`` files serves them all on one socket and one journal:
each `Stream` holds one file's frozen set, its engine (window), its processed mark, its settle
rule and its health (stall, last reload). Signals of every stream share the journal's ``seq``.
A one-stream runner is a list of one: its hot path is the same loop over one stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from live.engine import SignalEngine
from live.journal import SeriesKey
from live.settle import Settle
from signals.errors import ConfigError
from signals.frozen import FrozenParams
from signals.protocol import StreamInfo


@dataclass
class StreamCounters:
    """What one stream has done since the runner started (the runner's totals add them up)."""

    candles_processed: int = 0
    signals_emitted: int = 0
    skipped_candles: int = 0
    gaps: int = 0
    reloads: int = 0
    reload_failures: int = 0
    stalls: int = 0


@dataclass(eq=False)
class Stream:
    """One frozen parameter set of a runner: its file, engine, processed mark and health."""

    params: Path
    frozen: FrozenParams
    engine: SignalEngine
    settle: Settle | None  # None: the table has a closed flag
    last_arrival: float  # wall time of this stream's newest decided candle (or the start)
    mark: int | None = None  # open time of the newest decided candle
    stalled: bool = False
    reload_error: str | None = None  # why the last reload of its file failed (None: it did not)
    future_logged: set[int] = field(default_factory=set)
    counters: StreamCounters = field(default_factory=StreamCounters)

    @property
    def key(self) -> SeriesKey:
        """Return the journal key of the stream's current parameter set."""
        return SeriesKey(self.frozen.symbol, self.frozen.timeframe, self.frozen.params_id)

    @property
    def name(self) -> str:
        """Return a short name for log lines: symbol/timeframe/strategy/params_id prefix."""
        f = self.frozen
        return f"{f.symbol}/{f.timeframe}/{f.strategy}/{f.params_id[:12]}"

    def info(self) -> StreamInfo:
        """Return what the hello says of this stream."""
        f = self.frozen
        return StreamInfo(
            symbol=f.symbol, timeframe=f.timeframe, strategy=f.strategy, params_id=f.params_id
        )

    def health(self, now: float, stall_after_s: float) -> dict[str, Any]:
        """Return this stream's entry of the runner's status."""
        f = self.frozen
        return {
            "symbol": f.symbol,
            "timeframe": f.timeframe,
            "strategy": f.strategy,
            "params_id": f.params_id,
            "params_file": str(self.params),
            "last_candle_ts": self.mark,
            "stalled": self.stalled,
            "last_candle_age_s": round(now - self.last_arrival, 3),
            "stall_after_s": stall_after_s,
            "settle_s": 0.0 if self.settle is None else self.settle.settle_s,
            "reload_error": self.reload_error,
            **vars(self.counters),
        }


def check_distinct(streams: list[Stream]) -> None:
    """Raise `ConfigError` when two streams would decide the same series with the same set."""
    seen: dict[SeriesKey, Path] = {}
    for i, stream in enumerate(streams):
        other = seen.setdefault(stream.key, stream.params)
        if len(seen) <= i:  # its key was there already
            raise ConfigError(
                f"{stream.params} and {other} are the same stream ({stream.name}): one runner "
                "serves a frozen set once per symbol and timeframe"
            )
