"""Notebook helpers: the signal chart shows the strategy's own decisions; frozen-set comparison."""

from __future__ import annotations

import pandas as pd
import pytest

from research.promote.compare import comparable, params_side_by_side, recent_signals
from research.render.charts import equity_chart, indicator_lines, signal_chart
from signals.frozen import freeze
from signals.timeframes import timeframe_seconds
from strategies import get_strategy, strategy_names
from tests.candles import random_walk

CANDLES = random_walk(1500, seed=21)


@pytest.mark.parametrize("name", strategy_names())
def test_signal_chart_marks_every_decision_with_its_reasons(name: str) -> None:
    strategy = get_strategy(name)
    params = strategy.params()
    candles = CANDLES
    if strategy.informative:  # 1h inputs on 1m candles would warm up for days: its own timeframe
        freq = f"{timeframe_seconds(strategy.timeframes[0])}s"
        candles = random_walk(2 * strategy.lookback(params), seed=21, freq=freq)
    frame = strategy.signals(candles, params)
    lines = indicator_lines(candles, params)
    assert all(s.index.equals(candles.index) for s in lines.values())
    assert lines or name not in {"ema_cross", "scalping", "swing"}  # display-only, by param names
    fig = signal_chart(candles, frame, lines, threshold=params.threshold)
    traces = {t.name: t for t in fig.data}
    rows = frame.signal_rows()
    assert len(rows) > 0
    for side in ("BUY", "SELL"):
        picked = rows[rows["signal"] == side]
        marker = traces[f"{side} ({len(picked)})"]
        assert list(pd.DatetimeIndex(marker.x)) == list(picked.index)
        for hover, reasons in zip(marker.hovertext, picked["reasons"], strict=True):
            assert all(reason.replace("<", "&lt;") in hover for reason in reasons)


def test_equity_chart_draws_strategy_hold_and_drawdown() -> None:
    equity = pd.Series(10_000.0 * CANDLES["close"] / CANDLES["close"].iloc[0], CANDLES.index)
    fig = equity_chart(equity, CANDLES["close"])
    hold = next(t for t in fig.data if t.name == "buy and hold")
    assert list(hold.y) == pytest.approx(list(equity))
    assert min(next(t for t in fig.data if t.name == "drawdown").y) <= 0


def test_comparison_with_nothing_promoted_and_with_another_timeframe() -> None:
    new = freeze(strategy="ema_cross", timeframe="1m", params={"fast": 5, "slow": 20})
    old = freeze(strategy="ema_cross", timeframe="1m", params={})
    other = freeze(strategy="ema_cross", timeframe="5m", params={})
    table = params_side_by_side(new, old)
    assert table.loc["fast"].tolist() == [12, 5, True]
    assert table.loc["threshold", "changed"] == False  # noqa: E712 (numpy bool)
    assert params_side_by_side(new, None)["current"].isna().all()
    assert comparable(new, old) and not comparable(new, other) and not comparable(new, None)
    since = CANDLES.index[700]
    both = recent_signals(CANDLES, new, old, since=since)
    assert set(both["set"]) == {"new", "current"} and (both["candle"] >= since).all()
    assert set(recent_signals(CANDLES, new, other, since=since)["set"]) == {"new"}
