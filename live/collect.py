"""Garbage collection around steps, never inside one.

CPython's collector runs when allocations pass a threshold, wherever that happens. Inside a
step it adds its pause to a signal's latency: a young-generation pass over a step's pandas
objects takes ~0.1-0.5 ms on this project's machine, and about one step in twenty triggered
one (benchmarks/live_latency.py). The runner therefore pauses automatic collection from the
check for a commit until its signals are sent, then runs the collection that became due (by
CPython's own thresholds) at once. Between steps (clients coming and going, heartbeats) the
collector runs as usual, and so it does while a step that met a fault waits to be retried in
the worker thread (an outage can last hours).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager

from live.stats import Latencies


def collect_due() -> int | None:
    """Run the collection CPython's thresholds make due now; return its generation (or None)."""
    limit0, limit1, limit2 = gc.get_threshold()
    count0, count1, count2 = gc.get_count()
    if limit0 == 0 or count0 <= limit0:
        return None
    generation = 2 if count1 > limit1 and count2 > limit2 else 1 if count1 > limit1 else 0
    gc.collect(generation)
    return generation


class Collector:
    """The collections the runner defers past a step: counted and timed for ``status``."""

    def __init__(self) -> None:
        self.pauses = Latencies()
        self.by_generation = [0, 0, 0]

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Keep automatic collection off for the block, then run the one that became due."""
        was = gc.isenabled()
        gc.disable()
        try:
            yield
        finally:
            if was:
                gc.enable()
                self._collect_due()

    def _collect_due(self) -> None:
        started = time.perf_counter()
        generation = collect_due()
        if generation is not None:
            self.pauses.add(time.perf_counter() - started)
            self.by_generation[generation] += 1

    def summary(self) -> dict[str, object]:
        """Return what ``status`` says of the deferred collections (count per generation, ms)."""
        return {
            **{f"gen{g}": n for g, n in enumerate(self.by_generation)},
            "pause_ms": self.pauses.summary_ms(),
        }
