"""Golden, hand-computed backtests (STYLE P7a): tiny candle tables, trades and P&L worked by hand.

Every table is hourly (timeframe ``1h``) and starts with 10,000 cash. The decision row marks
what a strategy decided at each candle's close: ``B`` = BUY, ``S`` = SELL, ``.`` = nothing.

Conventions pinned here (vectorbt's, through `research.backtest.execution.simulate`):

- a decision at candle t fills at open[t+1] (``next_open``) or at close[t] (``close``);
- all-in sizing with fees on top of the notional: size = cash / (fill x (1 + fee)), so the
  entry fee is cash x fee / (1 + fee); the exit fee is size x exit x fee;
- slippage s moves the fill: a buy fills at price x (1 + s), a sell at price x (1 - s);
- a trade's return is pnl / (size x entry price): fees are in the pnl, not in the base;
- a position still open at the end is valued at the last close, with no exit fee.

Changing an expected value here needs a comment in the same diff saying why (STYLE P7).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest
import vectorbt as vbt

from research.backtest.execution import ExecutionModel, simulate
from research.backtest.metrics import METRIC_KEYS
from research.backtest.run import portfolio_metrics, trade_list
from signals.costs import CostModel

CASH = 10_000.0
HOURS_PER_YEAR = 365 * 24

# Gapped candles: open[t+1] differs from close[t], so next-open and close fills differ.
TABLE_A = """
    open  high  low  close
     100   102   98    101
     102   112  101    110
     111   122  110    120
     118   121  108    109
     108   110   99    100
     100   101   98     99
