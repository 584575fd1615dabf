"""Turn rows read from the candle store into candle frames (UTC index ``time``, float64)."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import numpy as np
import pandas as pd

from signals.data.schema import CANDLE_COLUMNS


def empty_frame() -> pd.DataFrame:
    """Return an empty candle frame with the standard columns and a UTC index."""
    index = pd.DatetimeIndex([], tz="UTC", name="time")
    return pd.DataFrame({c: pd.Series([], dtype="float64") for c in CANDLE_COLUMNS}, index=index)


def frame_from_rows(rows: list[tuple], columns: list[str]) -> pd.DataFrame:
    """Build a candle frame (UTC index ``time``, float64 columns) from ``timestamp, ...`` rows."""
    if not rows:
        frame = empty_frame()
        for extra in columns[1:]:
            if extra not in frame:
                frame[extra] = pd.Series([], dtype="float64")
        return frame
    ts, values = arrays_from_rows(rows, len(columns) - 1)
    return frame_from_arrays(ts, values, list(columns[1:]))


def arrays_from_rows(rows: list[tuple], n_values: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (open times as int64 epoch seconds, float64 values) of ``timestamp, ...`` rows."""
    if not rows:
        return np.empty(0, dtype="int64"), np.empty((0, n_values), dtype="float64")
    try:  # numbers and NULLs (NaN): one conversion, one float64 block
        numbers = np.array(rows, dtype="float64")
        if np.isnan(numbers[:, 0]).any():
            raise ValueError("a NULL open time")  # the slow path reports it as before
        return numbers[:, 0].astype("int64"), numbers[:, 1:]
    except (TypeError, ValueError):  # text somewhere: unreadable values become NaN
        array = np.array(rows, dtype=object)
        values = [
            pd.to_numeric(array[:, i], errors="coerce").astype("float64")
            for i in range(1, n_values + 1)
        ]
        return array[:, 0].astype("int64"), np.column_stack(values)


UTC_MICROSECONDS = pd.DatetimeTZDtype("us", "UTC")


def _public_index(stamps: np.ndarray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(stamps, name="time", dtype=UTC_MICROSECONDS)


def _wrapped_index(stamps: np.ndarray) -> pd.DatetimeIndex:
    # pandas' own constructors without their validation (the stamps are datetime64[us] already)
    from pandas.core.arrays import DatetimeArray

    values = DatetimeArray._simple_new(stamps, dtype=UTC_MICROSECONDS)  # type: ignore[attr-defined]  # pandas-internal, checked below
    return pd.DatetimeIndex._simple_new(values, name="time")  # type: ignore[attr-defined]  # pandas-internal, checked below


def _choose_index_builder() -> Callable[[np.ndarray], pd.DatetimeIndex]:
    # The live engine builds a window frame on every step, and the public constructor's
    # validation is a tenth of a step (benchmarks/live_latency.py). The internal one is used
    # only if it gives exactly the public one's index on this pandas; else the public one.
    probe = np.array([0, 60, 3_600, 1_700_000_040], dtype="int64").astype("datetime64[s]")
    stamps = probe.astype("datetime64[us]")
    try:
        fast = _wrapped_index(stamps)
        slow = _public_index(stamps)
        same = fast.equals(slow) and fast.dtype == slow.dtype and fast.name == slow.name
    except Exception:  # an internal API gone or changed
        return _public_index
    return _wrapped_index if same and fast.freq == slow.freq else _public_index


_utc_index = _choose_index_builder()


def frame_from_arrays(
    ts: np.ndarray, values: np.ndarray, columns: list[str] | pd.Index
) -> pd.DataFrame:
    """Build a candle frame from open times (epoch seconds) and a float64 value matrix.

    `columns` may be a prebuilt `pd.Index` (the live engine passes one, saving its construction
    on every step).
    """
    # as pd.to_datetime(ts, unit="s", utc=True) gives (microseconds, UTC), without its parsing
    stamps = np.asarray(ts, dtype="int64").astype("datetime64[s]").astype("datetime64[us]")
    return pd.DataFrame(values, index=_utc_index(stamps), columns=columns)


_PER_SECOND = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}


def epoch_seconds(index: pd.Index) -> np.ndarray:
    """Return the open times of a candle frame's index (a UTC `DatetimeIndex`) as epoch seconds."""
    times = cast(pd.DatetimeIndex, index)
    per = _PER_SECOND.get(times.unit)
    if per is not None and not times.hasnans:  # as ``as_unit("s")``, which floors, in one
        return times.asi8 // per  # array operation (the live step calls this)
    return times.as_unit("s").asi8
