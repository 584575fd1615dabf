"""The promotion decision of a re-optimisation, as library code the reoptimise notebook displays.

Two steps, in this order (the promoted file may be the very target a promotion overwrites):

- `compare_with_promoted`: the new frozen file against the one promoted now (parameters, the
  out-of-sample metrics each records, both on the run's last test window, recent signals);
- `decide_promotion`: the gate; a file that passes is promoted (atomically) when a target is
  given; the outcome is written to ``outcome.json`` (what ``signals reoptimise`` reads).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from research.optimise.pipeline import PipelineResult
from research.promote.compare import (
    decide,
    head_to_head,
    load_current,
    metrics_side_by_side,
    params_side_by_side,
    recent_signals,
)
from research.promote.reoptimise import write_outcome
from signals.config import GateSettings
from signals.frozen import FrozenParams


@dataclass(frozen=True)
class Comparison:
    """The new frozen file beside the promoted one (None when nothing is promoted yet)."""

    path: str | None
    current: FrozenParams | None
    params: pd.DataFrame
    metrics: pd.DataFrame
    head_to_head: pd.DataFrame | None
    recent_signals: pd.DataFrame

    def headline(self) -> str:
        """Return the line naming the promoted file and its params_id."""
        shown = self.current.params_id if self.current else "none"
        return f"currently promoted: {self.path} ({shown})"


@dataclass(frozen=True)
class PromotionDecision:
    """Promoted or not, the gate's failures (why), and the comparison it was made beside."""

    promoted: bool
    failures: list[str]
    gate: GateSettings
    promote_to: str | None
    comparison: Comparison
    outcome: dict[str, Any]

    @property
    def passed(self) -> bool:
        """Return whether the new file passed every check of the gate."""
        return not self.failures

    def summary(self) -> str:
        """Return the verdict line and one line per failed check (or that every check passed)."""
        verdict = f"{'PROMOTED' if self.promoted else 'NOT PROMOTED'} -> {self.promote_to}"
        gate = "\n".join(f"gate: {line}" for line in self.failures) or "gate: every check passed"
        return f"{verdict}\n{gate}"


def compare_with_promoted(
    result: PipelineResult, current: Path | str | None, *, recent_days: int
) -> Comparison:
    """Compare the run's frozen file with the promoted file at `current`.

    Both sets' signals are listed over the last `recent_days` days of the run's candles.
    """
    promoted_now = load_current(current)
    new, candles = result.frozen, result.run.candles
    since = candles.index[-1] - pd.Timedelta(days=recent_days)
    return Comparison(
        path=None if current is None else str(current),
        current=promoted_now,
        params=params_side_by_side(new, promoted_now),
        metrics=metrics_side_by_side(new, promoted_now),
        head_to_head=head_to_head(result.run, new, promoted_now),
        recent_signals=recent_signals(candles, new, promoted_now, since=since),
    )


def decide_promotion(
    result: PipelineResult,
    comparison: Comparison,
    *,
    gate: GateSettings,
    promote_to: Path | str | None,
    outcome: Path,
) -> PromotionDecision:
    """Gate the run's frozen file, promote it to `promote_to` if it passes, record the outcome.

    Without `promote_to` only the gate is checked. A refused file writes nothing but `outcome`.
    """
    frozen_path = result.paths["frozen"]
    promoted, failures = decide(frozen_path, promote_to, gate)
    target = None if promote_to is None else str(promote_to)
    report = result.paths.get("report")
    recorded = write_outcome(
        outcome, new=result.frozen, current=comparison.current, promoted=promoted,
        failures=failures, gate=gate.model_dump(), frozen=str(frozen_path),
        report=None if report is None else str(report), promote_to=target,
    )  # fmt: skip
    return PromotionDecision(promoted, failures, gate, target, comparison, recorded)
