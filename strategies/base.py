"""The strategy contract: rules in, scored and edge-triggered BUY/SELL signals out.

A strategy subclasses `Strategy`, declares ``name``, ``timeframes`` and a frozen ``Params``
dataclass (see :mod:`strategies.params`), and implements two methods:

- ``rules(candles, params)``: vectorised boolean `Rule` series for each side (plus an optional
  gate per side, e.g. a regime filter);
- ``warmup(params)``: the candles its indicators need before they equal their full-history
  values (derived with :mod:`strategies.warmup`).

`Strategy.signals` turns rules into decisions, identically in research and live:

1. **Score.** A side's score is the weighted share of its rules that fire (0..1). A rule whose
   inputs are unknown on a candle (``Rule.known`` False, e.g. no taker-buy volume in the data)
   abstains: it leaves both numerator and denominator. A closed gate forces the score to 0.
2. **Trigger.** A side triggers on the candle where its score first reaches ``threshold``
   (edge-triggered: score >= threshold now, < threshold on the previous candle).
3. **Debounce.** A trigger is dropped when the same side triggered in the previous ``cooldown``
   candles. The rule looks at triggers, not at emitted signals, so each decision depends on a
   bounded window of candles and a live window reproduces it exactly.
4. **Conflict.** If BUY and SELL trigger on one candle the higher score wins; a tie emits nothing.
5. **Warm-up.** No signal is emitted in the first ``lookback(params) - 1`` candles of any history,
   so a signal never depends on where the data happened to start.

A signal at candle t uses candles up to and including t only (no lookahead); the research engine
decides what to do with it at the next candle.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
import pandas as pd

from strategies.indicators import as_flags, recent_count
from strategies.params import ScoringParams, make_params

BUY = "BUY"
SELL = "SELL"
P = TypeVar("P", bound=ScoringParams)


@dataclass(frozen=True)
class Rule:
    """One named condition of one side: a boolean series, its weight and a readable reason."""

    name: str
    fired: pd.Series
    weight: float = 1.0
    known: pd.Series | None = None


@dataclass(frozen=True)
class RuleSet:
    """A strategy's rules for both sides, with an optional gate per side (True = allowed)."""

    buy: list[Rule]
    sell: list[Rule]
    buy_gate: pd.Series | None = None
    sell_gate: pd.Series | None = None
    buy_gate_reason: str | None = None
    sell_gate_reason: str | None = None


@dataclass(frozen=True)
class SignalFrame:
    """Per-candle scores, rule firings and the BUY/SELL decisions, on the candles' index."""

    buy_score: pd.Series
    sell_score: pd.Series
    buy_rules: pd.DataFrame
    sell_rules: pd.DataFrame
    buy: pd.Series
    sell: pd.Series
    gate_reasons: dict[str, str | None] = field(default_factory=dict)

    def from_position(self, first: int) -> SignalFrame:
        """Return the frame from candle position `first` on (the earlier candles only warmed up)."""
        return SignalFrame(
            buy_score=self.buy_score.iloc[first:],
            sell_score=self.sell_score.iloc[first:],
            buy_rules=self.buy_rules.iloc[first:],
            sell_rules=self.sell_rules.iloc[first:],
            buy=self.buy.iloc[first:],
            sell=self.sell.iloc[first:],
            gate_reasons=dict(self.gate_reasons),
        )

    def signal_list(self, since: pd.Timestamp | None = None) -> list[tuple[int, str, float, list]]:
        """Return (candle position, side, confidence, reasons) per emitted signal, in order.

        `since` keeps only the signals on candles at or after it.
        """
        buy, sell = self.buy.to_numpy(dtype=bool), self.sell.to_numpy(dtype=bool)
        first = 0 if since is None else int(self.buy.index.searchsorted(since, side="left"))
        positions = first + np.flatnonzero(buy[first:] | sell[first:])  # conflicts are resolved
        out: list[tuple[int, str, float, list]] = []
        for i in positions.tolist():
            side = BUY if buy[i] else SELL
            score, rules = (
                (self.buy_score, self.buy_rules)
                if side == BUY
                else (self.sell_score, self.sell_rules)
            )
            fired = rules.iloc[i].to_numpy(dtype=bool)
            names = [name for name, hit in zip(rules.columns, fired, strict=True) if hit]
            gate = self.gate_reasons.get(side)
            out.append((i, side, float(score.iloc[i]), names + ([gate] if gate else [])))
        return out

    def signal_rows(self, since: pd.Timestamp | None = None) -> pd.DataFrame:
        """Return one row per emitted signal: side, confidence and reasons, on the candle index.

        `since` keeps only the signals on candles at or after it.
        """
        listed = self.signal_list(since)
        return pd.DataFrame(
            {
                "signal": pd.Series([row[1] for row in listed], dtype=object),
                "confidence": pd.Series([row[2] for row in listed], dtype="float64"),
                "reasons": pd.Series([row[3] for row in listed], dtype=object),
            }
        ).set_axis(self.buy.index[[row[0] for row in listed]], axis=0)


