"""Load candles for research: read closed candles, validate them, report gaps.

`load_candles` is the one function research commands use to get history. It raises
`signals.errors.DataError` on any integrity violation (naming file, timeframe, timestamp and
field) and logs gaps as a warning without filling them (see the gap policy in
`signals.data.validate`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from signals.config import Settings
from signals.data.store import CandleStore
from signals.data.timeparse import parse_when
from signals.data.validate import find_gaps, iso, validate_or_raise
from signals.errors import DataError

log = logging.getLogger(__name__)

When = pd.Timestamp | int | str | None


def load_candles(
    db: Path,
    *,
    symbol: str,
    timeframe: str,
    start: When = None,
    end: When = None,
    settings: Settings | None = None,
    analysis_db: Path | None = None,
) -> pd.DataFrame:
    """Return validated closed candles of (symbol, timeframe) with open time in [start, end].

    The frame has a UTC DatetimeIndex ``time`` and float64 columns ``open, high, low, close,
    volume, buy_volume, trades``, plus the analysis.db columns when `analysis_db` is given.
    """
    settings = settings or Settings()
    store = CandleStore(
        db,
        analysis_db=analysis_db,
        source=settings.data.source,
        busy_timeout_ms=settings.data.busy_timeout_ms,
    )
    with store:
        frame = store.history(
            symbol,
            timeframe,
            start=_as_bound(start),
            end=_as_bound(end),
            with_analysis=analysis_db is not None,
        )
        if frame.empty:
            raise DataError(no_rows_message(store, db, symbol, timeframe, start, end))
    validate_or_raise(frame, timeframe=timeframe, symbol=symbol, origin=str(db))
    _log_gaps(frame, db=db, symbol=symbol, timeframe=timeframe)
    return frame


def _as_bound(value: When) -> pd.Timestamp | int | None:
    if value is None or isinstance(value, int | pd.Timestamp):
        return value
    return parse_when(str(value))


def no_rows_message(
    store: CandleStore, db: Path, symbol: str, timeframe: str, start: When, end: When
) -> str:
    """Explain that (symbol, timeframe) has no candles in range, listing the stored series."""
    series = store.series()
    listing = ", ".join(f"{s} {t}" for s, t in series) or "none"
    where = f"{db}: no closed candles for {symbol} {timeframe}"
    if start is not None or end is not None:
        where += f" between {start if start is not None else '-'} and "
        where += f"{end if end is not None else '-'}"
    return f"{where}; series in this database: {listing}"


def _log_gaps(frame: pd.DataFrame, *, db: Path, symbol: str, timeframe: str) -> None:
    report = find_gaps(frame, timeframe)
    first, last = iso(int(frame.index[0].timestamp())), iso(int(frame.index[-1].timestamp()))
    if report.count:
        log.warning(
            "%s %s %s: %s (not filled: strategies see only the candles that exist)",
            db,
            timeframe,
            symbol,
            report,
        )
    log.debug("%s %s %s: %d candles %s .. %s", db, timeframe, symbol, len(frame), first, last)
