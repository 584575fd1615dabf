"""The live part of the demo: replay a day of candles through ``signals live`` into ``signals
paper`` and compare the paper bot's trades with a backtest of the same frozen parameters.

Real processes and a real Unix socket, as in production: a writer commits candles one by one
into a fresh database, the runner follows it and streams signals, the paper bot fills them at
the next open and keeps a ledger, and the comparison says whether both agree trade by trade.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from research.backtest.versus_paper import Comparison, compare_with_backtest
from signals.config import load_settings
from signals.data.load import load_candles
from signals.data.replay import replay
from signals.frozen import freeze, write_frozen
from signals.protocol import Status, StatusRequest, decode_server, encode
from signals.timeframes import timeframe_seconds
from strategies import get_strategy


def _wait(condition: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def runner_status(sock: Path) -> dict:
    """Connect to the runner, read its hello, ask for status; return the status data."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(5.0)
        client.connect(str(sock))
        reader = client.makefile("rb")
        decode_server(reader.readline())  # hello
        client.sendall(encode(StatusRequest()))
        while True:
            message = decode_server(reader.readline())
            if isinstance(message, Status):
                return dict(message.data)


def _ledger_max_seq(ledger: Path) -> int:
    if not ledger.exists():
        return -1
    with contextlib.closing(sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)) as conn:
        try:
            row = conn.execute("SELECT MAX(seq) FROM signals").fetchone()
        except sqlite3.Error:
            return -1
    return -1 if row[0] is None else int(row[0])


def _caught_up(sock: Path, last_ts: int) -> bool:
    try:
        return runner_status(sock).get("last_candle_ts") == last_ts
    except (OSError, ValueError):
        return False


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    from signals.cli.argv import signals_command

    return subprocess.Popen(signals_command(*args), stdout=handle, stderr=handle)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def live_demo(
    *, src_db: Path, out: Path, strategy: str = "scalping", timeframe: str = "1m",
    hours: float = 24.0, speed: float | None = 400.0, symbol: str = "BTCUSDT",
    config: Path | None = None,
) -> Comparison:  # fmt: skip
    """Replay the last `hours` of `src_db` through the runner into the paper bot; compare.

    With `config`, its ``data.source`` is the layout of both databases (read and written
    through it), and the runner and the bot are started with ``--config`` too.
    """
    settings = load_settings(config)
    source = settings.data.source
    with_config = ["--config", str(config)] if config is not None else []
    out.mkdir(parents=True, exist_ok=True)
    dst, sock, ledger = out / "candles.db", out / "live.sock", out / "paper.db"
    for path in (dst, ledger, out / "journal.db"):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    frozen_path = write_frozen(
        freeze(strategy=strategy, timeframe=timeframe, params={}), out / "frozen.json"
    )
    impl = get_strategy(strategy)
    candles = load_candles(src_db, symbol=symbol, timeframe=timeframe, settings=settings)
    count = int(hours * 3600 // timeframe_seconds(timeframe))
    warm = impl.lookback(impl.params()) + 100
    if len(candles) < count + warm + 1:
        raise ValueError(
            f"{src_db} holds {len(candles)} {timeframe} candles; need {count + warm + 1}"
        )
    start, end = candles.index[-count - 1], candles.index[-1]
    replay(from_db=src_db, to_db=dst, timeframe=timeframe, symbol=symbol, start=start, end=start,
           warmup=warm, progress=False, source=source)  # fmt: skip
    runner = _start(["live", "--params", str(frozen_path), "--db", str(dst), "--socket", str(sock),
                     "--journal", str(out / "journal.db"), *with_config],
                    out / "runner.log")  # fmt: skip
    bot = None
    try:
        _wait(lambda: _caught_up(sock, int(start.timestamp())), "the runner to listen")
        bot = _start(["paper", "--socket", str(sock), "--db", str(dst), "--ledger", str(ledger),
                      "--since-seq", "0", *with_config], out / "paper.log")  # fmt: skip
        _wait(lambda: ledger.exists(), "the paper bot to connect")
        print(f"replaying {count} {timeframe} candles {start:%Y-%m-%d %H:%M} .. "
              f"{end:%Y-%m-%d %H:%M} UTC into {dst} while signals live and signals paper run",
              flush=True)  # fmt: skip
        replay(from_db=src_db, to_db=dst, timeframe=timeframe, symbol=symbol,
               start=start + (candles.index[1] - candles.index[0]), end=end, speed=speed,
               progress=False, source=source)  # fmt: skip
        # without a `closed` column the newest candle waits for a successor to settle (live's
        # --settle rule): the runner is caught up when it has decided the one before it
        last = end if source.columns.closed else candles.index[-2]
        _wait(lambda: _caught_up(sock, int(last.timestamp())), "the runner to catch up")
        last_seq = int(runner_status(sock).get("last_seq", 0))
        _wait(lambda: _ledger_max_seq(ledger) >= last_seq, "the paper bot to record every signal")
        time.sleep(0.5)  # let the bot fill what the last candles allow
    finally:
        if bot is not None:
            _stop(bot)
        _stop(runner)
    comparison = compare_with_backtest(ledger, dst, frozen_path, source=source)
    (out / "comparison.json").write_text(
        json.dumps({"ok": comparison.ok, "verdict": comparison.verdict()}, indent=2)
    )
    from research.render.paper_report import write_paper_report

    write_paper_report(comparison, out / "paper.html")
    return comparison
