"""Replay historical candles into a database candle by candle, as the pipeline writes them.

For demos, tests and benchmarks of the live runner: every candle is written in its own
transaction (one commit, so a follower sees ``PRAGMA data_version`` change once per candle),
optionally paced at `speed` candles per second (candle k, counted from 1, is committed at
start + k / speed), optionally first as a *forming* candle (``closed = 0``, open = high = low =
close = the open, no volume: a candle that just opened) and then as the closed candle (main
timeframe only). ``warmup`` first bulk-copies the candles before the replayed span in one
transaction, so a runner started on the destination has history to warm up on.

With ``also_timeframes`` the candles of other timeframes are interleaved in the order they close
(a 5m candle is written right after the 1m candle that closes at the same time); pacing counts
candles of the main `timeframe` only.

With a `source` (``data.source`` of the config) both databases have that layout: candles are
read through it and written into the mapped table and columns only, as the pipeline writes them
(``ms`` timestamps in milliseconds; a table without ``closed`` gets closed candles only, so
``forming`` needs a ``closed`` column).
"""

from __future__ import annotations

import sqlite3
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from signals.config import CandleSource
from signals.data.store import CandleStore, connect_writable, upsert_candles, write_candles
from signals.data.timeparse import parse_when
from signals.errors import DataError
from signals.timeframes import timeframe_seconds

When = pd.Timestamp | int | str | None


@dataclass(frozen=True)
class ReplaySummary:
    """What a replay wrote."""

    to_db: Path
    symbol: str
    timeframe: str
    candles: int
    warmup: int
    commits: int
    seconds: float
    first_ts: int | None = None
    last_ts: int | None = None
    also: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Item:
    close_ts: int
    tf_seconds: int
    timeframe: str
    row: pd.DataFrame


def replay(
    *,
    from_db: Path | str,
    to_db: Path | str,
    timeframe: str,
    symbol: str = "BTCUSDT",
    start: When = None,
    end: When = None,
    speed: float | None = None,
    also_timeframes: Iterable[str] = (),
    warmup: int = 0,
    forming: bool = False,
    progress: bool = True,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
    source: CandleSource | None = None,
) -> ReplaySummary:
    """Write the closed candles of [start, end] from `from_db` into `to_db`, one commit each."""
    if speed is not None and speed <= 0:
        raise ValueError(f"speed is candles per second and must be positive, not {speed}")
    if warmup < 0:
        raise ValueError(f"warmup is a number of candles and cannot be negative ({warmup})")
    also = [tf for tf in dict.fromkeys(also_timeframes) if tf != timeframe]
    if forming and source is not None and source.columns.closed is None:
        raise DataError(
            f"{to_db}: the candle table has no closed column (data.source), so it cannot hold "
            "forming candles; replay without --forming"
        )
    lo, hi = _bound(start), _bound(end)
    with CandleStore(from_db, source=source) as store:
        main = store.history(symbol, timeframe, start=lo, end=hi)
        if main.empty:
            raise DataError(f"{from_db}: no closed {symbol} {timeframe} candles to replay")
        head, main = _split_warmup(store, main, symbol, timeframe, warmup, explicit_start=lo)
        span = (int(main.index[0].timestamp()), _close_ts(main, timeframe)) if len(main) else None
        others = {tf: _others(store, symbol, tf, span) for tf in also}
        heads = {tf: _heads(store, symbol, tf, head, timeframe) for tf in also}
    conn = connect_writable(to_db, source=source)
    try:
        commits = _write_warmup(conn, symbol, timeframe, head, heads, source)
        items = _schedule(main, timeframe, others)
        pacer = _Pacer(speed, sleep, clock, clock())
        written, n = _play(
            conn, items, symbol, timeframe, forming=forming, progress=progress, pacer=pacer,
            source=source,
        )  # fmt: skip
        commits += n
        seconds = clock() - pacer.t0
    finally:
        conn.close()
    return ReplaySummary(
        to_db=Path(to_db),
        symbol=symbol,
        timeframe=timeframe,
        candles=written[timeframe],
        warmup=len(head),
        commits=commits,
        seconds=seconds,
        first_ts=int(main.index[0].timestamp()) if len(main) else None,
        last_ts=int(main.index[-1].timestamp()) if len(main) else None,
        also={tf: written[tf] for tf in also},
    )


def _bound(value: When) -> int | None:
    if value is None:
        return None
    if isinstance(value, pd.Timestamp):
        return int(value.timestamp())
    if isinstance(value, int):
        return value
    return parse_when(str(value))


def _close_ts(frame: pd.DataFrame, timeframe: str) -> int:
    return int(frame.index[-1].timestamp()) + timeframe_seconds(timeframe)


