"""The runner's monitor: heartbeats, stalls, the systemd watchdog.

Every `MONITOR_S` (or the heartbeat or watchdog interval, when shorter) it flags a stall of a
stream (no new closed candle of its series for ``stall_after``), checks that the follow loop
still turns, pings systemd's watchdog while it does, and sends the heartbeats.
"""

from __future__ import annotations

import asyncio
import logging
import os

from live.runner_state import RunnerState
from live.sockets import sd_notify
from live.streams import Stream

log = logging.getLogger("live.runner")  # the runner's logger name: log lines stay as they were
MONITOR_S = 1.0  # the monitor's tick: stalls, heartbeats, the watchdog
FOLLOW_STUCK_S = 10.0  # a follow loop that has not turned for this long is stuck


class Monitoring(RunnerState):
    """The monitor part of a `Runner`: heartbeats, stalls, the watchdog."""

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
        now = self.clock()
        for stream in self.streams:
            age = now - stream.last_arrival
            limit = self.config.stall_after(stream.frozen.timeframe)
            if age > limit and not stream.stalled:
                stream.stalled = True
                self.counters.stalls += 1
                stream.counters.stalls += 1
                log.warning(
                    "event=stalled last_candle_age_s=%.1f stall_after_s=%.1f mark=%s "
                    "db_missing=%s%s",
                    age, limit, stream.mark, self.db_missing,
                    f" stream={stream.name}" if len(self.streams) > 1 else "",
                )  # fmt: skip

    def _arrived(self, stream: Stream) -> None:
        stream.last_arrival = self.clock()
        if stream.stalled:
            stream.stalled = False
            log.info(
                "event=stall_ended mark=%s%s",
                stream.mark, f" stream={stream.name}" if len(self.streams) > 1 else "",
            )  # fmt: skip

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
