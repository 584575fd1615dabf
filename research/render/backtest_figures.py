"""The backtest report's figures: one chart of linked time panels, and the monthly returns.

Panels, top to bottom, on one shared time axis: candles (with the price-scale indicator lines the
strategy declares, `strategies.plots`, else those of research/render/charts.py, the strategy's
BUY/SELL signals and the fills), volume, the strategy's oscillator panels (RSI, MACD...), the
rule scores the signal frame holds, equity against buy and hold, drawdown.

A long history is drawn as an overview: above `MAX_CANDLES` candles, the candles are resampled
to the smallest coarser step of `STEPS` that fits (OHLC: first, max, min, last; volume summed),
the equity and the lines keep each bucket's last value, the scores and the drawdown their
extreme. Signals and fills are never resampled: each keeps its exact time and price, and a kind
with more than `MAX_MARKERS` markers is not marked at all (SVG markers by the ten thousand make
zooming sluggish); the page says which, and a shorter --from/--to window shows them.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from research.backtest.run import BacktestResult
from research.render import format as fmt
from research.render.charts import _markers as signal_markers
from signals.timeframes import timeframe_seconds
from strategies.plots import PRICE

MAX_CANDLES = 5_000  # a 1,200-pixel chart shows at most a few candles per pixel
MAX_MARKERS = 3_000  # per kind (signals, fills): SVG markers beyond this make zooming sluggish
# the timeframes an overview can be resampled to, in seconds
STEPS = {"5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "2h": 7200, "4h": 14400,
         "12h": 43200, "1d": 86400, "1w": 604800}  # fmt: skip
ROWS = ("price", "volume", "score", "equity", "drawdown")  # oscillator panels go after volume
HEIGHTS = (0.42, 0.09, 0.13, 0.22, 0.14)
OSCILLATOR_HEIGHT = 0.11  # each, before the heights are scaled back to 1
WIN, LOSS, ENTRY = "#1a9850", "#d73027", "#2c5fa8"
OUTLINE = {"color": "white", "width": 1}


@dataclass(frozen=True)
class Overview:
    """What the time panels draw: candles, equity, drawdown and scores, maybe resampled."""

    base: str
    timeframe: str
    candles: pd.DataFrame
    equity: pd.Series
    hold: pd.Series
    drawdown: pd.Series
    buy_score: pd.Series
    sell_score: pd.Series
    lines: dict[str, pd.Series]
    signals: int  # signals emitted over the period
    fills: int  # entries and exits
    initial: float  # the cash both equity curves start from
    max_markers: int = MAX_MARKERS
    panel_of: dict[str, str] = field(default_factory=dict)  # line name -> panel (default price)
    levels: dict[str, tuple[float, ...]] = field(default_factory=dict)  # panel -> guide levels

    @property
    def oscillators(self) -> list[str]:
        """The oscillator panels, in the order their first series was declared."""
        return list(dict.fromkeys(p for p in self.panel_of.values() if p != PRICE))

    def row(self, panel: str) -> int:
        """Return the 1-based row of a panel (``price``, ``volume``, an oscillator...)."""
        osc = self.oscillators
        if panel in osc:
            return 3 + osc.index(panel)
        position = ROWS.index(panel) + 1
        return position if position <= 2 else position + len(osc)

    def autoscaled_axes(self) -> list[str]:
        """The y axes fitted to the visible time range: price, volume, equity, drawdown and the
        oscillators that are not on a fixed 0..100 scale."""
        panels = ["price", "volume", *(p for p in self.oscillators if not self.bounded(p)),
                  "equity", "drawdown"]  # fmt: skip
        return [f"yaxis{self.row(p)}".replace("yaxis1", "yaxis") for p in panels]

    def bounded(self, panel: str) -> bool:
        """Whether every series of an oscillator panel lies within 0..100 (RSI, Stochastic)."""
        series = [s for n, s in self.lines.items() if self.panel_of.get(n) == panel]
        return all(bool(((s.dropna() >= 0) & (s.dropna() <= 100)).all()) for s in series)

    @property
    def show_signals(self) -> bool:
        """Whether the signals are few enough to be marked."""
        return self.signals <= self.max_markers

    @property
    def show_fills(self) -> bool:
        """Whether the fills are few enough to be marked."""
        return self.fills <= self.max_markers

    @property
    def resampled(self) -> bool:
        """Whether the candles drawn are coarser than the backtest's."""
        return self.timeframe != self.base


