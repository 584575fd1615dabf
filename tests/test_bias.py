"""The bias checker flags a peeking strategy and a short warm-up, and passes their twins."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from research.backtest.bias import check_bias
from strategies import indicators as ind
from strategies import warmup
from strategies.base import Rule, RuleSet, Strategy
from strategies.params import ScoringParams, param
from tests.candles import random_walk


@dataclass(frozen=True, kw_only=True)
class EmaParams(ScoringParams):
    threshold: float = param(1.0, low=0.5, high=1.0)
    cooldown: int = param(0, low=0, high=10)
    period: int = param(30, low=5, high=60)


class EmaTrend(Strategy[EmaParams]):
    """BUY when close crosses above its EMA, SELL below; `peek` uses the next candle's close."""

    name = "ema_trend_test"
    timeframes = ("1m",)
    Params = EmaParams

    def __init__(self, *, peek: bool = False, declared_warmup: int | None = None) -> None:
        self.peek, self.declared = peek, declared_warmup

    def warmup(self, params: EmaParams) -> int:
        return self.declared if self.declared is not None else warmup.ema(params.period)

    def rules(self, candles: pd.DataFrame, params: EmaParams) -> RuleSet:
        close = candles["close"].shift(-1) if self.peek else candles["close"]
        line = ind.ema(candles["close"], params.period)
        return RuleSet(
            buy=[Rule("close crossed above EMA", ind.crossed_above(close, line))],
            sell=[Rule("close crossed below EMA", ind.crossed_above(line, close))],
        )


CANDLES = random_walk(2000, seed=11)


def test_honest_strategy_passes() -> None:
    report = check_bias(EmaTrend(), CANDLES, seed=1)
    assert report.ok, report.verdict()
    assert report.verdict().startswith("PASS")


def test_peeking_strategy_is_flagged_with_candle_and_column() -> None:
    report = check_bias(EmaTrend(peek=True), CANDLES, seed=1)
    assert not report.ok
    first = report.findings[0]
    assert first.check == "lookahead"
    assert first.column in {"buy", "sell", "buy_score", "sell_score"}
    assert first.at in CANDLES.index
    text = report.verdict()
    assert text.startswith("FAIL") and first.at.isoformat() in text


def test_underdeclared_warmup_is_flagged() -> None:
    report = check_bias(EmaTrend(declared_warmup=31), CANDLES, seed=1, starts=8)
    assert not report.ok
    assert {f.check for f in report.findings} == {"warm-up"}


def test_report_records_seed_and_is_reproducible() -> None:
    a = check_bias(EmaTrend(), CANDLES, seed=42)
    b = check_bias(EmaTrend(), CANDLES, seed=42)
    assert a.seed == 42 and a.cuts == b.cuts and a.starts == b.starts
