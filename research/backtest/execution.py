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

`simulate` returns a vectorbt ``Portfolio`` (equity, trades, plots). `simulate_orders` runs the
same vectorbt kernel (``simulate_from_signals_nb``) with the same arguments but returns only the
order records, skipping candles where nothing can fill: what a sweep needs, at a fraction of the
time and memory. Both are checked against each other in tests/test_execution_orders.py.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import vectorbt as vbt
from vectorbt.portfolio import nb as vbt_nb
from vectorbt.portfolio.enums import OppositeEntryMode, SizeType, StopEntryPrice, StopExitPrice

from research.backtest.kernel import DIRECTION_CODES, orders_by_column_nb
from signals.costs import CostModel
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
        if self.size is not None and self.direction == "both":
            # vectorbt sizes a reversal (close and open in one order) only in amounts
            raise ValueError(
                "a fractional size cannot reverse a position (direction both): "
                "use --direction long or short with it, or all-in sizing"
            )


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
    slippage: np.ndarray | None = None,
) -> vbt.Portfolio:
    """Simulate BUY/SELL decisions (one column per parameter set) on `candles` with vectorbt.

    `slippage` (one value per candle row) replaces the cost model's, e.g. one computed with the
    candles before a period (`CostModel.warm_slippage`).
    """
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
        slippage=_slippage(candles, execution, costs, slippage)[:, None],
        init_cash=execution.init_cash,
        accumulate=False,
        upon_opposite_entry="reverse",
        freq=pd.Timedelta(seconds=timeframe_seconds(timeframe)),
        **stops,
    )


def _slippage(
    candles: pd.DataFrame,
    execution: ExecutionModel,
    costs: CostModel,
    given: np.ndarray | None,
) -> np.ndarray:
    if given is None:
        given = costs.slippage_fraction(
            candles, fill=execution.fill, notional=execution.init_cash * (execution.size or 1.0)
        )
    if len(given) != len(candles):
        raise ValueError(f"slippage has {len(given)} rows for {len(candles)} candles")
    return np.asarray(given, dtype="float64")


def slippage_from(
    candles: pd.DataFrame, start: int, end: int | None, execution: ExecutionModel, costs: CostModel
) -> np.ndarray:
    """Return the slippage of candles ``[start, end)``, read with the candles before `start`."""
    notional = execution.init_cash * (execution.size or 1.0)
    return costs.warm_slippage(candles, start, end, fill=execution.fill, notional=notional)


def _direction_signals(buy: pd.DataFrame, sell: pd.DataFrame, direction: Direction) -> dict:
    false = pd.DataFrame(False, index=buy.index, columns=buy.columns)
    if direction == "long":
        return {"entries": buy, "exits": sell, "short_entries": false, "short_exits": false}
    if direction == "short":
        return {"entries": false, "exits": false, "short_entries": sell, "short_exits": buy}
    return {"entries": buy, "exits": false, "short_entries": sell, "short_exits": false}


def simulate_orders(
    candles: pd.DataFrame,
    buy: np.ndarray,
    sell: np.ndarray,
    *,
    execution: ExecutionModel,
    costs: CostModel,
    slippage: np.ndarray | None = None,
) -> np.ndarray:
    """Return the order records `simulate` gives for (candles x columns) BUY/SELL arrays.

    Without stops a position changes only on a candle where its column has a fill signal, so
    each column is simulated over those candles alone (`research.backtest.kernel`) and the
    records' ``idx`` mapped back to candle positions; with stops every candle counts and all
    columns run in one call. Records come sorted by column, then candle.
    """
    buy = np.asarray(buy, dtype=bool).reshape(len(candles), -1)
    sell = np.asarray(sell, dtype=bool).reshape(len(candles), -1)
    if execution.fill == "next_open":
        buy, sell = _shift_down(buy), _shift_down(sell)
    price_col = "open" if execution.fill == "next_open" else "close"
    inputs = {
        "price": candles[price_col].to_numpy(dtype="float64"),
        "slippage": _slippage(candles, execution, costs, slippage),
        **{name: candles[name].to_numpy(dtype="float64") for name in ("open", "high", "low")},
        "close": candles["close"].to_numpy(dtype="float64"),
    }
    if execution.stop_loss is not None or execution.take_profit is not None:
        return _simulate_with_stops(buy, sell, inputs, execution, costs)
    size, size_type = _size(execution)
    return orders_by_column_nb(
        np.asfortranarray(buy),
        np.asfortranarray(sell),
        inputs["price"],
        inputs["slippage"],
        inputs["close"],
        float(execution.init_cash),
        float(size),
        int(size_type),
        float(costs.fee_fraction()),
        DIRECTION_CODES[execution.direction],
        int(OppositeEntryMode.Reverse),
        int(StopEntryPrice.FillPrice),
        int(StopExitPrice.StopMarket),
    )


