"""Serve the signal stream to many clients: hello, resume, status, heartbeats, bounded buffers.

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

Faults: a line over 64 KiB, bytes left without a newline, a connection beyond the limit, a wrong
token end only that connection, after an error line with a stable code (`Listener`); a line
that is no valid message is answered ``bad_request`` and the connection stays. At shutdown every
connection is aborted after the hub's drain, so each task ends on its own instead of being
cancelled mid-read (Python 3.11 logs a cancelled connection task as an error with a traceback).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import math
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from live.journal import Entry, Journal
from live.stats import Counters
from signals.protocol import (
    MAX_LINE_BYTES,
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

log = logging.getLogger(__name__)
REPLAY_CHUNK = 500
AUTH_TIMEOUT_S = 5.0
IDLE_LINE_S = 5.0  # bytes without a newline for longer close the connection
LINGER_S = 1.0  # after a fault's error line, unread input is discarded this long before closing
MAX_CLIENTS = 256
REFUSAL_LOG_INTERVAL_S = 1.0  # at most one client_refused line per interval (with a count)


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


class LineError(Exception):
    """A client's bytes break the line framing: the server says why (`code`) and closes."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class LineReader:
    """Split a client's stream into lines; bound a line's length and how long it stays unfinished.

    A client that sends nothing waits forever (bots only listen); a client whose bytes end
    without a newline for `idle_line_s` (counted while the server waits for more), or whose line
    exceeds `max_bytes`, raises `LineError`.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        *,
        max_bytes: int = MAX_LINE_BYTES,
        idle_line_s: float = IDLE_LINE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reader = reader
        self.max_bytes = max_bytes
        self.idle_line_s = idle_line_s
        self.clock = clock
        self.buffer = bytearray()
        self.partial_since: float | None = None

    async def readline(self, timeout_s: float | None = None) -> bytes | None:
        """Return the next line (with its newline), None at end of stream.

        Raise `LineError` for a line too long or left unfinished, `TimeoutError` when no whole
        line arrived within `timeout_s`.
        """
        deadline = None if timeout_s is None else self.clock() + timeout_s
        while True:
            end = self.buffer.find(b"\n")
            if end >= 0:
                line = bytes(self.buffer[: end + 1])
                del self.buffer[: end + 1]
                self.partial_since = None
                if len(line) > self.max_bytes:
                    raise LineError("line_too_long", f"line longer than {self.max_bytes} bytes")
                return line
            if len(self.buffer) > self.max_bytes:
                raise LineError("line_too_long", f"line longer than {self.max_bytes} bytes")
            now = self.clock()
            wait: float | None = None
            if self.buffer:
                if self.partial_since is None:
                    self.partial_since = now
                wait = self.partial_since + self.idle_line_s - now
                if wait <= 0:
                    raise LineError(
                        "idle_partial_line",
                        f"no newline within {self.idle_line_s:g} s of a line's first bytes",
                    )
            if deadline is not None:
                left = deadline - now
                if left <= 0:
                    raise TimeoutError
                wait = left if wait is None else min(wait, left)
            try:
                chunk = await asyncio.wait_for(self.reader.read(self.max_bytes + 1), wait)
            except TimeoutError:
                continue  # the checks above say which limit passed
            if not chunk:
                return None  # end of stream (an unfinished last line is not a request)
            self.buffer += chunk


class ConnectionLimit:
    """The open connections of every listener of one runner, against `max_clients`."""

    def __init__(self, max_clients: int = MAX_CLIENTS) -> None:
        self.max_clients = max_clients
        self.open = 0
        self.unlogged_refusals = 0  # refusals since the last log line (a flood logs 1 line/s)
        self.logged_at = -math.inf

    def take(self) -> bool:
        """Count one more connection; False (nothing counted) when the limit is reached."""
        if self.open >= self.max_clients:
            return False
        self.open += 1
        return True

    def release(self) -> None:
        """Count one connection fewer."""
        self.open -= 1


class Listener:
    """Accept connections on a bound socket and run each through the hub.

    Faults of one connection end only that connection, after an error line with a stable code:
    a line over ``MAX_LINE_BYTES`` (``line_too_long``), bytes without a newline for
    `idle_line_s` (``idle_partial_line``), a connection beyond `limit` (``too_many_clients``,
    refused at once), a missing or wrong token (``auth_required``).
    """

    def __init__(
        self,
        hub: Hub,
        sock: socket.socket,
        *,
        token: str | None = None,
        max_buffer_bytes: int = 1 << 20,
        limit: ConnectionLimit | None = None,
        idle_line_s: float = IDLE_LINE_S,
    ) -> None:
        self.hub = hub
        self.sock = sock
        self.token = token
        self.max_buffer_bytes = max_buffer_bytes
        self.limit = limit or ConnectionLimit()
        self.idle_line_s = idle_line_s
        self.server: asyncio.AbstractServer | None = None
        self._connections: dict[asyncio.Task[None], Client] = {}

    async def start(self) -> None:
        """Start accepting."""
        if self.sock.family == socket.AF_UNIX:
            self.server = await asyncio.start_unix_server(
                self._accept, sock=self.sock, limit=MAX_LINE_BYTES
            )
        else:
            self.server = await asyncio.start_server(
                self._accept, sock=self.sock, limit=MAX_LINE_BYTES
            )

    async def close(self) -> None:
        """Stop accepting new connections (open ones are served until `close_connections`)."""
        if self.server is not None:
            self.server.close()  # no wait_closed here: since 3.12 it waits for every connection

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        name = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else f"unix#{id(writer):x}"
        client = Client(StreamTransport(writer, self.max_buffer_bytes), name=name)
        task = asyncio.current_task()
        if task is not None:
            self._connections[task] = client
        try:
            await self._serve(reader, writer, client)
        except asyncio.CancelledError:
            # Only `close_connections` cancels, and only a task that outlived its transport's
            # abort. End normally: Python 3.11's stream callback logs a cancelled connection
            # task as an error with a CancelledError traceback.
            writer.transport.abort()
        finally:
            if task is not None:
                self._connections.pop(task, None)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client: Client
    ) -> None:
        raw = writer.get_extra_info("socket")
        if raw is not None and raw.family in (socket.AF_INET, socket.AF_INET6):
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.hub.counters.connections += 1
        if not self.limit.take():
            self._refuse(client)
            return
        lines = LineReader(reader, idle_line_s=self.idle_line_s)
        try:
            if self.token is not None and not await self._authenticate(lines, client):
                return
            self.hub.connect(client)
            while not client.dropped:
                line = await lines.readline()
                if line is None:
                    break
                await self.hub.handle_line(client, line)
        except LineError as fault:
            await self._close_for(client, reader, writer, fault)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            error = str(exc) or type(exc).__name__
            log.info("event=client_error client=%s error=%r", client.name, error)
        finally:
            self.limit.release()
            self.hub.disconnect(client)
            with contextlib.suppress(Exception):
                writer.close()

    def _refuse(self, client: Client) -> None:
        self.hub.counters.refused_clients += 1
        limit, now = self.limit, time.monotonic()
        limit.unlogged_refusals += 1
        if now - limit.logged_at >= REFUSAL_LOG_INTERVAL_S:
            log.warning(
                "event=client_refused client=%s code=too_many_clients max_clients=%d refused=%d",
                client.name, limit.max_clients, limit.unlogged_refusals,
            )  # fmt: skip
            limit.logged_at, limit.unlogged_refusals = now, 0
        message = f"too many clients (max_clients={self.limit.max_clients}); try again later"
        client.transport.send(encode(ErrorMessage(code="too_many_clients", message=message)))
        client.transport.close()

    async def _close_for(
        self,
        client: Client,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        fault: LineError,
    ) -> None:
        """Say why, stop sending, discard what the client still sends for a moment, close."""
        self.hub.counters.closed_clients += 1
        log.warning("event=client_closed client=%s code=%s", client.name, fault.code)
        self.hub.disconnect(client)
        client.dropped = True  # nothing more is sent to it
        client.transport.send(encode(ErrorMessage(code=fault.code, message=str(fault))))
        if writer.transport.is_closing() or not writer.can_write_eof():
            return
        writer.write_eof()
        # Closing with unread input would reset the connection and could destroy the error line
        # before the client reads it: read and discard until the client closes, for a moment.
        deadline = time.monotonic() + LINGER_S
        with contextlib.suppress(TimeoutError, ConnectionError):
            while time.monotonic() < deadline:
                left = deadline - time.monotonic()
                if not await asyncio.wait_for(reader.read(MAX_LINE_BYTES), max(left, 0.0)):
                    break

    async def _authenticate(self, lines: LineReader, client: Client) -> bool:
        try:
            line = await lines.readline(AUTH_TIMEOUT_S)
            message = decode_client(line) if line is not None else None
        except (TimeoutError, ProtocolError, ConnectionError):
            message = None
        ok = isinstance(message, Auth) and hmac.compare_digest(
            message.token.encode("utf-8"), (self.token or "").encode("utf-8")
        )
        if not ok:
            self.hub.counters.auth_failures += 1
            log.warning("event=auth_failed client=%s", client.name)
            error = ErrorMessage(code="auth_required", message="authentication required")
            client.transport.send(encode(error))
            client.transport.close()
        return ok

    async def close_connections(self, timeout_s: float = 1.0) -> None:
        """End every connection (after the hub drained its clients) and wait for its task.

        Each client is marked gone (a replay in progress stops at its next chunk, nothing more is
        sent) and its transport aborted, so its task sees the end of its stream and returns on
        its own; a task still running after `timeout_s` is cancelled (and ends quietly).
        """
        for client in list(self._connections.values()):
            client.dropped = True
            client.transport.abort()
        tasks = list(self._connections)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self.server is not None:
            await self.server.wait_closed()
