"""Walk-forward efficiency on comparable figures: per-day returns, undefined near zero.

Each window's return is turned into its **average daily return**, ``(1 + R) ** (1 / days) - 1``
(compounded per day, *not* annualised: annualising a 10-day window raises it to the 36th power,
and a ratio of two such figures says more about window lengths than about the strategy). The
efficiency is the mean daily return of the test windows over that of the train windows, each
mean taken over the folds:

    WFE = mean_folds(test daily return) / mean_folds(train daily return)

It is **undefined** (None, with the reason) when the train mean is below `TRAIN_FLOOR` per day:
dividing by a train figure near zero (or negative: the tuned parameters lost money on the very
candles they were tuned on) gives numbers like -279 that mean nothing. Near 1: what was learned
carried over; near 0 or below: it did not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

TRAIN_FLOOR = 1e-4
"""Below +0.01% a day on the train windows (about +3.7% a year) the ratio is not reported."""


@dataclass(frozen=True)
class Efficiency:
    """Walk-forward efficiency, the per-day figures it came from, and why it is undefined."""

    value: float | None  # None: undefined, `why` says why
    train_daily: float  # mean over folds of each train window's average daily return
    test_daily: float  # the same for the test windows
    why: str  # "" when defined

    def describe(self) -> str:
        """Return the efficiency with its inputs in one sentence."""
        rates = (
            f"test {self.test_daily:+.4%} a day against train {self.train_daily:+.4%} a day "
            "(average daily returns, means over folds, not annualised)"
        )
        if self.value is None:
            return f"undefined: {self.why}; {rates}"
        return f"{self.value:.2f}: {rates}"


def daily_rate(total_return: float, days: float) -> float:
    """Return the average daily return of a window: ``(1 + total_return) ** (1 / days) - 1``."""
    if days <= 0 or not math.isfinite(total_return):
        return math.nan
    growth = max(1.0 + total_return, 0.0)  # a wiped-out window earned -100%
    return float(growth ** (1.0 / days) - 1.0)


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def efficiency(
    train: Sequence[tuple[float, float]],
    test: Sequence[tuple[float, float]],
    *,
    floor: float = TRAIN_FLOOR,
) -> Efficiency:
    """Return the efficiency of folds given as (total return, days) per train and test window."""
    train_daily = _mean([daily_rate(r, d) for r, d in train])
    test_daily = _mean([daily_rate(r, d) for r, d in test])
    if not (math.isfinite(train_daily) and math.isfinite(test_daily)):
        return Efficiency(None, train_daily, test_daily, "no fold has a defined return")
    if train_daily < 0:
        why = "the tuned parameters lost money on their own train windows"
        return Efficiency(None, train_daily, test_daily, why)
    if train_daily < floor:
        why = (
            f"the train windows earned {train_daily:+.4%} a day, below the floor of "
            f"{floor:.2%} a day: a ratio to a figure that close to zero means nothing"
        )
        return Efficiency(None, train_daily, test_daily, why)
    return Efficiency(test_daily / train_daily, train_daily, test_daily, "")
