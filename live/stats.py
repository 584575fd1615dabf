"""Counters and latency figures of the runner, for ``status`` replies and Prometheus text."""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

HEAVY_MODULES = ("vectorbt", "optuna", "jupyter", "jupyterlab", "plotly", "numba", "matplotlib")


def heavy_modules_loaded() -> list[str]:
    """Return the heavy top-level packages imported in this process (the runner loads none)."""
    loaded = {name.partition(".")[0] for name in list(sys.modules)}
    return sorted(loaded.intersection(HEAVY_MODULES))


class Latencies:
    """A bounded window of latencies (seconds) with percentiles."""

    def __init__(self, size: int = 10_000) -> None:
        self.values: deque[float] = deque(maxlen=size)

    def add(self, seconds: float) -> None:
        """Record one latency."""
        self.values.append(seconds)

    def summary_ms(self) -> dict[str, float | int | None]:
        """Return count, p50, p99 and max in milliseconds (None when empty)."""
        data = sorted(self.values)
        if not data:
            return {"count": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}

        def pick(q: float) -> float:
            return round(data[min(len(data) - 1, int(q * len(data)))] * 1e3, 3)

        return {
            "count": len(data),
            "p50_ms": pick(0.50),
            "p99_ms": pick(0.99),
            "max_ms": round(data[-1] * 1e3, 3),
        }


LATENCY_FIELDS = frozenset({"latency", "decide", "journal"})


@dataclass
class Counters:
    """What the runner has done since it started."""

    candles_processed: int = 0
    signals_emitted: int = 0
    skipped_candles: int = 0
    gaps: int = 0
    drops: int = 0
    reloads: int = 0
    reload_failures: int = 0
    db_retries: int = 0
    auth_failures: int = 0
    connections: int = 0  # connections accepted (refused ones included)
    bad_requests: int = 0  # client lines that are no valid message (answered, connection kept)
    closed_clients: int = 0  # connections closed for a line too long or left unfinished
    refused_clients: int = 0  # connections refused beyond max_clients
    empty_checks: int = 0  # a notice whose check found no new commit (settle re-checks follow)
    deferred_steps: int = 0  # steps the loop thread handed to the worker (a lock, an error)
    checkpoints: int = 0  # journal checkpoints run while idle
    future_candles: int = 0  # candles closing after the wall clock: refused (in skipped too)
    strategy_errors: int = 0  # candles the strategy raised on: skipped (in skipped too)
    rewritten_candles: int = 0  # decided candles whose values changed in the store afterwards
    db_reopens: int = 0  # the database file was replaced (new inode) and opened again
    journal_errors: int = 0  # journal writes that failed (retried; nothing sent before them)
    stalls: int = 0  # times no new closed candle arrived for stall_after_s
    latency: Latencies = field(default_factory=Latencies)
    decide: Latencies = field(default_factory=Latencies)
    journal: Latencies = field(default_factory=Latencies)

    def as_dict(self) -> dict[str, Any]:
        """Return the counters (without the latency window)."""
        data = asdict(self)
        for window in LATENCY_FIELDS:
            data.pop(window)
        return data


# status fields exported under a name of their own (the alerting names of the README)
METRIC_NAMES = {
    "last_candle_age_s": "signals_last_candle_age_seconds",
    "stalled": "signals_stalled",
}


def prometheus_text(status: dict[str, Any]) -> str:
    """Render numeric status fields as Prometheus text exposition format (version 0.0.4)."""
    lines = []
    for key, value in sorted(_flatten(status).items()):
        name = METRIC_NAMES.get(key, "signals_live_" + key)
        kind = "counter" if key in COUNTER_FIELDS else "gauge"
        lines += [f"# TYPE {name} {kind}", f"{name} {value}"]
    return "\n".join(lines + _stream_lines(status.get("streams") or [])) + "\n"


STREAM_LABELS = ("symbol", "timeframe", "strategy", "params_id")


def _stream_lines(streams: list[dict[str, Any]]) -> list[str]:
    """Each stream's numeric health fields as ``signals_stream_<field>{symbol=…,…}`` samples."""
    samples: dict[str, list[str]] = {}
    for stream in streams:
        labels = ",".join(f'{k}="{stream[k]}"' for k in STREAM_LABELS)
        for key, value in sorted(_flatten(stream).items()):
            if key not in STREAM_LABELS:
                samples.setdefault(key, []).append(f"signals_stream_{key}{{{labels}}} {value}")
    lines = []
    for key, rows in samples.items():
        kind = "counter" if key in COUNTER_FIELDS else "gauge"
        lines += [f"# TYPE signals_stream_{key} {kind}", *rows]
    return lines


COUNTER_FIELDS = frozenset(Counters.__dataclass_fields__) - LATENCY_FIELDS | {"decider_restarts"}


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "_"))
        elif isinstance(value, bool):
            out[name] = int(value)
        elif isinstance(value, int | float):
            out[name] = value
    return out


async def start_metrics(
    status: Callable[[], dict[str, Any]], port: int, host: str = "127.0.0.1"
) -> asyncio.AbstractServer:
    """Serve ``GET /metrics`` (Prometheus text of `status()`) on host:port; 404 otherwise."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
            ok = request.startswith(b"GET /metrics ")
            body = prometheus_text(status()).encode() if ok else b"not found\n"
            head = "HTTP/1.0 200 OK" if ok else "HTTP/1.0 404 Not Found"
            writer.write(
                f"{head}\r\nContent-Type: text/plain; version=0.0.4\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(serve, host=host, port=port)
