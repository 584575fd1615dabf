"""``signals strategies`` and ``signals scan``: the registered strategies and their signals."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from signals.cli.options import (
    CONFIG,
    DB,
    FROM,
    PARAMS,
    SET,
    STRATEGY,
    STRATEGY_PATH,
    SYMBOL,
    TIMEFRAME,
    TO,
    strategy_run,
)


def strategies_command(
    strategy_path: list[Path] = STRATEGY_PATH,
) -> None:
    """List the registered strategies with their timeframes and parameters."""
    from signals.strategy_paths import apply_strategy_paths

    apply_strategy_paths(strategy_path)
    from rich.table import Table

    from signals.console import console
    from signals.strategy_paths import get_strategy, strategy_names
    from strategies.params import ranges

    table = Table("strategy", "timeframes", "parameters (default [low..high])", "about")
    for name in strategy_names():
        strategy = get_strategy(name)
        defaults = strategy.params()
        spaces = ranges(strategy.Params)
        described = ", ".join(
            f"{k}={getattr(defaults, k)} [{s.low:g}..{s.high:g}]" for k, s in spaces.items()
        )
        reads = f" (reads {' '.join(strategy.informative)})" if strategy.informative else ""
        timeframes = " ".join(strategy.timeframes) + reads
        table.add_row(name, timeframes, described, strategy.description)
    console().print(table)


def scan_command(
    strategy: str = STRATEGY,
    db: Path = DB,
    timeframe: str = TIMEFRAME,
    symbol: str = SYMBOL,
    params: Path = PARAMS,
    set_: list[str] = SET,
    from_: str = FROM,
    to: str = TO,
    format_: str = typer.Option(
        "table", "--format", "-f", help="table (readable) or jsonl (wire-protocol signal objects)."
    ),
    config: Path = CONFIG,
    strategy_path: list[Path] = STRATEGY_PATH,
) -> None:
    """List every signal the strategy gives over the stored history (the live runner's reference).

    Candles before --from still warm the indicators up; only signals from --from on are listed.
    A closed candle from the future (closing after now + data.future_tolerance_s) is refused
    with a warning on stderr, as the live runner refuses it.
    """
    import time

    from signals.config import load_settings
    from signals.scan import drop_future, future_warning, signal_records

    if format_ not in {"table", "jsonl"}:
        raise typer.BadParameter("use table or jsonl", param_hint="--format")
    run = strategy_run(
        strategy, db, timeframe, symbol, params, set_, from_, to, config, strategy_path
    )
    tolerance = load_settings(config).data.future_tolerance_s
    candles, refused = drop_future(
        run.candles, run.timeframe, now=time.time(), tolerance_s=tolerance
    )
    if len(refused):
        typer.echo(future_warning(refused, tolerance_s=tolerance), err=True)
    records = (
        signal_records(
            candles,
            run.strategy,
            run.params,
            symbol=run.symbol,
            timeframe=run.timeframe,
            since=run.since,
        )
        if len(candles)
        else []
    )
    if format_ == "jsonl":
        for record in records:
            typer.echo(json.dumps(record, separators=(",", ":")))
        return
    _print_signal_table(records, title=f"{run.strategy.name} {run.symbol} {run.timeframe}")


def _print_signal_table(records: list[dict], *, title: str) -> None:
    from rich.table import Table

    from signals.console import console
    from signals.data.validate import iso

    table = Table(title=f"{title}: {len(records)} signals", show_lines=False)
    for column in ("candle (UTC open)", "signal", "price", "confidence", "reasons"):
        table.add_column(column)
    for r in records:
        style = "green" if r["signal"] == "BUY" else "red"
        table.add_row(
            iso(r["candle_ts"]),
            f"[{style}]{r['signal']}[/]",
            f"{r['price']:.2f}",
            f"{r['confidence']:.2f}",
            "; ".join(r["reasons"]),
        )
    console().print(table)


def register(app: typer.Typer) -> None:
    """Add ``strategies`` and ``scan`` to the root app."""
    app.command("strategies")(strategies_command)
    app.command("scan")(scan_command)
