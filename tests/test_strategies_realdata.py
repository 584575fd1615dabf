"""On the real BTCUSDT candles: both personalities give BUY and SELL at their intended rates."""

from __future__ import annotations

from pathlib import Path

import pytest

from signals.data.load import load_candles
from strategies import get_strategy

pytestmark = pytest.mark.realdata


def rates(db: Path, name: str, timeframe: str, *, start: str | None = None) -> tuple[float, float]:
    candles = load_candles(db, symbol="BTCUSDT", timeframe=timeframe, start=start)
    frame = get_strategy(name).signals(candles)
    days = (candles.index[-1] - candles.index[0]).total_seconds() / 86400.0
    return frame.buy.sum() / days, frame.sell.sum() / days


def test_scalping_1m_gives_10_to_50_signals_a_day(real_db: Path) -> None:
    buys, sells = rates(real_db, "scalping", "1m")
    assert buys > 2 and sells > 2
    assert 10 <= buys + sells <= 50


def test_scalping_5m_gives_both_sides(real_db: Path) -> None:
    buys, sells = rates(real_db, "scalping", "5m")
    assert buys > 0.5 and sells > 0.5


def test_swing_1h_gives_2_to_10_signals_a_week(real_db: Path) -> None:
    buys, sells = rates(real_db, "swing", "1h")  # 2017-08 .. 2023-06
    assert 7 * buys > 0.5 and 7 * sells > 0.5
    assert 2 <= 7 * (buys + sells) <= 10


def test_swing_15m_gives_2_to_10_signals_a_week(real_db: Path) -> None:
    buys, sells = rates(real_db, "swing", "15m")  # 2023-04 .. 2023-06, from the 1m files
    assert 7 * buys > 0.5 and 7 * sells > 0.5
    assert 2 <= 7 * (buys + sells) <= 10


def test_trend_pullback_15m_gives_1_to_3_signals_a_day(real_db: Path) -> None:
    buys, sells = rates(real_db, "trend_pullback", "15m")  # 2023-04 .. 2023-06, 1h from 15m
    assert buys > 0.3 and sells > 0.3
    assert 1 <= buys + sells <= 3


def test_trend_pullback_5m_gives_4_to_10_signals_a_day(real_db: Path) -> None:
    buys, sells = rates(real_db, "trend_pullback", "5m")
    assert buys > 1.5 and sells > 1.5
    assert 4 <= buys + sells <= 10


@pytest.mark.parametrize("timeframe", ["15m", "5m"])
def test_trend_pullback_passes_bias_on_real_candles(real_db: Path, timeframe: str) -> None:
    from research.backtest.bias import check_bias

    candles = load_candles(real_db, symbol="BTCUSDT", timeframe=timeframe)
    for seed in (0, 1):
        report = check_bias(get_strategy("trend_pullback"), candles, seed=seed)
        assert report.ok and report.inside, report.verdict()
