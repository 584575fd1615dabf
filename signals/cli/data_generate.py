"""``signals data synth | analysis | fetch``: generate, derive and download candle databases.

Heavy imports (ccxt, numba, TA-Lib) happen inside the commands, so ``signals --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer

from signals.cli.options import DB_WRITE, PROGRESS


def synth_command(
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


def analysis_command(
    db: Path = typer.Option(..., "--db", help="Candle database (reference schema) to read."),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Analysis database to (re)write; default: analysis.db next to the candle database.",
    ),
    symbol: list[str] | None = typer.Option(
        None, "--symbol", help="Only these symbols (repeatable); default: every symbol."
    ),
    progress: bool = PROGRESS,
) -> None:
    """(Re)compute analysis.db (TA-Lib indicators) from the closed candles of a database."""
    from signals.data.analysis import write_analysis

    target = out or db.with_name("analysis.db")
    written = write_analysis(db, target, symbols=symbol or None, progress=progress)
    for (sym, tf), rows in written.items():
        typer.echo(f"  {sym} {tf:>4}: {rows:>8} rows")
    typer.echo(f"analysis: {target} ({sum(written.values())} rows)")


def fetch_command(
    exchange: str = typer.Option(
        "bybit", "--exchange", help="ccxt exchange id to download from (bybit, binance, okx, ...)."
    ),
    symbol: str = typer.Option(
        "BTC/USDT", "--symbol", help="Market in ccxt notation, e.g. BTC/USDT or BTC/USDT:USDT."
    ),
    timeframe: str = typer.Option("1m", "--timeframe", help="Candle timeframe to download."),
    since: str = typer.Option(
        ...,
        "--since",
        help="First candle to fetch: ISO date/datetime in UTC or epoch seconds. Ignored when "
        "the database already holds later candles (the fetch resumes after the last one).",
    ),
    db: Path = DB_WRITE,
    until: str | None = typer.Option(
        None,
        "--until",
        help="Stop before this time (ISO date/datetime UTC or epoch seconds); default: now.",
    ),
    store_symbol: str | None = typer.Option(
        None, "--store-symbol", help="Symbol name in the database; default: BTC/USDT -> BTCUSDT."
    ),
    limit: int = typer.Option(
        1000, "--limit", min=1, help="Candles requested per call (the exchange may cap it)."
    ),
    retries: int = typer.Option(
        5, "--retries", min=0, help="Retries of a call on network or rate-limit errors."
    ),
    api_url: str | None = typer.Option(
        None,
        "--api-url",
        help="Override the exchange's REST base URL (a testnet, a proxy or a local fake).",
    ),
    progress: bool = PROGRESS,
) -> None:
    """Backfill candles through ccxt, resuming from the last stored candle, then aggregate."""
    import ccxt

    from signals.data.fetch import fetch_candles
    from signals.data.timeparse import parse_when
    from signals.errors import SignalsError
    from signals.timeframes import timeframe_seconds

    timeframe_seconds(timeframe)  # a clear error for an unknown timeframe, before any network
    factory = getattr(ccxt, exchange, None)
    if exchange not in ccxt.exchanges or factory is None:
        raise SignalsError(f"unknown exchange {exchange!r}; ccxt knows e.g. bybit, binance, okx")
    client = factory({"enableRateLimit": True})
    if api_url:
        urls = client.urls.get("api")
        client.urls["api"] = {k: api_url for k in urls} if isinstance(urls, dict) else api_url
    summary = fetch_candles(
        exchange=client,
        symbol=symbol,
        timeframe=timeframe,
        since=parse_when(since),
        until=parse_when(until) if until else None,
        db=db,
        store_symbol=store_symbol,
        limit=limit,
        retries=retries,
        progress=progress,
    )
    typer.echo(summary.describe())
    typer.echo(f"candles: {db} (run `signals data analysis --db {db}` to refresh indicators)")


def register(app: typer.Typer) -> None:
    """Add ``synth``, ``analysis`` and ``fetch`` to the ``signals data`` app."""
    app.command("synth")(synth_command)
    app.command("analysis")(analysis_command)
    app.command("fetch")(fetch_command)
