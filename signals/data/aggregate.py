"""Aggregate candles to a higher timeframe, consistently with the base candles.

A higher-timeframe candle is *complete* only when every base candle in it is present; the store
writes incomplete ones with ``closed = 0`` so that no strategy ever sees a half-built candle.
"""

from __future__ import annotations

import pandas as pd

from signals.data.frames import epoch_seconds
from signals.timeframes import timeframe_seconds


def aggregate(frame: pd.DataFrame, *, base: str, target: str) -> pd.DataFrame:
    """Aggregate `frame` of `base` candles to `target`, adding a boolean ``complete`` column.

    Buckets are aligned to the UTC epoch (a 4h candle opens at 00:00, 04:00, ...). ``buy_volume``
    and ``trades`` are summed and stay NaN when any base candle of the bucket lacks them.
    """
    step, size = timeframe_seconds(base), timeframe_seconds(target)
    if size % step or size <= step:
        raise ValueError(f"cannot aggregate {base} to {target}: not a whole multiple")
    if frame.empty:
        out = frame.iloc[0:0].copy()
        out["complete"] = pd.Series([], dtype=bool)
        return out
    seconds = epoch_seconds(frame.index)  # pandas 3 indexes may be s, ms, us or ns
    bucket = pd.DatetimeIndex(pd.to_datetime(seconds - seconds % size, unit="s", utc=True))
    grouped = frame.groupby(bucket, sort=True)
    out = pd.DataFrame(
        {
            "open": grouped["open"].first(),
            "high": grouped["high"].max(),
            "low": grouped["low"].min(),
            "close": grouped["close"].last(),
            "volume": grouped["volume"].sum(),
            "buy_volume": grouped["buy_volume"].sum(min_count=1),
            "trades": grouped["trades"].sum(min_count=1),
        }
    )
    counts = grouped["close"].size()
    for col in ("buy_volume", "trades"):
        has_all = grouped[col].count() == counts
        out[col] = out[col].where(has_all)
    out["complete"] = counts == size // step
    out.index.name = "time"
    return out
