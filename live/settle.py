"""When a candle may be decided: the settle rule (no ``closed`` flag) and the future-candle rule.

A table with a ``closed`` column says which candles are final: nothing waits. A table without
one (the seed pipeline's) holds the forming candle too, updated many times a minute, and its
writer may confirm a candle's final values a little after the next candle has started. Such a
candle is decided once `settle_s` has passed since the runner first saw a newer candle of its
timeframe, and since its own close by the wall clock, whichever is later::

    decidable(t)  <=>  now >= max(first_seen_newer(t), t + timeframe) + settle_s

The cost is latency: a signal leaves about `settle_s` after the next candle's first write
(README, "Live"). The benefit: the stream equals ``signals scan`` of the final database.

A candle whose close time is later than the wall clock plus `future_tolerance_s` cannot be
closed (a clock or unit bug upstream): it is never decided and never moves the mark. That rule
is `signals.data.validate.latest_closable`, which ``scan`` and ``data check`` apply too.
"""

from __future__ import annotations

import math
from collections import deque


class Settle:
    """The settle rule of a table without a ``closed`` flag, for one series."""

    def __init__(self, timeframe_s: int, settle_s: float) -> None:
        self.timeframe_s = timeframe_s
        self.settle_s = settle_s
        self._seen: deque[tuple[int, float]] = deque()  # (newest open time, first seen at)
        self._newest_matured: int | None = None

    def observe(self, newest: int | None, now: float) -> None:
        """Record the newest open time in the table (forming candles too) as seen at `now`."""
        if newest is None:
            return
        latest = self._seen[-1][0] if self._seen else self._newest_matured
        if latest is None or newest > latest:
            self._seen.append((newest, now))

    def until(self, now: float) -> int | None:
        """Return the newest open time that may be decided at `now` (None: none yet)."""
        while self._seen and self._due(*self._seen[0]) <= now:
            self._newest_matured = self._seen.popleft()[0]
        if self._newest_matured is None:
            return None
        by_clock = math.floor(now - self.settle_s) - self.timeframe_s
        return min(self._newest_matured - 1, by_clock)

    def next_due(self) -> float | None:
        """Return when the next observed candle becomes decidable (None: nothing waits)."""
        return self._due(*self._seen[0]) if self._seen else None

    def _due(self, newest: int, seen_at: float) -> float:
        # the candles before `newest` have closed by `newest` (contiguous series)
        return max(seen_at, float(newest)) + self.settle_s
