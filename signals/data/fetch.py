"""Backfill candles from an exchange through ccxt into the candle store, resumably.

The exchange is a ccxt ``Exchange`` instance (the CLI builds one; tests inject one pointed at a
local fake server). Candles are requested page by page from the last stored candle onwards, only
closed candles (``open + timeframe <= now``) are stored, and the higher timeframes are
re-aggregated from the stored base candles like the importer does (a higher-timeframe candle is
closed only when all its base candles are in).

Every page is checked with the candle rules of `signals.data.validate` before it is written; a
bad page stops the fetch with a `DataError` naming the candle and field, and nothing of it is
stored. Each page's candles are committed together with an ``aggregate_pending`` marker over
them, and the marker is deleted in the transaction that re-aggregates them: a fetch killed at any
point (between pages, before or during the aggregation) leaves the marker, and the next fetch or
import rebuilds exactly those buckets.

ccxt is imported lazily: importing this module stays cheap.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from signals.data.crashpoint import crash_point
from signals.data.reaggregate import mark_pending, repair_pending
from signals.data.schema import CANDLE_COLUMNS
from signals.data.store import connect_writable, frame_from_rows, upsert_candles
from signals.data.validate import check_frame
from signals.errors import DataError
from signals.timeframes import timeframe_seconds

log = logging.getLogger(__name__)

DEFAULT_RETRIES = 5
DEFAULT_BACKOFF_S = 1.0


@dataclass
class FetchSummary:
    """What one `fetch_candles` run did."""

    exchange: str
    symbol: str
    store_symbol: str
    timeframe: str
    since: int  # requested start, epoch s
    start: int  # where fetching actually started, epoch s
    stop: int  # exclusive end of the open times to fetch (until, or the last closed + 1), s
    until: int | None = None
    resumed: bool = False
    notes: list[str] = field(default_factory=list)
    calls: int = 0
    retries: int = 0
    stored: int = 0
    skipped_forming: int = 0
    first: int | None = None
    last: int | None = None
    aggregated: dict[str, int] = field(default_factory=dict)
    repaired: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """Return a short human-readable account of the run."""
        lines = [*self.notes]
        span = (
            f"{_iso(self.first)} .. {_iso(self.last)}" if self.first is not None else "nothing new"
        )
        lines.append(
            f"{self.exchange} {self.symbol} {self.timeframe} -> {self.store_symbol}: "
            f"{self.stored} closed candles stored ({span}) in {self.calls} requests"
            + (f", {self.retries} retries" if self.retries else "")
        )
        if self.skipped_forming:
            lines.append("the still-forming last candle was not stored")
        for tf, rows in self.aggregated.items():
            lines.append(f"  aggregated {tf}: {rows} candles")
        lines += [f"repaired after an interrupted write: {r}" for r in self.repaired]
        return "\n".join(lines)


def _iso(epoch: int | None) -> str:
    return "-" if epoch is None else pd.Timestamp(epoch, unit="s", tz="UTC").isoformat()


def default_store_symbol(symbol: str) -> str:
    """Return the store's name for a ccxt symbol: ``BTC/USDT`` and ``BTC/USDT:USDT`` -> BTCUSDT."""
    return symbol.split(":")[0].replace("/", "")


def _transient_errors() -> tuple[type[Exception], ...]:
    import ccxt

    return (ccxt.NetworkError, ccxt.RateLimitExceeded, ccxt.ExchangeNotAvailable)


def _ccxt_base_error() -> type[Exception]:
    import ccxt

    return ccxt.BaseError


@dataclass
class _Pager:
    """Requests pages with retries and the rate-limit pause between calls."""

    exchange: Any
    summary: FetchSummary
    limit: int
    retries: int
    backoff: float
    sleep: Callable[[float], None]

    def page(self, since_s: int) -> list[list[Any]]:
        if self.summary.calls:
            self.sleep(float(getattr(self.exchange, "rateLimit", 0) or 0) / 1000.0)
        transient, base_error = _transient_errors(), _ccxt_base_error()
        for attempt in range(self.retries + 1):
            self.summary.calls += 1
            try:
                return self.exchange.fetch_ohlcv(
                    self.summary.symbol, self.summary.timeframe, since=since_s * 1000,
                    limit=self.limit,
                )  # fmt: skip
            except transient as exc:
                if attempt == self.retries:
                    raise DataError(
                        f"{self.summary.exchange}: fetching {self.summary.symbol} "
                        f"{self.summary.timeframe} from {_iso(since_s)} failed after "
                        f"{self.retries} retries: {type(exc).__name__}: {exc}; the "
                        f"{self.summary.stored} candles stored so far are kept, run again "
                        "to resume"
                    ) from None
                delay = self.backoff * 2**attempt
                log.warning("%s: %s, retrying in %.1f s", self.summary.exchange, exc, delay)
                self.summary.retries += 1
                self.sleep(delay)
            except base_error as exc:
                raise DataError(f"{self.summary.exchange}: {type(exc).__name__}: {exc}") from None
        raise AssertionError("unreachable")  # pragma: no cover


def _last_stored(conn: sqlite3.Connection, symbol: str, timeframe: str) -> int | None:
    row = conn.execute(
        "SELECT MAX(timestamp) FROM candles WHERE symbol = ? AND timeframe = ? AND closed = 1",
        (symbol, timeframe),
    ).fetchone()
    return None if row[0] is None else int(row[0])


