"""Property tests of the simulation and its metrics (STYLE P8), on small random markets.

Markets move at most 1% per candle (plus a 0.2% gap at the open) over at most 40 candles, so
prices stay within about 0.6x..1.6x of the start and an all-in short never loses more than its
equity: that keeps every invariant below exact, not just "usually true".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from research.backtest.execution import ExecutionModel, simulate
from research.backtest.metrics import METRIC_KEYS
from research.backtest.run import portfolio_metrics
from signals.costs import CostModel

TIMEFRAME = "1d"
SETTINGS = settings(max_examples=40, deadline=None)


@dataclass(frozen=True)
class Market:
    """Candles and the decision made at each candle's close."""

    candles: pd.DataFrame
    buy: pd.Series
    sell: pd.Series


def bps(values: list[int]) -> np.ndarray:
    """Basis points to fractions."""
    return np.array(values, dtype="float64") * 1e-4


@st.composite
def markets(draw: st.DrawFn, min_size: int = 5, max_size: int = 40) -> Market:
    """Draw valid OHLC candles and BUY/SELL/nothing decisions."""
    n = draw(st.integers(min_size, max_size), label="candles")
    # Whole basis points: ulp-sized moves would make ratios such as Sortino pure float noise.
    steps = bps(draw(st.lists(st.integers(-100, 100), min_size=n, max_size=n)))
    gaps = bps(draw(st.lists(st.integers(-20, 20), min_size=n, max_size=n)))
    wicks = bps(draw(st.lists(st.integers(0, 100), min_size=2 * n, max_size=2 * n)))
    marks = draw(st.lists(st.sampled_from("BS."), min_size=n, max_size=n), label="marks")
    close = 100.0 * np.cumprod(1.0 + steps)
    open_ = np.concatenate([[100.0], close[:-1]]) * (1.0 + gaps)
    high = np.maximum(open_, close) * (1.0 + wicks[:n])
    low = np.minimum(open_, close) * (1.0 - wicks[n:])
    index = pd.date_range("2024-01-01", periods=n, freq="1D", tz="UTC")
    candles = pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": 1.0}, index=index
    )
    buy = pd.Series([m == "B" for m in marks], index=index)
    sell = pd.Series([m == "S" for m in marks], index=index)
    return Market(candles, buy, sell)


directions = st.sampled_from(["long", "short", "both"])
fills = st.sampled_from(["next_open", "close"])
fees = st.floats(1.0, 50.0)  # bps; strictly positive so every trade's return is clearly non-zero


def metrics(
    market: Market,
    *,
    fee_bps: float = 5.0,
    slip_bps: float = 1.0,
    candles: pd.DataFrame | None = None,
    **execution: object,
) -> dict[str, float]:
    """Simulate `market` and return its metrics row as a dict."""
    candles = market.candles if candles is None else candles
    pf = simulate(
        candles,
        market.buy,
        market.sell,
        execution=ExecutionModel(**execution),  # type: ignore[arg-type]  # test keyword arguments, typed object
        costs=CostModel(fee_bps=fee_bps, slippage_bps=slip_bps),
        timeframe=TIMEFRAME,
    )
    return portfolio_metrics(pf, candles, TIMEFRAME).iloc[0].to_dict()


def same(a: float, b: float) -> bool:
    """Equal within float noise, NaN equal to NaN."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


@SETTINGS
@given(
    market=markets(),
    direction=directions,
    fill=fills,
    fee_bps=fees,
    stop=st.sampled_from([None, 0.01, 0.03]),
)
def test_bounded_metrics(
    market: Market, direction: str, fill: str, fee_bps: float, stop: float | None
) -> None:
    """max_drawdown <= 0; exposure and win_rate are shares (win_rate NaN without trades)."""
    m = metrics(market, fee_bps=fee_bps, direction=direction, fill=fill, stop_loss=stop)
    assert m["max_drawdown"] <= 0.0
    assert 0.0 <= m["exposure"] <= 1.0
    if m["trades"] == 0:
        assert math.isnan(m["win_rate"])
    else:
        assert 0.0 <= m["win_rate"] <= 1.0
    assert m["fees_paid"] >= 0.0


def test_equal_trades_on_flat_prices_have_no_sqn_at_any_price_scale() -> None:
    # Found by the scaling property below: two trades that each lose exactly the fees. The
    # one-pass variance turned their equal returns into a spread of ~1e-8 (SQN -7.8e7) at one
    # price scale and into exactly 0 (SQN NaN) at another.
    index = pd.date_range("2024-01-01", periods=5, freq="1D", tz="UTC")
    flat = pd.DataFrame({"open": 100.0, "high": 100.0, "low": 100.0, "close": 100.0,
                         "volume": 1.0}, index=index)  # fmt: skip
    buy = pd.Series([True, True, False, True, False], index=index)
    market = Market(flat, buy, pd.Series([False, False, True, False, True], index=index))
    for scale in (1.0, 1e-3):
        candles = flat.copy()
        candles[["open", "high", "low", "close"]] *= scale
        m = metrics(market, candles=candles, fee_bps=1.0, direction="long", fill="close")
        assert m["trades"] == 2 and math.isnan(m["sqn"]), (scale, m["sqn"])


@SETTINGS
@given(
    market=markets(),
    direction=directions,
    fill=fills,
    fee_bps=fees,
    scale=st.sampled_from([1e-3, 0.37, 3.0, 2.0**10, 1000.0]),
)
def test_scaling_prices_leaves_metrics_unchanged(
    market: Market, direction: str, fill: str, fee_bps: float, scale: float
) -> None:
    """Prices x a constant: the same returns, ratios, trades and (cash unchanged) fees."""
    scaled = market.candles.copy()
    scaled[["open", "high", "low", "close"]] *= scale
    base = metrics(market, fee_bps=fee_bps, direction=direction, fill=fill)
    moved = metrics(market, candles=scaled, fee_bps=fee_bps, direction=direction, fill=fill)
    # fees_paid is an absolute amount; it is unchanged too here because the cash is not scaled.
    for key in METRIC_KEYS:
        assert same(base[key], moved[key]), (key, base[key], moved[key])


@SETTINGS
@given(market=markets(), direction=directions, fill=fills, fee_bps=fees)
def test_all_flat_signal_does_nothing(
    market: Market, direction: str, fill: str, fee_bps: float
) -> None:
    """No decisions: zero trades, zero return, zero fees, never exposed."""
    flat = Market(market.candles, market.buy & False, market.sell & False)
    m = metrics(flat, fee_bps=fee_bps, direction=direction, fill=fill)
    assert m["trades"] == 0
    assert m["total_return"] == 0.0 and m["max_drawdown"] == 0.0
    assert m["fees_paid"] == 0.0 and m["exposure"] == 0.0


@SETTINGS
@given(
    market=markets(),
    direction=directions,
    fill=fills,
    fees_pair=st.tuples(st.floats(0.0, 100.0), st.floats(0.0, 100.0)).map(sorted),
)
def test_higher_fees_never_increase_total_return(
    market: Market, direction: str, fill: str, fees_pair: list[float]
) -> None:
    """All-in, each trade's growth factor falls with the fee, so the product does too."""
    low, high = fees_pair
    cheap = metrics(market, fee_bps=low, direction=direction, fill=fill)
    dear = metrics(market, fee_bps=high, direction=direction, fill=fill)
    assert dear["total_return"] <= cheap["total_return"] + 1e-12
    assert dear["trades"] == cheap["trades"]