"""


@dataclass(frozen=True)
class Run:
    """The outputs of one simulated table."""

    pf: vbt.Portfolio
    trades: pd.DataFrame
    metrics: dict[str, Any]
    equity: list[float]


def table(text: str) -> pd.DataFrame:
    """Parse a whitespace table of open/high/low/close into hourly candles."""
    lines = [line.split() for line in text.strip().splitlines()]
    frame = pd.DataFrame([[float(v) for v in row] for row in lines[1:]], columns=lines[0])
    frame.index = pd.date_range("2024-01-01", periods=len(frame), freq="1h", tz="UTC")
    frame["volume"] = 1.0
    return frame


def run(
    candles: pd.DataFrame,
    marks: str,
    *,
    fee_bps: float = 0.0,
    slip_bps: float = 0.0,
    **execution: Any,
) -> Run:
    """Simulate the decisions `marks` ("B . S ...") on `candles`."""
    codes = marks.split()
    assert len(codes) == len(candles)
    buy = pd.Series([c == "B" for c in codes], index=candles.index)
    sell = pd.Series([c == "S" for c in codes], index=candles.index)
    pf = simulate(
        candles,
        buy,
        sell,
        execution=ExecutionModel(**execution),
        costs=CostModel(fee_bps=fee_bps, slippage_bps=slip_bps),
        timeframe="1h",
    )
    metrics = portfolio_metrics(pf, candles, "1h").iloc[0].to_dict()
    equity = [float(v) for v in pf.value().to_numpy().ravel()]
    return Run(pf, trade_list(pf, candles.index), metrics, equity)


def approx(value: float) -> Any:
    """Relative tolerance for hand-rounded literals (7+ significant digits)."""
    return pytest.approx(value, rel=1e-7, abs=1e-9)


def assert_trade(row: pd.Series, **expected: Any) -> None:
    """Check the named fields of one trade row."""
    for key, value in expected.items():
        if isinstance(value, float):
            assert row[key] == approx(value), key
        else:
            assert row[key] == value, key


# --- fills, fees, slippage -------------------------------------------------------------------


def test_next_open_fill_long_with_fees() -> None:
    # BUY at t0 fills at open[1] = 102; SELL at t2 fills at open[3] = 118. Fee 10 bps per side.
    # size  = 10000 / (102 x 1.001)           = 97.941274   (fees on top: vectorbt buy_nb)
    # entry fee = 10000 x 0.001 / 1.001       = 9.990010
    # exit  = size x 118 x 0.999              = 11545.513310 cash after the trade
    # exit fee = size x 118 x 0.001           = 11.557070   -> fees 21.547080
    # pnl   = 11545.513310 - 10000            = 1545.513310
    # return = (118 x 0.999 - 102 x 1.001) / 102 = (117.882 - 102.102) / 102 = 0.154706
    r = run(table(TABLE_A), "B . S . . .", fee_bps=10)
    assert len(r.trades) == 1
    assert_trade(
        r.trades.iloc[0],
        direction="long",
        status="closed",
        entry_price=102.0,
        exit_price=118.0,
        size=97.941274,
        fees=21.547080,
        pnl=1545.513310,
        **{"return": 0.15470588},
    )
    assert r.trades.iloc[0].entry_time == table(TABLE_A).index[1]
    assert r.trades.iloc[0].exit_time == table(TABLE_A).index[3]
    # Equity at each close: flat, size x 110, size x 120, then cash.
    assert r.equity == [approx(v) for v in [CASH, 10773.540185, 11752.952929] + [11545.513310] * 3]
    assert r.metrics["fees_paid"] == approx(21.547080)


def test_fill_at_close() -> None:
    # BUY at t0 fills at close[0] = 101; SELL at t2 fills at close[2] = 120. Fee 10 bps.
    # cash = 10000 x 120 x 0.999 / (101 x 1.001) = 10000 x 119.88 / 101.101 = 11857.449481
    # return = (119.88 - 101.101) / 101 = 0.185931
    r = run(table(TABLE_A), "B . S . . .", fee_bps=10, fill="close")
    assert_trade(r.trades.iloc[0], entry_price=101.0, exit_price=120.0, pnl=1857.449481)
    assert r.trades.iloc[0]["return"] == approx(0.18593069)
    assert r.equity[-1] == approx(11857.449481)


def test_slippage_moves_fill_prices() -> None:
    # Slippage 10 bps, no fee: buy at 102 x 1.001 = 102.102, sell at 118 x 0.999 = 117.882.
    # size = 10000 / 102.102 = 97.941274; cash = size x 117.882 = 11545.513310: the same as a
    # 10 bps fee (both scale the round trip by 0.999 / 1.001), but no fee is paid.
    r = run(table(TABLE_A), "B . S . . .", slip_bps=10)
    assert_trade(
        r.trades.iloc[0], entry_price=102.102, exit_price=117.882, size=97.941274, fees=0.0
    )
    assert r.equity[-1] == approx(11545.513310)
    assert r.metrics["fees_paid"] == 0.0


def test_short() -> None:
    # SELL at t0 opens a short at open[1] = 102; BUY at t2 covers at open[3] = 118. Fee 10 bps.
    # size = 10000 / (102 x 1.001) = 97.941274 (the same all-in sizing as a long)
    # pnl  = size x (102 x 0.999 - 118 x 1.001) = size x (101.898 - 118.118) = -1588.607471
    # return = -16.22 / 102 = -0.159020
    r = run(table(TABLE_A), "S . B . . .", fee_bps=10, direction="short")
    assert_trade(
        r.trades.iloc[0],
        direction="short",
        status="closed",
        entry_price=102.0,
        exit_price=118.0,
        size=97.941274,
        pnl=-1588.607471,
    )
    assert r.trades.iloc[0]["return"] == approx(-0.15901961)
    assert r.equity[-1] == approx(8411.392529)


def test_long_only_ignores_sell_entries() -> None:
    # direction="long": the SELL at t0 opens nothing; BUY at t2 opens at open[3] = 118 and is
    # still open at the end: size = 10000 / 118.118, equity = size x close[5] = 10000 x 99 / 118.118
    r = run(table(TABLE_A), "S . B . . .", fee_bps=10)
    assert_trade(r.trades.iloc[0], direction="long", status="open", entry_price=118.0)
    assert r.equity[-1] == approx(8381.449059)


def test_both_directions_reverse() -> None:
    # BUY t0 -> long at open[1] = 102; SELL t2 -> reverse at open[3] = 118; BUY t4 -> reverse at
    # open[5] = 100; the last long is open at the end (close 99). Fee 10 bps.
    # long 1: cash C1 = 10000 x 117.882 / 102.102 = 11545.513310 (as in the long test)
    # short:  size = C1 / (118 x 1.001) = C1 / 118.118 = 97.745588
    #         pnl = size x (117.882 - 100.1) = 1738.112038; return = 17.782 / 118 = 0.150695
    #         C2 = C1 + pnl = 13283.625348
    # long 2: size = C2 / 100.1, valued at 99 with no exit fee: equity = C2 x 99 / 100.1
    #         = 13137.651443; pnl = -145.973905; return = (99 - 100.1) / 100 = -0.011
    r = run(table(TABLE_A), "B . S . B .", fee_bps=10, direction="both")
    assert list(r.trades.direction) == ["long", "short", "long"]
    assert list(r.trades.status) == ["closed", "closed", "open"]
    assert_trade(r.trades.iloc[0], entry_price=102.0, exit_price=118.0, pnl=1545.513310)
    assert_trade(r.trades.iloc[1], entry_price=118.0, exit_price=100.0, size=97.745588)
    assert_trade(r.trades.iloc[1], pnl=1738.112038, **{"return": 0.15069492})
    assert_trade(r.trades.iloc[2], entry_price=100.0, exit_price=99.0, pnl=-145.973905)
    assert r.trades.iloc[2]["return"] == approx(-0.011)
    assert r.equity[-1] == approx(13137.651443)


def test_open_position_valued_at_last_close() -> None:
    # BUY at t0 fills at 102 and is never sold: size = 10000 / 102.102 = 97.941274, valued at
    # close[5] = 99: equity = 9696.186167; pnl = -303.813833 (the entry fee only, no exit fee).
    r = run(table(TABLE_A), "B . . . . .", fee_bps=10)
    assert_trade(r.trades.iloc[0], status="open", exit_price=99.0, pnl=-303.813833)
    assert r.trades.iloc[0].fees == approx(9.990010)
    assert r.equity[-1] == approx(9696.186167)
    assert r.metrics["trades"] == 1


def test_decision_on_last_candle_is_not_filled() -> None:
    # There is no open[6] for a BUY at t5: nothing happens.
    r = run(table(TABLE_A), ". . . . . B", fee_bps=10)
    assert r.trades.empty and r.equity == [CASH] * 6 and r.metrics["fees_paid"] == 0.0


# --- stops -----------------------------------------------------------------------------------

# BUY at t0 fills at open[1] = 100. Candle 2 trades down to 94, candle 3 up to 112.
TABLE_S = """
    open  high  low  close
     100   101   99    100
     100   104   99    103
     103   105   94     96
      96   112   95    111
     111   112  110    111