class Strategy(ABC, Generic[P]):
    """Base class of every strategy: declarations plus the shared scoring pipeline."""

    name: ClassVar[str]
    timeframes: ClassVar[tuple[str, ...]]
    Params: ClassVar[type[ScoringParams]]
    description: ClassVar[str] = ""

    @abstractmethod
    def rules(self, candles: pd.DataFrame, params: P) -> RuleSet:
        """Return the BUY and SELL rules evaluated on every candle."""

    @abstractmethod
    def warmup(self, params: P) -> int:
        """Return the candles the indicators need to equal their full-history values."""

    def lookback(self, params: P) -> int:
        """Return the candles a window needs so its last decision equals full history's."""
        return self.warmup(params) + params.cooldown + 2

    def params(self, values: dict[str, Any] | None = None) -> P:
        """Build validated `Params` from overrides on top of the defaults."""
        return make_params(self.Params, values or {})  # type: ignore[return-value]

    def signals(self, candles: pd.DataFrame, params: P | None = None) -> SignalFrame:
        """Score the rules on `candles` and derive the BUY/SELL signals (see the module doc)."""
        params = params if params is not None else self.params()
        ruleset = self.rules(candles, params)
        index = candles.index
        buy_score, buy_rules = _score(ruleset.buy, ruleset.buy_gate, index)
        sell_score, sell_rules = _score(ruleset.sell, ruleset.sell_gate, index)
        buy_values, sell_values = buy_score.to_numpy(), sell_score.to_numpy()
        buy = _debounce(_edges(buy_values, params.threshold), params.cooldown)
        sell = _debounce(_edges(sell_values, params.threshold), params.cooldown)
        both = buy & sell
        buy &= ~both | (buy_values > sell_values)
        sell &= ~both | (sell_values > buy_values)
        unsettled = max(0, self.lookback(params) - 1)
        buy[:unsettled] = False
        sell[:unsettled] = False
        return SignalFrame(
            buy_score=buy_score,
            sell_score=sell_score,
            buy_rules=buy_rules,
            sell_rules=sell_rules,
            buy=pd.Series(buy, index=index, name="buy", copy=False),
            sell=pd.Series(sell, index=index, name="sell", copy=False),
            gate_reasons={BUY: ruleset.buy_gate_reason, SELL: ruleset.sell_gate_reason},
        )


def _score(
    rules: list[Rule], gate: pd.Series | None, index: pd.Index
) -> tuple[pd.Series, pd.DataFrame]:
    n = len(index)
    fired = np.zeros((n, len(rules)), dtype=bool)
    hit = np.zeros(n, dtype="float64")
    total: np.ndarray | float = 0.0  # stays a number while every rule's inputs are known
    for j, rule in enumerate(rules):
        flags = as_flags(rule.fired)
        if rule.known is not None:
            known = as_flags(rule.known)
            flags = flags & known
            total = total + known * rule.weight
        else:
            total = total + rule.weight
        fired[:, j] = flags
        hit[flags] += rule.weight
    with np.errstate(invalid="ignore", divide="ignore"):
        if np.ndim(total) == 0:
            score = hit / total if total > 0 else hit * 0.0
        else:
            score = np.where(total > 0, hit / np.where(total > 0, total, 1.0), 0.0)
    if gate is not None:
        score[~as_flags(gate)] = 0.0
    names = pd.Index([r.name for r in rules], dtype=object)  # plain labels: no Arrow strings
    # Fresh arrays, owned by the returned objects: no defensive copy needed.
    score_series = pd.Series(score, index=index, dtype="float64", copy=False)
    return score_series, pd.DataFrame(fired, index, names, copy=False)


def _edges(score: np.ndarray, threshold: float) -> np.ndarray:
    above = score >= threshold - 1e-12
    edges = above.copy()
    edges[1:] &= ~above[:-1]
    return edges


def _debounce(triggers: np.ndarray, cooldown: int) -> np.ndarray:
    if cooldown <= 0:
        return triggers
    earlier = np.concatenate([[False], triggers[:-1]])  # triggers strictly before each candle
    return triggers & ~(recent_count(earlier, cooldown) > 0)
