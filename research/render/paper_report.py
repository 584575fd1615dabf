"""The paper report (``signals paper report --params FILE --html FILE.html``): one offline page.

From a `research.backtest.versus_paper.Comparison`: the verdict, the totals of both sides, both
equity curves (the paper bot's rebuilt from its ledger's trades at each close, the backtest's as
vectorbt values it) with their difference, and the trades side by side, the rows that differ
marked. Plotly.js is inlined. What the page draws is summarised as JSON (``#paper-summary``).

>>> comparison = compare_with_backtest(ledger, db, frozen)  # doctest: +SKIP
>>> write_paper_report(comparison, Path("paper.html"))  # doctest: +SKIP
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from research.backtest.versus_paper import Comparison, TradeRow, equity_from_trades
from research.render import format as fmt
from research.render.page import figure_blocks, json_block, write_page

EXTRA_STYLE = (
    "<style>tr.bad td{background:#fde8e6}.ok{background:#e8f5e9;border-left-color:#1a9850}"
    ".differ{background:#fde8e6;border-left-color:#d73027}td{white-space:nowrap}"
    "td.l{text-align:left;white-space:normal}</style>"
)


def paper_equity(comparison: Comparison) -> pd.Series | None:
    """Return the paper bot's equity at each close of the span, rebuilt from its trades."""
    if comparison.closes is None:
        return None
    trades = [r.paper for r in comparison.rows if r.paper is not None]
    return equity_from_trades(trades, comparison.closes, comparison.backtest.get("init_cash", 1e4))


def equity_figure(paper: pd.Series, backtest: pd.Series, unit: str) -> go.Figure:
    """Return both equity curves and, below, paper minus backtest."""
    money = f" ({unit})" if unit else ""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.72, 0.28],
                        vertical_spacing=0.05)  # fmt: skip
    fig.add_trace(go.Scatter(x=backtest.index, y=backtest, name="backtest",
                             line={"color": "#888", "width": 4}, opacity=0.55), 1, 1)  # fmt: skip
    fig.add_trace(go.Scatter(x=paper.index, y=paper, name="paper bot",
                             line={"color": "#2c5fa8", "width": 1.5}), 1, 1)  # fmt: skip
    diff = paper - backtest.reindex(paper.index)
    fig.add_trace(go.Scatter(x=diff.index, y=diff, name="paper - backtest", showlegend=False,
                             line={"color": "#d73027", "width": 1}), 2, 1)  # fmt: skip
    fig.update_yaxes(title_text=f"equity{money}", row=1, col=1)
    fig.update_yaxes(title_text=f"paper - backtest{money}", row=2, col=1, exponentformat="e")
    fig.update_layout(template="plotly_white", height=560, hovermode="x unified",
                      margin={"t": 30, "b": 40, "l": 80, "r": 20},
                      legend={"orientation": "h", "y": 1.06, "x": 0})  # fmt: skip
    return fig


def _when(value: Any) -> str:
    return "open" if value is None else f"{value:%Y-%m-%d %H:%M}"


def _cells(row: TradeRow, unit: str) -> list[str]:
    a, b = row.paper or {}, row.backtest or {}
    ref = a or b

    def both(key: str, shown: Any) -> str:
        left = shown(a[key]) if key in a else "-"
        right = shown(b[key]) if key in b else "-"
        return left if left == right else f"{left} / {right}"

    both_sides = row.paper is not None and row.backtest is not None
    return [
        str(row.n),
        str(ref.get("direction", "")),
        both("entry_time", _when),
        both("entry_price", fmt.price),
        both("exit_time", _when),
        both("exit_price", fmt.price),
        fmt.money(a["pnl"], signed=True) if "pnl" in a else "-",
        fmt.money(b["pnl"], signed=True) if "pnl" in b else "-",
        f"{row.pnl_diff:.2e}" if both_sides else "-",
        "ok" if row.problem is None else row.problem,
    ]