"""


def test_stop_loss_hit_intrabar() -> None:
    # Stop 5% below the fill: 95. Candle 2's low 94 reaches it: exit at 95 on t2.
    # size = 10000 / 100 = 100; pnl = 100 x (95 - 100) = -500; return -0.05.
    r = run(table(TABLE_S), "B . . . .", stop_loss=0.05)
    assert_trade(r.trades.iloc[0], status="closed", exit_price=95.0, size=100.0, pnl=-500.0)
    assert r.trades.iloc[0].exit_time == table(TABLE_S).index[2]


def test_take_profit_hit_intrabar() -> None:
    # Target 10% above the fill: 110. Candle 2's high 105 misses, candle 3's high 112 hits.
    # pnl = 100 x (110 - 100) = 1000; return 0.10.
    r = run(table(TABLE_S), "B . . . .", take_profit=0.10)
    assert_trade(r.trades.iloc[0], status="closed", exit_price=110.0, pnl=1000.0)
    assert r.trades.iloc[0].exit_time == table(TABLE_S).index[3]


def test_stop_loss_gap_fills_at_open() -> None:
    # Candle 2 opens at 93, below the 95 stop: the stop fills at the open, 93.
    candles = table(TABLE_S)
    candles.iloc[2, :] = [93.0, 95.0, 92.0, 94.0, 1.0]
    r = run(candles, "B . . . .", stop_loss=0.05)
    assert_trade(r.trades.iloc[0], exit_price=93.0, pnl=-700.0)


def test_stop_measured_from_fill_price_and_pays_slippage() -> None:
    # Slippage 10 bps: entry fill 100 x 1.001 = 100.1, stop = 100.1 x 0.95 = 95.095 (not 5%
    # below the entry candle's close 103, vectorbt's default), exit = 95.095 x 0.999 = 94.999905.
    # pnl = (10000 / 100.1) x (94.999905 - 100.1) = -509.5
    r = run(table(TABLE_S), "B . . . .", slip_bps=10, stop_loss=0.05)
    assert_trade(r.trades.iloc[0], entry_price=100.1, exit_price=94.999905, pnl=-509.5)


def test_stop_not_checked_on_entry_candle() -> None:
    # A known simplification (vectorbt checks stops from the candle after the fill): candle 1's
    # low 90 is below the 95 stop after the 100 fill at its open, yet the stop fires only on
    # candle 3, the first later candle whose low (95) reaches it.
    candles = table(TABLE_S)
    candles.iloc[1, :] = [100.0, 104.0, 90.0, 103.0, 1.0]
    candles.iloc[2, :] = [103.0, 105.0, 96.0, 97.0, 1.0]
    r = run(candles, "B . . . .", stop_loss=0.05)
    assert_trade(r.trades.iloc[0], status="closed", exit_price=95.0)
    assert r.trades.iloc[0].exit_time == candles.index[3]


# --- every metric, on one table --------------------------------------------------------------

# Three long trades, fee 10 bps: a win, a loss, and a win still open at the end.
TABLE_M = """
    open  high  low  close
     100   101   94     95
     100   111   99    110
     110   121  109    120
     120   121  109    110
     110   111   99    100
     100   101   89     90
      90    91   79     80
      80    81   79     80
      80    91   79     90
      90   101   89    100
