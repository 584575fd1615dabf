"""Signals of a strategy over candles, as wire-protocol records (the reference live must match)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from signals.data.validate import epoch_seconds, future_candles, iso
from signals.identity import params_id
from signals.warmup import start_position
from strategies import Strategy


def signal_records(
    candles: pd.DataFrame,
    strategy: Strategy,
    params: Any,
    *,
    symbol: str,
    timeframe: str,
    since: pd.Timestamp | None = None,
    first: int = 0,
    frozen_id: str | None = None,
) -> list[dict[str, Any]]:
    """Return one wire-protocol signal object (no ``seq``/``emitted_at``) per emitted signal.

    `since` keeps only signals on candles at or after it (the candles before still warm up);
    `first`, only those from candle position `first` on.
    `frozen_id` is the ``params_id`` of the frozen file the set comes from: its signals carry
    the file's id, which a file frozen under other shared code keeps (signals/frozen.py).
    """
    start = max(first, start_position(candles.index, since))
    # as warmed_signals(candles, strategy, params, start=start), without slicing the candles
    # and the frame: the live engine calls this on every step, where each pandas call counts
    frame = strategy.signals(candles, params)
    listed = frame.signal_list(first=start)
    if not listed:
        return []
    pid = frozen_id or params_id(strategy, timeframe, params)
    at = np.fromiter((row[0] for row in listed), dtype=np.intp, count=len(listed))
    times = epoch_seconds(candles.index)[at]
    closes = candles["close"].to_numpy(dtype="float64")[at]
    return [
        {
            "type": "signal",
            "signal": side,
            "symbol": symbol,
            "timeframe": timeframe,
            "candle_ts": int(times[k]),
            "price": float(closes[k]),
            "confidence": confidence,
            "reasons": reasons,
            "strategy": strategy.name,
            "params_id": pid,
        }
        for k, (_, side, confidence, reasons) in enumerate(listed)
    ]


SHOWN_FUTURE = 5


def drop_future(
    candles: pd.DataFrame, timeframe: str, *, now: float, tolerance_s: float
) -> tuple[pd.DataFrame, np.ndarray]:
    """Return `candles` without the candles from the future, and the open times refused."""
    ts = epoch_seconds(candles.index)
    refused = future_candles(ts, timeframe, now, tolerance_s)
    if not len(refused):
        return candles, refused
    return candles[~np.isin(ts, refused)], refused


def future_warning(refused: np.ndarray, *, tolerance_s: float) -> str:
    """Return the one-line warning that names the candles refused as from the future."""
    shown = ", ".join(iso(int(t)) for t in refused[:SHOWN_FUTURE])
    more = f", ... ({len(refused) - SHOWN_FUTURE} more)" if len(refused) > SHOWN_FUTURE else ""
    noun = "candle" if len(refused) == 1 else "candles"
    return (
        f"warning: refused {len(refused)} {noun} from the future (closing after the clock + "
        f"{tolerance_s:g} s), no signal on them: {shown}{more}"
    )
