"""``signals sweep``: grid-sweep a strategy's parameters, rank them, write table and heatmap.

The command parses options and calls `research.optimise.grid.expand_grid`,
`research.optimise.sweep.run_sweep`, `write_sweep` and `write_heatmap`; heavy imports happen
inside it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from signals.cli.options import (
    CONFIG,
    COSTS,
    DB,
    DIRECTION,
    FROM,
    LONG_PROGRESS,
    STRATEGY,
    STRATEGY_PATH,
    SYMBOL,
    TIMEFRAME,
    TO,
)

if TYPE_CHECKING:
    from research.backtest.execution import ExecutionModel
    from research.inputs import RunInputs
    from research.optimise.cluster import ClusterSpec
    from research.optimise.grid import Grid
    from research.optimise.sweep import SweepResult
    from signals.costs import CostModel


REPORT = typer.Option(
    None,
    "--report",
    help="Write an interactive HTML page: ranking, the best's neighbourhood, heatmaps of "
    "every pair of swept parameters, each metric against each parameter (opens offline).",
)
MIN_TRADES = typer.Option(
    5,
    "--min-trades",
    min=0,
    help="Rank only combinations with at least this many trades (the printed top and the "
    "report; identical results are merged into one row).",
)


def sweep_command(
    strategy: str = STRATEGY,
    db: Path = DB,
    timeframe: str = TIMEFRAME,
    symbol: str = SYMBOL,
    grid: list[str] = typer.Option(
        None,
        "--grid",
        "-g",
        help="Values of one parameter (repeatable): name=start:stop:step (stop included), "
        "name=v1,v2,... or name=value. Other parameters keep their defaults.",
    ),
    metric: str = typer.Option("sharpe", "--metric", help="Metric to rank by (NaN last)."),
    top: int = typer.Option(10, "--top", help="How many of the best rows to print."),
    out: Path = typer.Option(
        None, "--out", "-o", help="Folder for sweep.parquet, sweep.csv, sweep.json and heatmaps."
    ),
    from_: str = FROM,
    to: str = TO,
    direction: str = DIRECTION,
    costs: str = COSTS,
    fee_bps: float = typer.Option(None, help="Fee per side in bps (default: config, 5.5)."),
    slippage_bps: float = typer.Option(None, help="Fixed slippage per fill in bps (default 1)."),
    jobs: int = typer.Option(
        0,
        "--jobs",
        "-j",
        help="Worker processes (default 0: one per core, at most one per chunk; 1: no workers).",
    ),
    cluster: str = typer.Option(
        None,
        "--cluster",
        help="Run the chunks on a Dask cluster instead of local processes: a scheduler address "
        "(tcp://host:8786, started with `dask scheduler`, workers with `dask worker ADDRESS`) or "
        "local:N to start N local worker processes for this sweep. The candles are sent to each "
        "worker once; the table is the same as without --cluster. --jobs is then ignored.",
    ),
    cluster_timeout: float = typer.Option(
        10.0,
        "--cluster-timeout",
        help="Seconds to wait for the scheduler and its first worker before giving up (exit 2).",
    ),
    chunk_size: int = typer.Option(
        None, "--chunk-size", help="Combinations per chunk (default: sized from candles, <= 64)."
    ),
    heatmap: str = typer.Option(
        None, "--heatmap", help="Two parameters x,y: write heatmap_<x>_<y>.html of --metric."
    ),
    progress: bool = LONG_PROGRESS,
    report: Path = REPORT,
    min_trades: int = MIN_TRADES,
    config: Path = CONFIG,
    strategy_path: list[Path] = STRATEGY_PATH,
) -> None:
    """Backtest every combination of a parameter grid, chunk by chunk, on every core.

    Invalid combinations (e.g. fast >= slow) are skipped, never simulated. Prints the top rows;
    --out writes the whole table (Parquet, CSV) and its provenance, --report an HTML page.
    """
    from research.optimise.sweep import run_sweep
    from signals.strategy_paths import apply_strategy_paths

    apply_strategy_paths(strategy_path, config)
    axes, spec = _checked_options(metric, grid, heatmap), _cluster_spec(cluster, cluster_timeout)
    run, expanded, execution, cost_model = _prepare(
        strategy, grid, axes, db=db, timeframe=timeframe, symbol=symbol, start=from_, end=to,
        direction=direction, fee_bps=fee_bps, slippage_bps=slippage_bps, config=config,
        cost_spec=costs,
    )  # fmt: skip
    result = run_sweep(
        run.candles,  # the candles before --from warm the indicators up
        run.strategy, expanded, since=run.since, timeframe=run.timeframe, execution=execution,
        costs=cost_model, chunk_size=chunk_size, jobs=jobs or (os.cpu_count() or 1),
        progress=progress, cluster=spec,
    )  # fmt: skip
    _print_top(result, metric, top, expanded.names, min_trades)
    if out is not None:
        _write(result, out, axes, metric)
    _write_report(result, report, metric, run.symbol, min_trades)


def _checked_options(metric: str, grid: list[str] | None, heatmap: str | None) -> tuple[str, ...]:
    """Refuse an unknown --metric or a missing --grid; return the --heatmap axes."""
    from research.backtest.metrics import METRIC_KEYS

    if metric not in METRIC_KEYS:
        raise typer.BadParameter(f"one of {', '.join(METRIC_KEYS)}", param_hint="--metric")
    if not grid:
        raise typer.BadParameter("give at least one --grid name=...", param_hint="--grid")
    return _heatmap_axes(heatmap)


def _cluster_spec(cluster: str | None, timeout: float) -> ClusterSpec | None:
    """Return where the chunks run (None: local processes); refuse a malformed --cluster."""
    from research.optimise.cluster import parse_cluster

    if cluster is None:
        return None
    try:
        spec = parse_cluster(cluster, timeout=timeout)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--cluster") from None
    _dask_logs_at_warning()
    return spec


def _prepare(
    strategy: str,
    grid: list[str],
    axes: tuple[str, ...],
    *,
    db: Path | None,
    timeframe: str,
    symbol: str | None,
    start: str | None,
    end: str | None,
    direction: str,
    fee_bps: float | None,
    slippage_bps: float | None,
    config: Path | None,
    cost_spec: str | None = None,
) -> tuple[RunInputs, Grid, ExecutionModel, CostModel]:
    """Expand the grid, load the candles with the warm-up the grid needs, and say what runs."""
    from research.backtest.execution import ExecutionModel
    from research.inputs import prepare_run, resolve_costs
    from research.optimise.grid import expand_grid
    from signals.strategy_paths import get_strategy

    chosen = get_strategy(strategy)
    expanded = expand_grid(chosen, grid)
    run = prepare_run(
        strategy_name=strategy,
        db=db,
        timeframe=timeframe,
        symbol=symbol,
        start=start,
        end=end,
        config=config,
        # enough history before --from for the combination that needs the most
        warmup=max((chosen.lookback(p) for p in expanded.combos), default=0),
    )
    try:
        execution = ExecutionModel(direction=direction)  # type: ignore[arg-type]  # a str: ExecutionModel checks it
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--direction") from None
    costs = resolve_costs(config, costs=cost_spec, fee_bps=fee_bps, slippage_bps=slippage_bps)
    for name in axes:
        if name not in expanded.names:
            raise typer.BadParameter(f"{name!r} is not swept by --grid", param_hint="--heatmap")
    typer.echo(
        f"{run.strategy.name} {run.symbol} {run.timeframe}: {len(expanded.combos)} combinations "
        f"({expanded.skipped} invalid skipped) over {len(run.period)} candles; costs: "
        f"{costs.describe()}",
        err=True,
    )
    return run, expanded, execution, costs


def _write(result: SweepResult, out: Path, axes: tuple[str, ...], metric: str) -> None:
    """Write the table, its provenance and the heatmap of --metric (if asked) into `out`."""
    from research.optimise.sweep import write_heatmap, write_sweep

    paths = write_sweep(result, out)
    written = [paths["parquet"], paths["csv"], paths["json"]]
    if axes:
        written.append(write_heatmap(result, axes[0], axes[1], metric, out))
    typer.echo("wrote " + ", ".join(str(p) for p in written), err=True)


def _write_report(
    result: SweepResult, path: Path | None, metric: str, symbol: str, min_trades: int
) -> None:
    """Write the sweep's HTML report when ``--report`` is given."""
    if path is None:
        return
    from research.render.sweep_report import write_sweep_report

    write_sweep_report(result, path, metric=metric, symbol=symbol, min_trades=min_trades)
    typer.echo(f"wrote {path}", err=True)