def overview_timeframe(timeframe: str, candles: int, max_candles: int = MAX_CANDLES) -> str:
    """Return `timeframe` up to `max_candles` candles, else the smallest coarser one that fits."""
    base = timeframe_seconds(timeframe)
    if candles <= max_candles:
        return timeframe
    coarser = [name for name, size in STEPS.items() if size > base and size % base == 0]
    for name in coarser:
        if candles * base // STEPS[name] + 1 <= max_candles:
            return name
    return coarser[-1] if coarser else timeframe


def resample_ohlcv(candles: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """Return OHLCV candles of `timeframe` (buckets aligned to the epoch; empty ones dropped)."""
    spec = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
    grouped = candles[list(spec)].resample(_rule(timeframe), origin="epoch", label="left")
    return grouped.agg(spec).dropna(subset=["close"])


def step_seconds(timeframe: str) -> int:
    """Return the length of one candle of `timeframe` (an overview step or a timeframe), in s."""
    return STEPS.get(timeframe) or timeframe_seconds(timeframe)


def _rule(timeframe: str) -> str:
    return f"{step_seconds(timeframe)}s"


def build_overview(
    result: BacktestResult,
    candles: pd.DataFrame,
    lines: dict[str, pd.Series],
    timeframe: str,
    max_candles: int = MAX_CANDLES,
    max_markers: int = MAX_MARKERS,
    panel_of: dict[str, str] | None = None,
    levels: dict[str, tuple[float, ...]] | None = None,
) -> Overview:
    """Return the series the time panels draw for `result` over its `candles` (the period).

    `lines` are drawn on the price panel unless `panel_of` names another panel for them.
    """
    equity, frame, trades = result.equity, result.signals, result.trades
    hold = result.execution.init_cash * candles["close"] / candles["close"].iloc[0]
    drawdown = equity / equity.cummax() - 1.0
    marks = {
        "signals": int(frame.buy.sum() + frame.sell.sum()),
        "fills": len(trades) + int((trades["status"] == "closed").sum()),
        "initial": result.execution.init_cash,
        "max_markers": max_markers,
        "panel_of": dict(panel_of or {}),
        "levels": dict(levels or {}),
    }
    drawn = overview_timeframe(timeframe, len(candles), max_candles)
    if drawn == timeframe:
        return Overview(timeframe, drawn, candles, equity, hold, drawdown, frame.buy_score,
                        frame.sell_score, lines, **marks)  # fmt: skip
    rule = _rule(drawn)

    def bucket(series: pd.Series, how: str) -> pd.Series:
        grouped = series.resample(rule, origin="epoch", label="left")
        return getattr(grouped, how)().dropna()

    return Overview(
        base=timeframe,
        timeframe=drawn,
        candles=resample_ohlcv(candles, drawn),
        equity=bucket(equity, "last"),
        hold=bucket(hold, "last"),
        drawdown=bucket(drawdown, "min"),
        buy_score=bucket(frame.buy_score, "max"),
        sell_score=bucket(frame.sell_score, "max"),
        lines={name: bucket(series, "last") for name, series in lines.items()},
        **marks,
    )


def epoch_ms(index: pd.Index) -> np.ndarray:
    """Return a DatetimeIndex as float milliseconds since the epoch (a date axis reads them)."""
    return (pd.DatetimeIndex(index).as_unit("ms").asi8).astype("float64")


def _trade_hover(trades: pd.DataFrame, unit: str) -> list[str]:
    held = (trades["exit_time"] - trades["entry_time"]).dt.total_seconds()
    texts = []
    for k, (row, seconds) in enumerate(zip(trades.itertuples(index=False), held, strict=True)):
        closed = row.status == "closed"
        exit_word = "exit" if closed else "still open, valued at the last close"
        texts.append(
            f"<b>Trade {k + 1}</b> ({row.direction})<br>"
            f"entry {row.entry_time:%Y-%m-%d %H:%M} at {fmt.price(row.entry_price)}<br>"
            f"{exit_word} {row.exit_time:%Y-%m-%d %H:%M} at {fmt.price(row.exit_price)}<br>"
            f"P&amp;L <b>{html.escape(fmt.money(row.pnl, unit, signed=True))}</b> "
            f"({fmt.percent(row.ret, signed=True)}), held {fmt.duration(seconds)}"
        )
    return texts


def fill_traces(trades: pd.DataFrame, unit: str) -> list[go.Scatter]:
    """Entry and exit markers (each trade's P&L on hover) and a line from entry to exit."""
    trades = trades.rename(columns={"return": "ret"})
    hover = np.array(_trade_hover(trades, unit), dtype=object)
    closed = (trades["status"] == "closed").to_numpy()
    won = (trades["pnl"] > 0).to_numpy()
    traces = []
    for name, keep, colour in (("winning trades", won, WIN), ("losing trades", ~won, LOSS)):
        picked = trades[keep]
        xs = np.column_stack([epoch_ms(picked["entry_time"]), epoch_ms(picked["exit_time"]),
                              np.full(len(picked), np.nan)]).ravel()  # fmt: skip
        ys = np.column_stack([picked["entry_price"], picked["exit_price"],
                              np.full(len(picked), np.nan)]).ravel()  # fmt: skip
        traces.append(go.Scatter(x=xs, y=ys, mode="lines", name=name, hoverinfo="skip",
                                 line={"color": colour, "width": 1.5, "dash": "dot"},
                                 showlegend=False))  # fmt: skip
    traces.append(go.Scatter(
        x=epoch_ms(trades["entry_time"]), y=trades["entry_price"], mode="markers",
        name=f"entries ({len(trades)})", hovertext=hover, hoverinfo="text", meta="entries",
        marker={"symbol": "circle", "size": 9, "color": ENTRY, "line": OUTLINE},
    ))  # fmt: skip
    exits = trades[closed]
    traces.append(go.Scatter(
        x=epoch_ms(exits["exit_time"]), y=exits["exit_price"], mode="markers",
        name=f"exits ({len(exits)})", hovertext=hover[closed], hoverinfo="text", meta="exits",
        marker={"symbol": "square", "size": 9, "line": OUTLINE,
                "color": np.where(won[closed], WIN, LOSS)},
    ))  # fmt: skip
    return traces


def _price_traces(view: Overview) -> list[go.BaseTraceType]:
    c = view.candles
    traces: list[go.BaseTraceType] = [go.Candlestick(
        x=epoch_ms(c.index), open=c["open"], high=c["high"], low=c["low"], close=c["close"],
        name=f"candles ({view.timeframe})", increasing_line_color="#26a69a",
        decreasing_line_color="#ef5350", hoverlabel={"namelength": 0},
    )]  # fmt: skip
    for name, series in view.lines.items():
        if view.panel_of.get(name, PRICE) != PRICE:
            continue
        traces.append(go.Scatter(x=epoch_ms(series.index), y=series, name=name, mode="lines",
                                 line={"width": 1}, opacity=0.8, hoverinfo="skip"))  # fmt: skip
    return traces


def _oscillator_traces(view: Overview) -> list[tuple[int, go.BaseTraceType]]:
    legend = {p: f"legend{4 + k}" for k, p in enumerate(view.oscillators)}
    return [
        (view.row(panel), go.Scatter(
            x=epoch_ms(series.index), y=series, name=name, mode="lines", legend=legend[panel],
            line={"width": 1.2}, hovertemplate=f"{html.escape(name)}: %{{y:.4g}}<extra></extra>",
        ))
        for name, series in view.lines.items()
        if (panel := view.panel_of.get(name, PRICE)) != PRICE
    ]  # fmt: skip


def _panel_traces(view: Overview) -> list[tuple[int, go.BaseTraceType]]:
    c = view.candles
    vol, sc, eq, dd = (view.row(p) for p in ("volume", "score", "equity", "drawdown"))
    peak = f", peak per {view.timeframe}" if view.resampled else ""
    score = {"legend": "legend2", "fill": "tozeroy", "line": {"width": 0.6}}
    made, held = (fmt.percent(float(curve.iloc[-1]) / view.initial - 1, 2, signed=True)
                  for curve in (view.equity, view.hold))  # fmt: skip
    return [
        (vol, go.Scatter(x=epoch_ms(c.index), y=c["volume"], name="volume", showlegend=False,
                       mode="lines", line={"color": "#8c8c8c", "width": 0.5, "shape": "hv"},
                       fill="tozeroy", fillcolor="rgba(140,140,140,0.6)")),
        (sc, go.Scatter(x=epoch_ms(view.buy_score.index), y=view.buy_score, name=f"BUY score{peak}",
                       line_color=WIN, fillcolor="rgba(26,152,80,0.35)", **score)),
        (sc, go.Scatter(x=epoch_ms(view.sell_score.index), y=-view.sell_score,
                       name=f"SELL score (below 0{peak})", line_color=LOSS,
                       fillcolor="rgba(215,48,39,0.35)", **score)),
        (eq, go.Scatter(x=epoch_ms(view.equity.index), y=view.equity, name=f"strategy ({made})",
                       line={"color": ENTRY, "width": 1.6}, legend="legend3")),
        (eq, go.Scatter(x=epoch_ms(view.hold.index), y=view.hold, name=f"buy and hold ({held})",
                       line={"color": "#888", "width": 1.2}, legend="legend3")),
        (dd, go.Scatter(x=epoch_ms(view.drawdown.index), y=view.drawdown, name="drawdown",
                       fill="tozeroy", line={"color": LOSS, "width": 1}, showlegend=False)),
    ]  # fmt: skip


def _panel_legend(fig: go.Figure, axis: str) -> dict[str, object]:
    """A legend in the top-left corner of the panel of y axis `axis`."""
    top = fig.layout[axis].domain[1]
    return {"x": 0.005, "y": top, "xanchor": "left", "yanchor": "top", "orientation": "h",
            "bgcolor": "rgba(255,255,255,0.75)"}  # fmt: skip


def drawn_markers(fig: go.Figure) -> dict[str, int]:
    """Return the markers a figure of `time_panels` draws, by kind (BUY, SELL, entries, exits)."""
    drawn = {"BUY": 0, "SELL": 0, "entries": 0, "exits": 0}
    for trace in fig.data:
        if getattr(trace, "meta", None) in drawn:
            drawn[trace.meta] += len(trace.x)
    return drawn


def _layout_panels(fig: go.Figure, view: Overview, unit: str, threshold: float | None) -> None:
    """Title, scale and guide each panel's y axis; the score and oscillators' levels dotted."""
    money = f" ({unit})" if unit else ""
    titles = {"price": f"price{money}", "volume": "volume", "score": "rule score",
              "equity": f"equity{money}", "drawdown": "drawdown"}  # fmt: skip
    titles.update({p: p for p in view.oscillators})
    for panel, title in titles.items():
        fig.update_yaxes(title_text=title, row=view.row(panel), col=1)
    for panel in view.oscillators:
        for level in view.levels.get(panel, ()):
            fig.add_hline(y=level, line_dash="dot", opacity=0.5, row=view.row(panel), col=1)
        if view.bounded(panel):
            fig.update_yaxes(range=[0, 100], row=view.row(panel), col=1)
    if threshold is not None:
        for level in (threshold, -threshold):
            fig.add_hline(y=level, line_dash="dot", opacity=0.5, row=view.row("score"), col=1)
    fig.update_yaxes(tickformat=".0%", row=view.row("drawdown"), col=1)
    fig.update_yaxes(range=[-1.05, 1.05], row=view.row("score"), col=1)


def time_panels(
    view: Overview,
    result: BacktestResult,
    candles: pd.DataFrame,
    *,
    unit: str,
    threshold: float | None,
) -> go.Figure:
    """Return the chart of linked time panels: price, volume, oscillators, score, equity, DD."""
    osc = len(view.oscillators)
    heights = [*HEIGHTS[:2], *[OSCILLATOR_HEIGHT] * osc, *HEIGHTS[2:]]
    fig = make_subplots(rows=len(ROWS) + osc, cols=1, shared_xaxes=True,
                        row_heights=[h / sum(heights) for h in heights],
                        vertical_spacing=0.018 * 5 / (5 + osc))  # fmt: skip
    for trace in _price_traces(view):
        fig.add_trace(trace, 1, 1)
    for trace in signal_markers(candles, result.signals) if view.show_signals else []:
        side = trace.name.split()[0]  # "BUY (12)": the side the markers show
        trace.update(x=epoch_ms(pd.DatetimeIndex(trace.x)), opacity=0.75, meta=side,
                     marker={"size": 8, "line": {"width": 0}})  # fmt: skip
        fig.add_trace(trace, 1, 1)
    for trace in fill_traces(result.trades, unit) if view.show_fills else []:
        fig.add_trace(trace, 1, 1)
    for row, trace in [*_oscillator_traces(view), *_panel_traces(view)]:
        fig.add_trace(trace, row, 1)
    _layout_panels(fig, view, unit, threshold)
    fig.update_xaxes(type="date", showspikes=True, spikemode="across", spikesnap="cursor",
                     spikethickness=1, spikedash="dot", spikecolor="#999")  # fmt: skip
    legends = {f"legend{4 + k}": _panel_legend(fig, f"yaxis{view.row(p)}")
               for k, p in enumerate(view.oscillators)}  # fmt: skip
    fig.update_layout(
        template="plotly_white", height=1250 + 140 * osc, hovermode="closest",
        margin={"t": 40, "r": 20, "l": 70, "b": 40}, xaxis_rangeslider_visible=False,
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.005, "x": 0},
        legend2=_panel_legend(fig, f"yaxis{view.row('score')}"),
        legend3=_panel_legend(fig, f"yaxis{view.row('equity')}"), **legends,
    )  # fmt: skip
    first, last = epoch_ms(view.candles.index[[0, -1]])
    fig.update_xaxes(range=[first, last + step_seconds(view.timeframe) * 1000.0])
    return fig


MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def monthly_heatmap(table: pd.DataFrame, yearly: pd.Series) -> go.Figure:
    """Return the monthly returns as a heatmap (years down, months across; each year's total)."""
    z = table.to_numpy(dtype="float64")
    text = [[fmt.percent(v, 1, signed=True) if np.isfinite(v) else "" for v in row] for row in z]
    years = [f"{year}  ({fmt.percent(yearly.get(year), 1, signed=True)})" for year in table.index]
    bound = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 0.01
    fig = go.Figure(go.Heatmap(
        z=z, x=list(MONTHS), y=years, text=text, texttemplate="%{text}", hoverinfo="text",
        hovertext=[[f"{m} {y}: {t or 'no data'}" for m, t in zip(MONTHS, row, strict=True)]
                   for y, row in zip(table.index, text, strict=True)],
        colorscale="RdYlGn", zmid=0.0, zmin=-bound, zmax=bound, xgap=2, ygap=2,
        colorbar={"tickformat": ".0%", "title": {"text": "return"}},
    ))  # fmt: skip
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_layout(template="plotly_white", height=120 + 45 * len(years),
                      margin={"t": 20, "b": 30, "l": 130})  # fmt: skip
    return fig
