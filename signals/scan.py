"""Signals of a strategy over candles, as wire-protocol records (the reference live must match)."""

from __future__ import annotations

from typing import Any

import pandas as pd

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
    rows = strategy.signals(candles, params).signal_rows()
    if since is not None:
        rows = rows[rows.index >= since]
    pid = params_id(strategy, timeframe, params)
    closes = candles["close"]
    return [
        {
            "type": "signal",
            "signal": row.signal,
            "symbol": symbol,
            "timeframe": timeframe,
            "candle_ts": int(ts.timestamp()),
            "price": float(closes.loc[ts]),
            "confidence": float(row.confidence),
            "reasons": list(row.reasons),
            "strategy": strategy.name,
            "params_id": pid,
        }
        for ts, row in zip(rows.index, rows.itertuples(index=False), strict=True)
    ]
