"""Listening sockets of the runner and their security checks (no asyncio, no protocol).

Unix socket: created with mode 0660 (the umask is set around ``bind`` so it is never wider,
even for an instant), optionally handed to a group; a path owned by another user is refused, a
live socket of ours is refused ("already running"), a stale socket of ours is removed.

TCP: bound to 127.0.0.1 unless configured; a non-loopback bind requires a shared token.
"""

from __future__ import annotations

import contextlib
import grp
import ipaddress
import os
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

from signals.errors import ConfigError, SignalsError

SOCKET_MODE = 0o660


class SocketError(SignalsError):
    """A listening socket cannot be created safely."""


@dataclass(frozen=True)
class TcpAddress:
    """Host and port of the TCP listener."""

    host: str
    port: int

    @property
    def loopback(self) -> bool:
        """Return True when the host is a loopback address (or ``localhost``)."""
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    """Return True for ``localhost`` and loopback IP addresses."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_tcp(value: str) -> TcpAddress:
    """Parse ``HOST:PORT`` or ``PORT`` (host 127.0.0.1); ``[::1]:PORT`` for IPv6."""
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", value
    host = host.strip("[]") or "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        raise ConfigError(f"--tcp {value!r}: expected HOST:PORT") from None
    if not 0 <= number <= 65535:
        raise ConfigError(f"--tcp {value!r}: port out of range")
    return TcpAddress(host, number)


def check_tcp(address: TcpAddress, token: str | None) -> None:
    """Refuse a non-loopback TCP bind without a shared token (raise `ConfigError`)."""
    if not address.loopback and not token:
        raise ConfigError(
            f"TCP bind to {address.host}:{address.port} is not loopback: it requires a shared "
            "token (--token or live.token), which clients send in a first `auth` line"
        )


def prepare_unix_path(path: Path) -> None:
    """Make `path` free for our socket, or raise `SocketError` saying why it is not."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if info.st_uid != os.getuid():
        raise SocketError(
            f"{path}: exists and is owned by uid {info.st_uid}, not us (uid {os.getuid()}); "
            "refusing to touch it"
        )
    if not stat.S_ISSOCK(info.st_mode):
        raise SocketError(f"{path}: exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(0.5)
        probe.connect(str(path))
    except OSError:
        path.unlink(missing_ok=True)  # stale: nobody listens on it
        return
    finally:
        probe.close()
    raise SocketError(f"{path}: another process is already listening on this socket")


def bind_unix(path: Path, *, group: str | None = None) -> socket.socket:
    """Create, bind and listen on a Unix stream socket with mode 0660 (and `group`, if given)."""
    gid = _group_id(group) if group else -1
    prepare_unix_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o777 & ~SOCKET_MODE)
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        raise SocketError(f"{path}: cannot bind: {exc.strerror}") from None
    finally:
        os.umask(old)
    try:
        os.chmod(path, SOCKET_MODE)
        if gid >= 0:
            os.chown(path, -1, gid)
        sock.listen(128)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        path.unlink(missing_ok=True)
        raise SocketError(f"{path}: cannot set up the socket: {exc.strerror}") from None
    return sock


def _group_id(group: str) -> int:
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ConfigError(f"socket group {group!r} does not exist") from None


def socket_inode(path: Path) -> int:
    """Return the inode of the socket file at `path` (to recognise it as ours later)."""
    return path.lstat().st_ino


def remove_unix(path: Path, inode: int | None) -> None:
    """Remove our socket file if it is still the one we bound (same inode)."""
    with contextlib.suppress(OSError):
        info = path.lstat()
        if stat.S_ISSOCK(info.st_mode) and info.st_ino == inode:
            path.unlink()


def bind_tcp(address: TcpAddress) -> socket.socket:
    """Create, bind and listen on a TCP socket (TCP_NODELAY is set on each accepted socket)."""
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address.host, address.port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise SocketError(f"cannot listen on {address.host}:{address.port}: {exc}") from None
    sock.setblocking(False)
    return sock


def sd_notify(message: str) -> bool:
    """Send `message` (e.g. ``READY=1``) to systemd when run with Type=notify; else do nothing."""
    target = os.environ.get("NOTIFY_SOCKET")
    if not target:
        return False
    address = "\0" + target[1:] if target.startswith("@") else target
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(message.encode("utf-8"), address)
        except OSError:
            return False
    return True
