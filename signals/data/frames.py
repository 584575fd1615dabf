"""Turn rows read from the candle store into candle frames (UTC index ``time``, float64)."""

from __future__ import annotations

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


def frame_from_arrays(
    ts: np.ndarray, values: np.ndarray, columns: list[str] | pd.Index
) -> pd.DataFrame:
    """Build a candle frame from open times (epoch seconds) and a float64 value matrix.

    `columns` may be a prebuilt `pd.Index` (the live engine passes one, saving its construction
    on every step).
    """
    # as pd.to_datetime(ts, unit="s", utc=True) gives (microseconds, UTC), without its parsing
    stamps = ts.astype("datetime64[s]").astype("datetime64[us]")
    index = pd.DatetimeIndex(stamps, name="time", dtype=UTC_MICROSECONDS)
    return pd.DataFrame(values, index=index, columns=columns)


def epoch_seconds(index: pd.Index) -> np.ndarray:
    """Return the open times of a candle frame's index (a UTC `DatetimeIndex`) as epoch seconds."""
    return cast(pd.DatetimeIndex, index).as_unit("s").asi8  # any unit: s, ms, us or ns
