"""Walk-forward optimisation: tune on the past with optuna, judge only on the unseen future.

For each fold (research.optimise.folds) an optuna study (TPE, seeded with ``seed + fold``)
searches the strategy's declared parameter space. Each trial is scored on the fold's train window
only (research.backtest.windows.evaluate_window: costs included, indicators warmed up on earlier
candles).
Trials with fewer than ``min_trades`` trades, invalid parameter combinations and undefined scores
get the fixed `BAD_SCORE`. The previous fold's best parameters are enqueued as the next fold's
first trial. The fold's best parameters are then run once on its test window; the test windows,
each started flat, are chained into the out-of-sample equity curve.

Studies live in an optuna storage (research.optimise.storage; SQLite in the run folder by
default), so an interrupted run resumes where it stopped, with the run's settings recorded so that
only an identical run resumes. Processes given the same storage and run share each fold's trial
budget (a PostgreSQL server for several machines, a journal file for several processes on one host).
With one process and ``jobs=1`` the same data and seed give the same trials, parameters and
frozen file, whatever the storage.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import secrets
import socket
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.storages import BaseStorage
from optuna.storages._heartbeat import get_heartbeat_thread, is_heartbeat_enabled
from optuna.trial import FrozenTrial, TrialState

from research.backtest.execution import ExecutionModel
from research.backtest.windows import WindowResult, daily_returns, evaluate_window, stitch_equity
from research.optimise.efficiency import Efficiency, efficiency
from research.optimise.folds import Fold, Scheme, make_folds
from research.optimise.storage import HEARTBEAT, join_run, open_storage, publish_once, quiet
from signals.costs import CostModel
from signals.errors import ParamsError, SignalsError
from signals.identity import strategy_hash
from signals.timeframes import timeframe_seconds
from signals.warmup import start_position
from strategies import Strategy
from strategies.params import as_dict, make_params, ranges, suggest

log = logging.getLogger(__name__)

BAD_SCORE = -100.0
WORKER = f"{socket.gethostname()}:{os.getpid()}"
UNSTARTED = 300.0  # seconds after which a running trial that never started is failed
OBJECTIVES = {
    "sharpe": "sharpe",
    "sortino": "sortino",
    "calmar": "calmar",
    "return": "total_return",
    "expectancy": "expectancy",
    "sqn": "sqn",
}


@dataclass(frozen=True, kw_only=True)
class WalkForwardConfig:
    """Everything that decides a walk-forward run (recorded in its outputs)."""

    scheme: Scheme = "rolling"
    folds: int = 6
    train: int | None = None
    test: int | None = None
    gap: int = 0
    trials: int = 100
    objective: str = "sharpe"
    min_trades: int = 5
    seed: int = 42
    jobs: int = 1
    execution: ExecutionModel = field(default_factory=ExecutionModel)
    costs: CostModel = field(default_factory=CostModel)

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise SignalsError(
                f"unknown objective {self.objective!r}; choose from {', '.join(OBJECTIVES)}"
            )
        if self.trials < 1:
            raise SignalsError("--trials must be at least 1")


def run_settings(candles: pd.DataFrame, strategy: Strategy, *, timeframe: str,
                 config: WalkForwardConfig, since: pd.Timestamp | None = None,
                 labels: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """Return what decides a run's results, as recorded with it in the storage.

    `labels` adds what the candles do not say (the symbol). The number of parallel jobs is
    left out: it is each process's own business.
    """
    execution = dataclasses.asdict(config.execution)
    data_hash = hashlib.sha256(pd.util.hash_pandas_object(candles).to_numpy().tobytes())
    return {
        "strategy": strategy.name, "strategy_hash": strategy_hash(strategy),
        "strategy_params": repr(strategy.params()), "timeframe": timeframe,
        "data_first": candles.index[0].isoformat(), "data_last": candles.index[-1].isoformat(),
        "data_rows": len(candles), "data_hash": data_hash.hexdigest()[:16],
        "since": since.isoformat() if since is not None else None,
        "scheme": config.scheme, "folds": config.folds, "train": config.train,
        "test": config.test, "gap": config.gap, "trials": config.trials,
        "objective": config.objective, "min_trades": config.min_trades, "seed": config.seed,
        "execution": json.dumps(execution, sort_keys=True), "costs": config.costs.describe(),
        "costs_full": config.costs.model_dump_json(),
        **(labels or {}),
    }  # fmt: skip


@dataclass(frozen=True)
class FoldResult:
    """One fold: its windows, best parameters, train and test results, and its trials."""

    fold: Fold
    best_params: dict[str, Any]
    best_value: float
    train: WindowResult
    test: WindowResult
    trials: pd.DataFrame


@dataclass(frozen=True)
class WalkForwardRun:
    """The folds of a finished run and the chained out-of-sample equity curve."""

    strategy: Strategy
    timeframe: str
    config: WalkForwardConfig
    candles: pd.DataFrame
    folds: list[FoldResult]
    oos_equity: pd.Series

    @property
    def trials_run(self) -> int:
        """Return how many trials were evaluated across all folds."""
        return int(sum(len(f.trials) for f in self.folds))


class _Objective:
    """Score one optuna trial on a fold's train window."""

    def __init__(self, candles: pd.DataFrame, strategy: Strategy, fold: Fold, timeframe: str,
                 config: WalkForwardConfig) -> None:  # fmt: skip
        self.candles, self.strategy, self.fold = candles, strategy, fold
        self.timeframe, self.config = timeframe, config

    def __call__(self, trial: optuna.Trial) -> float:
        storage = trial.study._storage
        if is_heartbeat_enabled(storage):
            # beat once before the worker mark: optuna's heartbeat thread may not have beaten
            # yet, and a trial marked but never beaten would be failed by neither rule
            storage.record_heartbeat(trial._trial_id)
        trial.set_user_attr("worker", WORKER)  # which process ran it, when several share a run
        try:
            params = make_params(self.strategy.Params, suggest(self.strategy.Params, trial))
        except ParamsError as exc:
            trial.set_user_attr("rejected", str(exc))
            return BAD_SCORE
        result = evaluate_window(
            self.candles, self.strategy, params, self.fold.train_start, self.fold.train_end,
            timeframe=self.timeframe, execution=self.config.execution, costs=self.config.costs,
        )  # fmt: skip
        trades = int(result.metrics["trades"])
        daily = daily_returns(result.equity, self.config.execution.init_cash)
        value = float(result.metrics[OBJECTIVES[self.config.objective]])
        # one attribute, one write: a shared storage pays a transaction per write
        trial.set_user_attr("evaluation", {
            "trades": trades, "raw_value": value if math.isfinite(value) else None,
            "daily_returns": [float(x) for x in daily.to_numpy()],
        })  # fmt: skip
        if trades < self.config.min_trades or not math.isfinite(value):
            return BAD_SCORE
        return value