def trade_table(comparison: Comparison, unit: str) -> str:
    """Return the trades side by side as an HTML table (a cell shows ``paper / backtest`` when
    they differ); rows with a problem are marked."""
    money = f" ({unit})" if unit else ""
    head = ["#", "side", "entry (UTC)", "entry price", "exit (UTC)", "exit price",
            f"paper P&L{money}", f"backtest P&L{money}", "|difference|", "verdict"]  # fmt: skip
    rows = []
    for row in comparison.rows:
        cells = "".join(
            f"<td class='l'>{html.escape(c)}</td>" if k == 9 else f"<td>{html.escape(c)}</td>"
            for k, c in enumerate(_cells(row, unit))
        )
        rows.append(f"<tr{' class=bad' if row.problem else ''}>{cells}</tr>")
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return f"<table><tr>{header}</tr>{''.join(rows)}</table>"


def _totals(comparison: Comparison, unit: str) -> str:
    p, b = comparison.paper, comparison.backtest
    lines = (
        ("Trades", "trades", fmt.count),
        ("Closed trades", "closed_trades", fmt.count),
        ("Fees", "fees", lambda v: fmt.money(v, unit)),
        ("Final equity", "final_equity", lambda v: fmt.money(v, unit)),
        ("Total return", "total_return", lambda v: fmt.percent(v, 4, signed=True)),
    )
    body = "".join(
        f"<tr><td class='l'>{name}</td><td>{html.escape(shown(p.get(key)))}</td>"
        f"<td>{html.escape(shown(b.get(key)))}</td></tr>"
        for name, key, shown in lines
    )
    return f"<table><tr><th></th><th>paper bot</th><th>backtest</th></tr>{body}</table>"


def build_paper_report(comparison: Comparison) -> tuple[str, str, list[go.Figure], dict]:
    """Return (title, body, figures, summary) of the page for `comparison`."""
    run = comparison.run
    unit = fmt.quote_currency(run.get("symbol", ""))
    paper = paper_equity(comparison)
    figures = []
    if paper is not None and comparison.backtest_equity is not None:
        figures.append(equity_figure(paper, comparison.backtest_equity, unit))
    start, end = comparison.span
    title = " ".join(["Paper vs backtest:", run.get("strategy", ""), run.get("symbol", ""),
                      run.get("timeframe", "")]).strip()  # fmt: skip
    summary = {
        **run, "ok": comparison.ok, "trades": len(comparison.rows),
        "mismatched": sum(r.problem is not None for r in comparison.rows),
        "max_pnl_diff": comparison.max_pnl_diff if comparison.rows else 0.0,
        "paper_final_equity": None if paper is None else float(paper.iloc[-1]),
        "backtest_final_equity": comparison.backtest.get("final_equity"),
        "candles": 0 if paper is None else len(paper),
    }  # fmt: skip
    notes = "".join(f"<p class='note'>Note: {html.escape(n)}</p>" for n in comparison.notes)
    body = "".join([
        EXTRA_STYLE, f"<h1>{html.escape(title)}</h1>",
        f"<p>{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC: the paper bot's ledger against "
        f"a backtest of the same frozen parameters ({html.escape(run.get('params_id', ''))}) "
        "over the same candles, with the costs, direction and starting cash the ledger "
        "records. Trades are paired by rank: entry and exit candle and side must be equal, "
        f"P&amp;L within {comparison.tolerance:.2g} per trade.</p>",
        f"<div class='verdict {'ok' if comparison.ok else 'differ'}'>"
        f"{html.escape(comparison.verdict())}</div>", notes,
        "<h2>Totals</h2>", _totals(comparison, unit),
        "<h2>Equity</h2><p class='note'>The paper bot's equity is rebuilt from its ledger's "
        "trades at each candle's close (open trades valued at the close); the backtest's is "
        "the simulation's. Where they agree the blue line runs inside the grey one; the lower "
        "panel is the difference.</p>" if figures else "",
        *figure_blocks(figures),
        f"<h2>Trades ({fmt.count(len(comparison.rows))})</h2>",
        "<p class='note'>A cell shows <i>paper / backtest</i> where the two differ; rows that "
        "disagree are red.</p>",
        f"<div style='max-height:600px;overflow:auto'>{trade_table(comparison, unit)}</div>",
        json_block("paper-summary", summary),
    ])  # fmt: skip
    return title, body, figures, summary


def write_paper_report(comparison: Comparison, path: Path) -> dict[str, Any]:
    """Write the self-contained HTML page of `comparison` to `path`; return its summary."""
    title, body, _, summary = build_paper_report(comparison)
    write_page(path, title, body)
    return summary
