"""Commands around the live runner: ``replay`` (feed a database) and ``paper`` (the paper bot).

Command functions parse options and call public functions; heavy imports happen inside them
(``signals paper`` never imports vectorbt; ``signals paper report`` does).

``python -m research.cli_live_tools ...`` runs the ``signals`` CLI with these commands added,
whether or not ``research.cli`` registers them.
"""

from __future__ import annotations

from pathlib import Path

import typer

FROM = typer.Option(None, "--from", help="First candle to replay (ISO UTC date/time or epoch s).")
TO = typer.Option(None, "--to", help="Last candle to replay (ISO UTC date/time or epoch s).")


def replay_command(
    from_db: Path = typer.Option(..., "--from-db", help="Source candle database (read-only)."),
    to_db: Path = typer.Option(..., "--to-db", help="Destination database (created if needed)."),
    timeframe: str = typer.Option(..., "--timeframe", "-t", help="Timeframe to replay."),
    symbol: str = typer.Option("BTCUSDT", "--symbol", help="Symbol to replay."),
    from_: str = FROM,
    to: str = TO,
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
) -> None:
    """Write historical candles into a database candle by candle, one commit each, as a pipeline.

    For demos and tests of `signals live`: start the runner on --to-db, then replay into it.
    """
    from research.replay import replay
    from signals.timeframes import timeframe_seconds

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
    )
    extra = "".join(f", {n} {tf}" for tf, n in summary.also.items())
    typer.echo(
        f"replayed {summary.candles} {summary.symbol} {summary.timeframe} candles{extra} into "
        f"{summary.to_db} ({summary.warmup} warm-up, {summary.commits} commits, "
        f"{summary.seconds:.2f} s)"
    )


def register(app: typer.Typer) -> None:
    """Add ``replay`` and ``paper`` (with ``paper report``) to the root app."""
    app.command("replay")(replay_command)


def main() -> None:
    """Run the ``signals`` CLI with these commands registered (if research.cli has not)."""
    from signals.cli import app
    from signals.cli import main as signals_main

    names = {c.name for c in app.registered_commands}
    if "replay" not in names:
        register(app)
    signals_main()


if __name__ == "__main__":
    main()