def study_name(run: str, fold: Fold) -> str:
    """Return the optuna study name of `fold` in run `run`."""
    return f"{run}-fold{fold.index}"


def _study(storage: BaseStorage, run: str, fold: Fold, seed: int,
           warm_start: dict[str, Any] | None) -> optuna.Study:  # fmt: skip
    """Create the fold's study (sampling with `seed + fold`, warm start enqueued) or join it.

    The process that creates the study enqueues the warm start: it is enqueued once however
    many processes arrive. A process joining a study someone else created samples with a seed
    of its own, or it would propose the creator's very trials again.
    """
    name = study_name(run, fold)
    with quiet():
        try:
            storage.create_new_study([optuna.study.StudyDirection.MAXIMIZE], name)
            created = True
        except optuna.exceptions.DuplicatedStudyError:
            created = False
        own = seed + fold.index if created else secrets.randbelow(2**31)
        study = optuna.load_study(
            study_name=name, storage=storage, sampler=optuna.samplers.TPESampler(seed=own)
        )
        if created and warm_start is not None:
            study.enqueue_trial(warm_start, skip_if_exists=True)
    return study


def _counts(study: optuna.Study, budget: int) -> tuple[int, int]:
    with quiet():
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
        done = sum(t.state == TrialState.COMPLETE for t in trials)
        if len(trials) >= budget and len(trials) > done:  # about to wait on running trials:
            optuna.storages.fail_stale_trials(study)  # those of dead processes are failed
            _fail_unstarted(study, [t for t in trials if t.state == TrialState.RUNNING])
            trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,
                                                              TrialState.RUNNING))  # fmt: skip
            done = sum(t.state == TrialState.COMPLETE for t in trials)
    return done, len(trials) - done


def _fail_unstarted(study: optuna.Study, running: list[FrozenTrial]) -> None:
    """Fail running trials whose process died before their first heartbeat or attribute.

    The heartbeat only fails trials that have beaten at least once; one whose process died
    between optuna's ask and the heartbeat thread's first beat would be waited for forever.
    A live trial writes its ``worker`` attribute within milliseconds: without it after
    `UNSTARTED` seconds (by this host's clock) it is dead.
    """
    now = datetime.now()
    for t in running:
        started = t.datetime_start
        dead = started is not None and (now - started).total_seconds() > UNSTARTED
        if dead and "worker" not in t.user_attrs:
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)


