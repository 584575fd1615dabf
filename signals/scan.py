"""Signals of a strategy over candles, as wire-protocol records (the reference live must match)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from signals.data.validate import epoch_seconds
from strategies import Strategy, params_id


def signal_records(
    candles: pd.DataFrame,
    strategy: Strategy,
    params: Any,
    *,
    symbol: str,
    timeframe: str,
    since: pd.Timestamp | None = None,
) -> list[dict[str, Any]]:
    """Return one wire-protocol signal object (no ``seq``/``emitted_at``) per emitted signal.

    `since` keeps only signals on candles at or after it (the candles before still warm up).
    """
    listed = strategy.signals(candles, params).signal_list(since)
    if not listed:
        return []
    pid = params_id(strategy, timeframe, params)
    at = [row[0] for row in listed]
    times = epoch_seconds(candles.index[at])
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
