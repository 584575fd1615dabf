"""A hand-edited frozen file is refused by promote, the live runner and paper report (processes).

And a file written before checksums (no ``checksum`` field) follows the policy: it loads with a
one-line warning naming it, and ``signals promote`` writes it sealed.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from signals.frozen import freeze, load_frozen, write_frozen
from tests.candles import random_walk
from tests.livekit import (
    ROOT,
    runner_log,
    seed_db,
    start_runner,
    status,
    stop_runner,
    wait_listening,
)

# what a walk-forward would record: fails the default gate on dsr and trades
METRICS: dict[str, float | None] = {
    "sharpe": 1.2,
    "dsr": 0.24,
    "pbo": 0.1,
    "trades": 10.0,
    "max_drawdown": -0.1,
}
LENIENT = ("--min-sharpe", "0", "--min-dsr", "0", "--min-trades", "0")


def signals(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a subprocess."""
    cmd = [sys.executable, "-m", "signals", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)


def sealed(path: Path) -> Path:
    """Write a frozen file as the tools do (sealed)."""
    frozen = freeze(strategy="ema_cross", timeframe="1m", params={"fast": 2, "slow": 5},
                    metrics=METRICS)  # fmt: skip
    return write_frozen(frozen, path)


def hand_edit(path: Path) -> Path:
    """Raise dsr and trades in an editor: the text changes, nothing else does."""
    text = path.read_text()
    edited = text.replace('"dsr": 0.24', '"dsr": 0.99').replace('"trades": 10.0', '"trades": 25.0')
    assert edited != text
    path.write_text(edited)
    return path


def unsealed(path: Path) -> Path:
    """Write the file as the code before checksums did: the same content, no checksum."""
    doc = json.loads(sealed(path).read_text())
    del doc["checksum"]
    path.write_text(json.dumps(doc, sort_keys=True, indent=2) + "\n")
    return path


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("db") / "candles.db"
    seed_db(path, random_walk(300, seed=5), "1m", 300)
    return path


def test_promote_refuses_a_hand_raised_metric(tmp_path: Path) -> None:
    source, target = sealed(tmp_path / "frozen.json"), tmp_path / "live.json"
    honest = signals("promote", str(source), "--to", str(target))
    assert honest.returncode == 1 and "dsr 0.24 < minimum" in honest.stderr
    done = signals("promote", str(hand_edit(source)), "--to", str(target))
    assert done.returncode == 2, done.stderr
    [line] = error_lines(done.stderr)
    assert line.startswith(f"error: {source}: ") and "checksum" in line
    assert "passed the gate" not in done.stdout + done.stderr and not target.exists()
    assert "Traceback" not in done.stderr


def test_the_runner_refuses_an_edited_file_at_start(tmp_path: Path, db: Path) -> None:
    frozen, sock = hand_edit(sealed(tmp_path / "frozen.json")), tmp_path / "live.sock"
    done = signals("live", "--params", str(frozen), "--db", str(db), "--socket", str(sock))
    assert done.returncode == 2
    [line] = error_lines(done.stderr)
    assert line.startswith(f"error: {frozen}: ") and "checksum" in line
    assert "Traceback" not in done.stderr and not sock.exists()


def test_sighup_with_an_edited_file_keeps_the_old_one(tmp_path: Path, db: Path) -> None:
    frozen, sock = sealed(tmp_path / "frozen.json"), tmp_path / "live.sock"
    proc = start_runner(frozen, db, sock)
    try:
        wait_listening(sock, proc)
        before = status(sock)
        hand_edit(frozen)
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while status(sock)["reload_failures"] < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        after = status(sock)
        assert after["reload_failures"] == 1 and after["reloads"] == 0
        assert after["params_id"] == before["params_id"] and proc.poll() is None
        [line] = [x for x in runner_log(sock).splitlines() if "event=reload_failed" in x]
        assert str(frozen) in line and "checksum" in line
    finally:
        stop_runner(proc, signal.SIGKILL)


def test_paper_report_refuses_an_edited_file(tmp_path: Path, db: Path) -> None:
    frozen = hand_edit(sealed(tmp_path / "frozen.json"))
    done = signals("paper", "report", "--ledger", str(tmp_path / "paper.db"), "--db", str(db),
                   "--params", str(frozen))  # fmt: skip
    assert done.returncode == 2
    [line] = error_lines(done.stderr)
    assert line.startswith(f"error: {frozen}: ") and "checksum" in line


def test_an_old_file_warns_and_promote_seals_it(tmp_path: Path) -> None:
    source, target = unsealed(tmp_path / "old.json"), tmp_path / "live.json"
    done = signals("promote", str(source), "--to", str(target), *LENIENT)
    assert done.returncode == 0, done.stderr
    [warning] = [line for line in done.stderr.splitlines() if "no checksum" in line]
    assert f"{source}: no checksum" in warning and "signals promote" in warning
    promoted = json.loads(target.read_text())
    assert promoted["checksum"] and promoted["promotion"]["passed"]
    assert load_frozen(target).params_id == load_frozen(source).params_id
    again = signals("promote", str(target), "--to", str(target), *LENIENT)  # sealed: no warning
    assert again.returncode == 0 and "no checksum" not in again.stderr


def test_the_runner_runs_an_old_file_with_a_warning(tmp_path: Path, db: Path) -> None:
    frozen, sock = unsealed(tmp_path / "old.json"), tmp_path / "live.sock"
    proc = start_runner(frozen, db, sock)
    try:
        wait_listening(sock, proc)
        assert status(sock)["params_id"] == load_frozen(frozen).params_id
        [line] = [x for x in runner_log(sock).splitlines() if "no checksum" in x]
        assert "level=warning" in line and str(frozen) in line
    finally:
        stop_runner(proc, signal.SIGKILL)
