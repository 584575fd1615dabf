"""The walk-forward pipeline: walk-forward -> overfitting -> frozen file -> outputs -> report.

One function, `run_pipeline`, called by ``signals walkforward`` and by the reoptimise notebook,
so both leave the same files behind: ``folds.csv``, ``oos_equity.csv``,
``parameter_stability.csv``, ``trial_ledger.parquet``, ``summary.json``, ``frozen.json`` and
(unless told not to) ``report.html``, in the run folder.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from optuna.storages import BaseStorage

from research.inputs import RunInputs
from research.optimise.outputs import Overfitting, frozen_from_run, overfitting, write_outputs
from research.optimise.storage import HEARTBEAT, join_run, open_storage
from research.optimise.walkforward import (
    WalkForwardConfig,
    WalkForwardRun,
    run_settings,
    run_walkforward,
)
from signals.config import GateSettings
from signals.frozen import FrozenParams


@dataclass(frozen=True)
class PipelineResult:
    """A finished walk-forward run, its overfitting statistics, frozen file and written paths."""

    run: WalkForwardRun
    stats: Overfitting
    frozen: FrozenParams
    paths: dict[str, Path]
    storage: BaseStorage
    study: str


def run_pipeline(
    inputs: RunInputs,
    *,
    config: WalkForwardConfig,
    out: Path,
    storage: str | BaseStorage | None,
    run: str,
    since: pd.Timestamp | None = None,
    labels: dict[str, Any] | None = None,
    heartbeat: int = HEARTBEAT,
    progress: bool = True,
    report: bool = True,
    tune_only: bool = False,
    while_tuning: AbstractContextManager[Any] | None = None,
    gate: GateSettings | None = None,
) -> PipelineResult | None:
    """Tune `inputs` walk-forward into run `run` of `storage`, then write its outputs into `out`.

    The candles before `since` only warm the strategy up. `while_tuning` is entered around the
    tuning alone (the CLI starts and waits for its helper processes there); the run's settings
    are recorded (or checked: a mismatch is refused) in the storage before it is entered. With
    `tune_only` nothing is written and None is returned: another process writes the outputs.
    `gate` is the promotion gate whose verdict heads the report (default: the default gate).
    """
    store = storage
    if not isinstance(store, BaseStorage):
        store = open_storage(store, heartbeat=heartbeat)
    if while_tuning is not None:
        settings = run_settings(inputs.candles, inputs.strategy, timeframe=inputs.timeframe,
                                config=config, since=since, labels=labels)  # fmt: skip
        join_run(store, run, settings)
    with while_tuning or nullcontext():
        result = run_walkforward(
            inputs.candles, inputs.strategy, timeframe=inputs.timeframe, config=config,
            storage=store, run=run, since=since, labels=labels, heartbeat=heartbeat,
            progress=progress,
        )  # fmt: skip
    if tune_only:
        return None
    stats = overfitting(result)
    frozen = frozen_from_run(result, stats, symbol=inputs.symbol, source=str(inputs.db))
    paths = write_outputs(result, stats, frozen, out)
    if report:
        from research.render.walkforward_report import write_report

        paths["report"] = write_report(
            result, stats, frozen, out / "report.html", storage=store, study=run,
            symbol=inputs.symbol, gate=gate,
        )  # fmt: skip
    return PipelineResult(result, stats, frozen, paths, store, run)
