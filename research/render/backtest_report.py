"""The backtest report (``signals backtest --report FILE.html``): one self-contained HTML page.

What it shows, all from one `run_backtest` result: the run (strategy, parameters, costs,
execution), the metrics formatted for people, the linked time panels of
research/render/backtest_figures.py (candles and volume, BUY/SELL signals with the rules that
fired, fills with each trade's P&L, rule scores, equity against buy and hold, drawdown), trade
statistics, monthly returns and the trade list. Plotly.js is inlined: the file opens offline.

The figures the tests compare with `run_backtest` (trades, final equity, markers drawn) are
returned in `BacktestReport.summary` and embedded in the page as JSON (``#backtest-summary``).

>>> result = run_backtest(candles, strategy, params, timeframe="5m")  # doctest: +SKIP
>>> write_backtest_report(result, candles, Path("bt.html"), strategy=strategy,
...                       symbol="BTCUSDT", timeframe="5m").summary["trades"]  # doctest: +SKIP
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from research.backtest.run import BacktestResult
from research.render import format as fmt
from research.render.backtest_figures import (
    MAX_CANDLES,
    MAX_MARKERS,
    Overview,
    build_overview,
    drawn_markers,
    monthly_heatmap,
    time_panels,
)
from research.render.backtest_stats import (
    TradeStats,
    monthly_returns,
    trade_stats,
    yearly_returns,
)
from research.render.charts import declared_plots
from research.render.frames import trades_frame
from research.render.page import (
    autoscale_script,
    figure_blocks,
    json_block,
    pairs_table,
    write_page,
)
from research.render.page import table as html_table
from signals.identity import params_id
from strategies import BUY, SELL, Strategy
from strategies.params import as_dict

CHART_ID = "backtest-chart"
MAX_TRADE_ROWS = 500


@dataclass(frozen=True)
class BacktestReport:
    """A built report: its page body, figures and the figures' summary (as embedded)."""

    title: str
    body: str
    figures: list[go.Figure]
    summary: dict[str, Any]


def report_summary(
    result: BacktestResult, view: Overview, panels: go.Figure, **run: Any
) -> dict[str, Any]:
    """Return what the report draws, counted: trades, final equity, markers, candles drawn."""
    trades = result.trades
    rows = result.signals.signal_rows()
    return {
        **run,
        "candles": len(result.equity),
        "drawn_candles": len(view.candles),
        "drawn_timeframe": view.timeframe,
        "resampled": view.resampled,
        "max_candles": MAX_CANDLES,
        "trades": len(trades),
        "open_trades": int((trades["status"] == "open").sum()),
        "final_equity": float(result.equity.iloc[-1]),
        "total_return": float(result.metrics["total_return"]),
        "signals": {side: int((rows["signal"] == side).sum()) for side in (BUY, SELL)},
        "markers": drawn_markers(panels),
        "max_markers": view.max_markers,
    }


def build_report(
    result: BacktestResult,
    candles: pd.DataFrame,
    *,
    strategy: Strategy,
    symbol: str,
    timeframe: str,
    max_candles: int = MAX_CANDLES,
    max_markers: int = MAX_MARKERS,
) -> BacktestReport:
    """Build the report of `result`; `candles` are those the backtest ran on (warm-up included)."""
    period = candles.loc[result.equity.index[0] : result.equity.index[-1]]
    unit = fmt.quote_currency(symbol)
    plots = declared_plots(strategy, candles, result.params)
    lines = {p.name: p.series.loc[period.index[0] :] for p in plots}
    view = build_overview(result, period, lines, timeframe, max_candles, max_markers,
                          panel_of={p.name: p.panel for p in plots},
                          levels={p.panel: p.levels for p in plots if p.levels})  # fmt: skip
    threshold = getattr(result.params, "threshold", None)
    panels = time_panels(view, result, period, unit=unit, threshold=threshold)
    initial = result.execution.init_cash
    heatmap = monthly_heatmap(
        monthly_returns(result.equity, initial), yearly_returns(result.equity, initial)
    )
    pid = params_id(strategy, timeframe, result.params)
    summary = report_summary(result, view, panels, strategy=strategy.name, symbol=symbol,
                             timeframe=timeframe, params_id=pid)  # fmt: skip
    stats = trade_stats(result.trades, float(result.metrics["exposure"]))
    blocks = figure_blocks([panels, heatmap], ids=[CHART_ID, None])
    title = f"Backtest: {strategy.name} {symbol} {timeframe}"
    body = "".join([
        _head(result, summary, title),
        "<h2>Metrics</h2><div class='cards'>", _metric_cards(result, unit), "</div>",
        "<h2>Chart</h2>", _chart_note(view, summary), blocks[0],
        autoscale_script(CHART_ID, view.autoscaled_axes()),
        "<h2>Trades</h2><div class='cards'>", _stats_card(stats, unit), "</div>",
        "<h2>Monthly returns</h2><p class='note'>Each month's return on the equity at the "
        "end of the month before (the months compound to the total return); each year's "
        "total in brackets.</p>", blocks[1],
        _trade_list(result.trades, unit),
        json_block("backtest-summary", summary),
    ])  # fmt: skip
    return BacktestReport(title, body, [panels, heatmap], summary)


def write_backtest_report(
    result: BacktestResult,
    candles: pd.DataFrame,
    path: Path,
    *,
    strategy: Strategy,
    symbol: str,
    timeframe: str,
    max_candles: int = MAX_CANDLES,
    max_markers: int = MAX_MARKERS,
) -> BacktestReport:
    """Write the self-contained HTML report of `result` to `path` and return what it drew."""
    report = build_report(result, candles, strategy=strategy, symbol=symbol,
                          timeframe=timeframe, max_candles=max_candles,
                          max_markers=max_markers)  # fmt: skip
    write_page(path, report.title, report.body)
    return report


