"""The one "warm up, then trade from `since`" mechanism (signals.warmup) and its users agree."""

from __future__ import annotations

import numpy as np
import pandas as pd

from research.backtest.execution import ExecutionModel
from research.backtest.run import run_backtest, score_signals
from research.backtest.windows import evaluate_window, window_signals
from signals.costs import CostModel
from signals.scan import signal_records
from signals.warmup import from_since, start_position, warmed_signals
from strategies import get_strategy
from tests.candles import random_walk

CANDLES = random_walk(3000, seed=11, freq="15min")
STRATEGY = get_strategy("ema_cross")
PARAMS = STRATEGY.params({"fast": 5, "slow": 20})
SINCE = CANDLES.index[1200] + pd.Timedelta(minutes=7)  # between two candles: the next one starts


def test_start_position_and_from_since() -> None:
    assert start_position(CANDLES.index, None) == 0
    assert start_position(CANDLES.index, SINCE) == 1201
    assert start_position(CANDLES.index, CANDLES.index[-1] + pd.Timedelta(days=1)) == 3000
    assert from_since(CANDLES, SINCE).index[0] == CANDLES.index[1201]
    assert from_since(CANDLES["close"], SINCE).index[0] == CANDLES.index[1201]
    assert len(from_since(CANDLES, None)) == len(CANDLES)


def test_warmed_signals_equal_full_history_from_the_start() -> None:
    full = STRATEGY.signals(CANDLES, PARAMS)
    period, frame = warmed_signals(CANDLES, STRATEGY, PARAMS, start=1201)
    assert period.index.equals(CANDLES.index[1201:]) and frame.index.equals(period.index)
    assert frame.buy.equals(full.buy.iloc[1201:]) and frame.sell.equals(full.sell.iloc[1201:])
    # a bounded warm-up (the walk-forward windows') reads nothing at or after `end`
    period, frame = warmed_signals(
        CANDLES, STRATEGY, PARAMS, start=1201, end=1500, warmup=STRATEGY.lookback(PARAMS)
    )
    assert period.index.equals(CANDLES.index[1201:1500])
    assert frame.buy.equals(full.buy.iloc[1201:1500])


def test_backtest_window_and_scan_start_at_the_same_candle() -> None:
    kwargs = {"timeframe": "15m", "execution": ExecutionModel(), "costs": CostModel()}
    backtest = run_backtest(CANDLES, STRATEGY, PARAMS, since=SINCE, **kwargs)
    window = evaluate_window(CANDLES, STRATEGY, PARAMS, 1201, len(CANDLES), **kwargs)
    assert backtest.equity.index[0] == window.equity.index[0] == CANDLES.index[1201]
    assert np.allclose(backtest.equity, window.equity)
    assert backtest.trades.equals(window.trades)
    buy, sell = window_signals(CANDLES, STRATEGY, PARAMS, 1201, len(CANDLES))
    scored = score_signals(CANDLES.iloc[1201:], buy, sell, **kwargs)
    assert scored.metrics == window.metrics
    records = signal_records(CANDLES, STRATEGY, PARAMS, symbol="X", timeframe="15m", since=SINCE)
    fired = backtest.signals.buy | backtest.signals.sell
    assert [r["candle_ts"] for r in records] == [int(t.timestamp()) for t in fired.index[fired]]
