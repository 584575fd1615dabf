"""``signals data synth | analysis | fetch``: generate, derive and download candle databases.

Heavy imports (ccxt, numba) happen inside the commands, so ``signals --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer


def synth(
    out: Path = typer.Option(
        ...,
        "--out",
        help="Directory to write candles.db, analysis.db and synth.json into "
        "(existing databases there are replaced).",
    ),
    days: int = typer.Option(30, "--days", min=1, help="Number of days of 1m candles."),
    seed: int = typer.Option(7, "--seed", help="Random seed: the same seed gives the same data."),
    symbol: str = typer.Option("BTCUSDT", "--symbol", help="Symbol name stored in the database."),
    start: str = typer.Option(
        "2024-01-01", "--start", help="UTC date of the first candle (ISO, e.g. 2024-01-01)."
    ),
) -> None:
    """Build a realistic synthetic market (1m..1d candles plus analysis.db), deterministic."""
    from signals.data.synth import write_synth_db

    result = write_synth_db(out, days=days, seed=seed, symbol=symbol, start=start, progress=False)
    typer.echo(f"synthetic {symbol}: {days} days, seed {seed}")
    for tf, rows in result.rows.items():
        typer.echo(f"  {tf:>4}: {rows:>8} candles")
    typer.echo(f"candles:  {result.candles_db}")
    typer.echo(f"analysis: {result.analysis_db} ({result.analysis_rows} rows)")
    typer.echo(f"metadata: {result.meta_path}")


def analysis(
    db: Path = typer.Option(..., "--db", help="Candle database (reference schema) to read."),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Analysis database to (re)write; default: analysis.db next to the candle database.",
    ),
    symbol: list[str] | None = typer.Option(
        None, "--symbol", help="Only these symbols (repeatable); default: every symbol."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """(Re)compute analysis.db (TA-Lib indicators) from the closed candles of a database."""
    from signals.data.analysis import write_analysis

    target = out or db.with_name("analysis.db")
    written = write_analysis(db, target, symbols=symbol or None, progress=progress)
    for (sym, tf), rows in written.items():
        typer.echo(f"  {sym} {tf:>4}: {rows:>8} rows")
    typer.echo(f"analysis: {target} ({sum(written.values())} rows)")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the ``signals data`` app."""
    app.command("synth")(synth)
    app.command("analysis")(analysis)
