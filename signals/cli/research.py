"""Research commands: ``scan``, ``bias`` and ``demo`` (backtest, sweep and walk-forward follow).

Command functions parse options and call public functions; heavy imports happen inside them.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

STRATEGY = typer.Option(..., "--strategy", "-s", help="Strategy name (see `signals strategies`).")
DB = typer.Option(None, "--db", help="Candle database (default: data.candles_db in the config).")
TIMEFRAME = typer.Option(..., "--timeframe", "-t", help="Candle timeframe: 1m 5m 15m 1h 4h 1d.")
SYMBOL = typer.Option(None, "--symbol", help="Symbol (default: data.symbol, BTCUSDT).")
PARAMS = typer.Option(None, "--params", help="Frozen parameter file (JSON) to take params from.")
SET = typer.Option(None, "--set", help="Override one parameter: name=value (repeatable).")
FROM = typer.Option(None, "--from", help="First candle (ISO UTC date/time or epoch s).")
TO = typer.Option(None, "--to", help="Last candle (ISO UTC date/time or epoch s).")
CONFIG = typer.Option(None, "--config", help="YAML config (default: ./signals.yaml if present).")


def strategies_command() -> None:
    """List the registered strategies with their timeframes and parameters."""
    from rich.table import Table

    from signals.console import console
    from strategies import get_strategy, strategy_names
    from strategies.params import ranges

    table = Table("strategy", "timeframes", "parameters (default [low..high])", "about")
    for name in strategy_names():
        strategy = get_strategy(name)
        defaults = strategy.params()
        spaces = ranges(strategy.Params)
        described = ", ".join(
            f"{k}={getattr(defaults, k)} [{s.low:g}..{s.high:g}]" for k, s in spaces.items()
        )
        table.add_row(name, " ".join(strategy.timeframes), described, strategy.description)
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
) -> None:
    """List every signal the strategy gives over the stored history (the live runner's reference).

    Candles before --from still warm the indicators up; only signals from --from on are listed.
    A closed candle from the future (closing after now + data.future_tolerance_s) is refused
    with a warning on stderr, as the live runner refuses it.
    """
    import time

    from research.inputs import prepare_run
    from signals.config import load_settings
    from signals.scan import drop_future, future_warning, signal_records

    if format_ not in {"table", "jsonl"}:
        raise typer.BadParameter("use table or jsonl", param_hint="--format")
    run = prepare_run(
        strategy_name=strategy,
        db=db,
        timeframe=timeframe,
        symbol=symbol,
        params_file=params,
        assignments=set_,
        start=from_,
        end=to,
        config=config,
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


def bias_command(
    strategy: str = STRATEGY,
    db: Path = DB,
    timeframe: str = TIMEFRAME,
    symbol: str = SYMBOL,
    params: Path = PARAMS,
    set_: list[str] = SET,
    from_: str = FROM,
    to: str = TO,
    cuts: int = typer.Option(12, help="Truncation points to test (signal candles + random)."),
    starts: int = typer.Option(4, help="Later starting points to test the declared warm-up."),
    seed: int = typer.Option(
        0, help="Seed for choosing cuts and starts (recorded in the verdict)."
    ),
    config: Path = CONFIG,
) -> None:
    """Check a strategy for lookahead and insufficient warm-up on your own candles.

    Recomputes signals on history cut at sampled candles (must equal full history up to the cut)
    and on history starting later (must agree once the declared lookback has passed). Exits 1
    and names the first candle and column that differ when a check fails.
    """
    from research.backtest.bias import check_bias
    from research.inputs import prepare_run

    run = prepare_run(
        strategy_name=strategy,
        db=db,
        timeframe=timeframe,
        symbol=symbol,
        params_file=params,
        assignments=set_,
        start=from_,
        end=to,
        config=config,
    )
    report = check_bias(run.strategy, run.candles, run.params, cuts=cuts, starts=starts, seed=seed)
    typer.echo(report.verdict())
    if not report.ok:
        raise typer.Exit(1)


def backtest_command(
    strategy: str = STRATEGY,
    db: Path = DB,
    timeframe: str = TIMEFRAME,
    symbol: str = SYMBOL,
    params: Path = PARAMS,
    set_: list[str] = SET,
    from_: str = FROM,
    to: str = TO,
    direction: str = typer.Option("long", help="long (default), short, or both (reverses)."),
    fill: str = typer.Option(
        "next_open",
        help="next_open: a signal at a close fills at the next open; close: same close.",
    ),
    costs: str = typer.Option(
        None, "--costs", help="Cost preset (bybit-spot, bybit-perp) or a YAML/JSON costs file."
    ),
    fee_bps: float = typer.Option(None, help="Taker fee per side in bps (overrides --costs)."),
    slippage_bps: float = typer.Option(None, help="Fixed slippage per fill in bps (overrides)."),
    stop_loss: float = typer.Option(None, help="Stop-loss as a fraction of entry, e.g. 0.02."),
    take_profit: float = typer.Option(None, help="Take-profit as a fraction of entry."),
    size: float = typer.Option(None, help="Fraction of equity per position (default: all-in)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object of metrics."),
    trades_out: Path = typer.Option(None, help="Write the trade list to this CSV file."),
    quality: bool = typer.Option(
        False, "--quality", help="Also report signal quality: forward returns per confidence."
    ),
    quality_plot: Path = typer.Option(None, help="Write the signal-quality plot (HTML) here."),
    config: Path = CONFIG,
) -> None:
    """Backtest a strategy on stored candles under fees and slippage, and print its metrics.

    Signals come from the strategy's own signal function (the one the live runner calls); fills
    follow the execution model in the README (next open by default, long only, all-in).
    """
    from research.backtest.execution import ExecutionModel
    from research.backtest.run import run_backtest
    from research.inputs import prepare_run, resolve_costs
    from research.render.tables import metrics_json, print_metrics, print_quality

    run = prepare_run(
        strategy_name=strategy,
        db=db,
        timeframe=timeframe,
        symbol=symbol,
        params_file=params,
        assignments=set_,
        start=from_,
        end=to,
        config=config,
    )
    execution = _execution(ExecutionModel, fill, direction, size, stop_loss, take_profit)
    cost_model = resolve_costs(config, costs=costs, fee_bps=fee_bps, slippage_bps=slippage_bps)
    candles = run.period
    result = run_backtest(
        run.candles,  # the candles before --from warm the indicators up
        run.strategy,
        run.params,
        timeframe=run.timeframe,
        execution=execution,
        costs=cost_model,
        since=run.since,
    )
    if trades_out is not None:
        result.trades.to_csv(trades_out, index=False)
    report = _quality(candles, result, quality or quality_plot is not None, quality_plot)
    if as_json:
        payload = metrics_json(result, run)
        if report is not None:
            payload["quality"] = report.to_records()
        typer.echo(json.dumps(payload, sort_keys=False))
        return
    print_metrics(result, run)
    if report is not None:
        print_quality(report)


def _quality(candles, result, wanted: bool, plot: Path | None):  # type: ignore[no-untyped-def]
    if not wanted:
        return None
    from research.backtest.quality import quality_figure, signal_quality

    report = signal_quality(candles, result.signals)
    if plot is not None:
        quality_figure(report).write_html(plot, include_plotlyjs=True, full_html=True)
    return report


def _execution(model: type, fill: str, direction: str, size, stop_loss, take_profit):  # type: ignore[no-untyped-def]
    try:
        return model(
            fill=fill, direction=direction, size=size, stop_loss=stop_loss, take_profit=take_profit
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def freeze_command(
    strategy: str = STRATEGY,
    timeframe: str = TIMEFRAME,
    out: Path = typer.Option(..., "--out", "-o", help="Frozen parameter file to write (JSON)."),
    symbol: str = typer.Option("BTCUSDT", "--symbol", help="Symbol the parameters are for."),
    set_: list[str] = SET,
    direction: str = typer.Option("long", help="long, short or both."),
) -> None:
    """Freeze a strategy's defaults (or --set values) into a frozen file, without optimisation.

    The live runner can then run before any walk-forward; the walk-forward writes the same format
    with its provenance and out-of-sample metrics.
    """
    from research.inputs import parse_assignments
    from signals.frozen import freeze, write_frozen

    frozen = freeze(
        strategy=strategy,
        timeframe=timeframe,
        params=get_params(strategy, parse_assignments(set_)),
        symbol=symbol,
        direction=direction,
    )
    path = write_frozen(frozen, out)
    typer.echo(f"wrote {path}: {frozen.strategy} {frozen.timeframe} params_id {frozen.params_id}")


def get_params(strategy: str, values: dict[str, str]) -> object:
    """Return validated parameters of `strategy` from string overrides."""
    from strategies import get_strategy

    return get_strategy(strategy).params(values)


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
    from signals.cli.live_tools import print_comparison

    comparison = live_demo(
        src_db=db, out=out, strategy=strategy, timeframe=timeframe, hours=hours, speed=speed,
        config=config,
    )  # fmt: skip
    print_comparison(comparison)
    if not comparison.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the research commands to the root app."""
    app.command("strategies")(strategies_command)
    app.command("scan")(scan_command)
    app.command("bias")(bias_command)
    app.command("backtest")(backtest_command)
    app.command("freeze")(freeze_command)
    app.command("demo")(demo_command)
    app.command("demo-live")(demo_live_command)
    from signals.cli.live_tools import register as register_live_tools
    from signals.cli.sweep import sweep_command
    from signals.cli.walkforward import register as register_walkforward

    app.command("sweep")(sweep_command)
    register_walkforward(app)
    register_live_tools(app)
    from signals.cli.reoptimise import register as register_reoptimise

    register_reoptimise(app)
