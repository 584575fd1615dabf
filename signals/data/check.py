"""Check a whole candle database: per-series integrity, gaps, incomplete candles, consistency.

A closed candle whose close time is later than the clock plus ``data.future_tolerance_s`` (a
candle "from the future", `signals.data.validate.future_candles`) is a violation too.

`check_database` is what ``signals data check`` prints; notebooks call it too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from signals.config import CandleSource, Settings
from signals.data.connection import quote_name
from signals.data.store import CandleStore, connect_readonly
from signals.data.validate import (
    ConsistencyReport,
    GapReport,
    Violation,
    check_frame,
    compare_timeframes,
    epoch_seconds,
    find_gaps,
    future_violations,
    iso,
)
from signals.timeframes import TIMEFRAMES, timeframe_seconds

BASE_TIMEFRAME = "1m"


@dataclass(frozen=True)
class SeriesReport:
    """What `check_database` found for one (symbol, timeframe) series."""

    symbol: str
    timeframe: str
    rows: int
    first: int | None
    last: int | None
    incomplete: int
    gaps: GapReport
    violations: list[Violation]
    consistency: ConsistencyReport | None = None  # None: not compared (no 1m, or this is 1m)

    @property
    def disagreements(self) -> list[Violation]:
        """Candles that disagree with their 1m candles (empty when not compared)."""
        return self.consistency.violations if self.consistency else []

    @property
    def problems(self) -> int:
        """Number of violations, consistency disagreements included."""
        return len(self.violations) + len(self.disagreements)


@dataclass(frozen=True)
class DatabaseReport:
    """The check of one database, one report per series."""

    db: str
    series: list[SeriesReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no series has any violation (gaps are not violations)."""
        return all(s.problems == 0 for s in self.series)

    def to_dict(self, *, limit: int = 20) -> dict[str, Any]:
        """Return a JSON-ready dict, listing at most `limit` violations per kind and series."""
        return {
            "db": self.db,
            "ok": self.ok,
            "series": [_series_dict(s, limit) for s in self.series],
        }


def check_database(
    db: Path,
    *,
    symbol: str | None = None,
    settings: Settings | None = None,
    clock: Callable[[], float] = time.time,
) -> DatabaseReport:
    """Check every (symbol, timeframe) series of `db` (only `symbol`'s when given)."""
    settings = settings or Settings()
    source = settings.data.source
    timeout = settings.data.busy_timeout_ms
    with CandleStore(db, source=source, busy_timeout_ms=timeout, clock=clock) as store:
        now_s = store.clock()
        now = int(now_s)
        pairs = [(s, t) for s, t in store.series() if symbol is None or s == symbol]
        frames = {pair: store.history(*pair) for pair in pairs if pair[1] in TIMEFRAMES}
    conn = connect_readonly(db, busy_timeout_ms=timeout)
    try:
        incomplete = {pair: _incomplete(conn, source, *pair, now=now) for pair in frames}
    finally:
        conn.close()
    future = (now_s, settings.data.future_tolerance_s)
    reports = [_series_report(str(db), pair, frames, incomplete[pair], future) for pair in frames]
    reports += [_unknown_timeframe(str(db), *pair) for pair in pairs if pair not in frames]
    return DatabaseReport(db=str(db), series=sorted(reports, key=_order))


def _order(report: SeriesReport) -> tuple[str, int]:
    return report.symbol, TIMEFRAMES.get(report.timeframe, 10**9)


def _unknown_timeframe(origin: str, symbol: str, timeframe: str) -> SeriesReport:
    message = f"unknown timeframe {timeframe!r}; known: {', '.join(TIMEFRAMES)}"
    violation = Violation(origin, symbol, timeframe, None, "timeframe", message)
    return SeriesReport(symbol, timeframe, 0, None, None, 0, GapReport(0, 0, 0, None), [violation])


def _series_report(
    origin: str,
    pair: tuple[str, str],
    frames: dict[tuple[str, str], pd.DataFrame],
    incomplete: int,
    future: tuple[float, float],
) -> SeriesReport:
    symbol, timeframe = pair
    frame = frames[pair]
    ts = epoch_seconds(frame.index)
    consistency = None
    base = frames.get((symbol, BASE_TIMEFRAME))
    if base is not None and timeframe != BASE_TIMEFRAME:
        consistency = compare_timeframes(
            frame, base, base_tf=BASE_TIMEFRAME, higher_tf=timeframe, symbol=symbol, origin=origin
        )
    return SeriesReport(
        symbol=symbol,
        timeframe=timeframe,
        rows=len(frame),
        first=int(ts.min()) if len(ts) else None,
        last=int(ts.max()) if len(ts) else None,
        incomplete=incomplete,
        gaps=find_gaps(frame, timeframe),
        violations=[
            *check_frame(frame, timeframe=timeframe, symbol=symbol, origin=origin),
            *future_violations(
                ts,
                timeframe=timeframe,
                symbol=symbol,
                origin=origin,
                now=future[0],
                tolerance_s=future[1],
            ),
        ],
        consistency=consistency,
    )


def _incomplete(conn: Any, source: CandleSource, symbol: str, timeframe: str, *, now: int) -> int:
    """Count the series' candles the store does not return: ``closed = 0``, or still forming."""
    cols = source.columns
    where: list[str] = []
    params: list[object] = []
    for column, value in ((cols.symbol, symbol), (cols.timeframe, timeframe)):
        if column:
            where.append(f"{quote_name(column)} = ?")
            params.append(value)
    if cols.closed:
        where.append(f"{quote_name(cols.closed)} = 0")
    else:
        ts = quote_name(cols.timestamp)
        ts = f"({ts} / 1000)" if source.timestamp_unit == "ms" else ts
        where.append(f"{ts} + ? > ?")
        params += [timeframe_seconds(timeframe), now]
    sql = f"SELECT COUNT(*) FROM {quote_name(source.table)} WHERE {' AND '.join(where)}"
    return int(conn.execute(sql, params).fetchone()[0])


def _violation_dict(v: Violation) -> dict[str, Any]:
    return {
        "timestamp": v.timestamp,
        "time": iso(v.timestamp) if v.timestamp is not None else None,
        "field": v.field,
        "message": v.message,
        "text": str(v),
    }


def _series_dict(s: SeriesReport, limit: int) -> dict[str, Any]:
    consistency = None
    if s.consistency is not None:
        consistency = {
            "base": BASE_TIMEFRAME,
            "compared": s.consistency.compared,
            "count": len(s.disagreements),
            "items": [_violation_dict(v) for v in s.disagreements[:limit]],
        }
    return {
        "symbol": s.symbol,
        "timeframe": s.timeframe,
        "rows": s.rows,
        "first": s.first,
        "last": s.last,
        "first_time": iso(s.first) if s.first is not None else None,
        "last_time": iso(s.last) if s.last is not None else None,
        "incomplete": s.incomplete,
        "gaps": {
            "count": s.gaps.count,
            "missing_candles": s.gaps.missing_candles,
            "largest": s.gaps.largest,
            "largest_at": s.gaps.largest_at,
        },
        "violations": {
            "count": len(s.violations),
            "items": [_violation_dict(v) for v in s.violations[:limit]],
        },
        "consistency": consistency,
    }
