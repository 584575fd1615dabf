"""On the real BTCUSDT candles: both personalities give BUY and SELL at their intended rates."""

from __future__ import annotations

from pathlib import Path

import pytest

from signals.data.importers import import_files
from signals.data.load import load_candles
from strategies import get_strategy

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def real_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import SHARED_DATA

    files = sorted(SHARED_DATA.glob("BTCUSDT-*.csv.gz"))
    if len(files) < 4:
        pytest.skip(f"real candles not found at {SHARED_DATA} (see ../shared/data/README.md)")
    db = tmp_path_factory.mktemp("real") / "btc.db"
    import_files(files, db=db, symbol="BTCUSDT", progress=False)
    return db


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
