"""The paper bot's socket client: connect, read the hello, resume, read lines, reconnect.

It connects to the runner's Unix socket, hands the hello to its handler (which says the seq to
resume after), sends ``resume``, then hands it every line. A lost connection (EOF, no line for
`idle_timeout` seconds, a reset) is retried with exponential backoff between `reconnect_min`
and `reconnect_max` seconds; each new connection resumes by the handler's last recorded seq.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Protocol

from paper.errors import PaperError
from signals.protocol import MAX_LINE_BYTES, Hello, ProtocolError, Resume, decode_server, encode

log = logging.getLogger("paper.bot")  # the bot's one logger name: its log lines stay as they were


class Handler(Protocol):
    """What the connection hands the runner's lines to (the `PaperBot`)."""

    def on_hello(self, hello: Hello) -> int:
        """Check the runner's hello; return the seq to resume after."""

    def handle_line(self, line: bytes) -> None:
        """Process one line from the runner after the hello."""


class RunnerConnection:
    """Connect to the runner's socket and feed its lines to `handler`, reconnecting with backoff."""

    def __init__(
        self,
        socket: Path,
        handler: Handler,
        *,
        reconnect_min: float,
        reconnect_max: float,
        idle_timeout: float,
    ) -> None:
        self.socket = socket
        self.handler = handler
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.idle_timeout = idle_timeout
        self.connections = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Connect (and reconnect) until `stop` is set."""
        attempt = 0
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_unix_connection(
                    str(self.socket), limit=4 * MAX_LINE_BYTES
                )
            except OSError as exc:
                delay = min(self.reconnect_max, self.reconnect_min * 2**attempt)
                attempt += 1
                log.info("cannot connect to %s (%s); retrying in %.2f s", self.socket,
                         exc.strerror or exc, delay)  # fmt: skip
                await _wait(stop, delay)
                continue
            attempt = 0
            self.connections += 1
            try:
                await self._session(reader, writer, stop)
            except (ConnectionError, TimeoutError, ValueError) as exc:
                log.warning("connection lost: %s", exc or type(exc).__name__)
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

    async def _session(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stop: asyncio.Event
    ) -> None:
        first = await self._read(reader, stop)
        if first is None:
            return
        hello = decode_server(first)
        if not isinstance(hello, Hello):
            raise PaperError(f"expected hello from the runner, got {hello.type}")
        since = self.handler.on_hello(hello)
        writer.write(encode(Resume(since_seq=since)))
        await writer.drain()
        log.info("connected to %s (%s %s); resuming after seq %d", self.socket,
                 hello.strategy, hello.timeframe, since)  # fmt: skip
        while not stop.is_set():
            line = await self._read(reader, stop)
            if line is None:
                return
            try:
                self.handler.handle_line(line)
            except ProtocolError as exc:
                log.warning("ignoring a bad line from the runner: %s", exc)

    async def _read(self, reader: asyncio.StreamReader, stop: asyncio.Event) -> bytes | None:
        """Return the next line; None when stopping; raise ConnectionError at EOF or timeout."""
        read = asyncio.ensure_future(reader.readline())
        stopped = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait(
            {read, stopped}, timeout=self.idle_timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if read not in done:
            read.cancel()
            stopped.cancel()
            if stop.is_set():
                return None
            raise TimeoutError(f"no line from the runner in {self.idle_timeout:g} s")
        stopped.cancel()
        line = read.result()
        if not line.endswith(b"\n"):
            raise ConnectionError("runner closed the connection")
        return line


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