def _size(execution: ExecutionModel) -> tuple[float, int]:
    if execution.size is None:
        return np.inf, int(SizeType.Amount)  # all-in: as much as the cash buys
    return execution.size, int(SizeType.Percent)


# Every argument of vectorbt's kernel that the stops call leaves at its default, passed
# explicitly: numba types an omitted array default by its object's id, a new type in every
# process, so the compiled kernel was never found again in the disk cache (and each process
# added an entry to it).
_KERNEL_DEFAULTS = {
    name: p.default
    for name, p in inspect.signature(vbt_nb.simulate_from_signals_nb.py_func).parameters.items()
    if p.default is not inspect.Parameter.empty
}


def _simulate_with_stops(
    buy: np.ndarray,
    sell: np.ndarray,
    inputs: dict[str, np.ndarray],
    execution: ExecutionModel,
    costs: CostModel,
) -> np.ndarray:
    # Stops can fire on any candle: one call of vectorbt's kernel over all of them, every
    # column at once, with the arguments `simulate` gives from_signals.
    k = buy.shape[1]
    size, size_type = _size(execution)
    shape = (len(buy), k)
    group_lens = np.ones(k, dtype=np.int64)
    given = dict(
        **_ls_signals(np.asfortranarray(buy), np.asfortranarray(sell), execution.direction),
        size=np.asarray(float(size)),
        price=inputs["price"][:, None],
        size_type=np.asarray(int(size_type)),
        fees=np.asarray(float(costs.fee_fraction())),
        slippage=inputs["slippage"][:, None],
        accumulate=np.asarray(0),
        upon_opposite_entry=np.asarray(int(OppositeEntryMode.Reverse)),
        open=inputs["open"][:, None],
        high=inputs["high"][:, None],
        low=inputs["low"][:, None],
        close=inputs["close"][:, None],
        sl_stop=np.asarray(np.nan if execution.stop_loss is None else execution.stop_loss),
        tp_stop=np.asarray(np.nan if execution.take_profit is None else execution.take_profit),
        stop_entry_price=np.asarray(int(StopEntryPrice.FillPrice)),
        stop_exit_price=np.asarray(int(StopExitPrice.StopMarket)),
        use_stops=True,
        # Each order is a signal's, or a stop's exit from a position that a signal opened.
        max_orders=2 * int(buy.sum() + sell.sum()) + k,
        flex_2d=True,
    )
    records, _ = vbt_nb.simulate_from_signals_nb(
        shape,
        group_lens,
        np.full(k, execution.init_cash, dtype=np.float64),
        vbt_nb.build_call_seq(shape, group_lens),
        **{**_KERNEL_DEFAULTS, **given},
    )
    return records.copy()


def _shift_down(flags: np.ndarray) -> np.ndarray:
    shifted = np.zeros_like(flags)
    shifted[1:] = flags[:-1]
    return shifted


def _ls_signals(buy: np.ndarray, sell: np.ndarray, direction: Direction) -> dict[str, np.ndarray]:
    # `_direction_signals` in vectorbt's long/short mode, the one from_signals takes for it.
    false = np.asarray(False)
    if direction == "long":
        out = {"long_entries": buy, "long_exits": sell}
    elif direction == "short":
        out = {"short_entries": sell, "short_exits": buy}
    else:
        out = {"long_entries": buy, "short_entries": sell}
    names = ("long_entries", "long_exits", "short_entries", "short_exits")
    return {name: out.get(name, false) for name in names}
