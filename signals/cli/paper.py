"""``signals paper`` and ``signals paper report``: the reference paper bot and its P&L.

The bot never imports vectorbt; ``signals paper report`` does (it backtests to compare).
"""

from __future__ import annotations

from pathlib import Path

import typer

from signals.cli.options import CONFIG, COSTS, DIRECTION, FEE_BPS, SLIPPAGE_BPS, STRATEGY_PATH


def paper_command(
    ctx: typer.Context,
    socket: Path = typer.Option(None, "--socket", help="The runner's Unix socket."),
    db: Path | None = typer.Option(
        None,
        "--db",
        help="Candle database the runner follows, for fills (default: "
        "data.candles_db in the config).",
    ),
    ledger: Path = typer.Option(Path("paper.db"), "--ledger", help="SQLite ledger to record in."),
    fee_bps: float = FEE_BPS,
    slippage_bps: float = SLIPPAGE_BPS,
    costs: str = COSTS,
    direction: str = DIRECTION,
    init_cash: float = typer.Option(10_000.0, "--init-cash", help="Starting cash."),
    since_seq: int = typer.Option(
        None, "--since-seq", help="New ledger: resume after this seq (default: the runner's last)."
    ),
    follow_new_stream: bool = typer.Option(
        False,
        "--follow-new-stream",
        help="When the runner's journal is a new stream (replaced, seqs restarted), record it "
        "from its seq 0 instead of stopping.",
    ),
    symbol: str = typer.Option(
        None, "--symbol", help="A runner of several streams: trade the stream of this symbol."
    ),
    timeframe: str = typer.Option(
        None, "--timeframe", help="A runner of several streams: trade the stream of this timeframe."
    ),
    strategy: str = typer.Option(
        None, "--strategy", help="A runner of several streams: trade the stream of this strategy."
    ),
    config: Path = CONFIG,
) -> None:
    """Trade the runner's signals on paper, like the backtest: fill at the next candle's open.

    Reconnects with backoff and resumes by the last seq in its ledger (each seq once). SIGTERM
    stops it cleanly; a restart continues where the ledger stopped. A runner serving another
    journal stream than the ledger's stops it (exit 2) unless --follow-new-stream. A runner of
    several streams: choose one with --symbol/--timeframe/--strategy (else exit 2, naming them).
    """
    if ctx.invoked_subcommand is not None:
        return
    from paper.bot import PaperConfig, run_paper
    from signals.config import load_settings
    from signals.costs import CostModel, load_costs

    settings = load_settings(config)
    db = db or settings.data.candles_db
    if socket is None or db is None:
        raise typer.BadParameter(
            "--socket and --db (or data.candles_db) are required to run the bot"
        )
    if direction not in ("long", "short", "both"):
        raise typer.BadParameter("use long, short or both", param_hint="--direction")
    model = load_costs(costs) if costs else CostModel()
    bot = PaperConfig(
        socket=socket,
        db=db,
        ledger=ledger,
        costs=model.with_overrides(fee_bps=fee_bps, slippage_bps=slippage_bps),
        source=settings.data.source,
        direction=direction,  # type: ignore[arg-type]  # a str, checked above
        init_cash=init_cash,
        since_seq=since_seq,
        follow_new_stream=follow_new_stream,
        symbol=symbol,
        timeframe=timeframe,
        strategy=strategy,
    )
    run_paper(bot)


