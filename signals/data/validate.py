"""Validate candle frames: integrity violations, gaps, and higher-timeframe consistency.

Violations (each one names the origin file, timeframe, symbol, candle timestamp and field):

- duplicate or out-of-order timestamps, timestamps not aligned to the timeframe step;
- ``high`` below ``max(open, close)``, ``low`` above ``min(open, close)``;
- negative, NaN or infinite ``open``/``high``/``low``/``close``/``volume``; negative or infinite
  ``buy_volume``/``trades`` (NaN there means *unknown* and is allowed);
- ``buy_volume`` above ``volume`` (relative tolerance 1e-9);
- a complete higher-timeframe candle that disagrees with the aggregation of its base candles.

Gap policy
----------
A gap (candles missing between two stored candles) is *not* a violation. Gaps are reported:
`find_gaps` counts them, `list_gaps` lists them, and `signals.data.load.load_candles` logs a
warning with the count and the largest one. Gaps are never filled with invented prices (no
forward fill, no interpolation): strategies see exactly the candles that exist, and indicators
computed over a gap span it as the exchange data does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import pandas as pd

from signals.data import frames
from signals.data.aggregate import aggregate
from signals.errors import DataError
from signals.timeframes import timeframe_seconds

PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
REQUIRED_COLUMNS: tuple[str, ...] = (*PRICE_COLUMNS, "volume")
OPTIONAL_COLUMNS: tuple[str, ...] = ("buy_volume", "trades")
CHECKED_COLUMNS = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)  # the candle schema's order
_N_REQUIRED = len(REQUIRED_COLUMNS)
BUY_VOLUME_RTOL = 1e-9
PRICE_RTOL = 1e-9
VOLUME_RTOL = 1e-6


def iso(ts: int | None) -> str:
    """Format epoch seconds as ``2023-04-01T00:05:00Z`` (``-`` for None)."""
    if ts is None:
        return "-"
    return pd.Timestamp(int(ts), unit="s", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Violation:
    """One broken rule on one candle (or on the series when `timestamp` is None)."""

    origin: str
    symbol: str
    timeframe: str
    timestamp: int | None
    field: str
    message: str

    def __str__(self) -> str:
        return (
            f"{self.origin} {self.timeframe} {self.symbol} {iso(self.timestamp)} "
            f"{self.field}: {self.message}"
        )


@dataclass(frozen=True)
class Gap:
    """Missing candles: `n_missing` candles starting at open time `start` (epoch seconds)."""

    start: int
    n_missing: int


@dataclass(frozen=True)
class GapReport:
    """Summary of the gaps of one series."""

    count: int
    missing_candles: int
    largest: int
    largest_at: int | None

    def __str__(self) -> str:
        if not self.count:
            return "no gaps"
        return (
            f"{self.count} gaps, {self.missing_candles} missing candles, largest "
            f"{self.largest} candles at {iso(self.largest_at)}"
        )


def epoch_seconds(index: pd.Index) -> np.ndarray:
    """Return the candle open times of a frame index as int64 epoch seconds."""
    if isinstance(index, pd.DatetimeIndex):
        return frames.epoch_seconds(index)
    return np.asarray(index, dtype="int64")


# -- integrity ---------------------------------------------------------------------------------


class _Collector:
    """Gather violations with the row position they belong to, for ordering."""

    def __init__(self, ts: np.ndarray, *, origin: str, symbol: str, timeframe: str) -> None:
        self.ts = ts
        self.origin, self.symbol, self.timeframe = origin, symbol, timeframe
        self.items: list[tuple[int, int, Violation]] = []

    def add(self, mask: np.ndarray, field: str, messages: list[str]) -> None:
        """Record one violation per True position of `mask` with its message."""
        if not messages:  # one message per True position: none means a clean mask
            return
        positions = np.flatnonzero(mask)
        for pos, message in zip(positions.tolist(), messages, strict=True):
            violation = Violation(
                self.origin, self.symbol, self.timeframe, int(self.ts[pos]), field, message
            )
            self.items.append((pos, len(self.items), violation))

    def sorted(self) -> list[Violation]:
        """Return the violations in row order (check order within a row)."""
        return [v for _, _, v in sorted(self.items, key=lambda item: item[:2])]


def _clean(ts: np.ndarray, columns: dict[str, np.ndarray], step: int) -> bool:
    # True when none of the checks below can find anything (see `clean_matrix`).
    return clean_matrix(ts, np.column_stack([columns[c] for c in CHECKED_COLUMNS]), step)


def clean_matrix(ts: np.ndarray, values: np.ndarray, step: int) -> bool:
    """Return whether no check can find anything in candles given as a matrix.

    `values` holds one row per candle and the columns of `CHECKED_COLUMNS` (the candle
    schema's order). The usual case in a few array operations, before the detailed checks:
    the live runner validates every new candle.
    """
    if len(ts) <= _FEW_ROWS:  # a live step's new candle: plain floats beat a dozen array calls
        return _clean_rows(ts.tolist(), values.tolist(), step)
    if len(ts) > 1 and not (np.diff(ts) > 0).all():
        return False
    if (ts % step).any():
        return False
    required, optional = values[:, :_N_REQUIRED], values[:, _N_REQUIRED:]
    if not (np.isfinite(required).all() and (required >= 0).all()):
        return False
    if np.isinf(optional).any() or (optional < 0).any():
        return False
    o, h, low, c = required.T[:4]
    if (h < np.fmax(o, c)).any() or (low > np.fmin(o, c)).any():
        return False
    vol, buy = required[:, 4], optional[:, 0]
    return not (buy - vol > BUY_VOLUME_RTOL * np.abs(vol)).any()


_FEW_ROWS = 4


def _clean_rows(ts: list[int], rows: list[list[float]], step: int) -> bool:
    # `clean_matrix` on a few rows, check for check (a hypothesis test holds them equal).
    if any(b <= a for a, b in pairwise(ts)) or any(t % step for t in ts):
        return False
    for row in rows:
        required, optional = row[:_N_REQUIRED], row[_N_REQUIRED:]
        if not all(math.isfinite(v) and v >= 0 for v in required):
            return False
        if any(math.isinf(v) or v < 0 for v in optional):
            return False
        o, h, low, c, vol = required[:5]
        if h < max(o, c) or low > min(o, c):
            return False
        if optional[0] - vol > BUY_VOLUME_RTOL * abs(vol):
            return False
    return True


def _fmt(values: np.ndarray) -> list[str]:
    return [repr(float(v)) for v in values]


def _check_index(out: _Collector, ts: np.ndarray, step: int) -> None:
    if len(ts) > 1:
        diff = np.diff(ts)
        dup = np.concatenate([[False], diff == 0])
        out.add(dup, "timestamp", ["duplicate timestamp"] * int(dup.sum()))
        back = np.concatenate([[False], diff < 0])
        prev = ts[:-1][back[1:]]
        out.add(back, "timestamp", [f"out of order: after {iso(p)}" for p in prev])
    misaligned = ts % step != 0
    offsets = ts[misaligned] % step
    out.add(
        misaligned, "timestamp", [f"not aligned to the {step} s step (+{o} s)" for o in offsets]
    )


def _check_values(out: _Collector, columns: dict[str, np.ndarray]) -> None:
    for col in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS):
        values = columns[col]
        if col in REQUIRED_COLUMNS:
            nan = np.isnan(values)
            out.add(nan, col, [f"{col} is NaN"] * int(nan.sum()))
        inf = np.isinf(values)
        out.add(inf, col, [f"{col} is infinite"] * int(inf.sum()))
        neg = values < 0
        out.add(neg, col, [f"{col} {v} is negative" for v in _fmt(values[neg])])


def _check_ohlc(out: _Collector, columns: dict[str, np.ndarray]) -> None:
    o, h, low, c = (columns[col] for col in PRICE_COLUMNS)
    top, bottom = np.fmax(o, c), np.fmin(o, c)
    bad_high = h < top
    out.add(
        bad_high,
        "high",
        [
            f"high {a} below max(open, close) {b}"
            for a, b in zip(_fmt(h[bad_high]), _fmt(top[bad_high]), strict=True)
        ],
    )
    bad_low = low > bottom
    out.add(
        bad_low,
        "low",
        [
            f"low {a} above min(open, close) {b}"
            for a, b in zip(_fmt(low[bad_low]), _fmt(bottom[bad_low]), strict=True)
        ],
    )


def _check_buy_volume(out: _Collector, columns: dict[str, np.ndarray]) -> None:
    vol, buy = columns["volume"], columns["buy_volume"]
    with np.errstate(invalid="ignore"):  # inf - inf: reported as infinite values already
        bad = buy - vol > BUY_VOLUME_RTOL * np.abs(vol)
    out.add(
        bad,
        "buy_volume",
        [
            f"buy_volume {a} above volume {b}"
            for a, b in zip(_fmt(buy[bad]), _fmt(vol[bad]), strict=True)
        ],
    )


def check_frame(
    frame: pd.DataFrame, *, timeframe: str, symbol: str, origin: str
) -> list[Violation]:
    """Return every integrity violation of a candle frame, in row order."""
    missing = [c for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if c not in frame]
    if missing:
        message = f"missing columns: {', '.join(missing)}"
        return [Violation(origin, symbol, timeframe, None, missing[0], message)]
    columns = {c: frame[c].to_numpy("float64") for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)}
    return check_arrays(
        epoch_seconds(frame.index), columns, timeframe=timeframe, symbol=symbol, origin=origin
    )


def check_arrays(
    ts: np.ndarray,
    columns: dict[str, np.ndarray],
    *,
    timeframe: str,
    symbol: str,
    origin: str,
) -> list[Violation]:
    """Return every integrity violation of candles given as open times and column arrays."""
    return [
        v for _, v in row_violations(ts, columns, timeframe=timeframe, symbol=symbol, origin=origin)
    ]


def row_violations(
    ts: np.ndarray,
    columns: dict[str, np.ndarray],
    *,
    timeframe: str,
    symbol: str,
    origin: str,
) -> list[tuple[int, Violation]]:
    """Like `check_arrays`, each violation with the 0-based position of its row in `ts`."""
    step = timeframe_seconds(timeframe)
    if _clean(ts, columns, step):
        return []
    out = _Collector(ts, origin=origin, symbol=symbol, timeframe=timeframe)
    _check_all(out, ts, columns, step)
    return [(pos, v) for pos, _, v in sorted(out.items, key=lambda item: item[:2])]


def _check_all(out: _Collector, ts: np.ndarray, columns: dict[str, np.ndarray], step: int) -> None:
    _check_index(out, ts, step)
    _check_values(out, columns)
    _check_ohlc(out, columns)
    _check_buy_volume(out, columns)


def validate_or_raise(frame: pd.DataFrame, *, timeframe: str, symbol: str, origin: str) -> None:
    """Raise `DataError` naming the first violation of `frame` and how many more there are."""
    violations = check_frame(frame, timeframe=timeframe, symbol=symbol, origin=origin)
    if violations:
        raise DataError(_violation_message(violations))


def _violation_message(violations: list[Violation]) -> str:
    first = violations[0]
    more = len(violations) - 1
    tail = f" (and {more} more violation{'s' if more != 1 else ''};" if more else " ("
    return (
        f"{first.origin}: invalid candle data: {first}{tail} "
        "run `signals data check` for the full list)"
    )


# -- candles from the future -------------------------------------------------------------------


def future_candles(
    ts: np.ndarray, timeframe: str, now: float, tolerance_s: float = 5.0
) -> np.ndarray:
    """Return the open times (epoch s) of candles that cannot be closed yet at wall clock `now`.

    A candle closes at ``open + timeframe``; one whose close time is later than
    ``now + tolerance_s`` is in the future: a stored or streamed "closed" candle like that is bad
    data (a clock or pipeline fault), and research and live both refuse it.
    """
    ts = np.asarray(ts, dtype="int64")
    return ts[ts > latest_closable(timeframe, now, tolerance_s)]


def latest_closable(timeframe: str, now: float, tolerance_s: float = 5.0) -> int:
    """Return the newest open time a closed candle may have at `now` (the rule of both sides)."""
    return math.floor(now + tolerance_s) - timeframe_seconds(timeframe)


def future_violations(
    ts: np.ndarray,
    *,
    timeframe: str,
    symbol: str,
    origin: str,
    now: float,
    tolerance_s: float,
) -> list[Violation]:
    """Return one `Violation` per candle of `ts` that `future_candles` refuses."""
    step = timeframe_seconds(timeframe)
    return [
        Violation(
            origin,
            symbol,
            timeframe,
            int(t),
            "timestamp",
            f"candle from the future: closes at {iso(int(t) + step)}, after the clock "
            f"{iso(int(now))} + {tolerance_s:g} s",
        )
        for t in future_candles(ts, timeframe, now, tolerance_s)
    ]


# -- gaps --------------------------------------------------------------------------------------


def list_gaps(frame: pd.DataFrame, timeframe: str) -> list[Gap]:
    """Return each gap of the series: first missing open time and number of missing candles."""
    step = timeframe_seconds(timeframe)
    ts = _sorted_unique(epoch_seconds(frame.index))
    if len(ts) < 2:
        return []
    diff = np.diff(ts)
    where = np.flatnonzero(diff > step)
    missing = (diff[where] - 1) // step
    starts = ts[where] + step
    return [Gap(int(s), int(n)) for s, n in zip(starts, missing, strict=True) if n > 0]


def _sorted_unique(ts: np.ndarray) -> np.ndarray:
    # np.unique sorts (0.8 s for a million stamps); stored candles come sorted already.
    if len(ts) > 1 and (ts[1:] >= ts[:-1]).all():
        return ts[np.concatenate([[True], ts[1:] != ts[:-1]])]
    return np.unique(ts)


def find_gaps(frame: pd.DataFrame, timeframe: str) -> GapReport:
    """Summarise the gaps of the series (count, missing candles, largest and where)."""
    gaps = list_gaps(frame, timeframe)
    if not gaps:
        return GapReport(count=0, missing_candles=0, largest=0, largest_at=None)
    largest = max(gaps, key=lambda g: (g.n_missing, -g.start))
    return GapReport(
        count=len(gaps),
        missing_candles=sum(g.n_missing for g in gaps),
        largest=largest.n_missing,
        largest_at=largest.start,
    )


# -- consistency between timeframes --------------------------------------------------------------

_COMPARED: tuple[tuple[str, float], ...] = (
    ("open", PRICE_RTOL),
    ("high", PRICE_RTOL),
    ("low", PRICE_RTOL),
    ("close", PRICE_RTOL),
    ("volume", VOLUME_RTOL),
    ("buy_volume", VOLUME_RTOL),
    ("trades", 0.0),
)


@dataclass(frozen=True)
class ConsistencyReport:
    """How many complete higher candles could be compared, and those that disagree."""

    compared: int
    violations: list[Violation]


def check_consistency(
    higher: pd.DataFrame,
    base: pd.DataFrame,
    *,
    base_tf: str,
    higher_tf: str,
    symbol: str = "",
    origin: str = "",
) -> list[Violation]:
    """Return the complete `higher` candles that disagree with the aggregation of `base`.

    Only higher candles whose base candles are all present are compared. Prices use a relative
    tolerance of 1e-9, volumes 1e-6; ``buy_volume`` and ``trades`` are compared only where both
    sides know them.
    """
    return compare_timeframes(
        higher, base, base_tf=base_tf, higher_tf=higher_tf, symbol=symbol, origin=origin
    ).violations


def compare_timeframes(
    higher: pd.DataFrame,
    base: pd.DataFrame,
    *,
    base_tf: str,
    higher_tf: str,
    symbol: str = "",
    origin: str = "",
) -> ConsistencyReport:
    """Like `check_consistency`, also counting the higher candles that could be compared."""
    expected = aggregate(base, base=base_tf, target=higher_tf)
    expected = expected[expected["complete"]]
    higher = higher[~higher.index.duplicated(keep="first")]
    common = higher.index.intersection(expected.index)
    got, want = higher.loc[common], expected.loc[common]
    out = _Collector(epoch_seconds(common), origin=origin, symbol=symbol, timeframe=higher_tf)
    for col, rtol in _COMPARED:
        a, b = got[col].to_numpy("float64"), want[col].to_numpy("float64")
        known = ~(np.isnan(a) & np.isnan(b)) if col in REQUIRED_COLUMNS else ~np.isnan(a + b)
        bad = ~(np.isclose(a, b, rtol=rtol, atol=0.0) | ~known)
        out.add(
            bad,
            col,
            [
                f"{col} {x} differs from {y} aggregated from {base_tf} candles"
                for x, y in zip(_fmt(a[bad]), _fmt(b[bad]), strict=True)
            ],
        )
    return ConsistencyReport(compared=len(common), violations=out.sorted())
