"""The set of clients of one runner: hello, resume, status, heartbeats, bounded buffers.

The `Hub` knows clients only through the `Transport` seam (send one encoded line; close), so its
logic runs in unit tests on `MemoryTransport`; `StreamTransport` wraps an asyncio stream of a
Unix or TCP socket.

Ordering and exactly-once per connection: every signal is journaled (committed) before it is
broadcast, and each client remembers the last seq it was sent. ``resume`` replays the journal
in chunks while live broadcasts skip that client; its last journal read returns nothing new and
is followed, with no ``await`` in between, by switching the client to live. Anything broadcast
during the replay was committed before the broadcast, so the replay read it; anything committed
after the last read is broadcast later and passes the seq filter. No gap, no duplicate.

Back-pressure: a client's unsent bytes are bounded (``max_buffer_bytes``); a client over the
bound is dropped with a log line. A vanished client (reset, broken pipe) only ends its own
connection.

The sockets, their line framing and per-connection faults are `live.server`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from live.journal import Entry, Journal
from live.stats import Counters
from signals.protocol import (
    Auth,
    ErrorMessage,
    Heartbeat,
    Hello,
    ProtocolError,
    Resume,
    Status,
    StatusRequest,
    decode_client,
    encode,
)

log = logging.getLogger("live.server")  # the server's logger name: its log lines stay as they were
REPLAY_CHUNK = 500


class Transport(Protocol):
    """Where a client's lines go: the seam between the hub and sockets."""

    def send(self, line: bytes) -> bool:
        """Queue `line`; return False when the client's buffer would overflow."""

    async def drain(self) -> None:
        """Wait until the queued lines are handed to the OS."""

    def buffered(self) -> int:
        """Return the bytes queued and not yet handed to the OS."""

    def close(self) -> None:
        """Close the connection (queued lines may still be flushed)."""

    def abort(self) -> None:
        """Close at once, discarding queued lines."""


class MemoryTransport:
    """An in-memory transport for unit tests: lines are appended to `lines`."""

    def __init__(self, max_buffer_bytes: int | None = None) -> None:
        self.lines: list[bytes] = []
        self.closed = False
        self.max_buffer_bytes = max_buffer_bytes
        self.pending = 0

    def send(self, line: bytes) -> bool:
        """Append `line` unless the simulated buffer overflows or the transport is closed."""
        if self.closed:
            return False
        if self.max_buffer_bytes is not None:
            if self.pending + len(line) > self.max_buffer_bytes:
                return False
            self.pending += len(line)
        self.lines.append(line)
        return True

    async def drain(self) -> None:
        """Nothing to wait for."""

    def buffered(self) -> int:
        """Return the simulated unsent bytes."""
        return self.pending

    def close(self) -> None:
        """Mark closed."""
        self.closed = True

    def abort(self) -> None:
        """Mark closed."""
        self.closed = True


class StreamTransport:
    """An asyncio stream (Unix or TCP) with a bound on the bytes waiting to be sent."""

    def __init__(self, writer: asyncio.StreamWriter, max_buffer_bytes: int) -> None:
        self.writer = writer
        self.max_buffer_bytes = max_buffer_bytes

    def send(self, line: bytes) -> bool:
        """Write `line` now (asyncio sends at once when nothing is queued)."""
        transport = self.writer.transport
        if transport.is_closing():
            return False
        if transport.get_write_buffer_size() + len(line) > self.max_buffer_bytes:
            return False
        self.writer.write(line)
        return True

    async def drain(self) -> None:
        """Wait for the OS to take the queued bytes."""
        await self.writer.drain()

    def buffered(self) -> int:
        """Return the bytes queued in user space."""
        return int(self.writer.transport.get_write_buffer_size())

    def close(self) -> None:
        """Close after flushing."""
        self.writer.close()

    def abort(self) -> None:
        """Close at once."""
        self.writer.transport.abort()


@dataclass(eq=False)
class Client:
    """One connected client and where its stream stands."""

    transport: Transport
    name: str
    last_sent_seq: int = 0
    replaying: bool = False
    dropped: bool = False
    connected_at: float = field(default_factory=time.time)
    release: asyncio.TimerHandle | None = None  # ends the hold after the hello (Hub.connect)
    release_task: asyncio.Task[None] | None = None


