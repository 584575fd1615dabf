"""A pipeline's own candle table, mapped by ``data.source``: replay, live, paper and its report.

The "seed pipeline" schema: one ``candles`` table with ``symbol, timeframe, timestamp`` (in
milliseconds) and OHLCV, no ``closed``, ``trades`` or ``buy_volume`` column and no unique key.
Every command that reads (or, for ``replay``, writes) candles is given ``--config``.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from tests.candles import random_walk
from tests.livekit import (
    ROOT,
    runner_log,
    start_runner,
    stop_runner,
    wait_caught_up,
    wait_listening,
    write_frozen_file,
)

SEED_DDL = (
    "CREATE TABLE candles (symbol TEXT, timeframe TEXT, timestamp INTEGER, open REAL, "
    "high REAL, low REAL, close REAL, volume REAL)"
)
CONFIG = """
data:
  source:
    timestamp_unit: ms
    columns: {closed: null, trades: null, buy_volume: null}
"""
COLUMNS = ["symbol", "timeframe", "timestamp", "open", "high", "low", "close", "volume"]


def seed_pipeline_db(path: Path, candles: pd.DataFrame | None = None) -> None:
    """Create the pipeline's table (and fill it with `candles`, timestamps in ms)."""
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(SEED_DDL)
        if candles is not None:
            conn.executemany(
                "INSERT INTO candles VALUES ('BTCUSDT', '1m', ?, ?, ?, ?, ?, ?)",
                [(int(ts.timestamp()) * 1000, *row) for ts, row in zip(
                    candles.index, candles[["open", "high", "low", "close", "volume"]].to_numpy(),
                    strict=True)],
            )  # fmt: skip


def signals_cli(*args: object, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``signals ARGS`` from the repository root."""
    return subprocess.run([sys.executable, "-m", "signals", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def rows(db: Path, sql: str) -> list[tuple]:
    """Run a read-only query."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return conn.execute(sql).fetchall()


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll `condition` until it holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def ledger_count(ledger: Path, sql: str) -> int:
    """A count from the ledger, 0 while it does not exist yet."""
    try:
        return int(rows(ledger, sql)[0][0])
    except sqlite3.Error:
        return 0


def test_replay_live_paper_and_report_on_a_pipeline_schema(tmp_path: Path) -> None:
    candles = random_walk(320, seed=3)
    src, dst, sock = tmp_path / "history.db", tmp_path / "pipeline.db", tmp_path / "live.sock"
    ledger, config = tmp_path / "paper.db", tmp_path / "signals.yaml"
    config.write_text(CONFIG)
    seed_pipeline_db(src, candles)
    seed_pipeline_db(dst)  # the pipeline's table exists, empty
    frozen = write_frozen_file(tmp_path / "ema.json", "ema_cross", "1m", {"fast": 2, "slow": 5})
    epoch = [int(ts.timestamp()) for ts in candles.index]

    def replay(*args: object) -> None:
        done = signals_cli("replay", "--config", config, "--from-db", src, "--to-db", dst,
                           "-t", "1m", "--quiet", *args)  # fmt: skip
        assert done.returncode == 0, done.stderr

    replay("--to", epoch[199], "--warmup", 199)
    replay("--to", epoch[199], "--warmup", 199)  # again: the same rows, not twice
    # written as the pipeline writes: its columns only, ms timestamps, one row per candle
    assert [c[1] for c in rows(dst, "PRAGMA table_info(candles)")] == COLUMNS
    stored = rows(dst, "SELECT timestamp, open, close FROM candles ORDER BY timestamp")
    assert [r[0] for r in stored] == [ts * 1000 for ts in epoch[:200]]
    assert [r[1:] for r in stored] == list(
        zip(candles["open"][:200].tolist(), candles["close"][:200].tolist(), strict=True)
    )
    # no `closed` column: a candle is decided once a newer one has been there --settle seconds
    runner = start_runner(frozen, dst, sock, "--config", str(config), "--journal",
                          str(tmp_path / "journal.db"), "--settle", "0.5")  # fmt: skip
    bot = None
    try:
        wait_listening(sock, runner)
        bot = subprocess.Popen(
            [sys.executable, "-m", "signals", "paper", "--config", str(config), "--socket",
             str(sock), "--db", str(dst), "--ledger", str(ledger), "--since-seq", "0"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        wait_for(lambda: ledger_count(ledger, "SELECT COUNT(*) FROM meta WHERE key='stream'") == 1,
                 "the bot to connect")  # fmt: skip
        replay("--from", epoch[200], "--to", epoch[300])  # 300 lets 299 settle
        last_seq = wait_caught_up(sock, epoch[299])["last_seq"]
        assert last_seq >= 4, runner_log(sock)
        wait_for(lambda: ledger_count(ledger, "SELECT COUNT(*) FROM signals "
                                      "WHERE status != 'pending'") >= last_seq - 1,
                 "the bot to fill its signals")  # fmt: skip
        bot.send_signal(signal.SIGTERM)
        _, stderr = bot.communicate(timeout=10)
        assert bot.returncode == 0 and "Traceback" not in stderr, stderr
    finally:
        if bot is not None and bot.poll() is None:
            bot.kill()
            bot.communicate()
        stop_runner(runner)
    assert ledger_count(ledger, "SELECT COUNT(*) FROM fills") >= 2
    report = signals_cli("paper", "report", "--config", config, "--ledger", ledger, "--db", dst,
                         "--params", frozen)  # fmt: skip
    assert report.returncode == 0, report.stdout + report.stderr
    assert "AGREE:" in report.stdout
    summary = signals_cli("paper", "report", "--config", config, "--ledger", ledger, "--db", dst)
    assert summary.returncode == 0 and "total return" in summary.stdout, summary.stderr


def test_demo_live_on_a_pipeline_schema(tmp_path: Path) -> None:
    # demo-live with --config: the replayed database, the runner and the bot all use the
    # mapping; the newest candle settles only with a successor, so the demo waits for the one
    # before it, and the bot's trades still agree with the backtest.
    src, config = tmp_path / "history.db", tmp_path / "signals.yaml"
    config.write_text(CONFIG)
    seed_pipeline_db(src, random_walk(900, seed=5))
    done = signals_cli("demo-live", "--db", src, "--out", tmp_path / "live", "--config", config,
                       "-s", "ema_cross", "-t", "1m", "--hours", "2", timeout=180)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "AGREE" in done.stdout
    assert [c[1] for c in rows(tmp_path / "live" / "candles.db", "PRAGMA table_info(candles)")] == (
        COLUMNS
    )
