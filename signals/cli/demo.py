"""``signals demo`` and ``signals demo-live``: every strategy on a sample database, and a day
replayed through the live runner into the paper bot."""

from __future__ import annotations

from pathlib import Path

import typer

from signals.cli.options import CONFIG


def demo_command(
    db: Path = typer.Option(..., "--db", help="Candle database (e.g. from `signals data synth`)."),
    out: Path = typer.Option(Path("reports/demo"), "--out", help="Folder for the demo report."),
    symbol: str = typer.Option("BTCUSDT", "--symbol", help="Symbol to run on."),
    last: int = typer.Option(5, "--last", help="How many recent signals to show per run."),
) -> None:
    """Run every strategy on every timeframe it declares and write a signal report."""
    from research.demo import run_demo

    report = run_demo(db=db, out=out, symbol=symbol, last=last)
    typer.echo(report.read_text(encoding="utf-8"))
    typer.echo(f"report written to {report}")


def demo_live_command(
    db: Path = typer.Option(..., "--db", help="Candle database to take the candles from."),
    out: Path = typer.Option(Path("reports/demo/live"), "--out", help="Folder for this run."),
    strategy: str = typer.Option(
        "scalping", "--strategy", "-s", help="Strategy (defaults frozen)."
    ),
    timeframe: str = typer.Option("1m", "--timeframe", "-t", help="Timeframe to replay."),
    hours: float = typer.Option(24.0, help="How many hours of the most recent candles to replay."),
    speed: float = typer.Option(400.0, help="Candles per second written by the replay."),
    config: Path = CONFIG,
) -> None:
    """Replay a day through `signals live` into `signals paper`; compare with the backtest.

    Starts the live runner and the paper bot as real processes on a Unix socket, writes the
    candles one commit at a time, then prints the paper-versus-backtest comparison (exit 1 if
    they disagree).
    """
    from research.demo_live import live_demo
    from signals.cli.paper import print_comparison

    comparison = live_demo(
        src_db=db, out=out, strategy=strategy, timeframe=timeframe, hours=hours, speed=speed,
        config=config,
    )  # fmt: skip
    print_comparison(comparison)
    if not comparison.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``demo`` and ``demo-live`` to the root app."""
    app.command("demo")(demo_command)
    app.command("demo-live")(demo_live_command)