def _plan(summary: FetchSummary, conn: sqlite3.Connection, until: int | None, now: float) -> None:
    """Decide start (resuming after the last stored candle) and stop, with notes."""
    step = timeframe_seconds(summary.timeframe)
    start = -(-summary.since // step) * step  # first candle open at or after `since`
    last = _last_stored(conn, summary.store_symbol, summary.timeframe)
    if last is not None and last + step > start:
        summary.resumed = True
        summary.notes.append(
            f"resuming after the last stored candle {_iso(last)}"
            + (
                f" (--since {_iso(summary.since)} is earlier, ignored)"
                if summary.since <= last
                else ""
            )
        )
        start = last + step
    summary.start = start
    last_closed_open = int(now) - step  # a candle is closed once open + step <= now
    summary.stop = min(until, last_closed_open + 1) if until is not None else last_closed_open + 1
    if summary.stop <= start:
        summary.notes.append(f"nothing to fetch: up to date until {_iso(summary.stop)}")


def _to_frame(rows: list[list[Any]]) -> pd.DataFrame:
    """Candle frame from ccxt rows ``[ms, o, h, l, c, v]``; buy volume and trades unknown."""
    table = [(int(r[0]) // 1000, *r[1:6], None, None) for r in rows]
    return frame_from_rows(table, ["timestamp", *CANDLE_COLUMNS])


def _store_page(
    conn: sqlite3.Connection,
    rows: list[list[Any]],
    summary: FetchSummary,
    cursor: int,
    now: float,
) -> tuple[int, bool]:
    """Store the page's closed candles in [cursor, stop); return (next cursor, reached the end)."""
    step = timeframe_seconds(summary.timeframe)
    bound = summary.until if summary.until is not None else 2**62
    wanted = [r for r in rows if cursor <= int(r[0]) // 1000 < bound]
    fresh = sorted(((int(r[0]) // 1000, r) for r in wanted), key=lambda item: item[0])
    closed = [r for ts, r in fresh if ts + step <= now]
    summary.skipped_forming += len(fresh) - len(closed)
    if not closed:
        return cursor, True
    frame = _to_frame(closed)
    _validate_page(frame, summary)
    first, last = int(closed[0][0]) // 1000, int(closed[-1][0]) // 1000
    with conn:  # the candles and their "not aggregated yet" marker commit together
        upsert_candles(conn, frame, symbol=summary.store_symbol, timeframe=summary.timeframe)
        mark_pending(conn, summary.store_symbol, summary.timeframe, first, last)
    summary.stored += len(closed)
    summary.first = int(closed[0][0]) // 1000 if summary.first is None else summary.first
    summary.last = int(closed[-1][0]) // 1000
    return summary.last + step, len(closed) < len(fresh)


def _validate_page(frame: pd.DataFrame, summary: FetchSummary) -> None:
    """Raise `DataError` naming the first candle of the page that breaks a candle rule."""
    origin = f"{summary.exchange} {summary.symbol}"
    found = check_frame(
        frame, timeframe=summary.timeframe, symbol=summary.store_symbol, origin=origin
    )
    if found:
        more = f" (and {len(found) - 1} more on this page)" if len(found) > 1 else ""
        raise DataError(
            f"{origin}: the exchange sent an invalid candle: {found[0]}{more}; nothing of this "
            f"page was stored, the {summary.stored} candles stored before it are kept"
        )


def _aggregate_pending(conn: sqlite3.Connection, summary: FetchSummary) -> None:
    """Rebuild the higher timeframes over every pending range (this run's and any left over)."""
    crash_point("fetch:aggregate")
    for repair in repair_pending(conn):
        series = (repair.symbol, repair.timeframe) == (summary.store_symbol, summary.timeframe)
        this_run = series and summary.first is not None
        if this_run:
            summary.aggregated = {
                tf: c.complete + c.incomplete
                for tf, c in repair.aggregated.items()
                if c.complete + c.incomplete
            }
        if not this_run or repair.first < int(summary.first or 0):
            summary.repaired.append(str(repair))


def fetch_candles(
    *,
    exchange: Any,
    symbol: str,
    timeframe: str,
    since: int,
    db: Path | str,
    store_symbol: str | None = None,
    until: int | None = None,
    limit: int = 1000,
    progress: bool = True,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    retries: int = DEFAULT_RETRIES,
    backoff: float = DEFAULT_BACKOFF_S,
) -> FetchSummary:
    """Backfill closed `timeframe` candles with open time in [since, until or now) into `db`."""
    step = timeframe_seconds(timeframe)
    summary = FetchSummary(
        exchange=str(getattr(exchange, "id", type(exchange).__name__)),
        symbol=symbol,
        store_symbol=store_symbol or default_store_symbol(symbol),
        timeframe=timeframe,
        since=int(since),
        start=int(since),
        stop=int(since),
        until=None if until is None else int(until),
    )
    conn = connect_writable(db)
    try:
        _plan(summary, conn, until, clock())
        pager = _Pager(exchange, summary, limit, retries, backoff, sleep)
        try:
            _fetch_loop(conn, pager, summary, clock, progress, step)
        finally:
            _aggregate_pending(conn, summary)
    finally:
        conn.close()
    return summary


def _fetch_loop(
    conn: sqlite3.Connection,
    pager: _Pager,
    summary: FetchSummary,
    clock: Callable[[], float],
    progress: bool,
    step: int,
) -> None:
    from tqdm import tqdm

    cursor = summary.start
    expected = max(0, (summary.stop - summary.start) // step)
    with tqdm(
        total=expected, unit="candle", desc=f"{summary.symbol} {summary.timeframe}",
        disable=not progress,
    ) as bar:  # fmt: skip
        while cursor < summary.stop:
            rows = pager.page(cursor)
            before = summary.stored
            nxt, at_end = _store_page(conn, rows, summary, cursor, clock())
            bar.update(summary.stored - before)
            if at_end or nxt <= cursor:
                break
            cursor = nxt
