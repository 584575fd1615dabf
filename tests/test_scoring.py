"""Scoring, edge triggering, debounce, conflicts and abstention on hand-written rule tables."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pytest

from signals.errors import ParamsError
from strategies import get_strategy
from strategies.base import Rule, RuleSet, Strategy
from strategies.params import ScoringParams, param


@dataclass(frozen=True, kw_only=True)
class TableParams(ScoringParams):
    threshold: float = param(0.6, low=0.1, high=1.0)
    cooldown: int = param(0, low=0, high=10)


class Table(Strategy[TableParams]):
    """Rules read straight from columns: b1,b2,b3 (weights 2,1,1) and s1,s2 (1,1)."""

    name = "table_test"
    timeframes = ("1m",)
    Params = TableParams

    def warmup(self, params: TableParams) -> int:
        return 0

    def rules(self, candles: pd.DataFrame, params: TableParams) -> RuleSet:
        def rule(col: str, weight: float) -> Rule:
            known = candles[col].notna()
            return Rule(col, candles[col] == 1, weight, known=known)

        return RuleSet(
            buy=[rule("b1", 2.0), rule("b2", 1.0), rule("b3", 1.0)],
            sell=[rule("s1", 1.0), rule("s2", 1.0)],
        )


def table(**cols: list[float]) -> pd.DataFrame:
    n = len(next(iter(cols.values())))
    index = pd.date_range("2024-01-01", periods=n, freq="1min", tz="UTC")
    base = {c: [0.0] * n for c in ("b1", "b2", "b3", "s1", "s2")}
    base.update(cols)
    return pd.DataFrame(base, index=index, dtype="float64")


def test_score_is_weighted_share_of_fired_rules() -> None:
    frame = Table().signals(table(b1=[0, 1, 1, 0], b2=[0, 0, 1, 1], s1=[1, 0, 0, 1]))
    assert frame.buy_score.tolist() == [0.0, 0.5, 0.75, 0.25]
    assert frame.sell_score.tolist() == [0.5, 0.0, 0.0, 0.5]


def test_unknown_rule_abstains() -> None:
    nan = float("nan")
    frame = Table().signals(table(b1=[1, 1], b2=[nan, 0], b3=[nan, 0]))
    # candle 0: only b1 is known and it fires -> 2/2; candle 1: 2/4
    assert frame.buy_score.tolist() == [1.0, 0.5]


def test_edge_triggered_not_level() -> None:
    frame = Table(), table(b1=[0, 1, 1, 1, 0, 1], b2=[0, 1, 1, 1, 0, 1])
    signals = frame[0].signals(frame[1])
    assert signals.buy.tolist() == [False, True, False, False, False, True]


def test_debounce_counts_triggers_in_previous_cooldown_candles() -> None:
    b = [0] * 6 + [0, 1, 0, 1, 0, 0, 0, 1, 0, 0]
    frame = Table().signals(table(b1=b, b2=b), Table().params({"cooldown": 3}))
    # lookback = 0 + 3 + 2, so candles 0..3 are warm-up. Triggers at 7, 9, 13: 9 is within
    # 3 candles of 7 (dropped); 13 is clear of 9 (a dropped trigger still debounces).
    assert frame.buy.to_numpy().nonzero()[0].tolist() == [7, 13]


def test_first_lookback_candles_never_signal() -> None:
    b = [0, 1, 0, 1, 0, 1]
    frame = Table().signals(table(b1=b, b2=b), Table().params({"cooldown": 1}))
    # lookback = 0 + 1 + 2 = 3, so candles 0 and 1 are warm-up: the trigger at 1 is dropped.
    assert frame.buy.to_numpy().nonzero()[0].tolist() == [3, 5]


def test_conflict_higher_score_wins_and_tie_emits_nothing() -> None:
    frame = Table().signals(
        table(b1=[0, 1, 0, 1], b2=[0, 1, 0, 0], s1=[0, 1, 0, 1], s2=[0, 0, 0, 1])
    )
    # candle 1: buy 0.75 vs sell 0.5 -> BUY; candle 3: buy 0.5 vs sell 1.0 -> SELL
    assert frame.buy.tolist() == [False, True, False, False]
    frame2 = Table().signals(
        table(b1=[0, 1], s1=[0, 1], s2=[0, 0]), Table().params({"threshold": 0.5})
    )
    assert not frame2.buy.any() and not frame2.sell.any()


def test_sell_as_reachable_as_buy() -> None:
    frame = Table().signals(table(s1=[0, 1, 1], s2=[0, 1, 0]))
    assert frame.sell.tolist() == [False, True, False]
    rows = frame.signal_rows()
    assert rows.iloc[0].signal == "SELL" and rows.iloc[0].reasons == ["s1", "s2"]


def test_params_errors_are_clear() -> None:
    scalping = get_strategy("scalping")
    with pytest.raises(ParamsError, match="did you mean 'ema_fast'"):
        scalping.params({"ema_fsat": 5})
    with pytest.raises(ParamsError, match=r"outside \[3, 30\]"):
        scalping.params({"ema_fast": 100})
    with pytest.raises(ParamsError, match="whole number"):
        scalping.params({"ema_fast": 5.5})
    with pytest.raises(ParamsError, match="must be below"):
        scalping.params({"ema_fast": 25, "ema_slow": 20})
    assert scalping.params({"ema_fast": "5"}).ema_fast == 5