def _dask_logs_at_warning() -> None:
    # Dask configures its loggers to INFO when imported (scheduler, nanny and worker start and
    # stop lines, a traceback logged at INFO when a connection closes at shutdown); the sweep
    # shows its own progress. `signals -v` keeps them.
    import distributed  # noqa: F401  (its import sets the levels this overrides)

    if not logging.getLogger("research").isEnabledFor(logging.DEBUG):
        logging.getLogger("distributed").setLevel(logging.WARNING)


def _heatmap_axes(heatmap: str | None) -> tuple[str, ...]:
    if heatmap is None:
        return ()
    axes = tuple(a.strip() for a in heatmap.split(","))
    if len(axes) != 2 or not all(axes) or axes[0] == axes[1]:
        raise typer.BadParameter("expected two different parameters: x,y", param_hint="--heatmap")
    return axes


def _print_top(result, metric: str, top: int, swept: tuple[str, ...], min_trades: int) -> None:
    from rich.table import Table

    from research.optimise.ranking import SAME, rank_sweep
    from signals.console import console

    try:
        best = rank_sweep(result.table, swept, metric, min_trades=min_trades, top=top)
    except KeyError as exc:
        raise typer.BadParameter(str(exc.args[0]), param_hint="--metric") from None
    shown = (
        [*swept, metric]
        + [m for m in ("total_return", "sharpe", "max_drawdown", "trades") if m != metric]
        + [SAME]
    )
    table = Table(
        title=f"{result.strategy} {result.timeframe}: top {len(best)} of {len(result.table)} "
        f"by {metric} ({result.elapsed:.1f} s; {min_trades}+ trades, identical results merged)"
    )
    for name in shown:
        table.add_column(name, justify="right")
    for row in best.to_dict("records"):
        table.add_row(*(_fmt(row[name]) for name in shown))
    console().print(table)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def register(app: typer.Typer) -> None:
    """Add ``sweep`` to the root app."""
    app.command("sweep")(sweep_command)
