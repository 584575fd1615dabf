"""Turn rows read from the candle store into candle frames (UTC index ``time``, float64)."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import numpy as np
import pandas as pd

from signals.data.schema import CANDLE_COLUMNS

try:  # pandas-internal (see _choose_frame_builder): absent, the public constructor is used
    from pandas._libs.internals import BlockPlacement  # type: ignore[import-not-found]  # no stubs: pandas-internal
    from pandas.core.internals.blocks import new_block_2d  # type: ignore[import-not-found]  # no stubs: pandas-internal
    from pandas.core.internals.managers import BlockManager  # type: ignore[import-not-found]  # no stubs: pandas-internal
except ImportError:  # pragma: no cover - a pandas without them
    BlockPlacement = new_block_2d = BlockManager = None


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
    index = _utc_index(stamps)
    if (
        isinstance(columns, pd.Index)
        and values.dtype == np.float64
        and values.ndim == 2
        and values.shape == (len(index), len(columns))
        and len(index)
    ):  # the live engine's frame of every step
        return _float_frame(values, index, columns)
    return pd.DataFrame(values, index=index, columns=columns)


def _public_frame(values: np.ndarray, index: pd.Index, columns: pd.Index) -> pd.DataFrame:
    return pd.DataFrame(values, index=index, columns=columns)


def _internal_frame(values: np.ndarray, index: pd.Index, columns: pd.Index) -> pd.DataFrame:
    # one float64 block holding a copy of the values (as the constructor makes), built by
    # pandas' own block and manager classes without the constructor's dispatch
    block = new_block_2d(  # pandas-internal, checked below
        np.array(values.T, order="C"), placement=BlockPlacement(slice(0, values.shape[1]))
    )
    manager = BlockManager((block,), [columns, index], verify_integrity=False)
    return pd.DataFrame._from_mgr(manager, axes=manager.axes)  # type: ignore[attr-defined]  # pandas-internal, checked below


def _choose_frame_builder() -> Callable[[np.ndarray, pd.Index, pd.Index], pd.DataFrame]:
    # The live engine builds a window frame on every step: the constructor's dispatch is most
    # of that frame's Python calls (89 -> 19). The internal path is used only if it gives
    # exactly the public one's frame on this pandas (values copied, one C-ordered block).
    values = np.array([[1.0, np.nan, 3.0], [4.0, 5.0, -0.0]])
    index = _utc_index(np.array([0, 60], dtype="datetime64[s]").astype("datetime64[us]"))
    columns = pd.Index(["open", "close", "volume"], dtype=object)
    try:
        fast = _internal_frame(values, index, columns)
        slow = _public_frame(values, index, columns)
        blocks = (fast._mgr.blocks, slow._mgr.blocks)
        same = (
            fast.equals(slow)
            and list(fast.dtypes) == list(slow.dtypes)
            and fast.index is index
            and fast.columns is columns
            and fast.flags.allows_duplicate_labels == slow.flags.allows_duplicate_labels
            and fast.attrs == slow.attrs
            and len(blocks[0]) == len(blocks[1]) == 1
            and blocks[0][0].values.flags.c_contiguous == blocks[1][0].values.flags.c_contiguous
            and not np.shares_memory(fast["close"].to_numpy(), values)
            and fast["close"].equals(slow["close"])
        )
    except Exception:  # an internal API gone or changed
        return _public_frame
    return _internal_frame if same else _public_frame


_float_frame = _choose_frame_builder()


_PER_SECOND = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}


def epoch_seconds(index: pd.Index) -> np.ndarray:
    """Return the open times of a candle frame's index (a UTC `DatetimeIndex`) as epoch seconds."""
    times = cast(pd.DatetimeIndex, index)
    per = _PER_SECOND.get(times.unit)
    if per is not None and not times.hasnans:  # as ``as_unit("s")``, which floors, in one
        return times.asi8 // per  # array operation (the live step calls this)
    return times.as_unit("s").asi8
