"""Decide the signal of each newly closed candle, exactly as the backtest decided it.

The engine keeps a rolling window of the last ``lookback + WINDOW_MARGIN`` valid closed candles
in memory. Each step reads only the candles that closed since the previous one, validates
them, appends them to the window and calls the strategy's own signal function on it, through
the same `signals.scan.signal_records` that ``signals scan`` uses. Because a strategy's
decision at a candle depends only on its last ``lookback`` candles (strategies/base.py), the
window gives the very decision full history gives. After downtime, all candles that closed
meanwhile are decided in one call, with their original ``candle_ts``. The window is seeded
from the store on the first step, and again whenever the caller's mark is not where the
window ends (a restart, a reload, a retried step).

Closed candles are final (ARCHITECTURE.md), but a pipeline may still rewrite one after it was
decided. Each step re-reads the last `OVERLAP` decided candles with the new ones and compares
them with the window; `verify_window` compares the whole window (the runner calls it when idle
and on reload). A difference is reported as rewritten (the window takes the store's values, so
later decisions are those ``signals scan`` gives on the final store); the signal already emitted
stands. A candle inserted behind the mark is never decided (the mark only moves forward).

A strategy that raises on a step is retried candle by candle: the candle on which it raises is
reported in `Decisions.failed` with the error, and the others are decided as usual.

Invalid candles (high below max(open, close), NaN or negative values, buy volume above volume)
are logged once with their timestamp and left out of the window, so they never reach the
strategy. Gaps are not filled: like research, the strategy sees the candles that exist, so
signals across a gap are the ones ``signals scan`` gives on the same stored candles.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from signals.data.schema import CANDLE_COLUMNS
from signals.data.store import CandleStore, frame_from_arrays
from signals.data.validate import check_arrays, clean_matrix, epoch_seconds
from signals.frozen import FrozenParams, typed_params
from signals.scan import signal_records
from signals.strategy_paths import get_strategy
from signals.timeframes import timeframe_seconds

log = logging.getLogger(__name__)
WINDOW_MARGIN = 64
OVERLAP = 3  # decided candles each step reads again, to notice a rewrite of the latest ones
COLUMNS = pd.Index(CANDLE_COLUMNS, dtype=object)  # built once, reused by every step (plain
# labels: a column lookup on an object index is faster than on an Arrow string one)


@dataclass
class Decisions:
    """What one step decided: the signal records and the newest candle it covered.

    `timestamps` lists the open times of the new closed candles the step covered (invalid ones
    included), so a caller can log gaps.
    """

    records: list[dict[str, Any]] = field(default_factory=list)
    last_candle_ts: int | None = None
    candles: int = 0
    skipped: list[int] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)
    rewritten: list[int] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)
    beyond: list[int] = field(default_factory=list)  # closed candles after `until`: not decided


class SignalEngine:
    """The strategy of one frozen file, applied to newly closed candles of one store."""

    def __init__(self, frozen: FrozenParams) -> None:
        self.frozen = frozen
        self.strategy = get_strategy(frozen.strategy)
        self.params = typed_params(frozen)
        self.lookback = self.strategy.lookback(self.params, frozen.timeframe)
        self.symbol, self.timeframe = frozen.symbol, frozen.timeframe
        self._step = timeframe_seconds(frozen.timeframe)
        # the last valid candles, oldest first: open times and a (candles x CANDLE_COLUMNS) matrix
        self._window: tuple[np.ndarray, np.ndarray] | None = None
        self._window_end: int | None = None  # open time of the newest candle read

    def newest_closed(self, store: CandleStore, until: int | None = None) -> int | None:
        """Return the open time of the newest closed candle (opening at or before `until`)."""
        last = store.last_closed(self.symbol, self.timeframe, 1, until=until)
        return int(last.index[-1].timestamp()) if len(last) else None

    def reset(self) -> None:
        """Forget the window: the next step reads it from the store again."""
        self._window, self._window_end = None, None

    def verify_window(self, store: CandleStore) -> tuple[list[int], int]:
        """Compare the window with the store and take its values: (rewritten, missing) candles.

        `missing` counts window candles the store no longer holds (a replaced database).
        """
        if self._window is None or not len(self._window[0]):
            return [], 0
        ts = self._window[0]
        fresh_ts, fresh = store.closed_since_arrays(
            self.symbol, self.timeframe, int(ts[0]) - 1, until=int(ts[-1])
        )
        missing = int((~np.isin(ts, fresh_ts)).sum())
        return self._compare(fresh_ts, fresh), missing

    def _compare(self, fresh_ts: np.ndarray, fresh: np.ndarray) -> list[int]:
        # Rows of the store that the window holds: report and adopt the ones that differ.
        if self._window is None or not len(fresh_ts):
            return []
        ts, values = self._window
        at = np.searchsorted(ts, fresh_ts)
        held = (at < len(ts)) & (ts[np.minimum(at, len(ts) - 1)] == fresh_ts)
        if not held.any():
            return []
        mine, theirs = values[at[held]], fresh[held]
        same = (mine == theirs) | (np.isnan(mine) & np.isnan(theirs))
        changed = ~same.all(axis=1)
        if not changed.any():
            return []
        values = values.copy()
        values[at[held][changed]] = theirs[changed]
        self._window = (ts, values)
        return [int(t) for t in fresh_ts[held][changed]]

    def prime(self, store: CandleStore, mark: int) -> None:
        """Seed the window ending at `mark` and run the strategy on it once, result unused.

        The next step then reads only the candles after `mark`, and meets strategy code that
        has already run once in this process (first calls are slower).
        """
        ts, values = self._window_before(store, mark)
        self._window, self._window_end = (ts, values), mark
        if len(ts) >= self.lookback:
            frame = frame_from_arrays(ts, values, COLUMNS)
            try:
                self.strategy.signals(frame, self.params).signal_list()
            except Exception as exc:  # its result is unused: a step reports a real failure
                log.warning("event=prime_failed candle_ts=%d error=%r", mark, str(exc))

    def window_ends_at(self, after_ts: int | None) -> bool:
        """Return whether a step from `after_ts` reads only new candles (the window is seeded)."""
        return self._window is not None and self._window_end == after_ts

    def step(
        self, store: CandleStore, after_ts: int | None, *, until: int | None = None
    ) -> Decisions:
        """Decide every closed candle newer than `after_ts` (all of history when None).

        `until` (an open time) bounds what may be decided: the runner's settle and
        future-candle rules; candles after it wait for a later step.
        """
        rewritten: list[int] = []
        if after_ts is None:
            fresh_ts, fresh = _arrays(store.history(self.symbol, self.timeframe))
        elif self.window_ends_at(after_ts) and self._window is not None and len(self._window[0]):
            # read the last OVERLAP decided candles again: a rewrite of them is seen at once
            ts, values = self._window
            since = int(ts[-min(OVERLAP, len(ts))]) - 1
            got_ts, got = store.closed_since_arrays(self.symbol, self.timeframe, since)
            k = int(np.searchsorted(got_ts, after_ts, side="right"))  # rows already decided
            unchanged = (
                k <= len(ts)
                and got_ts[:k].tobytes() == ts[len(ts) - k :].tobytes()
                and got[:k].tobytes() == values[len(ts) - k :].tobytes()
            )  # the usual case, in two byte comparisons (a step is on the latency path); any
            # other case (-0.0 for 0.0 included) is compared value by value
            if not unchanged:
                rewritten = self._compare(got_ts[:k], got[:k])
            fresh_ts, fresh = got_ts[k:], got[k:]
        else:
            fresh_ts, fresh = store.closed_since_arrays(self.symbol, self.timeframe, after_ts)
        beyond: list[int] = []
        if until is not None and len(fresh_ts) and fresh_ts[-1] > until:
            later = fresh_ts > until
            beyond = [int(t) for t in fresh_ts[later]]
            fresh_ts, fresh = fresh_ts[~later], fresh[~later]
        if not len(fresh_ts):
            return Decisions(last_candle_ts=after_ts, rewritten=rewritten, beyond=beyond)
        earlier_ts, earlier = self._window_before(store, after_ts)
        keep, skipped = self._valid(fresh_ts, fresh, log_them=True)
        window_ts = np.concatenate([earlier_ts, fresh_ts[keep]])
        window = np.concatenate([earlier, fresh[keep]])
        records, failed = self._decide(window_ts, window, fresh_ts[keep])
        size = self.lookback + WINDOW_MARGIN
        self._window = (window_ts[-size:], window[-size:])
        self._window_end = int(fresh_ts[-1])
        return Decisions(
            records=records,
            last_candle_ts=self._window_end,
            candles=int(keep.sum()) - len(failed),
            skipped=skipped,
            timestamps=[int(ts) for ts in fresh_ts],
            rewritten=rewritten,
            failed=failed,
            beyond=beyond,
        )

    def _decide(
        self, window_ts: np.ndarray, window: np.ndarray, new_ts: np.ndarray
    ) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
        # The signal records of the new candles; on an error, candle by candle (see module doc).
        if not len(new_ts):
            return [], []
        try:
            return self._records(window_ts, window, int(new_ts[0]), len(window_ts)), []
        except Exception:  # a strategy's own bug: find the candle(s) it fails on
            pass
        records: list[dict[str, Any]] = []
        failed: list[tuple[int, str]] = []
        start = len(window_ts) - len(new_ts)
        for k, ts in enumerate(new_ts):
            try:
                records += self._records(window_ts, window, int(ts), start + k + 1)
            except Exception as exc:
                log.exception("event=strategy_error candle_ts=%d error=%r", int(ts), str(exc))
                failed.append((int(ts), f"{type(exc).__name__}: {exc}"))
        return records, failed

    def _records(
        self, window_ts: np.ndarray, window: np.ndarray, since: int, end: int
    ) -> list[dict[str, Any]]:
        # The records of the candles from `since` of the window's first `end` rows.
        frame = frame_from_arrays(window_ts[:end], window[:end], COLUMNS)
        return signal_records(
            frame, self.strategy, self.params, symbol=self.symbol, timeframe=self.timeframe,
            first=int(np.searchsorted(window_ts[:end], since)), frozen_id=self.frozen.params_id,
        )  # fmt: skip

    def _window_before(
        self, store: CandleStore, after_ts: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        # The valid candles up to `after_ts`: the rolling window if it ends there, else read.
        if after_ts is None:  # all of history is new: nothing comes before it
            return np.empty(0, dtype="int64"), np.empty((0, len(CANDLE_COLUMNS)))
        if self._window is not None and self._window_end == after_ts:  # see window_ends_at
            return self._window
        size = self.lookback + WINDOW_MARGIN
        ts, values = _arrays(store.last_closed(self.symbol, self.timeframe, size, until=after_ts))
        # Invalid candles were logged when they were new; here they are only left out.
        keep, _ = self._valid(ts, values, log_them=False)
        return ts[keep], values[keep]

    def _valid(
        self, ts: np.ndarray, values: np.ndarray, *, log_them: bool
    ) -> tuple[np.ndarray, list[int]]:
        # A mask of the candles that pass validation, and the open times of those that do not.
        if clean_matrix(ts, values, self._step):  # the usual case, without the detailed checks
            return np.ones(len(ts), dtype=bool), []
        columns = {name: values[:, i] for i, name in enumerate(CANDLE_COLUMNS)}
        violations = check_arrays(
            ts, columns, timeframe=self.timeframe, symbol=self.symbol, origin="live window"
        )
        if not violations:
            return np.ones(len(ts), dtype=bool), []
        bad = sorted({v.timestamp for v in violations if v.timestamp is not None})
        if log_them:
            for violation in violations:
                log.warning("skipping invalid candle: %s", violation)
        return ~np.isin(ts, bad), bad


def _arrays(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    # A candle frame as open times and a (candles x CANDLE_COLUMNS) float64 matrix.
    return epoch_seconds(frame.index), frame[list(CANDLE_COLUMNS)].to_numpy(dtype="float64")
