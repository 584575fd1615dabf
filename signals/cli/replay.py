"""``signals replay``: feed a database candle by candle, as a pipeline does (for `signals live`)."""

from __future__ import annotations

from pathlib import Path

import typer

from signals.cli.options import CONFIG


def replay_command(
    from_db: Path = typer.Option(..., "--from-db", help="Source candle database (read-only)."),
    to_db: Path = typer.Option(..., "--to-db", help="Destination database (created if needed)."),
    timeframe: str = typer.Option(..., "--timeframe", "-t", help="Timeframe to replay."),
    symbol: str = typer.Option("BTCUSDT", "--symbol", help="Symbol to replay."),
    from_: str = typer.Option(
        None, "--from", help="First candle to replay (ISO UTC date/time or epoch s)."
    ),
    to: str = typer.Option(
        None, "--to", help="Last candle to replay (ISO UTC date/time or epoch s)."
    ),
    speed: float = typer.Option(
        None, "--speed", help="Candles per second (default: as fast as possible)."
    ),
    warmup: int = typer.Option(
        0, "--warmup", help="Bulk-copy this many candles before --from first, in one commit."
    ),
    also: list[str] = typer.Option(
        None, "--also", help="Also replay this timeframe, interleaved by close time (repeatable)."
    ),
    forming: bool = typer.Option(
        False, "--forming", help="Write each candle as forming (closed=0) before it closes."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines."),
    config: Path = CONFIG,
) -> None:
    """Write historical candles into a database candle by candle, one commit each, as a pipeline.

    For demos and tests of `signals live`: start the runner on --to-db, then replay into it.
    Both databases have the candle-table layout of the config's data.source (read and written
    through it).
    """
    from signals.config import load_settings
    from signals.data.replay import replay
    from signals.timeframes import timeframe_seconds

    settings = load_settings(config)
    for tf in [timeframe, *(also or [])]:
        timeframe_seconds(tf)
    if speed is not None and speed <= 0:
        raise typer.BadParameter("must be positive", param_hint="--speed")
    if warmup < 0:
        raise typer.BadParameter("cannot be negative", param_hint="--warmup")
    summary = replay(
        from_db=from_db,
        to_db=to_db,
        timeframe=timeframe,
        symbol=symbol,
        start=from_,
        end=to,
        speed=speed,
        also_timeframes=also or (),
        warmup=warmup,
        forming=forming,
        progress=not quiet,
        source=settings.data.source,
    )
    extra = "".join(f", {n} {tf}" for tf, n in summary.also.items())
    typer.echo(
        f"replayed {summary.candles} {summary.symbol} {summary.timeframe} candles{extra} into "
        f"{summary.to_db} ({summary.warmup} warm-up, {summary.commits} commits, "
        f"{summary.seconds:.2f} s)"
    )


def register(app: typer.Typer) -> None:
    """Add ``replay`` to the root app."""
    app.command("replay")(replay_command)
