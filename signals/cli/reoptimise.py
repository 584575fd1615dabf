"""``signals reoptimise``: the quarterly walk-forward notebook, run by papermill, then a reload.

Exit codes: 0 when the new file was promoted (or passed the gate with no ``--promote-to``), 1
when the gate refused it (nothing is written to ``--promote-to``), 2 when the run failed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from signals.cli.options import CONFIG, DB, FROM, LONG_PROGRESS, STRATEGY_PATH, SYMBOL

if TYPE_CHECKING:
    from research.promote.reoptimise import ReoptimiseJob


def _utc_now() -> datetime:
    return datetime.now(UTC)


def reoptimise_command(
    quarter: str = typer.Option(
        None, help="Quarter to run, e.g. 2026Q4 (default: the current one); names the folder."
    ),
    strategy: str = typer.Option(
        None, "--strategy", "-s", help="Strategy (default: the one of --current)."
    ),
    db: Path = DB,
    timeframe: str = typer.Option(
        None, "--timeframe", "-t", help="Timeframe (default: the one of --current)."
    ),
    symbol: str = SYMBOL,
    from_: str = FROM,
    to: str = typer.Option(
        None, "--to", help="Last candle to use (default: just before the quarter starts)."
    ),
    days: int = typer.Option(180, help="Use the last N days of candles up to --to."),
    folds: int = typer.Option(6, help="Walk-forward folds."),
    trials: int = typer.Option(100, help="Optuna trials per fold."),
    train_min_trades: int = typer.Option(5, help="Trials with fewer train trades score badly."),
    seed: int = typer.Option(42, help="Seed of the TPE samplers."),
    costs: str = typer.Option(None, help="Cost preset or costs file (default: config)."),
    fee_bps: float = typer.Option(None, help="Taker fee per side in bps."),
    slippage_bps: float = typer.Option(None, help="Fixed slippage per fill in bps."),
    min_sharpe: float = typer.Option(None, help="Gate: minimum out-of-sample Sharpe."),
    min_dsr: float = typer.Option(None, help="Gate: minimum deflated Sharpe ratio."),
    max_pbo: float = typer.Option(None, help="Gate: maximum probability of overfitting."),
    min_trades: int = typer.Option(None, help="Gate: minimum out-of-sample trades."),
    max_drawdown: float = typer.Option(None, help="Gate: deepest drawdown allowed, e.g. 0.35."),
    promote_to: Path = typer.Option(
        None, help="Live frozen file to replace if the gate passes (default: only check)."
    ),
    current: Path = typer.Option(
        None, help="Frozen file promoted now, to compare with (default: --promote-to)."
    ),
    out_root: Path = typer.Option(Path("reports"), help="Runs go to <out-root>/<quarter>/."),
    recent_days: int = typer.Option(14, help="Compare both sets' signals over N recent days."),
    reload_pidfile: Path = typer.Option(
        None, help="After a promotion, send SIGHUP to the pid in this file (the live runner)."
    ),
    reload_unit: str = typer.Option(
        None, help="After a promotion, `systemctl reload` this unit (e.g. signals-live)."
    ),
    progress: bool = LONG_PROGRESS,
    config: Path = CONFIG,
    strategy_path: list[Path] = STRATEGY_PATH,
) -> None:
    """Re-optimise on the latest candles, compare with the live parameters, promote if it passes.

    Runs notebooks/reoptimise.ipynb through papermill into <out-root>/<quarter>/: the executed
    notebook and its HTML, the walk-forward outputs (report.html, frozen.json) and outcome.json.
    After a promotion, --reload-pidfile or --reload-unit makes the live runner reload (SIGHUP).
    """
    from research.promote.reoptimise import ReoptimiseJob
    from signals.strategy_paths import apply_strategy_paths

    apply_strategy_paths(strategy_path, config)  # the notebook's kernel inherits it (env)
    gate: dict[str, float | None] = {"min_sharpe": min_sharpe, "min_dsr": min_dsr,
            "max_pbo": max_pbo, "min_trades": min_trades, "max_drawdown": max_drawdown}  # fmt: skip
    job = ReoptimiseJob(
        strategy=strategy, database=_text(db), timeframe=timeframe, symbol=symbol,
        period_from=from_, period_to=to, last_days=days, folds=folds, trials=trials,
        train_min_trades=train_min_trades, seed=seed, costs=costs, fee_bps=fee_bps,
        slippage_bps=slippage_bps, gate=gate, current=_text(current),
        promote_to=_text(promote_to), recent_days=recent_days, config=_text(config),
        progress=progress,
    )  # fmt: skip
    code = reoptimise(job, quarter=quarter, out_root=out_root, reload_pidfile=reload_pidfile,
                      reload_unit=reload_unit, clock=_utc_now)  # fmt: skip
    if code:
        raise typer.Exit(code)


def reoptimise(
    job: ReoptimiseJob,
    *,
    quarter: str | None,
    out_root: Path,
    reload_pidfile: Path | None = None,
    reload_unit: str | None = None,
    clock: Callable[[], datetime] = _utc_now,
) -> int:
    """Run the re-optimisation `job` for `quarter` (default: the clock's); return the exit code.

    After a promotion, the live runner is told to reload (pidfile or systemd unit).
    """
    from research.promote.reoptimise import (
        current_quarter,
        parse_quarter,
        resolve_job,
        run_reoptimise,
        send_reload,
    )

    label = parse_quarter(quarter) if quarter else current_quarter(clock())
    job = resolve_job(job, label)
    out_dir = out_root / label
    typer.echo(f"reoptimise {label}: {job.strategy} {job.timeframe} -> {out_dir}", err=True)
    outcome = run_reoptimise(job, out_dir=out_dir)
    for line in outcome["failures"]:
        typer.echo(f"gate: {line}", err=True)
    old, new = outcome["old_params_id"], outcome["new_params_id"]
    if outcome["promoted"]:
        typer.echo(f"promoted {new} -> {job.promote_to} (was {old})")
        if reload_pidfile is not None or reload_unit is not None:
            typer.echo(send_reload(pidfile=reload_pidfile, unit=reload_unit))
        return 0
    if outcome["passed"]:
        typer.echo(f"passed the gate: {new} (no --promote-to, nothing promoted)")
        return 0
    kept = f"{job.promote_to} left unchanged" if job.promote_to else "nothing promoted"
    typer.echo(f"refused: {new} fails the gate; {kept}")
    return 1


def _text(path: Path | None) -> str | None:
    return None if path is None else str(path)


def register(app: typer.Typer) -> None:
    """Add ``reoptimise`` to the root app."""
    app.command("reoptimise")(reoptimise_command)