def _optimise(study: optuna.Study, objective: _Objective, config: WalkForwardConfig,
              progress: Any, poll: float) -> list[int]:  # fmt: skip
    """Run trials until the fold holds `config.trials` completed ones and none is running.

    Several processes may work on the study: a process asks for a trial only while completed
    plus running trials (its own and the others') fall short of the budget, so the budget is
    overshot by at most one trial per extra process, and it waits for the others' running
    trials to finish (or to be failed by the heartbeat) before the fold is closed. Returns the
    numbers of the completed trials the fold is made of, the same for every process.
    """
    seen = 0
    while True:
        done, running = _counts(study, config.trials)
        if progress is not None and done > seen:
            progress.update(min(done, config.trials) - min(seen, config.trials))
            seen = done
        if done >= config.trials and running == 0:
            break
        free = config.trials - done - running
        if free <= 0:
            time.sleep(poll)
            continue
        _run_trials(study, objective, min(free, config.jobs), config.jobs)

    def complete() -> list[int]:
        with quiet():
            trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        return sorted(t.number for t in trials)

    name = f"{study.study_name}:closed@{config.trials}"
    numbers, _ = publish_once(study._storage, name, complete)
    return [int(n) for n in numbers]


def _run_trials(study: optuna.Study, objective: _Objective, count: int, jobs: int) -> None:
    """Run `count` trials, `jobs` at a time (what ``study.optimize`` does, see `_one_trial`)."""
    if jobs == 1:
        for _ in range(count):
            _one_trial(study, objective)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(jobs) as pool:
        for future in [pool.submit(_one_trial, study, objective) for _ in range(count)]:
            future.result()


