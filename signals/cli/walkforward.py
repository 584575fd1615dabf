"""``signals walkforward`` and ``signals promote``: tune out of sample, freeze, gate."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from signals.cli.options import CONFIG, DB, FROM, STRATEGY, STRATEGY_PATH, SYMBOLS, TIMEFRAME, TO
from signals.cli.options import LONG_PROGRESS as PROGRESS

if TYPE_CHECKING:
    from optuna.storages import BaseStorage

    from research.inputs import RunInputs
    from research.optimise.pipeline import PipelineResult
    from research.optimise.symbols import SymbolPipelines
    from research.optimise.walkforward import WalkForwardConfig

# -- walkforward's own options (declared here so the command reads as its steps)

SCHEME = typer.Option("rolling", help="rolling (fixed train length) or anchored.")
FOLDS = typer.Option(6, help="Number of folds (test windows tile the end of the data).")
TRAIN = typer.Option(None, help="Train window: 90d, 12h, 2w or candles (default 3x test).")
TEST = typer.Option(None, help="Test window (default: what fits the folds).")
GAP = typer.Option(0, help="Purge gap in candles between train and test.")
TRIALS = typer.Option(100, help="Optuna trials per fold.")
OBJECTIVE = typer.Option(
    "sharpe", help="sharpe, sortino, calmar, return, expectancy or sqn (on train windows)."
)
MIN_TRADES = typer.Option(5, help="Trials with fewer train trades get a fixed bad score.")
SEED = typer.Option(42, help="Seed of the TPE samplers (fold i uses seed + i).")
JOBS = typer.Option(1, help="Parallel trials per study (1 = reproducible).")
STORAGE = typer.Option(
    None,
    help="Optuna storage: an RDB URL (postgresql://user:pw@host/db, mysql://, sqlite:///) or "
    "journal:///path/run.log (several processes on one host). Default: SQLite in the run "
    "folder, resumable.",
)
RUN = typer.Option(
    None, "--run", help="Name of the run inside the storage (default: the --out folder's)."
)
WORKERS = typer.Option(
    1, help="Processes working on the run: this one plus N-1 started here (same storage)."
)
FRESH = typer.Option(
    False, "--fresh/--no-fresh", help="Delete the run's studies from the storage first."
)
HEARTBEAT = typer.Option(
    10, help="Seconds between a trial's heartbeats; a trial silent for 3 is failed."
)
TUNE_ONLY = typer.Option(False, "--tune-only", hidden=True)
OUT = typer.Option(None, help="Run folder (default reports/<strategy>-<tf>-<time>).")
DIRECTION = typer.Option("long", help="long, short or both.")
COSTS = typer.Option(None, help="Cost preset or costs file (default: config).")
FEE_BPS = typer.Option(None, help="Taker fee per side in bps.")
SLIPPAGE_BPS = typer.Option(None, help="Fixed slippage per fill in bps.")
REPORT = typer.Option(True, help="Write the HTML report.")


def walkforward_command(
    ctx: typer.Context,
    strategy: str = STRATEGY,
    db: Path = DB,
    timeframe: str = TIMEFRAME,
    symbol: list[str] = SYMBOLS,
    from_: str = FROM,
    to: str = TO,
    scheme: str = SCHEME,
    folds: int = FOLDS,
    train: str = TRAIN,
    test: str = TEST,
    gap: int = GAP,
    trials: int = TRIALS,
    objective: str = OBJECTIVE,
    min_trades: int = MIN_TRADES,
    seed: int = SEED,
    jobs: int = JOBS,
    storage: str = STORAGE,
    run_name: str = RUN,
    workers: int = WORKERS,
    fresh: bool = FRESH,
    heartbeat: int = HEARTBEAT,
    tune_only: bool = TUNE_ONLY,
    out: Path = OUT,
    direction: str = DIRECTION,
    costs: str = COSTS,
    fee_bps: float = FEE_BPS,
    slippage_bps: float = SLIPPAGE_BPS,
    report: bool = REPORT,
    progress: bool = PROGRESS,
    config: Path = CONFIG,
    strategy_path: list[Path] = STRATEGY_PATH,
) -> None:
    """Walk-forward optimisation: optuna tunes each fold's train window, judged only on its test.

    Writes per-fold tables, the stitched out-of-sample equity, the trial ledger, DSR and PBO, the
    frozen parameter file (most recent fold's best) and an HTML report into the run folder.
    Re-running with the same --out resumes an interrupted run; one started with other settings
    or data is refused (exit 2) unless --fresh. The same command started several times (here,
    or on several machines with one --storage and --run) shares the work: see README "Scaling
    out". Several --symbol: one run each in <out>/<SYMBOL>, compared in <out>/symbols.md.
    """
    from research.backtest.execution import ExecutionModel
    from research.inputs import resolve_costs
    from research.optimise.folds import duration_candles
    from research.optimise.storage import open_storage
    from research.optimise.symbols import prepare_runs
    from research.optimise.walkforward import WalkForwardConfig, default_storage
    from signals.strategy_paths import apply_strategy_paths

    apply_strategy_paths(strategy_path, config)  # helpers inherit it (SIGNALS_STRATEGY_PATH)
    runs = prepare_runs(
        symbol, strategy_name=strategy, db=db, timeframe=timeframe, start=from_, end=to,
        config=config,
    )  # fmt: skip
    wf = WalkForwardConfig(
        scheme=scheme, folds=folds, gap=gap, trials=trials, objective=objective,  # type: ignore[arg-type]  # typer passes scheme as a str
        train=duration_candles(train, timeframe) if train else None,
        test=duration_candles(test, timeframe) if test else None,
        min_trades=min_trades, seed=seed, jobs=jobs,
        execution=ExecutionModel(direction=direction),  # type: ignore[arg-type]  # a str: ExecutionModel checks it
        costs=resolve_costs(config, costs=costs, fee_bps=fee_bps, slippage_bps=slippage_bps),
    )  # fmt: skip
    out = out or Path("reports") / f"{strategy}-{timeframe}-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    name = run_name or re.sub(r"[^A-Za-z0-9_.-]", "_", out.name)
    storage = storage or default_storage(out)
    store = open_storage(storage, heartbeat=heartbeat)
    walk = _one_symbol if len(runs) == 1 else _several_symbols
    walk(runs, wf, _Walk(out=out, storage=storage, store=store, name=name, fresh=fresh,
                         heartbeat=heartbeat, tune_only=tune_only, report=report,
                         workers=workers, config=config, progress=progress,
                         command=ctx))  # fmt: skip


@dataclass(frozen=True)
class _Walk:
    """How this command walks forward: where, in which run, with what output and helpers."""

    out: Path
    storage: str
    store: BaseStorage
    name: str
    fresh: bool
    heartbeat: int
    tune_only: bool
    report: bool
    workers: int
    config: Path | None
    progress: bool
    command: typer.Context  # what the helpers' command line is built from (any thread)


def _one_symbol(runs: dict[str, RunInputs], wf: WalkForwardConfig, w: _Walk) -> None:
    """Walk the one symbol's run forward in `out` as run `name`."""
    from research.optimise.pipeline import run_pipeline
    from research.optimise.storage import forget_run
    from signals.config import load_settings

    [run] = runs.values()
    if w.fresh:
        deleted = forget_run(w.store, w.name)
        typer.echo(f"--fresh: deleted {deleted} studies of run {w.name!r}", err=True)
    done = run_pipeline(
        run, config=wf, out=w.out, storage=w.store, run=w.name,
        since=run.since,  # the candles before --from only warm the indicators up
        labels={"symbol": run.symbol}, heartbeat=w.heartbeat,
        progress=w.progress and not w.tune_only, report=w.report, tune_only=w.tune_only,
        while_tuning=_helpers(w, w.out),
        gate=load_settings(w.config).gate,  # the report's verdict is `signals promote`'s
    )  # fmt: skip
    if done is not None:
        _print_summary(done)


def _several_symbols(runs: dict[str, RunInputs], wf: WalkForwardConfig, w: _Walk) -> None:
    """Walk each symbol forward in <out>/<SYMBOL> as run <name>-<SYMBOL>, then compare them."""
    from research.optimise.storage import forget_run
    from research.optimise.symbols import run_symbol_pipelines, symbol_folder, symbol_run_name
    from signals.config import load_settings

    for each in [symbol_run_name(w.name, s) for s in runs] if w.fresh else []:
        typer.echo(
            f"--fresh: deleted {forget_run(w.store, each)} studies of run {each!r}", err=True
        )

    def helpers(symbol: str) -> AbstractContextManager[None]:
        # each symbol's helpers run the single-symbol command this symbol's run equals
        single = ["--symbol", symbol, "--run", symbol_run_name(w.name, symbol)]
        return _helpers(w, symbol_folder(w.out, symbol), single)

    done = run_symbol_pipelines(
        runs, config=wf, out=w.out, storage=w.store, run=w.name,
        gate=load_settings(w.config).gate, heartbeat=w.heartbeat,
        progress=w.progress and not w.tune_only, report=w.report, tune_only=w.tune_only,
        while_tuning=helpers,
    )  # fmt: skip
    if done is not None:
        for result in done.results.values():
            _print_summary(result)
        _print_comparison(done)


def _print_comparison(done: SymbolPipelines) -> None:
    from rich.table import Table

    from research.render.symbols import HEADINGS, comparison_cells
    from signals.console import console

    table = Table(*(HEADINGS[c] for c in done.comparison.columns), title="walk-forward by symbol")
    for row in comparison_cells(done.comparison):
        table.add_row(*row)
    out = console()
    out.print(table)
    out.print(f"comparison: {done.paths['markdown']}, {done.paths['html']}", highlight=False)


# the options a helper gets from its starter, not from this command's line
HELPERS_SET = ("workers", "fresh", "tune_only", "storage", "out")


@contextmanager
def _helpers(w: _Walk, out: Path, single: list[str] | None = None) -> Iterator[None]:
    """Run ``--workers`` - 1 more processes of this very command on its storage and run meanwhile.

    They tune only (``--tune-only``): this process writes the outputs. Their command line is
    this command's options as given (`given_arguments`, right also in process) less those a
    helper gets its own of, so a helper never deletes the run (--no-fresh) nor starts helpers
    of its own. `single` (``--symbol S --run R``) makes them tune one symbol of a
    several-symbol run.
    """
    import subprocess

    from signals.cli.argv import given_arguments, signals_command

    mine = ["--workers", "1", "--no-fresh", "--tune-only", "--storage", w.storage]
    mine += ["--out", str(out)]
    leave_out = HELPERS_SET + (("symbol", "run_name") if single else ())
    kept = given_arguments(w.command, leave_out)
    command = signals_command(*kept, *mine, *(single or []))
    count = w.workers - 1
    started = [subprocess.Popen(command, stdout=subprocess.DEVNULL) for _ in range(count)]
    try:
        yield
    finally:
        for process in started:
            code = process.wait()
            if code != 0:
                typer.echo(f"walk-forward helper {process.pid} ended with code {code}", err=True)


def _print_summary(done: PipelineResult) -> None:
    from rich.table import Table

    from research.optimise.walkforward import fold_table, walkforward_efficiency
    from signals.console import console

    result, stats, frozen, paths = done.run, done.stats, done.frozen, done.paths
    title = f"walk-forward {result.strategy.name} {frozen.symbol} {result.timeframe}"
    columns = ["fold", "test from", "test to", "train sharpe", "test sharpe", "test return"]
    table = Table(*columns, "test trades", title=title)
    for row in fold_table(result).itertuples(index=False):
        table.add_row(
            str(row.fold),
            f"{row.test_from:%Y-%m-%d %H:%M}",
            f"{row.test_to:%Y-%m-%d %H:%M}",
            f"{row.train_sharpe:.2f}",
            f"{row.test_sharpe:.2f}",
            f"{row.test_total_return:+.2%}",
            str(int(row.test_trades)),  # type: ignore[arg-type]  # itertuples: fields untyped
        )
    out = console()
    out.print(table)
    m = frozen.metrics or {}
    out.print(
        f"out-of-sample: return {m.get('total_return') or 0:+.2%}, sharpe "
        f"{m.get('sharpe') or float('nan'):.2f}, max drawdown {m.get('max_drawdown') or 0:.2%}, "
        f"trades {int(m.get('trades') or 0)}; trials run {stats.trials_run}",
        highlight=False,
    )
    out.print(stats.verdict, highlight=False)
    wfe = walkforward_efficiency(result)
    out.print(f"walk-forward efficiency {wfe.describe()}", highlight=False)
    out.print(f"frozen: {paths['frozen']} (params_id {frozen.params_id})", highlight=False)
    if "report" in paths:
        out.print(f"report: {paths['report']}", highlight=False)


def promote_command(
    source: Path = typer.Argument(..., help="Frozen parameter file to promote."),
    to: Path = typer.Option(..., "--to", help="Where the live runner reads its parameters."),
    force: bool = typer.Option(
        False, help="Promote even if the gate fails (recorded in the file)."
    ),
    min_sharpe: float = typer.Option(None, help="Minimum out-of-sample Sharpe (default 0.5)."),
    min_dsr: float = typer.Option(None, help="Minimum deflated Sharpe ratio (default 0.9)."),
    max_pbo: float = typer.Option(None, help="Maximum probability of overfitting (default 0.5)."),
    min_trades: int = typer.Option(None, help="Minimum out-of-sample trades (default 20)."),
    max_drawdown: float = typer.Option(None, help="Deepest drawdown allowed, e.g. 0.35."),
    config: Path = CONFIG,
    strategy_path: list[Path] = STRATEGY_PATH,
) -> None:
    """Promote a frozen file to the live path if it passes the gate (atomically); exit 1 if not."""
    from research.promote.gate import promote
    from signals.config import load_settings
    from signals.strategy_paths import apply_strategy_paths

    apply_strategy_paths(strategy_path, config)

    overrides = {
        "min_sharpe": min_sharpe, "min_dsr": min_dsr, "max_pbo": max_pbo,
        "min_trades": min_trades, "max_drawdown": max_drawdown,
    }  # fmt: skip
    gate = load_settings(config).gate.model_copy(
        update={k: v for k, v in overrides.items() if v is not None}
    )
    promoted, failures = promote(source, to, gate=gate, force=force)
    for line in failures:
        typer.echo(f"gate: {line}", err=True)
    if failures and not force:
        typer.echo(f"refused: {source} fails the promotion gate; nothing written", err=True)
        raise typer.Exit(1)
    state = "FORCED past the gate" if failures else "passed the gate"
    typer.echo(f"promoted {source} -> {to} ({state}; params_id {promoted.params_id})")


def register(app: typer.Typer) -> None:
    """Add ``walkforward`` and ``promote`` to the root app."""
    app.command("walkforward")(walkforward_command)
    app.command("promote")(promote_command)