"""
MARKS_M = "B . S . B . S . B ."


def hand_equity() -> list[float]:
    """The equity at each close of TABLE_M, derived by hand (fee f = 0.001)."""
    size1 = CASH / 100.1  # BUY t0 -> open[1] = 100, cost 100 x 1.001 per unit
    c1 = CASH * 119.88 / 100.1  # SELL t2 -> open[3] = 120, receive 120 x 0.999 per unit
    size2 = c1 / 100.1  # BUY t4 -> open[5] = 100
    c2 = c1 * 79.92 / 100.1  # SELL t6 -> open[7] = 80, receive 80 x 0.999 per unit
    size3 = c2 / 90.09  # BUY t8 -> open[9] = 90, cost 90 x 1.001 per unit
    return [CASH, size1 * 110, size1 * 120, c1, c1, size2 * 90, size2 * 80, c2, c2, size3 * 100]


def hand_trades() -> tuple[list[float], list[float], list[int]]:
    """Pnl, return and candles held of each trade of TABLE_M."""
    e = hand_equity()
    pnl = [e[3] - CASH, e[7] - e[3], e[9] - e[7]]
    # return = (exit x (1 - f) - entry x (1 + f)) / entry; the open trade has no exit fee.
    ret = [
        (120 * 0.999 - 100 * 1.001) / 100,  # 0.1978
        (80 * 0.999 - 100 * 1.001) / 100,  # -0.2018
        (100 - 90 * 1.001) / 90,  # 0.110111...
    ]
    held = [3 - 1, 7 - 5, 9 - 9]  # exit index - entry index; the open trade "exits" at t9
    return pnl, ret, held


def hand_metrics() -> dict[str, float]:
    """Every metric of TABLE_M in plain Python, as research.backtest.metrics defines them."""
    e = hand_equity()
    pnl, ret, held = hand_trades()
    r = [e[i] / (e[i - 1] if i else CASH) - 1 for i in range(len(e))]
    total = e[-1] / CASH - 1
    annual = (1 + total) ** (HOURS_PER_YEAR / len(e)) - 1
    peaks = [max(e[: i + 1]) for i in range(len(e))]
    max_dd = min(v / p - 1 for v, p in zip(e, peaks, strict=True))
    longest = run_length = 0
    for v, p in zip(e, peaks, strict=True):
        run_length = run_length + 1 if v < p else 0
        longest = max(longest, run_length)
    downside = math.sqrt(sum(min(x, 0.0) ** 2 for x in r) / len(r))
    s1, s2 = CASH / 100.1, e[3] / 100.1
    fees = [
        CASH * 0.001 / 1.001,
        s1 * 120 * 0.001,
        e[3] * 0.001 / 1.001,
        s2 * 80 * 0.001,
        e[7] * 0.001 / 1.001,
    ]
    return {
        "total_return": total,
        "annual_return": annual,
        "sharpe": statistics.mean(r) / statistics.stdev(r) * math.sqrt(HOURS_PER_YEAR),
        "sortino": statistics.mean(r) / downside * math.sqrt(HOURS_PER_YEAR),
        "calmar": annual / abs(max_dd),
        "max_drawdown": max_dd,
        "max_drawdown_days": longest / 24,
        "win_rate": sum(p > 0 for p in pnl) / len(pnl),
        "profit_factor": sum(p for p in pnl if p > 0) / -sum(p for p in pnl if p < 0),
        "expectancy": statistics.mean(ret),
        "sqn": math.sqrt(len(ret)) * statistics.mean(ret) / statistics.stdev(ret),
        "trades": 3,
        "avg_holding_hours": sum(held) / len(held),
        "exposure": 5 / 10,  # long during candles 1, 2, 5, 6 and 9
        "fees_paid": sum(fees),
        "buy_hold_return": 100 / 95 - 1,
    }


def test_metric_table_equity_and_trades_by_hand() -> None:
    r = run(table(TABLE_M), MARKS_M, fee_bps=10)
    assert r.equity == [approx(v) for v in hand_equity()]
    pnl, ret, _ = hand_trades()
    assert list(r.trades.status) == ["closed", "closed", "open"]
    assert list(r.trades.pnl) == [approx(v) for v in pnl]
    assert list(r.trades["return"]) == [approx(v) for v in ret]
    assert ret == [approx(0.1978), approx(-0.2018), approx(0.11011111)]


def test_every_metric_by_hand() -> None:
    r = run(table(TABLE_M), MARKS_M, fee_bps=10)
    expected = hand_metrics()
    assert set(expected) == set(METRIC_KEYS)
    for key in METRIC_KEYS:
        assert r.metrics[key] == pytest.approx(expected[key], rel=1e-9), key


def test_metric_table_readable_values() -> None:
    # The same figures rounded, as a reader would check them on paper.
    m = run(table(TABLE_M), MARKS_M, fee_bps=10).metrics
    assert m["total_return"] == pytest.approx(0.0613472, abs=1e-6)  # 10000 -> 10613.47
    assert m["max_drawdown"] == pytest.approx(-0.2023968, abs=1e-6)  # 11988.01 -> 9561.68
    assert m["max_drawdown_days"] == pytest.approx(7 / 24)  # below the t2 high for t3..t9
    assert m["win_rate"] == pytest.approx(2 / 3)
    assert m["avg_holding_hours"] == pytest.approx(4 / 3)  # (2 + 2 + 0) / 3
    assert m["buy_hold_return"] == pytest.approx(0.0526316, abs=1e-6)


def test_rerun_is_identical() -> None:
    # P7c: the same inputs give bit-identical results.
    a = run(table(TABLE_M), MARKS_M, fee_bps=10)
    b = run(table(TABLE_M), MARKS_M, fee_bps=10)
    assert a.equity == b.equity
    assert np.array_equal(
        np.array([a.metrics[k] for k in METRIC_KEYS], dtype=float),
        np.array([b.metrics[k] for k in METRIC_KEYS], dtype=float),
        equal_nan=True,
    )


def test_sqn_by_hand_and_undefined_without_spread() -> None:
    # Column 0: returns 1%, 3%, -1% (mean 1%, sample std 2%): SQN = sqrt(3) x 0.5. Column 1:
    # two trades that lose the same fee: no spread, so no SQN.
    from research.backtest.metrics import TradeArrays, trade_metrics

    ret = np.array([0.01, 0.03, -0.01, -0.001, -0.001])
    trades = TradeArrays(
        col=np.array([0, 0, 0, 1, 1]),
        pnl=ret * 100,
        ret=ret,
        entry_idx=np.zeros(5, dtype="int64"),
        exit_idx=np.ones(5, dtype="int64"),
    )
    sqn = trade_metrics(trades, 2, "1h")["sqn"]
    assert sqn[0] == pytest.approx(math.sqrt(3) * 0.01 / 0.02, rel=1e-12)
    assert math.isnan(sqn[1])
