"""The wire protocol between the live runner and its clients (ARCHITECTURE.md, "Wire protocol").

UTF-8 JSON Lines over a Unix domain socket (``SOCK_STREAM``) or TCP: one object per line, ``\\n``
terminated. Server messages: ``hello``, ``signal``, ``heartbeat``, ``status``, ``error``. Client
messages: ``auth`` (first line, when a token is required), ``resume``, ``status``.

Messages are validated on encode and on decode, so a malformed line is a clear error naming the
field, never a half-understood message.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

PROTOCOL_VERSION = 1
MAX_LINE_BYTES = 64 * 1024


class ProtocolError(ValueError):
    """A line that is not a valid protocol message."""


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StreamInfo(_Message):
    """One frozen parameter set a runner serves (an entry of the hello's `streams`)."""

    symbol: str
    timeframe: str
    strategy: str
    params_id: str


class Hello(_Message):
    """First line a server sends on every connection.

    `streams` lists every frozen set the runner serves (one entry for a one-stream runner);
    `strategy`, `params_id`, `symbol` and `timeframe` are those of its first stream, as before.
    """

    type: Literal["hello"] = "hello"
    protocol: int = PROTOCOL_VERSION
    strategy: str
    params_id: str
    symbol: str
    timeframe: str
    last_seq: int
    stream: str | None = Field(
        default=None, description="id of the journal: a new or lost journal is a new stream"
    )
    streams: list[StreamInfo] | None = Field(
        default=None, description="the frozen sets served, in order (None: a runner before them)"
    )


class Signal(_Message):
    """One BUY/SELL decision on one closed candle."""

    type: Literal["signal"] = "signal"
    seq: int = Field(ge=1)
    signal: Literal["BUY", "SELL"]
    symbol: str
    timeframe: str
    candle_ts: int
    price: float
    confidence: float = Field(ge=0.0, le=1.0)
    reasons: list[str]
    strategy: str
    params_id: str
    emitted_at: float
    stale: bool = False


class Heartbeat(_Message):
    """Sent at a fixed interval so clients can tell a quiet market from a dead runner."""

    type: Literal["heartbeat"] = "heartbeat"
    last_seq: int
    ts: float
    stalled: bool = False


class Status(_Message):
    """Counters and latency figures, in reply to a client's ``status`` request."""

    type: Literal["status"] = "status"
    data: dict[str, Any]


class ErrorMessage(_Message):
    """A server's reply to a bad client line (the connection stays open unless stated).

    `code` is stable for programs: ``bad_request`` (a line that is not a valid message),
    ``auth_required``, ``unknown_seq`` (a resume beyond this stream's journal), ``line_too_long``,
    ``idle_partial_line``, ``too_many_clients``.
    """

    type: Literal["error"] = "error"
    code: str = "bad_request"
    message: str


class Auth(_Message):
    """A client's first line when the server requires a shared token."""

    type: Literal["auth"] = "auth"
    token: str


class Resume(_Message):
    """A client asks for every signal after `since_seq`, in order, then the live stream."""

    type: Literal["resume"] = "resume"
    since_seq: int = Field(ge=0)


class StatusRequest(_Message):
    """A client asks for the server's status."""

    type: Literal["status"] = "status"


ServerMessage = Annotated[
    Hello | Signal | Heartbeat | Status | ErrorMessage, Field(discriminator="type")
]
ClientMessage = Annotated[Auth | Resume | StatusRequest, Field(discriminator="type")]
_SERVER = TypeAdapter(ServerMessage)
_CLIENT = TypeAdapter(ClientMessage)


def encode(message: _Message) -> bytes:
    """Return the message as one JSON line (compact, UTF-8, newline-terminated)."""
    payload = message.model_dump(mode="json")
    for key, value in payload.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ProtocolError(f"{message.__class__.__name__}.{key} is not finite: {value}")
    return (json.dumps(payload, separators=(",", ":"), allow_nan=False) + "\n").encode("utf-8")


def _decode(line: bytes | str, adapter: TypeAdapter, side: str) -> Any:
    if isinstance(line, bytes):
        if len(line) > MAX_LINE_BYTES:
            raise ProtocolError(f"{side} line longer than {MAX_LINE_BYTES} bytes")
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"{side} line is not UTF-8: {exc}") from None
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"{side} line is not JSON: {exc.msg} at column {exc.colno}") from None
    try:
        return adapter.validate_python(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "message"
        raise ProtocolError(f"{side} message invalid at {where}: {first['msg']}") from None


def decode_server(line: bytes | str) -> ServerMessage:
    """Parse one line a server sent."""
    return _decode(line, _SERVER, "server")


def decode_client(line: bytes | str) -> ClientMessage:
    """Parse one line a client sent."""
    return _decode(line, _CLIENT, "client")