def _split_warmup(
    store: CandleStore,
    main: pd.DataFrame,
    symbol: str,
    timeframe: str,
    warmup: int,
    *,
    explicit_start: int | None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (candles to bulk-copy first, candles to replay one by one)."""
    if warmup == 0:
        return main.iloc[:0], main
    if explicit_start is None:  # no --from: the first `warmup` candles are the history
        return main.iloc[:warmup], main.iloc[warmup:]
    head = store.last_closed(symbol, timeframe, warmup, until=explicit_start - 1)
    return head, main


def _others(
    store: CandleStore, symbol: str, timeframe: str, span: tuple[int, int] | None
) -> pd.DataFrame:
    """Candles of another timeframe that close inside the replayed span of the main one."""
    if span is None:
        return pd.DataFrame()
    step = timeframe_seconds(timeframe)
    frame = store.history(symbol, timeframe, start=span[0] - step + 1, end=span[1] - step)
    return frame


def _heads(
    store: CandleStore, symbol: str, timeframe: str, head: pd.DataFrame, main_tf: str
) -> pd.DataFrame:
    """Candles of another timeframe that close inside the warm-up history."""
    if head.empty:
        return head
    step = timeframe_seconds(timeframe)
    first = int(head.index[0].timestamp())
    last_close = _close_ts(head, main_tf)
    return store.history(symbol, timeframe, start=first, end=last_close - step)


def _write_warmup(
    conn: sqlite3.Connection,
    symbol: str,
    timeframe: str,
    head: pd.DataFrame,
    heads: dict[str, pd.DataFrame],
    source: CandleSource | None = None,
) -> int:
    if head.empty:
        return 0
    with conn:  # one transaction for the whole history
        upsert_candles(conn, head, symbol=symbol, timeframe=timeframe, source=source)
        for tf, frame in heads.items():
            upsert_candles(conn, frame, symbol=symbol, timeframe=tf, source=source)
    return 1


def _schedule(main: pd.DataFrame, timeframe: str, others: dict[str, pd.DataFrame]) -> list[_Item]:
    """All candles to write, in the order they close (shorter timeframes first on a tie)."""
    items: list[_Item] = []
    for tf, frame in {timeframe: main, **others}.items():
        if frame.empty:
            continue
        step = timeframe_seconds(tf)
        for i, ts in enumerate(frame.index):
            items.append(_Item(int(ts.timestamp()) + step, step, tf, frame.iloc[i : i + 1]))
    items.sort(key=lambda item: (item.close_ts, item.tf_seconds))
    return items


def forming_row(row: pd.DataFrame) -> pd.DataFrame:
    """Return the candle as it looks the moment it opens: O=H=L=C=open, no volume yet."""
    out = row.copy()
    for name in ("high", "low", "close"):
        out[name] = out["open"]
    for name in ("volume", "buy_volume", "trades"):
        if name in out:
            out[name] = 0.0
    return out


@dataclass(frozen=True)
class _Pacer:
    speed: float | None
    sleep: Callable[[float], None]
    clock: Callable[[], float]
    t0: float

    def wait_for(self, k: int) -> None:
        """Sleep until candle `k` (from 1) is due: t0 + k / speed."""
        if self.speed is None:
            return
        delay = self.t0 + k / self.speed - self.clock()
        if delay > 0:
            self.sleep(delay)


def _play(
    conn: sqlite3.Connection,
    items: list[_Item],
    symbol: str,
    timeframe: str,
    *,
    forming: bool,
    progress: bool,
    pacer: _Pacer,
    source: CandleSource | None = None,
) -> tuple[dict[str, int], int]:
    """Write the scheduled candles one commit each, pacing main-timeframe candles."""
    commits = 0
    written = {item.timeframe: 0 for item in items} | {timeframe: 0}
    total = sum(1 for item in items if item.timeframe == timeframe)
    every = max(1, total // 20)
    for item in items:
        is_main = item.timeframe == timeframe
        if is_main and forming:  # the candle opens right after the previous one closed
            write_candles(conn, forming_row(item.row), symbol=symbol, timeframe=timeframe,
                          closed=False, source=source)  # fmt: skip
            commits += 1
        if is_main:
            pacer.wait_for(written[timeframe] + 1)
        write_candles(conn, item.row, symbol=symbol, timeframe=item.timeframe, source=source)
        commits += 1
        written[item.timeframe] += 1
        if is_main and progress and written[timeframe] % every == 0:
            print(f"replayed {written[timeframe]}/{total} {timeframe} candles", file=sys.stderr)
    return written, commits
