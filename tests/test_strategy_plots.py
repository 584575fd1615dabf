"""Strategies declare their chart lines and oscillator panels; the backtest report draws them.

Each shipped strategy's ``plots`` returns series on the candles' index that the report puts on the
price panel or on the oscillator panel they name, with its guide levels; the time axis and the
other panels stay linked. A strategy without a declaration gets the lines its parameter names
suggest. Declaring plots changes no decision (the identity fingerprint is the same).
"""

from __future__ import annotations

import pandas as pd
import pytest

from research.backtest.run import run_backtest
from research.render.backtest_report import build_report
from research.render.charts import declared_plots, indicator_lines
from strategies import get_strategy
from strategies.ema_cross import EmaCross
from strategies.plots import PRICE
from tests.candles import random_walk

CANDLES = random_walk(3000, seed=4, freq="5min")
PANELS = {"scalping": ["Stochastic", "RSI", "MACD"], "swing": ["MACD", "RSI"], "ema_cross": []}


@pytest.mark.parametrize("name", sorted(PANELS))
def test_shipped_strategies_declare_their_lines_and_panels(name: str) -> None:
    strategy = get_strategy(name)
    params = strategy.params()
    plots = declared_plots(strategy, CANDLES, params)
    assert all(p.series.index.equals(CANDLES.index) for p in plots)
    assert list(dict.fromkeys(p.panel for p in plots if p.panel != PRICE)) == PANELS[name]
    assert any(p.panel == PRICE for p in plots)
    # the input is not modified and the decisions do not read the plots
    before = CANDLES.copy()
    frame = strategy.signals(CANDLES, params)
    declared_plots(strategy, CANDLES, params)
    pd.testing.assert_frame_equal(CANDLES, before)
    again = strategy.signals(CANDLES, params)
    assert (frame.buy == again.buy).all() and (frame.sell == again.sell).all()


def test_report_draws_the_declared_panels_on_linked_axes() -> None:
    strategy = get_strategy("scalping")
    result = run_backtest(CANDLES, strategy, timeframe="5m")
    report = build_report(result, CANDLES, strategy=strategy, symbol="BTCUSDT", timeframe="5m")
    fig = report.figures[0]
    axis_of = {t.name: t.yaxis for t in fig.data}
    p = strategy.params()
    # price lines with the candles, oscillators each on their own axis, after volume
    assert axis_of[f"EMA{p.ema_fast}"] == axis_of["candles (5m)"] == "y"
    assert axis_of[f"Stoch %K{p.stoch_k}"] == axis_of["Stoch %D"] == "y3"
    assert axis_of[f"RSI{p.rsi_period}"] == "y4" and axis_of["MACD histogram"] == "y5"
    assert axis_of["drawdown"] == "y8" and fig.layout.yaxis3.title.text == "Stochastic"
    assert list(fig.layout.yaxis4.range) == [0, 100]  # RSI: bounded, not autoscaled
    guides = sorted(s.y0 for s in fig.layout.shapes if s.yref == "y4")
    assert guides == [p.rsi_buy, 100 - p.rsi_buy]
    # every panel shares the bottom time axis; the autoscaler fits MACD, not RSI
    assert {fig.layout[f"xaxis{k}"].matches for k in range(1, 8)} == {"x8"}
    assert '"yaxis5"' in report.body and '["yaxis", "yaxis2", "yaxis5", "yaxis7", "yaxis8"]' in (
        report.body
    )


def test_a_strategy_without_a_declaration_gets_the_lines_its_parameters_suggest() -> None:
    class Bare(EmaCross):
        name = "bare"
        plots = None  # type: ignore[assignment]  # no declaration

    bare = Bare()
    params = bare.params()
    plots = declared_plots(bare, CANDLES, params)
    assert [p.name for p in plots] == list(indicator_lines(CANDLES, params)) == ["EMA12", "EMA26"]
    assert all(p.panel == PRICE for p in plots)
