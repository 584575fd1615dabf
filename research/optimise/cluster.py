"""Sweep chunks on a Dask distributed cluster (``signals sweep --cluster``).

The chunks are the local sweep's (same `research.optimise.chunks.chunk_metrics`, same width
from `research.optimise.sweep.auto_chunk_size`), so a worker holds at most one chunk's matrices
per thread, as a local worker process does. What changes is where they run:

- **The candles travel once per worker.** The sweep's job (candles, strategy, combinations,
  costs, execution model) is sent with ``client.scatter(job, broadcast=True)``: one copy to
  every worker connected at the start, before any chunk. Each chunk task then names that
  scattered key and its ``start:stop`` bounds only; a worker that joins later, or replaces a
  dead one, fetches the job from a peer the first time it needs it (Dask keeps the replicas).
- **Results come back as they finish** (``as_completed``): the progress bar counts
  combinations chunk by chunk, and each chunk's future is released once its rows are read, so
  neither the workers nor the scheduler keep finished results.
- **A dead worker loses nothing.** Dask reschedules the chunks that were running or waiting on
  a worker that disappears; the job's replica survives on the other workers.
- **Numba.** Before the job is scattered, every worker runs a two-combination chunk on 64
  candles (``client.run``, all workers at once): it imports the project and compiles, or loads
  from numba's disk cache, the sweep kernels, as the local sweep does before it forks. A worker
  that joins mid-sweep does this in its first chunk, which is therefore slower. The cache is
  numba's default (``__pycache__`` beside `research.backtest.kernel`, or ``NUMBA_CACHE_DIR``
  from the worker's own environment): workers on the client's machine load the client's
  kernels (tested); another machine fills its own cache on its first sweep.
- **Same code everywhere.** Every chunk carries a fingerprint of the code and packages that
  decide its figures (`code_fingerprint`); a worker whose fingerprint differs refuses the chunk
  with a `ClusterError` naming both, rather than returning figures of other code.

``--cluster local:N`` starts a `distributed.LocalCluster` of N worker processes with one thread
each and stops it when the sweep ends.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import importlib
import inspect
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from signals.errors import SignalsError

if TYPE_CHECKING:
    import pandas as pd
    from distributed import Client

    from research.optimise.chunks import SweepJob

_LOCAL = re.compile(r"local:(\d+)")
# Dask's nannies start workers with MALLOC_TRIM_THRESHOLD_=65536 (to give memory back sooner).
# Any explicit value turns off glibc's dynamic mmap threshold, so every array over 128 KiB is
# mmapped and unmapped again: a chunk takes 2-3 times as long (benchmarks/RESULTS.md).
# Local clusters unset it (None, as Dask documents); remote workers are warned about.
_TRIM_KEY = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"
_TRIM_ENV = "MALLOC_TRIM_THRESHOLD_"
_log = logging.getLogger(__name__)
# Modules whose source decides a chunk's figures (the strategy's own source is added per job).
_FINGERPRINT_MODULES = (
    "research.optimise.chunks",
    "research.optimise.sweep",
    "research.backtest.kernel",
    "research.backtest.execution",
    "research.backtest.metrics",
    "signals.costs",
)
_FINGERPRINT_PACKAGES = ("numpy", "pandas", "numba", "vectorbt", "talib", "signals")


class ClusterError(SignalsError):
    """The Dask scheduler cannot be reached, has no worker, or a worker runs other code."""


@dataclass(frozen=True)
class ClusterSpec:
    """Where a sweep's chunks run: a scheduler address, or ``local_workers`` local processes."""

    address: str | None = None
    local_workers: int = 0
    timeout: float = 10.0  # seconds to reach the scheduler and to see its first worker

    @property
    def text(self) -> str:
        """Return the spec as given on the command line (``local:N`` or the address)."""
        return f"local:{self.local_workers}" if self.address is None else self.address


def parse_cluster(text: str, *, timeout: float = 10.0) -> ClusterSpec:
    """Return the spec of ``local:N`` or of a scheduler address (``tcp://host:8786``).

    >>> parse_cluster("local:2").local_workers
    2
    """
    text = text.strip()
    if timeout <= 0:
        raise ValueError(f"the timeout must be positive, not {timeout:g}")
    if text.startswith("local"):
        match = _LOCAL.fullmatch(text)
        if match is None or int(match.group(1)) < 1:
            raise ValueError(f"expected local:N with N >= 1 worker processes, not {text!r}")
        return ClusterSpec(local_workers=int(match.group(1)), timeout=timeout)
    if not text:
        raise ValueError("expected a scheduler address such as tcp://host:8786, or local:N")
    return ClusterSpec(address=text, timeout=timeout)


