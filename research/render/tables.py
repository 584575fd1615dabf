"""Present backtest results: a readable metrics table and a JSON object with snake_case keys."""

from __future__ import annotations

import math
from typing import Any

from research.backtest.run import BacktestResult
from research.inputs import RunInputs
from research.render.format import metric, quote_currency
from signals.identity import params_id
from strategies.params import as_dict


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def metrics_json(result: BacktestResult, run: RunInputs) -> dict[str, Any]:
    """Return the metrics (fractions as fractions, NaN/inf as null) with what was run."""
    index = result.equity.index
    out: dict[str, Any] = {k: _finite(float(v)) for k, v in result.metrics.items()}
    out["trades"] = int(result.metrics["trades"])
    out.update(
        strategy=run.strategy.name,
        symbol=run.symbol,
        timeframe=run.timeframe,
        params=as_dict(result.params),
        params_id=params_id(run.strategy, run.timeframe, result.params),
        candles=len(index),
        first_candle=index[0].isoformat(),
        last_candle=index[-1].isoformat(),
        fee_bps=result.costs.fee_bps,
        slippage_bps=result.costs.slippage_bps,
        fill=result.execution.fill,
        direction=result.execution.direction,
    )
    return out


def format_metric(key: str, value: float, unit: str = "") -> str:
    """Format one metric for people: percentages, money, durations, counts, ratios."""
    return metric(key, value, unit)


def print_metrics(result: BacktestResult, run: RunInputs) -> None:
    """Print the metrics as a table with the run's context in its title."""
    from rich.table import Table

    from signals.console import console

    index = result.equity.index
    title = (
        f"{run.strategy.name} {run.symbol} {run.timeframe}  {index[0]:%Y-%m-%d} .. "
        f"{index[-1]:%Y-%m-%d}  ({len(index)} candles, fill {result.execution.fill}, "
        f"{result.execution.direction}, fee {result.costs.fee_bps:g} bps, "
        f"slippage {result.costs.slippage_bps:g} bps)"
    )
    table = Table("metric", "value")
    for key, value in result.metrics.items():
        table.add_row(key, format_metric(key, float(value), quote_currency(run.symbol)))
    out = console()
    out.print(title, highlight=False)
    out.print(table)


def print_quality(report: Any) -> None:
    """Print hit rate and mean signed forward return per confidence bucket."""
    from rich.table import Table

    from signals.console import console

    table = report.by_confidence.reset_index()
    out = Table(*[str(c) for c in table.columns], title="signal quality (forward returns)")
    for row in table.itertuples(index=False):
        out.add_row(*[_cell(v) for v in row])
    console().print(out)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4g}"
    return str(value)
