"""Lookahead and warm-up bias checks for any strategy, on the user's own candles.

- **Lookahead (truncation).** Signals and scores computed on history cut at candle t must equal
  those computed on all of history, for every candle up to t. A strategy that peeks at future
  candles (``shift(-1)``, centred windows, full-sample normalisation) fails.
- **Warm-up.** Starting the history later must not change any decision once the strategy's
  declared ``lookback`` has passed. A strategy that under-declares the warm-up of a recursive
  indicator fails.

Cut points (at signal candles, where a peek would change a decision, and at random
candles) and start offsets are drawn with a seeded generator; the seed is in the report. For a
strategy with higher-timeframe inputs (``informative``) `inside` more cuts fall inside a higher
candle (the history ends while it is still open, so the cut holds a partial candle that must stay
invisible), including the base candle just before each chosen higher close, and as many more
starts begin inside one (the first higher candle is partial: the warm-up must cover it). A
finding names the strategy and timeframe (in the report's head), the check, the candle, the
column, both values, and the rules whose firing differs on that candle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from signals.timeframes import timeframe_seconds
from strategies import SignalFrame, Strategy
from strategies.informative import base_seconds

SCORE_TOLERANCE = 1e-9
_COLUMNS = ("buy", "sell", "buy_score", "sell_score")


@dataclass(frozen=True)
class BiasFinding:
    """The first candle and column where a recomputation disagrees with full history."""

    check: str
    at: pd.Timestamp
    column: str
    full_value: float
    other_value: float
    detail: str
    rules: tuple[str, ...] = ()  # e.g. "'MACD histogram turned up' fires in full history only"

    def __str__(self) -> str:
        text = (
            f"{self.check}: {self.column} differs at {self.at.isoformat()} "
            f"(full history {self.full_value!r}, {self.detail} {self.other_value!r})"
        )
        return text + "".join(f"; {rule}" for rule in self.rules)


@dataclass(frozen=True)
class BiasReport:
    """Outcome of `check_bias`: what was checked and every disagreement found."""

    strategy: str
    candles: int
    lookback: int
    seed: int
    cuts: list[pd.Timestamp]
    starts: list[pd.Timestamp]
    findings: list[BiasFinding] = field(default_factory=list)
    inside: list[pd.Timestamp] = field(default_factory=list)  # cuts inside a higher candle
    timeframe: str | None = None

    @property
    def ok(self) -> bool:
        """True when no check found a difference."""
        return not self.findings

    def verdict(self) -> str:
        """Return a readable verdict naming the first candle and column that differ."""
        name = f"{self.strategy} {self.timeframe}" if self.timeframe else self.strategy
        head = (
            f"{name}: {self.candles} candles, lookback {self.lookback}, "
            f"{len(self.cuts)} truncation cuts, {len(self.starts)} later starts (seed {self.seed})"
        )
        if self.inside:
            head += f", {len(self.inside)} cuts inside a higher-timeframe candle"
        if self.ok:
            return f"PASS  {head}\n  no lookahead, declared warm-up sufficient"
        lines = [f"FAIL  {head}"] + [f"  {f}" for f in self.findings]
        return "\n".join(lines)


def check_bias(
    strategy: Strategy,
    candles: pd.DataFrame,
    params: Any = None,
    *,
    cuts: int = 12,
    starts: int = 4,
    seed: int = 0,
    inside: int = 12,
    timeframe: str | None = None,
) -> BiasReport:
    """Run the lookahead and warm-up checks of `strategy` on `candles` (of `timeframe`)."""
    params = params if params is not None else strategy.params()
    lookback = strategy.lookback(params)
    n = len(candles)
    if n < 2 * lookback + 2:
        raise ValueError(f"need at least {2 * lookback + 2} candles for the checks, got {n}")
    rng = np.random.default_rng(seed)
    full = strategy.signals(candles, params)
    cut_pos = _cut_points(full, lookback, cuts, rng)
    start_pos = sorted(
        rng.choice(
            np.arange(1, n - 2 * lookback), size=min(starts, n - 2 * lookback - 1), replace=False
        )
    )
    inside_pos: list[int] = []
    if strategy.informative:
        inside_pos, mid_starts = _inside_higher(candles.index, strategy, lookback, inside, rng)
        cut_pos = sorted(set(cut_pos) | set(inside_pos))
        start_pos = sorted(set(start_pos) | set(mid_starts))
    findings = []
    for cut in cut_pos:
        part = strategy.signals(candles.iloc[: cut + 1], params)
        finding = _first_difference(
            full, part, 0, f"cut at {candles.index[cut].isoformat()} gives", "lookahead"
        )
        if finding:
            findings.append(finding)
    for start in start_pos:
        part = strategy.signals(candles.iloc[start:], params)
        finding = _first_difference(
            full,
            part,
            lookback - 1,
            f"history from {candles.index[start].isoformat()} gives",
            "warm-up",
        )
        if finding:
            findings.append(finding)
    return BiasReport(
        strategy=strategy.name,
        candles=n,
        lookback=lookback,
        seed=seed,
        cuts=[candles.index[i] for i in cut_pos],
        starts=[candles.index[i] for i in start_pos],
        findings=findings,
        inside=[candles.index[i] for i in inside_pos],
        timeframe=timeframe,
    )


def _inside_higher(
    index: pd.Index, strategy: Strategy, lookback: int, count: int, rng: np.random.Generator
) -> tuple[list[int], list[int]]:
    """Cuts whose candle closes inside a higher candle, and starts that open inside one."""
    base = base_seconds(index)
    if base is None or count <= 0:
        return [], []
    t = np.asarray(pd.DatetimeIndex(index).as_unit("s").asi8, dtype="int64")
    n, cuts, starts = len(index), set[int](), set[int]()
    for tf in strategy.informative:
        length = timeframe_seconds(tf)
        pool = np.arange(lookback, n - 1)
        inside = pool[(t[pool] + base) % length != 0]  # closes while its higher candle is open
        last = pool[(t[pool] + 2 * base) % length == 0]  # the base candle before a higher close
        for chosen in (inside, last):
            cuts |= set(rng.choice(chosen, size=min(count, chosen.size), replace=False).tolist())
        opening = np.arange(1, max(1, n - 2 * lookback))
        opening = opening[t[opening] % length != 0]  # history starts inside a higher candle
        starts |= set(
            rng.choice(opening, size=min(count // 3, opening.size), replace=False).tolist()
        )
    return sorted(int(i) for i in cuts), sorted(int(i) for i in starts)


def _cut_points(full: SignalFrame, lookback: int, cuts: int, rng: np.random.Generator) -> list[int]:
    """Cut at signal candles (where a peek would change a decision) and at random candles."""
    n = len(full.buy)
    fired = np.flatnonzero((full.buy | full.sell).to_numpy())
    chosen = set(rng.choice(fired, size=min(cuts, fired.size), replace=False).tolist())
    pool = np.arange(lookback, n - 1)
    chosen |= set(rng.choice(pool, size=min(cuts, pool.size), replace=False).tolist())
    return sorted(int(i) for i in chosen)


def _first_difference(
    full: SignalFrame, part: SignalFrame, skip: int, detail: str, check: str
) -> BiasFinding | None:
    index = part.buy.index[skip:]
    best: BiasFinding | None = None
    for column in _COLUMNS:
        a = getattr(full, column).reindex(index).to_numpy(dtype="float64")
        b = getattr(part, column).iloc[skip:].to_numpy(dtype="float64")
        bad = np.flatnonzero(~np.isclose(a, b, rtol=0.0, atol=SCORE_TOLERANCE))
        if bad.size and (best is None or index[bad[0]] < best.at):
            i = bad[0]
            rules = _rule_differences(full, part, index[i], detail.removesuffix(" gives"))
            best = BiasFinding(check, index[i], column, float(a[i]), float(b[i]), detail, rules)
    return best


def _rule_differences(
    full: SignalFrame, part: SignalFrame, at: pd.Timestamp, other: str
) -> tuple[str, ...]:
    """Name the rules that fire on candle `at` in one history and not in the other."""
    out: list[str] = []
    i, j = int(full.index.get_loc(at)), int(part.index.get_loc(at))
    for side in full.sides:
        a, b = full.sides[side], part.sides[side]
        for k, name in enumerate(a.names):
            if a.fired[i, k] != b.fired[j, k]:
                where = "full history" if a.fired[i, k] else other
                out.append(f"{side} rule {name!r} fires in {where} only")
    return tuple(out)
