"""A test seam for crash safety: die by SIGKILL at a named point of a write.

``SIGNALS_CRASH_AT=<point>`` in the environment makes the process kill itself with SIGKILL when
it reaches `crash_point(<point>)`, exactly as an OOM kill or a power cut would stop it there. The
tests use it to prove that the next run repairs what the killed one left. Unset (always, outside
tests) it costs one dictionary lookup.

Points: ``fetch:aggregate`` (every page's base candles committed, before re-aggregation) and
``aggregate:<timeframe>`` (inside the re-aggregation transaction, after that timeframe's rows).
"""

from __future__ import annotations

import os
import signal

ENV = "SIGNALS_CRASH_AT"


def crash_point(name: str) -> None:
    """Kill this process with SIGKILL if ``SIGNALS_CRASH_AT`` names this point."""
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
