"""What a walk-forward run leaves behind: trial ledger, overfitting statistics, frozen file.

- **Trial ledger**: every trial of every fold with its score, trade count, parameters and its
  daily returns on the fold's train window (the returns it was chosen on).
- **PBO**: CSCV (research.optimise.overfit) on each fold's trial-by-day return matrix (all of a
  fold's trials share its train window), the logits of all folds pooled into one probability.
- **DSR**: the deflated Sharpe ratio of the stitched out-of-sample daily returns, against the
  number of distinct trials actually run (a parameter set TPE proposes twice in a fold is one
  trial) and the spread of their daily Sharpe ratios. The spread is estimated robustly
  ((1.4826 x MAD)^2): the null is "all trials are skill-less", and a handful of trials that
  share a real edge would otherwise inflate it and hide that very edge. For skill-less trials
  the robust and the sample variance agree.
- **Frozen file**: the most recent fold's best parameters (the ones one would trade next) with
  the run's provenance and out-of-sample metrics (signals.frozen).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from research.backtest.metrics import TradeArrays, metrics_table
from research.backtest.windows import daily_returns
from research.optimise.overfit import (
    DsrResult,
    PboResult,
    deflated_sharpe_ratio,
    overfitting_verdict,
    probability_of_backtest_overfitting,
    robust_sharpe_variance,
    sharpe_per_period,
)
from research.optimise.walkforward import (
    BAD_SCORE,
    WalkForwardRun,
    fold_table,
    parameter_stability,
    walkforward_efficiency,
)
from signals.frozen import DataInfo, FrozenParams, WalkForwardInfo, freeze, write_frozen

MAX_SPLITS = 16


@dataclass(frozen=True)
class Overfitting:
    """DSR of the out-of-sample returns and the pooled PBO of the folds' trial matrices."""

    dsr: DsrResult | None
    pbo: PboResult | None
    fold_pbo: list[float]
    trials_run: int
    verdict: str


