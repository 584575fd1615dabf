"""Warm up, then trade from `since`: the one way every side starts a strategy at a candle.

The candles before the start only warm the strategy's indicators up. Its signals are computed
on them too and then cut away, so the first decision at the start is the one the strategy makes
with that history behind it. The backtest, the walk-forward windows, the sweep, ``signals scan``
the notebooks and the paper-versus-backtest comparison all start a period this way. The
slippage model is warmed up the same way (`CostModel.warm_slippage`): an ATR-based slippage on
the first fills of a period reads the candles before it, as the live paper bot's does.

>>> period, frame = warmed_signals(candles, strategy, params, start=start_position(
...     candles.index, since))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, TypeVar

import pandas as pd

from strategies import SignalFrame, Strategy

Rows = TypeVar("Rows", pd.DataFrame, pd.Series)


def start_position(index: pd.Index, since: pd.Timestamp | None) -> int:
    """Return the position of the first candle at or after `since` (0 without it)."""
    return 0 if since is None else int(index.searchsorted(since, side="left"))


def from_since(rows: Rows, since: pd.Timestamp | None) -> Rows:
    """Return the rows (candles, or any series on their index) at or after `since`."""
    return rows.iloc[start_position(rows.index, since) :]


def warmed_signals(
    candles: pd.DataFrame,
    strategy: Strategy,
    params: Any,
    *,
    start: int = 0,
    end: int | None = None,
    warmup: int | None = None,
) -> tuple[pd.DataFrame, SignalFrame]:
    """Return candles ``[start, end)`` and the strategy's signals on them, warmed up before.

    The signals are computed from `warmup` candles before `start` (all of them when None) up to
    `end`, so no candle at or after `end` is read.
    """
    end = len(candles) if end is None else end
    low = 0 if warmup is None else max(0, start - warmup)
    frame = strategy.signals(_rows(candles, low, end), params)
    return _rows(candles, start, end), frame.from_position(start - low) if start > low else frame


def _rows(candles: pd.DataFrame, low: int, end: int) -> pd.DataFrame:
    return candles if (low, end) == (0, len(candles)) else candles.iloc[low:end]
