"""Several symbols side by side: the walk-forward comparison (Markdown, HTML), backtests."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from research.render.format import count, metric, percent, quote_currency, ratio
from research.render.page import json_block, write_page

if TYPE_CHECKING:
    from research.backtest.run import BacktestResult
    from research.inputs import RunInputs

HEADINGS = {
    "symbol": "symbol",
    "oos_return": "OOS return",
    "sharpe": "Sharpe",
    "trades": "trades",
    "dsr": "DSR",
    "pbo": "PBO",
    "gate": "gate",
    "frozen": "frozen file",
}
_SHOWN = {
    "oos_return": lambda v: percent(v, signed=True),
    "sharpe": ratio,
    "trades": count,
    "dsr": lambda v: ratio(v, 3),
    "pbo": lambda v: ratio(v, 3),
}


def comparison_cells(comparison: pd.DataFrame) -> list[list[str]]:
    """Return the comparison's rows as formatted text, in the order of its columns."""
    return [
        [_SHOWN.get(name, str)(value) for name, value in row.items()]
        for row in comparison.to_dict("records")
    ]


def comparison_markdown(comparison: pd.DataFrame, title: str) -> str:
    """Return a Markdown heading and table of the comparison (one row per symbol)."""
    headings = [HEADINGS.get(str(c), str(c)) for c in comparison.columns]
    aligns = ["---" if c in ("symbol", "gate", "frozen") else "---:" for c in comparison.columns]
    rows = [headings, aligns, *comparison_cells(comparison)]
    lines = [f"# Walk-forward by symbol: {title}", ""]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_comparison_html(comparison: pd.DataFrame, title: str, path: Path) -> Path:
    """Write the comparison as one HTML page (the raw figures also in a JSON block)."""
    head = "".join(f"<th>{html.escape(HEADINGS.get(str(c), str(c)))}</th>"
                   for c in comparison.columns)  # fmt: skip
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
        for row in comparison_cells(comparison)
    )
    raw = [{k: _json_value(v) for k, v in row.items()} for row in comparison.to_dict("records")]
    text = (
        f"<h1>Walk-forward by symbol: {html.escape(title)}</h1>"
        f"<table><tr>{head}</tr>{body}</table>"
        "<p class='note'>Out-of-sample figures of each symbol's frozen file; the gate is the "
        "promotion gate of the config (see <code>signals promote</code>).</p>"
        + json_block("symbols", raw)
    )
    return write_page(path, f"walk-forward by symbol: {title}", text)


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# the metrics a several-symbol backtest compares, in this order
BACKTEST_COLUMNS = (
    "total_return", "buy_hold_return", "sharpe", "max_drawdown", "win_rate", "profit_factor",
    "trades", "fees_paid",
)  # fmt: skip


def print_backtests(done: Mapping[str, tuple[BacktestResult, RunInputs]]) -> None:
    """Print one row per symbol's backtest: its candles and the `BACKTEST_COLUMNS` metrics."""
    from rich.table import Table

    from signals.console import console

    first_result, first_run = next(iter(done.values()))
    execution, costs = first_result.execution, first_result.costs
    title = (
        f"{first_run.strategy.name} {first_run.timeframe} by symbol (fill {execution.fill}, "
        f"{execution.direction}, fee {costs.fee_bps:g} bps, slippage {costs.slippage_bps:g} bps)"
    )
    table = Table("symbol", "candles", *BACKTEST_COLUMNS, title=title)
    for symbol, (result, run) in done.items():
        index, unit = result.equity.index, quote_currency(run.symbol)
        cells = [metric(k, float(result.metrics[k]), unit) for k in BACKTEST_COLUMNS]
        table.add_row(symbol, count(len(index)), *cells)
    console().print(table)
