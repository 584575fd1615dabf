"""Cross-check against an independent engine: backtesting.py replays our ema_cross decisions.

The same BUY/SELL arrays, long-only and all-in, go through our engine (vectorbt, via
`research.backtest.run.run_backtest`) and through backtesting.py, whose `Strategy.next()` only reads
the precomputed arrays. Both fill a decision made at candle t's close at open[t+1]. The two must
agree on every trade's entry and exit candle and, within `PER_TRADE_RTOL` x trades, on the final
equity. docs/crosscheck.md explains where the engines differ and why the tolerance is what it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
from backtesting import Strategy as BtStrategy
from backtesting.lib import FractionalBacktest

from research.backtest.execution import ExecutionModel
from research.backtest.run import BacktestResult, run_backtest
from signals.costs import CostModel
from strategies import get_strategy
from tests.candles import random_walk

pytestmark = [
    # backtesting.py reports our (deliberately) open last trade, and its stats module calls a
    # pandas API that pandas 3 deprecates; neither concerns the comparison.
    pytest.mark.filterwarnings("ignore:Some trades remain open at the end of backtest"),
    pytest.mark.filterwarnings("ignore:DatetimeIndex.dayofweek is deprecated"),
]

CASH = 10_000.0
# Our costs: 5.5 bps taker fee + 1 bps slippage per fill. backtesting.py's commission is charged
# on entry and on exit, like ours; its `spread` only on entry, so slippage goes into commission.
COSTS = CostModel(fee_bps=5.5, slippage_bps=1.0)
COMMISSION = COSTS.fee_fraction() + COSTS.slippage_fraction(pd.DataFrame(index=[0]))[0]
ALL_IN = 1 - 1e-9  # backtesting.py reads size >= 1 as units; a fraction just below 1 is all-in
SATOSHI = 1e-8  # FractionalBacktest trades whole units of this many BTC
PER_TRADE_RTOL = 1e-7  # see docs/crosscheck.md


class Replay(BtStrategy):
    """A backtesting.py strategy that executes precomputed BUY/SELL decisions, long-only."""

    buy_flags: ClassVar[Any] = None
    sell_flags: ClassVar[Any] = None

    def init(self) -> None:
        """Nothing to compute: the decisions are given."""

    def next(self) -> None:
        """On candle i, buy all-in on a BUY when flat and close the long on a SELL."""
        i = len(self.data) - 1
        if self.buy_flags[i] and not self.position:
            self.buy(size=ALL_IN)
        elif self.sell_flags[i] and self.position:
            self.position.close()


def run_ours(candles: pd.DataFrame, timeframe: str, costs: CostModel) -> BacktestResult:
    """Our engine: ema_cross with default params, next-open fills, long-only, all-in."""
    execution = ExecutionModel(fill="next_open", direction="long", init_cash=CASH)
    return run_backtest(
        candles, get_strategy("ema_cross"), timeframe=timeframe, execution=execution, costs=costs
    )


def run_backtesting_py(candles: pd.DataFrame, ours: BacktestResult, commission: float) -> Any:
    """backtesting.py on the same candles, replaying our decisions."""
    data = candles[["open", "high", "low", "close", "volume"]].rename(columns=str.capitalize)
    data.index = data.index.tz_localize(None)
    bt = FractionalBacktest(
        data,
        Replay,
        cash=CASH,
        commission=commission,
        spread=0.0,
        trade_on_close=False,  # market orders fill at the next open (its default)
        exclusive_orders=False,
        finalize_trades=False,  # an open last trade is valued at the last close, not sold
        fractional_unit=SATOSHI,
    )
    return bt.run(buy_flags=ours.signals.buy.to_numpy(), sell_flags=ours.signals.sell.to_numpy())


def compare(candles: pd.DataFrame, timeframe: str, costs: CostModel, commission: float) -> float:
    """Assert the two engines agree; return the relative difference of final equity."""
    ours = run_ours(candles, timeframe, costs)
    stats = run_backtesting_py(candles, ours, commission)
    closed, still_open = stats["_trades"], stats["_strategy"].trades
    assert len(ours.trades) == len(closed) + len(still_open) > 5
    done = ours.trades[ours.trades.status == "closed"]
    naive = lambda s: pd.DatetimeIndex(s).tz_localize(None)  # noqa: E731
    assert naive(done.entry_time).equals(pd.DatetimeIndex(closed.EntryTime))
    assert naive(done.exit_time).equals(pd.DatetimeIndex(closed.ExitTime))
    ours_final = CASH * (1 + ours.metrics["total_return"])
    difference = ours_final / stats["Equity Final [$]"] - 1
    assert abs(difference) <= PER_TRADE_RTOL * len(ours.trades), difference
    assert np.isclose(ours.metrics["total_return"], stats["Return [%]"] / 100, rtol=0, atol=1e-5)
    return difference


def test_same_trades_and_return_on_random_walk() -> None:
    candles = random_walk(4000, seed=11, freq="1min")
    compare(candles, "1m", COSTS, COMMISSION)


def test_same_trades_and_return_without_costs() -> None:
    # Without costs only whole-satoshi sizing separates the engines.
    candles = random_walk(3000, seed=12, freq="1min")
    free = CostModel(fee_bps=0.0, slippage_bps=0.0)
    assert abs(compare(candles, "1m", free, 0.0)) < 1e-7


def read_interchange(path: Path, *, tail: int) -> pd.DataFrame:
    """The last `tail` candles of an interchange CSV (timestamp = open time, epoch seconds)."""
    frame = pd.read_csv(path).tail(tail)
    frame.index = pd.to_datetime(frame.pop("timestamp"), unit="s", utc=True)
    return frame


@pytest.mark.parametrize(
    ("name", "timeframe", "rows"),
    [("BTCUSDT-1m-2023-04.csv.gz", "1m", 5000), ("BTCUSDT-1h-2017-08_2023-06.csv.gz", "1h", 8760)],
)
def test_same_trades_and_return_on_real_candles(
    shared_data: Path, name: str, timeframe: str, rows: int
) -> None:
    candles = read_interchange(shared_data / name, tail=rows)
    compare(candles, timeframe, COSTS, COMMISSION)
