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

A strategy that reads longer timeframes declares them, ``informative = ("1h",)``, and
``informative_warmup(params)``, the candles of those timeframes its indicators on them need
(computed on the higher candles themselves in ``informative_columns``). Its ``rules()`` then
receives ``open_1h ... volume_1h`` and those columns (`strategies.informative`), and its warm-up
in base candles adds the base candles that hold those higher candles whole.

A signal at candle t uses candles up to and including t only (no lookahead); the research engine
decides what to do with it at the next candle.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
import pandas as pd

from signals.timeframes import timeframe_seconds
from strategies.indicators import as_flags, recent_count
from strategies.informative import base_candles, base_seconds, with_informative
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
class SideArrays:
    """One side's per-candle decision data as numpy arrays: score, rule firings, triggers."""

    score: np.ndarray  # float64, 0..1
    fired: np.ndarray  # bool, candles x rules
    names: list[str]  # the rules' reasons, in column order
    signal: np.ndarray  # bool: the side's decisions after debounce and conflict resolution

    def sliced(self, first: int) -> SideArrays:
        """Return the arrays from candle position `first` on."""
        return SideArrays(self.score[first:], self.fired[first:], self.names, self.signal[first:])


class SignalFrame:
    """Per-candle scores, rule firings and the BUY/SELL decisions, on the candles' index.

    The decisions are held as numpy arrays; the pandas views (``buy_score``, ``buy_rules``,
    ``buy`` and their SELL mirrors) are built on first access, so a caller that only lists the
    signals (the live runner's step) never pays for them.
    """

    def __init__(
        self,
        index: pd.Index,
        buy: SideArrays,
        sell: SideArrays,
        gate_reasons: dict[str, str | None] | None = None,
    ) -> None:
        self.index = index
        self.sides = {BUY: buy, SELL: sell}
        self.gate_reasons = dict(gate_reasons or {})

    @classmethod
    def from_series(
        cls,
        buy_score: pd.Series,
        sell_score: pd.Series,
        buy_rules: pd.DataFrame,
        sell_rules: pd.DataFrame,
        buy: pd.Series,
        sell: pd.Series,
        gate_reasons: dict[str, str | None] | None = None,
    ) -> SignalFrame:
        """Build a frame from pandas objects on one index (hand-made frames in tests)."""

        def side(score: pd.Series, rules: pd.DataFrame, signal: pd.Series) -> SideArrays:
            return SideArrays(
                score.to_numpy(dtype="float64"),
                rules.to_numpy(dtype=bool),
                [str(c) for c in rules.columns],
                signal.to_numpy(dtype=bool),
            )

        return cls(
            buy.index,
            side(buy_score, buy_rules, buy),
            side(sell_score, sell_rules, sell),
            gate_reasons,
        )

    # -- pandas views, built once on first access ---------------------------------------------

    def _score_series(self, side: str) -> pd.Series:
        return pd.Series(self.sides[side].score, self.index, copy=False)

    def _rules_frame(self, side: str) -> pd.DataFrame:
        arrays = self.sides[side]
        names = pd.Index(arrays.names, dtype=object)  # plain labels: no Arrow strings
        return pd.DataFrame(arrays.fired, self.index, names, copy=False)

    def _signal_series(self, side: str) -> pd.Series:
        return pd.Series(self.sides[side].signal, self.index, name=side.lower(), copy=False)

    @cached_property
    def buy_score(self) -> pd.Series:
        """BUY score per candle (0..1)."""
        return self._score_series(BUY)

    @cached_property
    def sell_score(self) -> pd.Series:
        """SELL score per candle (0..1)."""
        return self._score_series(SELL)

    @cached_property
    def buy_rules(self) -> pd.DataFrame:
        """Which BUY rules fired on each candle (one boolean column per rule, named by reason)."""
        return self._rules_frame(BUY)

    @cached_property
    def sell_rules(self) -> pd.DataFrame:
        """Which SELL rules fired on each candle."""
        return self._rules_frame(SELL)

    @cached_property
    def buy(self) -> pd.Series:
        """True on the candles that emit a BUY."""
        return self._signal_series(BUY)

    @cached_property
    def sell(self) -> pd.Series:
        """True on the candles that emit a SELL."""
        return self._signal_series(SELL)

    # -- derived frames and lists --------------------------------------------------------------

    def from_position(self, first: int) -> SignalFrame:
        """Return the frame from candle position `first` on (the earlier candles only warmed up)."""
        return SignalFrame(
            self.index[first:],
            self.sides[BUY].sliced(first),
            self.sides[SELL].sliced(first),
            self.gate_reasons,
        )

    def only_where(self, keep: np.ndarray) -> SignalFrame:
        """Return the frame with its BUY/SELL decisions kept only where `keep` is True."""
        buy, sell = self.sides[BUY], self.sides[SELL]
        return SignalFrame(
            self.index,
            SideArrays(buy.score, buy.fired, buy.names, buy.signal & keep),
            SideArrays(sell.score, sell.fired, sell.names, sell.signal & keep),
            self.gate_reasons,
        )

    def signal_list(
        self, since: pd.Timestamp | None = None, *, first: int = 0
    ) -> list[tuple[int, str, float, list]]:
        """Return (candle position, side, confidence, reasons) per emitted signal, in order.

        `since` keeps only the signals on candles at or after it, `first` only those from
        candle position `first` on.
        """
        buy, sell = self.sides[BUY], self.sides[SELL]
        if since is not None:
            first = max(first, int(self.index.searchsorted(since, side="left")))
        positions = first + np.flatnonzero(buy.signal[first:] | sell.signal[first:])
        out: list[tuple[int, str, float, list]] = []
        for i in positions.tolist():  # conflicts are resolved: one side per candle
            side = BUY if buy.signal[i] else SELL
            arrays = buy if side == BUY else sell
            hits = arrays.fired[i].tolist()
            names = [n for n, hit in zip(arrays.names, hits, strict=True) if hit]
            gate = self.gate_reasons.get(side)
            out.append((i, side, float(arrays.score[i]), names + ([gate] if gate else [])))
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
        ).set_axis(self.index[[row[0] for row in listed]], axis=0)


