"""Serve the signal stream on sockets: accept, frame lines, authenticate, limit connections.

Each connection is a `Client` of the `Hub` (`live.hub`), which sends it the stream; this module
turns a Unix or TCP socket into those clients and their request lines.

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
from collections.abc import Callable

from live.hub import Client, Hub, StreamTransport
from signals.protocol import (
    MAX_LINE_BYTES,
    Auth,
    ErrorMessage,
    ProtocolError,
    decode_client,
    encode,
)

log = logging.getLogger(__name__)
AUTH_TIMEOUT_S = 5.0
IDLE_LINE_S = 5.0  # bytes without a newline for longer close the connection
LINGER_S = 1.0  # after a fault's error line, unread input is discarded this long before closing
MAX_CLIENTS = 256
REFUSAL_LOG_INTERVAL_S = 1.0  # at most one client_refused line per interval (with a count)


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
