"""A real MariaDB (MySQL) server for the tests: Debian's binaries, a temporary datadir, a free port.

`make mariadb` installs the packages where missing. As root the server drops to the ``mysql``
user (``--user``) in a directory that user owns. It listens on 127.0.0.1 only, its root
account has no password, and the fixture's finalizer stops it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.pgserver import ROOT, free_port, initialise_or_skip, own_or_skip, start_or_skip


def _bin(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name) or next(
            (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None
        )
        if found:
            return found
    return None


@dataclass
class MySqlServer:
    """A running server: `url(db)` gives an optuna/SQLAlchemy URL of a fresh database."""

    directory: Path
    port: int
    server: str
    user: list[str]
    process: subprocess.Popen | None = field(default=None, repr=False)

    def _connect(self, database: str | None = None) -> Any:
        import pymysql

        return pymysql.connect(host="127.0.0.1", port=self.port, user="root", password="",
                               database=database, connect_timeout=2)  # fmt: skip

    def url(self, database: str) -> str:
        with self._connect() as conn, conn.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{database}`")
        return f"mysql+pymysql://root@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        data = self.directory / "data"
        command = [
            self.server, "--no-defaults", f"--datadir={data}", f"--port={self.port}",
            "--bind-address=127.0.0.1", f"--socket={self.directory / 'mysql.sock'}",
            f"--pid-file={self.directory / 'mysql.pid'}", "--skip-log-bin",
            f"--log-error={self.directory / 'server.log'}", *self.user,
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                self._connect().close()
                return
            except Exception:
                time.sleep(0.2)
        log = (self.directory / "server.log").read_text(errors="replace")[-300:]
        self.halt()
        raise RuntimeError(f"mariadbd did not start: {log}")

    def halt(self) -> None:
        """Stop the server (SIGTERM, a clean shutdown), keeping its data."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def restart_after(self, seconds: float) -> None:
        """Stop the server, leave the database unreachable for `seconds`, start it again."""
        self.halt()
        time.sleep(seconds)
        self.start()

    def stop(self) -> None:
        """Stop the server and delete its data."""
        self.halt()
        shutil.rmtree(self.directory, ignore_errors=True)


def start_server() -> MySqlServer:
    """Start a server or skip, saying why it cannot be had."""
    install = ("mariadb-install-db", "mysql_install_db")
    if _bin("mariadbd", "mysqld") is None or _bin(*install) is None:
        subprocess.run(["make", "-C", str(ROOT), "mariadb"], capture_output=True, text=True,
                       timeout=900)  # fmt: skip
    server, install_db = _bin("mariadbd", "mysqld"), _bin(*install)
    if server is None or install_db is None:
        pytest.skip("MariaDB unavailable: no mariadbd/mariadb-install-db, `make mariadb` failed")
    try:
        import pymysql  # noqa: F401
    except ImportError:
        pytest.skip("PyMySQL is not installed (a project dependency: pip install -e .)")
    directory = Path(tempfile.mkdtemp(prefix="signals-my-"))
    user: list[str] = []
    if os.geteuid() == 0:  # mariadbd refuses to run as root unless told which user to become
        own_or_skip(directory, "mysql", "MariaDB")
        user = ["--user=mysql"]
    command = [install_db, "--no-defaults", f"--datadir={directory / 'data'}", *user,
               "--auth-root-authentication-method=normal", "--skip-test-db"]  # fmt: skip
    initialise_or_skip(command, directory, "mariadb-install-db")
    return start_or_skip(MySqlServer(directory, free_port(), server, user), directory, "MariaDB")
