"""Compare a newly frozen parameter set with the one currently promoted (re-optimisation).

Used by `research.promote.decision` (what ``notebooks/reoptimise.ipynb`` displays): parameters
side by side, the out-of-sample metrics each file records, both sets backtested on the new run's
most recent test window (unseen by both: the new set was tuned on the train window before it,
the current one earlier still), and the signals both give over the most recent candles
(`signals.scan.signal_records`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from research.backtest.windows import evaluate_window
from research.optimise.walkforward import WalkForwardRun
from research.promote.gate import gate_failures, promote
from signals.config import GateSettings, load_settings
from signals.frozen import FrozenParams, load_frozen, typed_params
from signals.scan import signal_records
from signals.strategy_paths import get_strategy

METRICS = ("total_return", "sharpe", "sortino", "max_drawdown", "trades", "win_rate",
           "profit_factor", "dsr", "pbo", "walkforward_efficiency")  # fmt: skip


def load_current(path: Path | str | None) -> FrozenParams | None:
    """Return the promoted frozen file at `path` (None when there is none yet).

    A strategy-hash mismatch is tolerated here (the file is only compared, never run).
    """
    if path is None or not Path(path).exists():
        return None
    return load_frozen(path, allow_hash_mismatch=True)


def comparable(new: FrozenParams, current: FrozenParams | None) -> bool:
    """Return whether `current` runs the same strategy on the same timeframe as `new`."""
    return current is not None and (current.strategy, current.timeframe) == (
        new.strategy,
        new.timeframe,
    )


def params_side_by_side(new: FrozenParams, current: FrozenParams | None) -> pd.DataFrame:
    """Return one row per parameter: the current value, the new value and whether it changed."""
    old = current.params if current is not None else {}
    names = list(new.params) + [k for k in old if k not in new.params]
    rows = [
        {"parameter": k, "current": old.get(k), "new": new.params.get(k),
         "changed": old.get(k) != new.params.get(k)}
        for k in names
    ]  # fmt: skip
    return pd.DataFrame(rows).set_index("parameter")


def metrics_side_by_side(new: FrozenParams, current: FrozenParams | None) -> pd.DataFrame:
    """Return the out-of-sample metrics each file records (its own walk-forward), side by side."""
    old = (current.metrics or {}) if current is not None else {}
    fresh = new.metrics or {}
    return pd.DataFrame(
        {"current": [old.get(k) for k in METRICS], "new": [fresh.get(k) for k in METRICS]},
        index=pd.Index(METRICS, name="metric"),
    )


def head_to_head(
    run: WalkForwardRun, new: FrozenParams, current: FrozenParams | None
) -> pd.DataFrame | None:
    """Backtest both sets on the run's last test window (None when they are not comparable)."""
    if not comparable(new, current):
        return None
    fold = run.folds[-1].fold
    kwargs: dict[str, Any] = {"timeframe": run.timeframe, "execution": run.config.execution,
                              "costs": run.config.costs}  # fmt: skip
    columns = {}
    for label, frozen in (("current", current), ("new", new)):
        params = typed_params(frozen)  # type: ignore[arg-type]  # comparable() ruled out None
        result = evaluate_window(run.candles, run.strategy, params, fold.test_start,
                                 fold.test_end, **kwargs)  # fmt: skip
        columns[label] = [result.metrics.get(k) for k in METRICS[:7]]
    return pd.DataFrame(columns, index=pd.Index(METRICS[:7], name="metric"))


def recent_signals(
    candles: pd.DataFrame, new: FrozenParams, current: FrozenParams | None, *, since: pd.Timestamp
) -> pd.DataFrame:
    """Return the signals of both sets on candles from `since` (earlier candles warm up).

    The current set is left out when it runs another strategy or timeframe than the new one.
    """
    sets = {"current": current if comparable(new, current) else None, "new": new}
    rows = []
    for label, frozen in sets.items():
        if frozen is None:
            continue
        strategy = get_strategy(frozen.strategy)
        for record in signal_records(candles, strategy, typed_params(frozen),
                                     symbol=frozen.symbol, timeframe=frozen.timeframe,
                                     since=since, frozen_id=frozen.params_id):  # fmt: skip
            rows.append({
                "candle": pd.Timestamp(record["candle_ts"], unit="s", tz="UTC"), "set": label,
                "params_id": record["params_id"], "signal": record["signal"],
                "price": record["price"], "confidence": record["confidence"],
                "reasons": "; ".join(record["reasons"]),
            })  # fmt: skip
    columns = ["candle", "set", "params_id", "signal", "price", "confidence", "reasons"]
    return pd.DataFrame(rows, columns=columns).sort_values(["candle", "set"], kind="stable")


def decide(
    frozen_path: Path, promote_to: Path | str | None, gate: GateSettings
) -> tuple[bool, list[str]]:
    """Promote `frozen_path` to `promote_to` if it passes `gate`; return (promoted, failures).

    Without `promote_to` only the gate is checked. A refused file writes nothing.
    """
    if promote_to is None:
        return False, gate_failures(load_frozen(frozen_path), gate)
    _, failures = promote(frozen_path, Path(promote_to), gate=gate)
    return not failures, failures


def gate_settings(config: Path | str | None = None, **overrides: float | None) -> GateSettings:
    """Return the config's promotion gate with the given thresholds replaced (None keeps it)."""
    gate = load_settings(Path(config) if config else None).gate
    return gate.model_copy(update={k: v for k, v in overrides.items() if v is not None})