class Strategy(ABC, Generic[P]):
    """Base class of every strategy: declarations plus the shared scoring pipeline."""

    name: ClassVar[str]
    timeframes: ClassVar[tuple[str, ...]]
    Params: ClassVar[type[ScoringParams]]
    description: ClassVar[str] = ""
    informative: ClassVar[tuple[str, ...]] = ()  # longer timeframes rules() reads, e.g. ("1h",)

    @abstractmethod
    def rules(self, candles: pd.DataFrame, params: P) -> RuleSet:
        """Return the BUY and SELL rules evaluated on every candle."""

    @abstractmethod
    def warmup(self, params: P) -> int:
        """Return the candles the indicators need to equal their full-history values."""

    def informative_warmup(self, params: P) -> int:
        """Return the candles of each `informative` timeframe its indicators need (0: none)."""
        return 0

    def informative_columns(
        self, timeframe: str, higher: pd.DataFrame, params: P
    ) -> Mapping[str, Any]:
        """Return columns computed on the `timeframe` candles (merged as ``<name>_<tf>``)."""
        return {}

    def lookback(self, params: P, timeframe: str | None = None) -> int:
        """Return the candles a window needs so its last decision equals full history's.

        With `informative` timeframes the higher indicators' warm-up, counted in base candles,
        depends on the base length: the count is the largest over the declared timeframes (one
        number for all of them) and `timeframe` when given.
        """
        if not self.informative:
            return self.warmup(params) + params.cooldown + 2
        names = (*self.timeframes, timeframe) if timeframe else self.timeframes
        return max(self._lookback(params, timeframe_seconds(tf)) for tf in names)

    def _lookback(self, params: P, base: int) -> int:
        # warmup + cooldown + 2, the warm-up adding the base candles of the higher indicators
        higher = self.informative_warmup(params)
        extra = max((base_candles(higher, tf, base) for tf in self.informative), default=0)
        return self.warmup(params) + extra + params.cooldown + 2

    def params(self, values: dict[str, Any] | None = None) -> P:
        """Build validated `Params` from overrides on top of the defaults."""
        return make_params(self.Params, values or {})  # type: ignore[return-value]

    def signals(self, candles: pd.DataFrame, params: P | None = None) -> SignalFrame:
        """Score the rules on `candles` and derive the BUY/SELL signals (see the module doc)."""
        params = params if params is not None else self.params()
        base = base_seconds(candles.index) if self.informative else None
        merged = with_informative(
            candles, self.informative, base, lambda tf, h: self.informative_columns(tf, h, params)
        )
        ruleset = self.rules(merged, params)
        n = len(candles)
        buy_score, buy_fired = _score(ruleset.buy, ruleset.buy_gate, n)
        sell_score, sell_fired = _score(ruleset.sell, ruleset.sell_gate, n)
        buy = _debounce(_edges(buy_score, params.threshold), params.cooldown)
        sell = _debounce(_edges(sell_score, params.threshold), params.cooldown)
        both = buy & sell
        buy &= ~both | (buy_score > sell_score)
        sell &= ~both | (sell_score > buy_score)
        lookback = self.lookback(params)
        if base is not None:  # a base length shorter than the declared ones needs more
            lookback = max(lookback, self._lookback(params, base))
        unsettled = max(0, lookback - 1)
        buy[:unsettled] = False
        sell[:unsettled] = False
        return SignalFrame(
            candles.index,
            SideArrays(buy_score, buy_fired, [r.name for r in ruleset.buy], buy),
            SideArrays(sell_score, sell_fired, [r.name for r in ruleset.sell], sell),
            gate_reasons={BUY: ruleset.buy_gate_reason, SELL: ruleset.sell_gate_reason},
        )


def _score(rules: list[Rule], gate: pd.Series | None, n: int) -> tuple[np.ndarray, np.ndarray]:
    # The side's score per candle (0..1) and its rule firings (candles x rules), as arrays.
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
    return score, fired


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