class Hub:
    """The set of clients: broadcast, heartbeats, resume and status, with bounded buffers."""

    def __init__(
        self,
        journal: Journal,
        *,
        hello: Callable[[], Hello],
        status: Callable[[], dict[str, Any]],
        counters: Counters,
        clock: Callable[[], float] = time.time,
        resume_grace_s: float = 0.0,
    ) -> None:
        self.journal = journal
        self.resume_grace_s = resume_grace_s
        self.hello = hello
        self.status = status
        self.counters = counters
        self.clock = clock
        self.clients: set[Client] = set()
        self.last_seq = journal.last_seq()

    # -- sending -----------------------------------------------------------------------------

    def send(self, client: Client, line: bytes) -> bool:
        """Send one line to `client`; drop the client (with a log line) when it overflows."""
        if client.dropped:
            return False
        if client.transport.send(line):
            return True
        self.drop(client, "send buffer full")
        return False

    def drop(self, client: Client, reason: str) -> None:
        """Disconnect `client` at once and count it."""
        if client.dropped:
            return
        client.dropped = True
        self.counters.drops += 1
        log.warning(
            "event=client_dropped client=%s reason=%r buffered=%d",
            client.name, reason, client.transport.buffered(),
        )  # fmt: skip
        self.clients.discard(client)
        client.transport.abort()

    def connect(self, client: Client) -> None:
        """Register `client` and send its hello; live signals follow (see `resume_grace_s`).

        With a `resume_grace_s`, live signals are held for that long after the hello, or until
        the client's first line: a client that resumes (its first line) gets the journal after
        its `since_seq` and then the live stream, each seq once and in order; any other client
        gets what was held, from the journal, then the live stream. Without the hold, signals
        sent live between the hello and a resume would be sent again by the replay.
        """
        client.last_sent_seq = self.last_seq
        self.clients.add(client)
        self.send(client, encode(self.hello()))
        if self.resume_grace_s > 0:
            client.replaying = True  # live broadcasts skip it; the journal has them
            loop = asyncio.get_running_loop()
            client.release = loop.call_later(self.resume_grace_s, self._release, client)
        log.info("event=client_connected client=%s clients=%d", client.name, len(self.clients))

    def _release(self, client: Client) -> None:
        # The hold after the hello ended without a line: send what was held, then live.
        client.release = None
        if not client.dropped and client in self.clients:
            coro = self.resume(client, client.last_sent_seq, quiet=True)
            client.release_task = asyncio.get_running_loop().create_task(coro)

    async def _end_hold(self, client: Client, message: object) -> None:
        # The client's first line ends the hold: a resume replaces it, anything else releases.
        if client.release is not None:
            client.release.cancel()
            client.release = None
            if not isinstance(message, Resume):
                await self.resume(client, client.last_sent_seq, quiet=True)
        if client.release_task is not None:
            await client.release_task
            client.release_task = None

    def disconnect(self, client: Client) -> None:
        """Forget `client` (it closed or failed)."""
        if client.release is not None:
            client.release.cancel()
            client.release = None
        if client in self.clients:
            self.clients.discard(client)
            log.info(
                "event=client_disconnected client=%s clients=%d", client.name, len(self.clients)
            )

    def broadcast(self, entries: Iterable[Entry]) -> int:
        """Send journaled `entries` to every live client (seq-filtered); return lines sent."""
        sent = 0
        for entry in entries:
            self.last_seq = max(self.last_seq, entry.seq)
            for client in list(self.clients):
                if client.replaying or entry.seq <= client.last_sent_seq:
                    continue
                if self.send(client, entry.line):
                    client.last_sent_seq = entry.seq
                    sent += 1
        return sent

    def heartbeat(self, *, stalled: bool = False) -> None:
        """Send a heartbeat (saying whether the runner is stalled) to every client."""
        line = encode(Heartbeat(last_seq=self.last_seq, ts=self.clock(), stalled=stalled))
        for client in list(self.clients):
            self.send(client, line)

    # -- requests ----------------------------------------------------------------------------

    async def handle_line(self, client: Client, raw: bytes) -> None:
        """Act on one client line: ``resume``, ``status`` (``auth`` again is ignored)."""
        try:
            message = decode_client(raw)
        except ProtocolError as exc:
            await self._end_hold(client, None)
            self.counters.bad_requests += 1
            self.send(client, encode(ErrorMessage(code="bad_request", message=str(exc))))
            return
        await self._end_hold(client, message)
        if isinstance(message, Resume):
            await self.resume(client, message.since_seq)
        elif isinstance(message, StatusRequest):
            self.send(client, encode(Status(data=self.status())))
        elif isinstance(message, Auth):
            pass

    async def resume(self, client: Client, since_seq: int, *, quiet: bool = False) -> None:
        """Send the journaled signals after `since_seq`, in order, then switch to live.

        A `since_seq` beyond the journal's last seq belongs to another journal (replaced, lost,
        or restored from an older copy): the client is answered with an ``unknown_seq`` error
        naming the journal's last seq and stream, and then continues on the live stream from
        the journal's current end (nothing is replayed; the next signal it gets is last + 1).
        """
        last = self.journal.last_seq()
        if since_seq > last:
            log.warning(
                "event=resume_ahead client=%s since_seq=%d journal_last=%d stream=%s",
                client.name, since_seq, last, self.journal.stream,
            )  # fmt: skip
            self.send(client, encode(ErrorMessage(code="unknown_seq", message=(
                f"since_seq {since_seq} is beyond this journal's last seq {last} (stream "
                f"{self.journal.stream}): the journal was replaced; continuing live after "
                f"seq {last}"
            ))))  # fmt: skip
            since_seq = last
        client.replaying = True
        client.last_sent_seq = since_seq
        replayed = 0
        try:
            while not client.dropped:
                entries = self.journal.since(client.last_sent_seq, limit=REPLAY_CHUNK)
                if not entries:
                    break  # no await between this read and going live (see module doc)
                for entry in entries:
                    if not self.send(client, entry.line):
                        return
                    client.last_sent_seq = entry.seq
                replayed += len(entries)
                await client.transport.drain()
        finally:
            client.replaying = False
        if not quiet or replayed:
            log.info(
                "event=resume client=%s since_seq=%d replayed=%d",
                client.name, since_seq, replayed,
            )  # fmt: skip

    async def drain(self, timeout_s: float) -> None:
        """Flush every client's queued lines for up to `timeout_s`, then close them."""
        clients = list(self.clients)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(c.transport.drain() for c in clients), return_exceptions=True),
                timeout_s,
            )
        for client in clients:
            client.transport.close()