def _head(result: BacktestResult, summary: dict[str, Any], title: str) -> str:
    index = result.equity.index
    ex = result.execution
    sizing = "all-in" if ex.size is None else f"{fmt.percent(ex.size, 0)} of equity"
    stops = [f"stop-loss {fmt.percent(ex.stop_loss, 1)}" if ex.stop_loss else "",
             f"take-profit {fmt.percent(ex.take_profit, 1)}" if ex.take_profit else ""]  # fmt: skip
    params = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in as_dict(result.params).items())  # fmt: skip
    run = (
        f"{index[0]:%Y-%m-%d %H:%M} to {index[-1]:%Y-%m-%d %H:%M} UTC, "
        f"{fmt.count(len(index))} candles; fill {ex.fill}, {ex.direction}, {sizing}"
        + "".join(f", {s}" for s in stops if s)
        + f", starting cash {fmt.money(ex.init_cash)}; costs: {result.costs.describe()}."
    )
    return (
        f"<h1>{html.escape(title)}</h1><p>{html.escape(run)}</p>"
        f"<p class='note'>Parameters ({html.escape(summary['params_id'])}): "
        f"{html.escape(params)}</p>"
    )


_CARDS = (
    ("Returns", ("final_equity", "total_return", "annual_return", "buy_hold_return",
                 "max_drawdown", "max_drawdown_days")),
    ("Risk-adjusted", ("sharpe", "sortino", "calmar", "sqn")),
    ("Trades", ("trades", "win_rate", "profit_factor", "expectancy", "avg_holding_hours",
                "exposure")),
    ("Costs", ("fees_paid", "funding_paid", "cost_break_even_bps")),
)  # fmt: skip


def _metric_cards(result: BacktestResult, unit: str) -> str:
    values = {**result.metrics, "final_equity": float(result.equity.iloc[-1])}
    return "".join(
        pairs_table([(fmt.label(k), fmt.metric(k, values[k], unit)) for k in keys if k in values],
                    heading)
        for heading, keys in _CARDS
    )  # fmt: skip


def _stats_card(s: TradeStats, unit: str) -> str:
    def trade(ret: float, pnl: float) -> str:
        return f"{fmt.percent(ret, signed=True)} ({fmt.money(pnl, unit, signed=True)})"

    outcome = [
        ("Best trade", trade(s.best_return, s.best_pnl)),
        ("Worst trade", trade(s.worst_return, s.worst_pnl)),
        ("Average trade", trade(s.average_return, s.average_pnl)),
        ("Average win", fmt.percent(s.average_win, signed=True)),
        ("Average loss", fmt.percent(s.average_loss, signed=True)),
    ]
    pattern = [
        ("Trades (won / lost)", f"{fmt.count(s.trades)} ({s.wins} / {s.losses})"),
        ("Still open at the end", fmt.count(s.open_trades)),
        ("Average duration", fmt.duration(s.average_seconds)),
        ("Longest trade", fmt.duration(s.longest_seconds)),
        ("Longest winning streak", f"{s.longest_win_streak} trades"),
        ("Longest losing streak", f"{s.longest_loss_streak} trades"),
        ("Exposure (time in market)", fmt.percent(s.exposure, 1)),
    ]
    return pairs_table(outcome, "Per trade") + pairs_table(pattern, "Pattern")


def _chart_note(view: Overview, summary: dict[str, Any]) -> str:
    n, drawn = summary["candles"], summary["drawn_candles"]
    if view.resampled:
        shown = (
            f"{fmt.count(n)} {view.base} candles are more than the chart draws "
            f"({fmt.count(MAX_CANDLES)} at most): the panels show them resampled to "
            f"{fmt.count(drawn)} {view.timeframe} candles (OHLC per bucket, volume summed, "
            f"equity and lines at each bucket's close, peak scores and deepest drawdown per "
            f"bucket); run the report on a shorter --from/--to window to see every candle."
        )
    else:
        shown = f"All {fmt.count(n)} {view.base} candles are drawn."
    hidden = [
        f"the {fmt.count(view.signals)} signals" if not view.show_signals else "",
        f"the {fmt.count(view.fills)} fills" if not view.show_fills else "",
    ]
    if any(hidden):
        shown += (
            f" Not marked: {' and '.join(h for h in hidden if h)} (more than "
            f"{fmt.count(view.max_markers)} markers make the chart sluggish); a shorter window "
            "marks them, the trade list below and --trades-out list every trade."
        )
    elif view.resampled:
        shown += " Signals and fills keep their exact times and prices."
    return (
        f"<p class='note'>{html.escape(shown)} Drag across any panel to zoom: every panel "
        "shares the time axis and price, volume, equity and drawdown rescale to what is "
        "visible; double-click resets. Hover a triangle for the signal's confidence and the "
        "rules that fired, a fill marker (circle: entry, square: exit) for the trade's "
        "P&amp;L. Score panel: BUY score above 0, SELL score below, the threshold dotted.</p>"
    )


def _trade_list(trades: pd.DataFrame, unit: str) -> str:
    shown = trades.tail(MAX_TRADE_ROWS)
    rows = trades_frame(shown, unit)
    rows.insert(0, "#", range(len(trades) - len(shown) + 1, len(trades) + 1))
    cut = len(trades) - len(shown)
    note = f" (the last {fmt.count(len(shown))}; --trades-out writes all)" if cut else ""
    return (f"<h2>Trade list{html.escape(note)}</h2>"
            f"<div style='max-height:420px;overflow:auto'>{html_table(rows)}</div>")  # fmt: skip
