"""``signals bias``, ``signals backtest`` and ``signals freeze``: check, simulate and freeze one
parameter set of a strategy (no optimisation)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
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
    SYMBOLS,
    TIMEFRAME,
    TO,
    strategy_run,
    strategy_runs,
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
    symbol: list[str] = SYMBOLS,
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
    With several --symbol, one backtest per symbol: a table compares them (--json: one object
    per symbol, keyed by it), and --report, --trades-out and --quality-plot write one file per
    symbol, its name suffixed with -SYMBOL (backtest.html -> backtest-ETHUSDT.html).
    """
    from research.backtest.execution import ExecutionModel
    from research.inputs import resolve_costs
    from research.render.tables import metrics_json, print_metrics, print_quality

    runs = strategy_runs(
        strategy, db, timeframe, symbol, params, set_, from_, to, config, strategy_path
    )
    execution = _execution(ExecutionModel, fill, direction, size, stop_loss, take_profit)
    cost_model = resolve_costs(config, costs=costs, fee_bps=fee_bps, slippage_bps=slippage_bps)
    outputs = _Outputs(trades_out, quality or quality_plot is not None, quality_plot, report)
    if len(runs) > 1:
        _several_symbols(runs, execution, cost_model, outputs, as_json=as_json)
        return
    run = next(iter(runs.values()))
    result, signal_report, wrote = _backtest_one(run, execution, cost_model, outputs)
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


@dataclass(frozen=True)
class _Outputs:
    """What a backtest writes besides its metrics (paths of one symbol's files)."""

    trades: Path | None
    quality: bool
    quality_plot: Path | None
    report: Path | None

    def of(self, symbol: str) -> _Outputs:
        """Return the outputs of `symbol` in a several-symbol run: names suffixed -SYMBOL."""

        def each(path: Path | None) -> Path | None:
            safe = re.sub(r"[^A-Za-z0-9_.-]", "_", symbol)
            return None if path is None else path.with_name(f"{path.stem}-{safe}{path.suffix}")

        return _Outputs(each(self.trades), self.quality, each(self.quality_plot), each(self.report))


def _backtest_one(run, execution, costs, outputs: _Outputs):
    """Backtest one symbol's run; write its trades, quality plot and report if asked."""
    from research.backtest.run import run_backtest

    # the candles before --from warm the indicators up
    result = run_backtest(run.candles, run.strategy, run.params, timeframe=run.timeframe,
                          execution=execution, costs=costs, since=run.since)  # fmt: skip
    if outputs.trades is not None:
        result.trades.to_csv(outputs.trades, index=False)
    signal_report = _quality(run.period, result, outputs.quality, outputs.quality_plot)
    wrote = _report(result, run, outputs.report) if outputs.report is not None else None
    return result, signal_report, wrote


