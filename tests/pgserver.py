"""A real PostgreSQL server for the tests: Debian's binaries, a temporary cluster, a free port.

`make postgresql` installs the packages where missing. initdb and pg_ctl refuse to run as root,
so as root they run as the ``postgres`` user (runuser) in a directory that user owns. The
server listens on 127.0.0.1 only, trusts local connections and is stopped by the fixture's
finalizer.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PgServer:
    """A running cluster: `url(db)` gives an optuna/SQLAlchemy URL of a fresh database."""

    directory: Path
    port: int
    as_user: list[str]
    pg_ctl: str

    def url(self, database: str) -> str:
        import psycopg

        with psycopg.connect(self._dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _dsn(self, database: str) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={database}"

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        data = str(self.directory / "data")
        command = [*self.as_user, self.pg_ctl, "-D", data, *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        done = self.ctl("-o", options, "-l", str(self.directory / "server.log"), "-w", "start")
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {done.stderr.strip() or done.stdout}")

    def restart_after(self, seconds: float) -> None:
        """Stop the server, leave the database unreachable for `seconds`, start it again."""
        self.ctl("-m", "fast", "-w", "stop")
        time.sleep(seconds)
        self.start()

    def stop(self) -> None:
        """Stop the server and delete its cluster."""
        self.ctl("-m", "fast", "-w", "stop")
        shutil.rmtree(self.directory, ignore_errors=True)


def _install() -> None:
    subprocess.run(["make", "-C", str(ROOT), "postgresql"], capture_output=True, text=True,
                   timeout=900)  # fmt: skip


def start_server() -> PgServer:
    """Start a server or skip, saying why it cannot be had."""
    if _bin("initdb") is None or _bin("pg_ctl") is None:
        _install()
    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL unavailable: no initdb/pg_ctl, and `make postgresql` failed")
    as_user: list[str] = []
    directory = Path(tempfile.mkdtemp(prefix="signals-pg-"))
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("PostgreSQL refuses root, and runuser is missing to run it as postgres")
        own_or_skip(directory, "postgres", "PostgreSQL")
        as_user = ["runuser", "-u", "postgres", "--"]
    command = [*as_user, initdb, "-D", str(directory / "data"), "-A", "trust", "-U", "postgres",
               "--no-sync"]  # fmt: skip
    initialise_or_skip(command, directory, "PostgreSQL initdb")
    return start_or_skip(PgServer(directory, free_port(), as_user, pg_ctl), directory, "PostgreSQL")


class _Server(Protocol):
    def start(self) -> None: ...


S = TypeVar("S", bound=_Server)


def own_or_skip(directory: Path, user: str, what: str) -> None:
    """Give `directory` to the service `user` (`what` refuses to run as root), or skip."""
    try:
        shutil.chown(directory, user=user, group=user)
    except (LookupError, PermissionError) as exc:
        pytest.skip(f"{what} refuses root, and no {user} user to run it as ({exc})")


def initialise_or_skip(command: list[str], directory: Path, what: str) -> None:
    """Run a server's data-directory initialisation `command`; skip (and clean up) if it fails."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        shutil.rmtree(directory, ignore_errors=True)
        pytest.skip(f"{what} failed: {(done.stderr or done.stdout).strip()[-300:]}")


def start_or_skip(server: S, directory: Path, what: str) -> S:
    """Start `server` and return it; skip (and clean up) if it cannot be started."""
    try:
        server.start()
    except RuntimeError as exc:
        shutil.rmtree(directory, ignore_errors=True)
        pytest.skip(f"{what} could not be started: {exc}")
    return server
