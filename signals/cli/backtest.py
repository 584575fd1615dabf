"""``signals bias``, ``signals backtest`` and ``signals freeze``: check, simulate and freeze one
parameter set of a strategy (no optimisation)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from signals.cli.options import (
    CONFIG,
    COSTS,
    DB,
    DIRECTION,
    FEE_BPS,
    FROM,
    PARAMS,
    SET,
    SLIPPAGE_BPS,
    STRATEGY,
    STRATEGY_PATH,
    SYMBOL,
    TIMEFRAME,
    TO,
    strategy_run,
)

REPORT = typer.Option(
    None,
    "--report",
    help="Write an interactive HTML report here: candles, signals, fills, equity, drawdown, "
    "trade statistics, monthly returns (one file, opens offline).",
)


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
    strategy_path: list[Path] = STRATEGY_PATH,
) -> None:
    """Check a strategy for lookahead and insufficient warm-up on your own candles.

    Recomputes signals on history cut at sampled candles (must equal full history up to the cut)
    and on history starting later (must agree once the declared lookback has passed). Exits 1
    and names the first candle and column that differ when a check fails.
    """
    from research.backtest.bias import check_bias

    run = strategy_run(
        strategy, db, timeframe, symbol, params, set_, from_, to, config, strategy_path
    )
    report = check_bias(
        run.strategy, run.candles, run.params, cuts=cuts, starts=starts, seed=seed,
        timeframe=run.timeframe,
    )  # fmt: skip
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
    direction: str = DIRECTION,
    fill: str = typer.Option(
        "next_open",
        help="next_open: a signal at a close fills at the next open; close: same close.",
    ),
    costs: str = COSTS,
    fee_bps: float = FEE_BPS,
    slippage_bps: float = SLIPPAGE_BPS,
    stop_loss: float = typer.Option(None, help="Stop-loss as a fraction of entry, e.g. 0.02."),
    take_profit: float = typer.Option(None, help="Take-profit as a fraction of entry."),
    size: float = typer.Option(None, help="Fraction of equity per position (default: all-in)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object of metrics."),
    trades_out: Path = typer.Option(None, help="Write the trade list to this CSV file."),
    quality: bool = typer.Option(
        False, "--quality", help="Also report signal quality: forward returns per confidence."
    ),
    quality_plot: Path = typer.Option(None, help="Write the signal-quality plot (HTML) here."),
    report: Path = REPORT,
    config: Path = CONFIG,
    strategy_path: list[Path] = STRATEGY_PATH,
) -> None:
    """Backtest a strategy on stored candles under fees and slippage, and print its metrics.

    Signals come from the strategy's own signal function (the one the live runner calls); fills
    follow the execution model in the README (next open by default, long only, all-in).
    """
    from research.backtest.execution import ExecutionModel
    from research.backtest.run import run_backtest
    from research.inputs import resolve_costs
    from research.render.tables import metrics_json, print_metrics, print_quality

    run = strategy_run(
        strategy, db, timeframe, symbol, params, set_, from_, to, config, strategy_path
    )
    execution = _execution(ExecutionModel, fill, direction, size, stop_loss, take_profit)
    cost_model = resolve_costs(config, costs=costs, fee_bps=fee_bps, slippage_bps=slippage_bps)
    candles = run.period
    # the candles before --from warm the indicators up
    result = run_backtest(run.candles, run.strategy, run.params, timeframe=run.timeframe,
                          execution=execution, costs=cost_model, since=run.since)  # fmt: skip
    if trades_out is not None:
        result.trades.to_csv(trades_out, index=False)
    signal_report = _quality(candles, result, quality or quality_plot is not None, quality_plot)
    wrote = _report(result, run, report) if report is not None else None
    if as_json:
        payload = metrics_json(result, run)
        if signal_report is not None:
            payload["quality"] = signal_report.to_records()
        typer.echo(json.dumps(payload, sort_keys=False))
        return
    print_metrics(result, run)
    if signal_report is not None:
        print_quality(signal_report)
    if wrote is not None:
        typer.echo(wrote)


def _report(result, run, path: Path) -> str:
    from research.render.backtest_report import write_backtest_report

    done = write_backtest_report(
        result, run.candles, path, strategy=run.strategy, symbol=run.symbol, timeframe=run.timeframe
    )
    drawn = done.summary
    note = f", drawn as {drawn['drawn_timeframe']} candles" if drawn["resampled"] else ""
    return f"report: {path} ({path.stat().st_size / 2**20:.1f} MiB{note})"


def _quality(candles, result, wanted: bool, plot: Path | None):
    if not wanted:
        return None
    from research.backtest.quality import quality_figure, signal_quality

    report = signal_quality(candles, result.signals)
    if plot is not None:
        quality_figure(report).write_html(plot, include_plotlyjs=True, full_html=True)
    return report


def _execution(model: type, fill: str, direction: str, size, stop_loss, take_profit):
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
    direction: str = DIRECTION,
    strategy_path: list[Path] = STRATEGY_PATH,
) -> None:
    """Freeze a strategy's defaults (or --set values) into a frozen file, without optimisation.

    The live runner can then run before any walk-forward; the walk-forward writes the same format
    with its provenance and out-of-sample metrics.
    """
    from signals.strategy_paths import apply_strategy_paths

    apply_strategy_paths(strategy_path)
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
    from signals.strategy_paths import get_strategy

    return get_strategy(strategy).params(values)


def register(app: typer.Typer) -> None:
    """Add ``bias``, ``backtest`` and ``freeze`` to the root app."""
    app.command("bias")(bias_command)
    app.command("backtest")(backtest_command)
    app.command("freeze")(freeze_command)
