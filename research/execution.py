"""The execution model: how signals become fills, simulated with vectorbt.

- A signal decided at a candle's close fills at the **next candle's open** (``fill="next_open"``,
  the default: the one-candle shift happens here and nowhere else) or at that candle's close
  (``fill="close"``, optimistic). A signal on the last candle has no next open and is not filled.
- BUY opens a long and closes a short; SELL closes a long and opens a short when the direction
  allows (``long`` is the default; ``short``; ``both`` reverses on an opposite signal).
- One position at a time; all-in by default (fees charged on top of the traded notional, as
  vectorbt does), or a fraction of equity with ``size``.
- A position still open at the end is valued at the last close (it counts as a trade).
- Optional stop-loss / take-profit, as fractions of the entry (fill) price, checked on each
  candle's open/high/low from the candle after the entry candle (vectorbt does not check the
  rest of the entry candle); a stop exits at the stop price, or at the open if it gapped
  through, less slippage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import vectorbt as vbt

from research.costs import CostModel
from signals.timeframes import timeframe_seconds

Fill = Literal["next_open", "close"]
Direction = Literal["long", "short", "both"]


@dataclass(frozen=True, kw_only=True)
class ExecutionModel:
    """How and at what size signals are executed."""

    fill: Fill = "next_open"
    direction: Direction = "long"
    size: float | None = None
    stop_loss: float | None = None
    take_profit: float | None = None
    init_cash: float = 10_000.0

    def __post_init__(self) -> None:
        if self.fill not in ("next_open", "close"):
            raise ValueError(f"fill must be next_open or close, not {self.fill!r}")
        if self.direction not in ("long", "short", "both"):
            raise ValueError(f"direction must be long, short or both, not {self.direction!r}")
        if self.size is not None and not 0 < self.size <= 1:
            raise ValueError(f"size is a fraction of equity in (0, 1], not {self.size}")


def _as_frame(signal: pd.Series | pd.DataFrame) -> pd.DataFrame:
    return signal.to_frame() if isinstance(signal, pd.Series) else signal


def _positional(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.set_axis(pd.RangeIndex(len(frame)), axis=0)


def fill_signals(
    buy: pd.DataFrame, sell: pd.DataFrame, fill: Fill
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Move decisions to the candle where they fill (next candle for ``next_open``)."""
    if fill == "close":
        return buy, sell
    return buy.shift(1, fill_value=False), sell.shift(1, fill_value=False)


def simulate(
    candles: pd.DataFrame,
    buy: pd.Series | pd.DataFrame,
    sell: pd.Series | pd.DataFrame,
    *,
    execution: ExecutionModel,
    costs: CostModel,
    timeframe: str,
) -> vbt.Portfolio:
    """Simulate BUY/SELL decisions (one column per parameter set) on `candles` with vectorbt."""
    # vectorbt runs on positions (a RangeIndex): converting a tz-aware DatetimeIndex to numpy,
    # which vectorbt's shape checks do many times, costs seconds per call under pandas 3.
    buy_f = _positional(_as_frame(buy).astype(bool))
    sell_f = _positional(_as_frame(sell).astype(bool))
    buy_f, sell_f = fill_signals(buy_f, sell_f, execution.fill)
    price_col = "open" if execution.fill == "next_open" else "close"
    column = lambda name: candles[name].to_numpy(dtype="float64")[:, None]  # noqa: E731
    signals = _direction_signals(buy_f, sell_f, execution.direction)
    # Stops are fractions of the fill price (vectorbt's default is the fill candle's close) and
    # exit as market orders that pay slippage (its default, stop-limit, pays none).
    stops: dict = {"stop_entry_price": "fillprice", "stop_exit_price": "stopmarket"}
    if execution.stop_loss is not None:
        stops["sl_stop"] = execution.stop_loss
    if execution.take_profit is not None:
        stops["tp_stop"] = execution.take_profit
    size, size_type = (np.inf, "amount") if execution.size is None else (execution.size, "percent")
    return vbt.Portfolio.from_signals(
        close=pd.Series(candles["close"].to_numpy(dtype="float64"), index=buy_f.index),
        **signals,
        price=column(price_col),
        open=column("open"),
        high=column("high"),
        low=column("low"),
        size=size,
        size_type=size_type,
        fees=costs.fee_fraction(),
        slippage=costs.slippage_fraction(
            candles, fill=execution.fill, notional=execution.init_cash * (execution.size or 1.0)
        )[:, None],
        init_cash=execution.init_cash,
        accumulate=False,
        upon_opposite_entry="reverse",
        freq=pd.Timedelta(seconds=timeframe_seconds(timeframe)),
        **stops,
    )


def _direction_signals(buy: pd.DataFrame, sell: pd.DataFrame, direction: Direction) -> dict:
    false = pd.DataFrame(False, index=buy.index, columns=buy.columns)
    if direction == "long":
        return {"entries": buy, "exits": sell, "short_entries": false, "short_exits": false}
    if direction == "short":
        return {"entries": false, "exits": false, "short_entries": sell, "short_exits": buy}
    return {"entries": buy, "exits": false, "short_entries": sell, "short_exits": false}