def _several_symbols(runs, execution, costs, outputs: _Outputs, *, as_json: bool) -> None:
    """Backtest each symbol as on its own; print a table comparing them (or one JSON object)."""
    from research.render.symbols import print_backtests
    from research.render.tables import metrics_json, print_quality
    from signals.console import console

    done = {s: _backtest_one(run, execution, costs, outputs.of(s)) for s, run in runs.items()}
    if as_json:
        payload = {}
        for symbol, (result, signal_report, _) in done.items():
            payload[symbol] = metrics_json(result, runs[symbol])
            if signal_report is not None:
                payload[symbol]["quality"] = signal_report.to_records()
        typer.echo(json.dumps(payload, sort_keys=False))
        return
    print_backtests({s: (result, runs[s]) for s, (result, _, _) in done.items()})
    for symbol, (_, signal_report, wrote) in done.items():
        if signal_report is not None:
            console().print(symbol, highlight=False)
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
    strategy: str = typer.Option(
        None,
        "--strategy",
        "-s",
        help="Strategy name (see `signals strategies`); with --from, the file's.",
    ),
    timeframe: str = typer.Option(
        None,
        "--timeframe",
        "-t",
        help="Candle timeframe: 1m 5m 15m 1h 4h 1d; with --from, the file's.",
    ),
    out: Path = typer.Option(
        None,
        "--out",
        "-o",
        help="Frozen parameter file to write (JSON); with --from, default "
        "OLD.refrozen.json beside it.",
    ),
    symbol: str = typer.Option(
        None,
        "--symbol",
        help="Symbol the parameters are for (default BTCUSDT; with --from, the file's).",
    ),
    set_: list[str] = SET,
    direction: str = typer.Option(
        None, "--direction", help="long (default), short, or both; with --from, the file's."
    ),
    from_: Path = typer.Option(
        None,
        "--from",
        help="Re-freeze this frozen file under the current code: its strategy, "
        "timeframe, symbol, direction, costs and parameters (--set overrides one), not its "
        "metrics. Its identity may differ; its checksum must match.",
    ),
    strategy_path: list[Path] = STRATEGY_PATH,
) -> None:
    """Freeze a strategy's defaults (or --set values) into a frozen file, without optimisation.

    The live runner can then run before any walk-forward; the walk-forward writes the same format
    with its provenance and out-of-sample metrics. --from OLD.json freezes OLD's parameters again
    under the current code and records OLD (path, sha256, params_id, identity) in the new file.
    """
    from signals.strategy_paths import apply_strategy_paths

    apply_strategy_paths(strategy_path)
    from research.inputs import parse_assignments

    if from_ is not None:
        _refreeze(from_, out, parse_assignments(set_), direction,
                  {"strategy": strategy, "timeframe": timeframe, "symbol": symbol})  # fmt: skip
        return
    from signals.frozen import freeze, write_frozen

    for value, hint in ((strategy, "'--strategy' / '-s'"), (timeframe, "'--timeframe' / '-t'"),
                        (out, "'--out' / '-o'")):  # fmt: skip
        if value is None:
            raise typer.BadParameter("required (unless --from re-freezes a file)", param_hint=hint)
    frozen = freeze(
        strategy=strategy,
        timeframe=timeframe,
        params=get_params(strategy, parse_assignments(set_)),
        symbol=symbol or "BTCUSDT",
        direction=direction or "long",
    )
    path = write_frozen(frozen, out)
    typer.echo(f"wrote {path}: {frozen.strategy} {frozen.timeframe} params_id {frozen.params_id}")


def _refreeze(
    source: Path,
    out: Path | None,
    overrides: dict[str, str],
    direction: str | None,
    expect: dict[str, str | None],
) -> None:
    """``freeze --from``: write `source`'s parameters frozen under the current code; say what."""
    from signals.frozen import write_frozen
    from signals.refreeze import default_out, refreeze

    frozen = refreeze(source, overrides=overrides, direction=direction, expect=expect)
    path = write_frozen(frozen, out or default_out(source))
    trail = frozen.refrozen_from
    assert trail is not None
    matched = {True: "unchanged", False: "changed", None: "unknown (no identity)"}
    typer.echo(
        f"wrote {path}: {frozen.strategy} {frozen.timeframe} {frozen.symbol} params_id "
        f"{frozen.params_id}, re-frozen from {source} (params_id {trail.params_id}, sha256 "
        f"{trail.sha256[:12]}; its behaviour under the current code: "
        f"{matched[trail.behaviour_matched]})"
    )
    dropped = f" {', '.join(trail.dropped)} of {source} not carried over;" if trail.dropped else ""
    typer.echo(
        f"no out-of-sample metrics:{dropped} `signals promote` refuses this file on the gate, as "
        "any `signals freeze` file, until a walk-forward measures the current code"
    )


def get_params(strategy: str, values: dict[str, str]) -> object:
    """Return validated parameters of `strategy` from string overrides."""
    from signals.strategy_paths import get_strategy

    return get_strategy(strategy).params(values)


def register(app: typer.Typer) -> None:
    """Add ``bias``, ``backtest`` and ``freeze`` to the root app."""
    app.command("bias")(bias_command)
    app.command("backtest")(backtest_command)
    app.command("freeze")(freeze_command)