def paper_report_command(
    ledger: Path = typer.Option(..., "--ledger", help="The paper bot's SQLite ledger."),
    db: Path | None = typer.Option(
        None, "--db", help="Candle database the bot filled from (default: data.candles_db)."
    ),
    params: Path = typer.Option(
        None, "--params", help="Frozen file the runner traded: compare with its backtest."
    ),
    tolerance: float = typer.Option(
        None, "--tolerance", help="P&L tolerance per trade, fraction of initial cash (1e-9)."
    ),
    html: Path = typer.Option(
        None,
        "--html",
        help="With --params: write an offline HTML page (trades side by side, both equity "
        "curves), also when they disagree.",
    ),
    config: Path = CONFIG,
    strategy_path: list[Path] = STRATEGY_PATH,
) -> None:
    """Print the paper bot's P&L; with --params compare it trade by trade with a backtest.

    Exits 1 when the trades (entry/exit candle, side) or the P&L (within the tolerance) differ.
    """
    from signals.strategy_paths import apply_strategy_paths

    apply_strategy_paths(strategy_path, config)
    from paper.ledger import paper_summary
    from research.backtest.versus_paper import PNL_TOLERANCE, compare_with_backtest
    from signals.config import load_settings

    settings = load_settings(config)
    db, source = db or settings.data.candles_db, settings.data.source
    if db is None:
        raise typer.BadParameter("pass --db or set data.candles_db in the config")
    if params is None:
        if html is not None:
            raise typer.BadParameter("needs --params (the frozen file to compare with)",
                                     param_hint="--html")  # fmt: skip
        print_summary(ledger, paper_summary(ledger, db, source=source))
        return
    comparison = compare_with_backtest(
        ledger, db, params, tolerance=PNL_TOLERANCE if tolerance is None else tolerance,
        source=source,
    )  # fmt: skip
    print_comparison(comparison)
    if html is not None:
        from research.render.paper_report import write_paper_report

        write_paper_report(comparison, html)
        typer.echo(f"wrote {html}", err=True)
    if not comparison.ok:
        raise typer.Exit(1)


def print_summary(ledger: Path, summary: dict[str, float]) -> None:
    """Print the paper bot's P&L figures."""
    typer.echo(
        f"{ledger}: {int(summary['trades'])} trades ({int(summary['closed_trades'])} closed), "
        f"fees {summary['fees']:.2f}, equity {summary['final_equity']:.2f} at the last close, "
        f"total return {summary['total_return']:+.4%}"
    )


def print_comparison(comparison: object) -> None:
    """Print the paper-versus-backtest table, the totals and the verdict."""
    from rich.table import Table

    from research.backtest.versus_paper import Comparison
    from signals.console import console as make_console

    assert isinstance(comparison, Comparison)
    start, end = comparison.span
    table = Table(title=f"paper vs backtest, {start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M} UTC")
    for column in ("#", "side", "entry (UTC)", "exit (UTC)", "paper pnl", "backtest pnl", "diff",
                   "verdict"):  # fmt: skip
        table.add_column(column)
    for row in comparison.rows:
        ref = row.paper or row.backtest or {}
        both = row.paper is not None and row.backtest is not None
        table.add_row(
            str(row.n),
            str(ref.get("direction", "")),
            _when(ref.get("entry_time")),
            _when(ref.get("exit_time")) or "open",
            _money(row.paper),
            _money(row.backtest),
            f"{row.pnl_diff:.2e}" if both else "-",
            "ok" if row.problem is None else row.problem,
        )
    console = make_console()
    console.print(table)
    for name, figures in (("paper", comparison.paper), ("backtest", comparison.backtest)):
        if figures:
            console.print(
                f"{name:>8}: {int(figures['trades'])} trades, fees {figures['fees']:.2f}, "
                f"equity {figures['final_equity']:.2f}, total return "
                f"{figures['total_return']:+.4%}"
            )
    for note in comparison.notes:
        console.print(f"note: {note}", markup=False)
    console.print(comparison.verdict(), markup=False)


def _when(value: object) -> str:
    return "" if value is None else f"{value:%Y-%m-%d %H:%M}"


def _money(trade: dict | None) -> str:
    return "-" if trade is None else f"{trade['pnl']:.4f}"


def register(app: typer.Typer) -> None:
    """Add ``paper`` (the bot) with ``paper report`` to the root app."""
    paper_app = typer.Typer(
        help="The reference paper bot and its report.", add_completion=False,
        pretty_exceptions_enable=False,
    )  # fmt: skip
    paper_app.callback(invoke_without_command=True)(paper_command)
    paper_app.command("report")(paper_report_command)
    app.add_typer(paper_app, name="paper")
