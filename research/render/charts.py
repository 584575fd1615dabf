"""Interactive plotly charts for notebooks: candles with indicators and signals, equity curves.

Display only: the decisions shown come from `Strategy.signals` (the function the backtest and
the live runner call); the indicator lines are recomputed with `strategies.indicators` from the
parameters' names because strategies expose rules, not their intermediate series.

>>> frame = strategy.signals(candles, params)  # doctest: +SKIP
>>> signal_chart(candles, frame, indicator_lines(candles, params)).show()  # doctest: +SKIP
"""

from __future__ import annotations

import html
from dataclasses import asdict
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from strategies import BUY, SignalFrame, Strategy
from strategies import indicators as ind
from strategies.plots import Plot

# (fast field, slow field, moving average, label) pairs drawn when a strategy has those params
_MOVING_AVERAGES = (
    ("fast", "slow", ind.ema, "EMA"),
    ("ema_fast", "ema_slow", ind.ema, "EMA"),
    ("regime_fast", "regime_slow", ind.sma, "SMA"),
)


def indicator_lines(candles: pd.DataFrame, params: Any) -> dict[str, pd.Series]:
    """Return price-scale indicator series named after the parameters the strategy declares."""
    values = asdict(params)
    close = candles["close"]
    lines: dict[str, pd.Series] = {}
    for fast, slow, average, label in _MOVING_AVERAGES:
        if fast in values and slow in values:
            for period in (values[fast], values[slow]):
                lines[f"{label}{period}"] = average(close, int(period))
    if "bb_period" in values and "bb_stddev" in values:
        upper, _, lower = ind.bollinger(close, int(values["bb_period"]), values["bb_stddev"])
        lines["Bollinger upper"], lines["Bollinger lower"] = upper, lower
    return lines


def declared_plots(strategy: Strategy, candles: pd.DataFrame, params: Any) -> list[Plot]:
    """Return what `strategy` declares for its charts (``plots``), else `indicator_lines`."""
    declared = getattr(strategy, "plots", None)
    if declared is None:
        return [Plot(name, series) for name, series in indicator_lines(candles, params).items()]
    return list(declared(candles, params))


def _markers(candles: pd.DataFrame, frame: SignalFrame) -> list[go.Scatter]:
    rows = frame.signal_rows()
    traces = []
    for side, column, symbol, colour in ((BUY, "low", "triangle-up", "#1a9850"),
                                         ("SELL", "high", "triangle-down", "#d73027")):  # fmt: skip
        picked = rows[rows["signal"] == side]
        hover = [
            f"<b>{side}</b> {ts:%Y-%m-%d %H:%M} confidence {conf:.2f}<br>"
            + "<br>".join(html.escape(r) for r in reasons)
            for ts, conf, reasons in zip(
                picked.index, picked["confidence"], picked["reasons"], strict=True
            )
        ]
        offset = 0.998 if side == BUY else 1.002
        traces.append(go.Scatter(
            x=picked.index, y=candles[column].reindex(picked.index) * offset, mode="markers",
            name=f"{side} ({len(picked)})", hovertext=hover, hoverinfo="text",
            marker={"symbol": symbol, "size": 11, "color": colour},
        ))  # fmt: skip
    return traces


def signal_chart(
    candles: pd.DataFrame,
    frame: SignalFrame,
    lines: dict[str, pd.Series] | None = None,
    *,
    title: str = "",
    threshold: float | None = None,
) -> go.Figure:
    """Candlesticks with indicator lines and BUY/SELL markers (reasons on hover), scores below."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.75, 0.25],
                        vertical_spacing=0.03)  # fmt: skip
    fig.add_trace(go.Candlestick(
        x=candles.index, open=candles["open"], high=candles["high"], low=candles["low"],
        close=candles["close"], name="candles",
    ), 1, 1)  # fmt: skip
    for name, series in (lines or {}).items():
        fig.add_trace(go.Scatter(x=series.index, y=series, name=name, mode="lines",
                                 line={"width": 1}), 1, 1)  # fmt: skip
    for trace in _markers(candles, frame):
        fig.add_trace(trace, 1, 1)
    fig.add_trace(go.Scatter(x=frame.buy_score.index, y=frame.buy_score, name="BUY score",
                             line={"color": "#1a9850", "width": 1}), 2, 1)  # fmt: skip
    fig.add_trace(go.Scatter(x=frame.sell_score.index, y=-frame.sell_score, name="SELL score (-)",
                             line={"color": "#d73027", "width": 1}), 2, 1)  # fmt: skip
    if threshold is not None:
        for level in (threshold, -threshold):
            fig.add_hline(y=level, line_dash="dot", opacity=0.4, row=2, col=1)
    fig.update_layout(height=700, title=title, xaxis_rangeslider_visible=False,
                      hovermode="closest")  # fmt: skip
    return fig


def equity_chart(equity: pd.Series, close: pd.Series, *, title: str = "Equity") -> go.Figure:
    """Equity curve against buy-and-hold of the same capital, with the drawdown below."""
    hold = equity.iloc[0] * close.reindex(equity.index) / close.reindex(equity.index).iloc[0]
    drawdown = equity / equity.cummax() - 1.0
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3])
    fig.add_trace(go.Scatter(x=equity.index, y=equity, name="strategy"), 1, 1)
    fig.add_trace(go.Scatter(x=hold.index, y=hold, name="buy and hold", opacity=0.6), 1, 1)
    fig.add_trace(go.Scatter(x=drawdown.index, y=drawdown, name="drawdown", fill="tozeroy"), 2, 1)
    fig.update_yaxes(tickformat=".0%", row=2, col=1)
    fig.update_layout(height=480, title=title)
    return fig