def _one_trial(study: optuna.Study, objective: _Objective) -> None:
    """Run one trial as ``study.optimize`` does, but drop (and say) one failed meanwhile elsewhere.

    The steps are optuna's: fail stale trials, ask, run the objective under a heartbeat, tell.
    When this process could not beat for longer than the grace period (the database away, the
    process paused), another process fails its trial as stale; optuna's own loop then dies
    with a traceback on the attribute write or the tell. Here the result is dropped: the
    fold's budget counts completed trials only, so another trial replaces it.
    """
    storage = study._storage
    with quiet(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "heartbeat ... used with Study.optimize"
        if is_heartbeat_enabled(storage):
            optuna.storages.fail_stale_trials(study)
        trial = study.ask()
    value: float | None = None
    with get_heartbeat_thread(trial._trial_id, storage):
        try:
            value = objective(trial)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # failed by another process while this one was writing its results
        except BaseException:
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            raise
    state = TrialState.COMPLETE if value is not None else TrialState.FAIL
    try:
        told = study.tell(trial, value, state=state, skip_if_finished=True).state
    except optuna.exceptions.UpdateFinishedTrialError:  # failed between the check and the write
        told = TrialState.FAIL
    if told != state or value is None:
        log.warning("%s: trial %d was failed by another process while this one ran it (no "
                    "heartbeat for longer than the grace period); its result is dropped and "
                    "another trial replaces it", study.study_name, trial.number)  # fmt: skip


def _trials_table(trials: list[FrozenTrial], fold: Fold) -> pd.DataFrame:
    rows = []
    for t in trials:
        evaluation = t.user_attrs.get("evaluation", {})
        rows.append({
            "fold": fold.index, "trial": t.number, "value": t.value,
            "trades": evaluation.get("trades"), "raw_value": evaluation.get("raw_value"),
            "rejected": t.user_attrs.get("rejected"),
            "params": json.dumps(t.params, sort_keys=True),
            "daily_returns": evaluation.get("daily_returns"),
        })  # fmt: skip
    return pd.DataFrame(rows)


def run_walkforward(
    candles: pd.DataFrame,
    strategy: Strategy,
    *,
    timeframe: str,
    config: WalkForwardConfig,
    storage: str | BaseStorage | None,
    run: str,
    progress: bool = True,
    since: pd.Timestamp | None = None,
    labels: dict[str, Any] | None = None,
    heartbeat: int = HEARTBEAT,
) -> WalkForwardRun:
    """Run every fold: tune on train (optuna), then test the fold's best parameters once.

    `storage` is an optuna storage or its URL (research.optimise.storage; None keeps the studies in
    memory, for tests). The run's settings (`run_settings`, with `labels`) are recorded with
    run `run` there; a run started with others is refused (`RunMismatch`). Several processes
    given the same storage and run share the work fold by fold and end with the same folds.
    The first train window starts after the strategy's warm-up: at `since` when the candles
    before it hold that warm-up, else that many candles into the data.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    store = storage
    if not isinstance(store, BaseStorage):
        store = open_storage(store, heartbeat=heartbeat)
    settings = run_settings(candles, strategy, timeframe=timeframe, config=config, since=since,
                            labels=labels)  # fmt: skip
    join_run(store, run, settings)
    warmup = min(strategy.lookback(strategy.params()), len(candles) // 10)
    first = start_position(candles.index, since)
    folds = make_folds(
        len(candles), folds=config.folds, scheme=config.scheme, train=config.train,
        test=config.test, gap=config.gap, min_start=max(first, warmup),
    )  # fmt: skip
    bar = _progress(progress, config.trials * len(folds))
    results: list[FoldResult] = []
    warm_start: dict[str, Any] | None = None
    poll = min(1.0, heartbeat / 2)
    try:
        for fold in folds:
            if fold.index:
                join_run(store, run, settings)  # has anyone raised the trial budget meanwhile?
            study = _study(store, run, fold, config.seed, warm_start)
            objective = _Objective(candles, strategy, fold, timeframe, config)
            numbers = set(_optimise(study, objective, config, bar, poll))
            with quiet():
                trials = [t for t in study.get_trials(states=(TrialState.COMPLETE,))
                          if t.number in numbers]  # fmt: skip
            result = _fold_result(candles, strategy, fold, trials, timeframe, config)
            results.append(result)
            warm_start = result.best_params
    finally:
        if bar is not None:
            bar.close()
    oos = stitch_equity([r.test.equity for r in results], config.execution.init_cash)
    return WalkForwardRun(strategy, timeframe, config, candles, results, oos)


def _fold_result(candles: pd.DataFrame, strategy: Strategy, fold: Fold, trials: list[FrozenTrial],
                 timeframe: str, config: WalkForwardConfig) -> FoldResult:  # fmt: skip
    # optuna's best trial: the highest value, the earliest of equal ones
    best = max(sorted(trials, key=lambda t: t.number), key=lambda t: float(t.value))  # type: ignore[arg-type]  # complete trials have a value
    if best.value is None or best.value <= BAD_SCORE:
        raise SignalsError(
            f"fold {fold.index}: no trial reached {config.min_trades} trades with valid "
            "parameters; lower --min-trades, lengthen --train or check the strategy's ranges"
        )
    params = make_params(strategy.Params, best.params)
    kwargs = {"timeframe": timeframe, "execution": config.execution, "costs": config.costs}
    train = evaluate_window(candles, strategy, params, fold.train_start, fold.train_end, **kwargs)
    test = evaluate_window(candles, strategy, params, fold.test_start, fold.test_end, **kwargs)
    return FoldResult(fold, as_dict(params), float(best.value), train, test,
                      _trials_table(sorted(trials, key=lambda t: t.number), fold))  # fmt: skip


def _progress(enabled: bool, total: int) -> Any:
    if not enabled:
        return None
    from signals.progress import progress

    return progress(total, desc="walk-forward trials", unit="trial")


def default_storage(out: Path) -> str:
    """Return the default optuna storage URL: SQLite in the run folder (resumable)."""
    out.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(out / 'optuna.db').resolve()}"


def fold_table(run: WalkForwardRun) -> pd.DataFrame:
    """Return one row per fold: windows, best parameters, train and test metrics."""
    rows = []
    index = run.candles.index
    for r in run.folds:
        f = r.fold
        row: dict[str, Any] = {
            "fold": f.index,
            "train_from": index[f.train_start], "train_to": index[f.train_end - 1],
            "test_from": index[f.test_start], "test_to": index[f.test_end - 1],
            "best_value": r.best_value,
        }  # fmt: skip
        row.update({f"param_{k}": v for k, v in r.best_params.items()})
        for key in ("total_return", "annual_return", "sharpe", "max_drawdown", "trades"):
            row[f"train_{key}"] = r.train.metrics[key]
            row[f"test_{key}"] = r.test.metrics[key]
        rows.append(row)
    return pd.DataFrame(rows)


def window_days(result: WindowResult, timeframe: str) -> float:
    """Return how many days a window's candles cover (candles x timeframe)."""
    return len(result.equity) * timeframe_seconds(timeframe) / 86400.0


def walkforward_efficiency(run: WalkForwardRun) -> Efficiency:
    """Return the efficiency of the run on per-day returns (research.optimise.efficiency)."""
    tf = run.timeframe
    train = [(float(r.train.metrics["total_return"]), window_days(r.train, tf)) for r in run.folds]
    test = [(float(r.test.metrics["total_return"]), window_days(r.test, tf)) for r in run.folds]
    return efficiency(train, test)


def parameter_stability(run: WalkForwardRun) -> pd.DataFrame:
    """Return per parameter its best value in each fold, mean, std and coefficient of variation."""
    searched = ranges(run.strategy.Params)
    table = pd.DataFrame([r.best_params for r in run.folds])[list(searched)]
    stats = pd.DataFrame({"mean": table.mean(), "std": table.std(ddof=0)})
    stats["cv"] = stats["std"] / stats["mean"].abs().replace(0.0, np.nan)
    for r in run.folds:
        stats[f"fold_{r.fold.index}"] = pd.Series(r.best_params)[list(searched)]
    return stats