def trial_ledger(run: WalkForwardRun) -> pd.DataFrame:
    """Return every trial run: fold, number, score, trades, parameters, daily train returns."""
    frames = [f.trials for f in run.folds if len(f.trials)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


OUTCOMES = ("valid", "below min trades", "invalid parameters", "undefined score")


def trial_outcomes(trials: pd.DataFrame, min_trades: int) -> pd.Series:
    """Return each trial's outcome: valid, or why it got `BAD_SCORE` (one of `OUTCOMES`)."""
    if trials.empty:
        return pd.Series([], dtype="object")
    rejected = trials["rejected"].notna() if "rejected" in trials else False
    trades = pd.to_numeric(trials["trades"], errors="coerce")
    raw = pd.to_numeric(trials["raw_value"], errors="coerce")
    outcome = np.select(
        [rejected, trades.isna() | (trades < min_trades), raw.isna()],
        ["invalid parameters", "below min trades", "undefined score"],
        default="valid",
    )
    return pd.Series(outcome, index=trials.index, dtype="object")


def distinct_trials(ledger: pd.DataFrame) -> pd.DataFrame:
    """Return one row per distinct (fold, parameters): TPE may propose the same set twice."""
    if ledger.empty:
        return ledger
    return ledger.drop_duplicates(subset=["fold", "params"], keep="first")


def _fold_matrix(trials: pd.DataFrame) -> np.ndarray | None:
    series = [r for r in distinct_trials(trials)["daily_returns"] if isinstance(r, list) and r]
    if len(series) < 2:
        return None
    length = min(len(r) for r in series)
    return np.array([r[:length] for r in series], dtype="float64").T


def _splits_for(rows: int) -> int:
    return min(MAX_SPLITS, (rows // 2) // 2 * 2)


def pooled_pbo(run: WalkForwardRun) -> tuple[PboResult | None, list[float]]:
    """Return the PBO pooled over folds (None when no fold has enough days) and per-fold PBOs."""
    results = []
    for fold in run.folds:
        matrix = _fold_matrix(fold.trials)
        if matrix is None or _splits_for(matrix.shape[0]) < 2:
            continue
        results.append(
            probability_of_backtest_overfitting(matrix, n_splits=_splits_for(matrix.shape[0]))
        )
    if not results:
        return None, []
    logits = np.concatenate([r.logits for r in results])
    pooled = dataclasses.replace(
        results[-1],
        pbo=float(np.mean(logits <= 0.0)),
        logits=logits,
        n_combinations=int(logits.size),
        is_metric=np.concatenate([r.is_metric for r in results]),
        oos_metric=np.concatenate([r.oos_metric for r in results]),
        prob_oos_loss=float(np.mean(np.concatenate([r.oos_metric for r in results]) < 0.0)),
    )
    return pooled, [r.pbo for r in results]


def overfitting(run: WalkForwardRun) -> Overfitting:
    """Return the DSR and PBO of a run with a plain-language verdict."""
    ledger = distinct_trials(trial_ledger(run))
    sharpes = [
        sharpe_per_period(np.asarray(r, dtype="float64"))
        if isinstance(r, list) and len(r) > 1 else math.nan
        for r in ledger.get("daily_returns", [])
    ]  # fmt: skip
    oos_daily = daily_returns(run.oos_equity, run.config.execution.init_cash)
    dsr = (
        deflated_sharpe_ratio(
            oos_daily.to_numpy(), np.asarray(sharpes), n_trials=len(ledger),
            var_sharpe=robust_sharpe_variance(np.asarray(sharpes)),
        )
        if len(oos_daily) > 2 and len(ledger) > 0 else None
    )  # fmt: skip
    pbo, per_fold = pooled_pbo(run)
    return Overfitting(dsr, pbo, per_fold, len(ledger), overfitting_verdict(dsr, pbo))


def oos_metrics(run: WalkForwardRun) -> dict[str, float]:
    """Return the metrics of the stitched out-of-sample equity and the test windows' trades."""
    trades = [f.test.trades for f in run.folds]
    index = run.oos_equity.index
    pos = [pd.Index(index).get_indexer(t["entry_time"]) for t in trades]
    exits = [pd.Index(index).get_indexer(t["exit_time"]) for t in trades]
    arrays = TradeArrays(
        col=np.zeros(sum(len(t) for t in trades), dtype="int64"),
        pnl=np.concatenate([t["pnl"].to_numpy() for t in trades]) if trades else np.array([]),
        ret=np.concatenate([t["return"].to_numpy() for t in trades]) if trades else np.array([]),
        entry_idx=np.concatenate(pos) if pos else np.array([], dtype="int64"),
        exit_idx=np.concatenate(exits) if exits else np.array([], dtype="int64"),
    )
    candles = run.candles.loc[index]
    exposure = sum(f.test.metrics["exposure"] * len(f.test.equity) for f in run.folds) / len(index)
    table = metrics_table(
        equity=run.oos_equity.to_numpy(),
        init_cash=run.config.execution.init_cash,
        trades=arrays,
        fees_paid=np.array([sum(f.test.metrics["fees_paid"] for f in run.folds)]),
        exposure=np.array([exposure]),
        close=candles["close"].to_numpy(),
        timeframe=run.timeframe,
    )
    return {k: float(v) for k, v in table.iloc[0].items()}


def _finite(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def frozen_from_run(
    run: WalkForwardRun, stats: Overfitting, *, symbol: str, source: str,
    created_at: str | None = None,
) -> FrozenParams:  # fmt: skip
    """Return the frozen file of the run: the most recent fold's best parameters + provenance."""
    metrics: dict[str, float | None] = {k: _finite(v) for k, v in oos_metrics(run).items()}
    metrics.update(
        dsr=_finite(stats.dsr.dsr) if stats.dsr else None,
        pbo=_finite(stats.pbo.pbo) if stats.pbo else None,
        walkforward_efficiency=walkforward_efficiency(run).value,
        trials_run=float(stats.trials_run),
    )
    candles = run.candles
    costs = run.config.costs
    return freeze(
        strategy=run.strategy.name,
        timeframe=run.timeframe,
        params=run.folds[-1].best_params,
        symbol=symbol,
        direction=run.config.execution.direction,
        costs={"fee_bps": costs.fee_bps, "slippage_bps": costs.slippage_bps},
        data=DataInfo(
            source=source,
            first_candle=candles.index[0].isoformat(),
            last_candle=candles.index[-1].isoformat(),
            rows=len(candles),
        ),
        walkforward=WalkForwardInfo(
            scheme=run.config.scheme,
            folds=run.config.folds,
            trials=run.config.trials,
            seed=run.config.seed,
            objective=run.config.objective,
        ),
        metrics=metrics,
        created_at=created_at,
    )


def write_outputs(
    run: WalkForwardRun, stats: Overfitting, frozen: FrozenParams, out: Path
) -> dict[str, Path]:
    """Write the run's tables, equity, ledger, summary and frozen file into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "folds": out / "folds.csv",
        "equity": out / "oos_equity.csv",
        "stability": out / "parameter_stability.csv",
        "ledger": out / "trial_ledger.parquet",
        "summary": out / "summary.json",
        "frozen": out / "frozen.json",
    }
    fold_table(run).to_csv(paths["folds"], index=False)
    run.oos_equity.to_csv(paths["equity"], header=True)
    parameter_stability(run).to_csv(paths["stability"])
    trial_ledger(run).to_parquet(paths["ledger"], index=False)
    paths["summary"].write_text(json.dumps(summary(run, stats, frozen), indent=2, sort_keys=True))
    write_frozen(frozen, paths["frozen"])
    return paths


def _efficiency_json(run: WalkForwardRun) -> dict[str, Any]:
    wfe = walkforward_efficiency(run)
    return {
        "value": wfe.value,
        "train_daily_return": _finite(wfe.train_daily),
        "test_daily_return": _finite(wfe.test_daily),
        "undefined_because": wfe.why or None,
    }


def summary(run: WalkForwardRun, stats: Overfitting, frozen: FrozenParams) -> dict[str, Any]:
    """Return a JSON-ready summary of the run (what the report and the gate read)."""
    return {
        "strategy": run.strategy.name,
        "timeframe": run.timeframe,
        "params_id": frozen.params_id,
        "params": frozen.params,
        "trials_run": stats.trials_run,
        "bad_score": BAD_SCORE,
        "fold_pbo": stats.fold_pbo,
        "verdict": stats.verdict,
        "metrics": frozen.metrics,
        "walkforward_efficiency": _efficiency_json(run),
        "config": {
            "scheme": run.config.scheme,
            "folds": run.config.folds,
            "trials": run.config.trials,
            "objective": run.config.objective,
            "min_trades": run.config.min_trades,
            "seed": run.config.seed,
            "gap": run.config.gap,
            "jobs": run.config.jobs,
            "costs": run.config.costs.describe(),
        },
    }
