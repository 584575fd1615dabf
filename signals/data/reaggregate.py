"""Rebuild higher timeframes from stored base candles, and the marker of ranges still to rebuild.

A writer of base candles (import, fetch) records the range it wrote in ``aggregate_pending`` in
the same transaction, re-aggregates every higher timeframe over the whole buckets it touched,
then deletes the marker: a process killed in between leaves the marker, and the next writer
repairs the range first (`repair_pending`).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

import pandas as pd
from tqdm.auto import tqdm

from signals.data.aggregate import aggregate
from signals.data.crashpoint import crash_point
from signals.data.frames import epoch_seconds, frame_from_rows
from signals.data.schema import CANDLE_COLUMNS
from signals.data.validate import iso
from signals.data.write import upsert_candles
from signals.timeframes import TIMEFRAMES, higher_timeframes, timeframe_seconds


@dataclass(frozen=True)
class AggregateCount:
    """How many candles of one aggregated timeframe were (re)computed, by completeness."""

    complete: int
    incomplete: int


def mark_pending(
    conn: sqlite3.Connection, symbol: str, timeframe: str, first: int, last: int
) -> None:
    """Record base candles `first`..`last` as not yet aggregated, in the caller's transaction.

    One range per series: a new mark widens the stored one to cover both.
    """
    conn.execute(
        "INSERT INTO aggregate_pending (symbol, timeframe, first, last) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(symbol, timeframe) DO UPDATE SET first = min(first, excluded.first), "
        "last = max(last, excluded.last)",
        (symbol, timeframe, int(first), int(last)),
    )


def pending_ranges(conn: sqlite3.Connection) -> list[tuple[str, str, int, int]]:
    """Return the (symbol, base timeframe, first, last) ranges still waiting for aggregation."""
    rows = conn.execute(
        "SELECT symbol, timeframe, first, last FROM aggregate_pending ORDER BY symbol, timeframe"
    ).fetchall()
    return [(str(s), str(t), int(a), int(b)) for s, t, a, b in rows]


def clear_pending(
    conn: sqlite3.Connection, symbol: str, timeframe: str, first: int, last: int
) -> None:
    """Delete a pending range once aggregated, unless another writer widened it meanwhile."""
    conn.execute(
        "DELETE FROM aggregate_pending "
        "WHERE symbol = ? AND timeframe = ? AND first = ? AND last = ?",
        (symbol, timeframe, int(first), int(last)),
    )


def bucket_span(first: int, last: int, size: int) -> tuple[int, int]:
    """Return [start, end) covering whole `size` buckets from `first` to `last` (epoch s)."""
    return first - first % size, last - last % size + size


def _read_back(
    conn: sqlite3.Connection, symbol: str, timeframe: str, span: tuple[int, int]
) -> pd.DataFrame:
    rows = conn.execute(
        "SELECT timestamp, open, high, low, close, volume, buy_volume, trades FROM candles "
        "WHERE symbol = ? AND timeframe = ? AND timestamp >= ? AND timestamp < ? AND closed = 1 "
        "ORDER BY timestamp",
        (symbol, timeframe, span[0], span[1]),
    ).fetchall()
    return frame_from_rows(rows, ["timestamp", *CANDLE_COLUMNS])


def _has_rows(conn: sqlite3.Connection, symbol: str, timeframe: str, span: tuple[int, int]) -> bool:
    row = conn.execute(
        "SELECT 1 FROM candles WHERE symbol = ? AND timeframe = ? AND timestamp >= ? "
        "AND timestamp < ? LIMIT 1",
        (symbol, timeframe, span[0], span[1]),
    ).fetchone()
    return row is not None


def _write_aggregate(
    conn: sqlite3.Connection, base: pd.DataFrame, symbol: str, source: str, target: str
) -> AggregateCount:
    out = aggregate(base, base=source, target=target)
    complete = out.pop("complete").astype(bool)
    upsert_candles(conn, out, symbol=symbol, timeframe=target, closed=complete, keep_closed=True)
    n_complete = int(complete.sum())
    return AggregateCount(n_complete, len(out) - n_complete)


def refresh_from_finer(
    conn: sqlite3.Connection, symbol: str, timeframe: str, span: tuple[int, int]
) -> None:
    """Let complete aggregates of finer candles already stored override a coarser file's rows.

    Importing a 1h file after 1m files must not replace 1h candles built from complete minutes
    (with their taker-buy volume and trade counts) by the file's coarser copy.
    """
    step = timeframe_seconds(timeframe)
    for finer, length in TIMEFRAMES.items():
        if length < step and step % length == 0 and _has_rows(conn, symbol, finer, span):
            base = _read_back(conn, symbol, finer, span)
            out = aggregate(base, base=finer, target=timeframe)
            out = out[out.pop("complete").astype(bool)]
            upsert_candles(conn, out, symbol=symbol, timeframe=timeframe, closed=True)
            return


def reaggregate(
    conn: sqlite3.Connection,
    symbol: str,
    base_tf: str,
    first: int,
    last: int,
    *,
    bar: tqdm | None = None,
) -> dict[str, AggregateCount]:
    """Rebuild every higher timeframe over the buckets touched by base candles `first`..`last`.

    The base candles are read back from the database (so a bucket split across two writes is
    complete once both are in); an incomplete bucket is stored with ``closed = 0`` and never
    replaces a closed candle already there. Does not commit: the caller owns the transaction.
    """
    targets = higher_timeframes(base_tf)
    if not targets:
        return {}
    spans = {t: bucket_span(first, last, timeframe_seconds(t)) for t in targets}
    whole = (min(s[0] for s in spans.values()), max(s[1] for s in spans.values()))
    stored = _read_back(conn, symbol, base_tf, whole)  # read once, over the widest span
    stored_s = epoch_seconds(stored.index)
    counts: dict[str, AggregateCount] = {}
    for target in targets:
        progress_stage(bar, f"aggregating {target}")
        start, end = spans[target]
        base = stored[(stored_s >= start) & (stored_s < end)]
        counts[target] = _write_aggregate(conn, base, symbol, base_tf, target)
        crash_point(f"aggregate:{target}")
    return counts


@dataclass(frozen=True)
class Repair:
    """Higher timeframes rebuilt over a range an interrupted write left pending."""

    symbol: str
    timeframe: str
    first: int
    last: int
    aggregated: dict[str, AggregateCount]

    def __str__(self) -> str:
        rebuilt = sum(c.complete + c.incomplete for c in self.aggregated.values())
        return (
            f"re-aggregated {self.symbol} {self.timeframe} {iso(self.first)} .. "
            f"{iso(self.last)}: {rebuilt} higher-timeframe candles"
        )


def repair_pending(conn: sqlite3.Connection) -> list[Repair]:
    """Re-aggregate every range whose base candles were committed but not yet aggregated.

    Each range is rebuilt and its marker deleted in one transaction, so a crash here too leaves
    the marker for the next run; only the marked buckets are read and rewritten.
    """
    done = []
    for symbol, timeframe, first, last in pending_ranges(conn):
        with conn:
            counts = reaggregate(conn, symbol, timeframe, first, last)
            clear_pending(conn, symbol, timeframe, first, last)
        done.append(Repair(symbol, timeframe, first, last, counts))
    return done


def progress_stage(bar: tqdm | None, text: str) -> None:
    """Show `text` as the current stage of `bar` (if any) and count one step done."""
    if bar is not None:
        bar.set_postfix_str(text, refresh=False)
        bar.update(1)