@contextlib.contextmanager
def connect(spec: ClusterSpec) -> Iterator[Client]:
    """Yield a Dask client of `spec` with at least one worker; close what was opened here."""
    import dask
    from distributed import Client, LocalCluster

    with contextlib.ExitStack() as stack:
        if spec.address is None:
            # Our own workers, stopped once every result is in: a nanny killing one that is
            # slow to exit (numba and vectorbt loaded, a busy machine) is not worth a warning.
            stack.enter_context(_quiet("distributed.nanny"))
            cluster_config = dask.config.set({_TRIM_KEY: None})
            stack.enter_context(cluster_config)
            cluster = LocalCluster(
                n_workers=spec.local_workers,
                threads_per_worker=1,  # one chunk at a time per process, as the local sweep
                processes=True,
                dashboard_address=None,
            )
            stack.enter_context(cluster)
            client = stack.enter_context(Client(cluster))
        else:
            client = _remote_client(spec)
            stack.callback(client.close)
        try:
            client.wait_for_workers(1, timeout=spec.timeout)
        except TimeoutError:
            raise ClusterError(
                f"the Dask scheduler at {spec.text} has no worker after {spec.timeout:g} s "
                f"(start one with: dask worker {spec.text})"
            ) from None
        yield client


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    log = logging.getLogger(name)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _remote_client(spec: ClusterSpec) -> Client:
    from distributed import Client

    try:
        return Client(spec.address, timeout=spec.timeout, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ClusterError(
            f"cannot reach the Dask scheduler at {spec.address} within {spec.timeout:g} s "
            f"({reason})"
        ) from None


def worker_threads(client: Client) -> int:
    """Return the number of worker threads (chunks that can run at once) the cluster has now."""
    return sum(client.nthreads().values())


def cluster_chunks(
    client: Client, job: SweepJob, bounds: list[tuple[int, int]], bar: Any
) -> list[pd.DataFrame | None]:
    """Run `job`'s chunks ``bounds`` on the cluster; return their metric rows in order.

    The job is scattered to every worker once; `bar` is updated by each finished chunk's size.
    """
    from distributed import as_completed

    parts: list[pd.DataFrame | None] = [None] * len(bounds)
    if not bounds:
        return parts
    fingerprint = code_fingerprint(job.strategy)
    # Imports and numba kernels first, on every worker at once: a worker unpickling the job
    # would otherwise import vectorbt on its event loop and delay the peers fetching from it.
    tiny = dataclasses.replace(job, candles=job.candles.iloc[:64], combos=job.combos[:2], first=0)
    trims = {value for value in client.run(_warm_up, tiny).values() if value is not None}
    if trims:
        _log.warning(
            "the Dask workers run with %s=%s (the nanny's default), which makes chunks "
            "2-3 times slower: see README, Scaling out",
            _TRIM_ENV,
            ",".join(sorted(trims)),
        )
    [shared] = client.scatter([job], broadcast=True)
    futures = {
        client.submit(_chunk, shared, start, stop, fingerprint): i
        for i, (start, stop) in enumerate(bounds)
    }
    try:
        for future in as_completed(futures, loop=client.loop):
            i = futures.pop(future)
            parts[i] = future.result()
            future.release()  # the worker drops the rows: only the client keeps them
            bar.update(bounds[i][1] - bounds[i][0])
    finally:
        client.cancel(list(futures))
        client.cancel([shared])
    return parts


def _warm_up(job: SweepJob) -> str | None:
    # Load (or compile) the kernels a chunk uses: two columns, the chunks' memory layout.
    # Returns the worker's malloc trim setting (see _TRIM_KEY).
    import os

    from research.optimise.chunks import chunk_metrics

    chunk_metrics(job, 0, len(job.combos))
    return os.environ.get(_TRIM_ENV)


def _chunk(job: SweepJob, start: int, stop: int, fingerprint: str) -> pd.DataFrame:
    # Runs on a worker: refuse figures of other code, then the local sweep's own chunk.
    from research.optimise.chunks import chunk_metrics

    mine = code_fingerprint(job.strategy)
    if mine != fingerprint:
        raise ClusterError(
            f"worker {_worker_address()} runs other code or packages than the client "
            f"(fingerprint {mine[:12]} != {fingerprint[:12]}): install the same version of "
            "the project and its dependencies on every machine"
        )
    return chunk_metrics(job, start, stop)


def _worker_address() -> str:
    from distributed import get_worker

    try:
        return str(get_worker().address)
    except ValueError:  # called outside a worker (tests)
        return "(none)"


def code_fingerprint(strategy: Any) -> str:
    """Return a hash of the strategy's source, the sweep's modules and the package versions."""
    from signals.identity import strategy_hash

    return hashlib.sha256((_base_fingerprint() + strategy_hash(strategy)).encode()).hexdigest()


@functools.cache
def _base_fingerprint() -> str:
    # Once per process: the code that runs is the code loaded at import.
    digest = hashlib.sha256()
    for name in _FINGERPRINT_MODULES:
        digest.update(inspect.getsource(importlib.import_module(name)).encode("utf-8"))
    for name in _FINGERPRINT_PACKAGES:
        module = importlib.import_module(name)
        digest.update(f"{name}={getattr(module, '__version__', '?')};".encode())
    return digest.hexdigest()
