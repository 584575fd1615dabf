"""Signal quality: signed forward returns, NaN past the end, hit rate and mean per bucket."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from research.backtest.quality import (
    ALL,
    confidence_buckets,
    forward_returns,
    quality_figure,
    signal_quality,
)
from strategies import SignalFrame

# Eight candles with known future moves and four signals:
#   t  close  signal (confidence)   fwd_1 (signed)              fwd_3 (signed)
#   0   100   BUY  (1.0)            110/100 - 1 = +0.1            110/100 - 1 = +0.1
#   1   110
#   2   121   BUY  (0.5)            110/121 - 1 = -1/11           110/121 - 1 = -1/11
#   3   110
#   4    99   BUY  (0.5)            110/99  - 1 = +1/9            100/99  - 1 = +1/99
#   5   110
#   6   121   SELL (1.0)          -(100/121 - 1) = +21/121        past the end: NaN
#   7   100
CLOSE = [100.0, 110, 121, 110, 99, 110, 121, 100]


def hand_frame(
    buys: dict[int, float], sells: dict[int, float], n: int = 8
) -> tuple[pd.DataFrame, SignalFrame]:
    """Candles with CLOSE (or a ramp) and a SignalFrame with the given {row: confidence}."""
    index = pd.date_range("2024-01-01", periods=n, freq="1min", tz="UTC", name="time")
    close = CLOSE if n == 8 else list(np.linspace(100, 120, n))
    candles = pd.DataFrame({"open": close, "high": close, "low": close, "close": close}, index)

    def side(signals: dict[int, float]) -> tuple[pd.Series, pd.Series, pd.DataFrame]:
        mask = pd.Series(False, index=index)
        score = pd.Series(0.0, index=index)
        for row, confidence in signals.items():
            mask.iloc[row], score.iloc[row] = True, confidence
        return mask, score, pd.DataFrame({"rule": mask}, index=index)

    buy, buy_score, buy_rules = side(buys)
    sell, sell_score, sell_rules = side(sells)
    return candles, SignalFrame.from_series(buy_score, sell_score, buy_rules, sell_rules, buy, sell)


def test_forward_returns_and_nan_past_the_end() -> None:
    close = pd.Series([100.0, 110, 121, 110])
    got = forward_returns(close, (1, 2))
    np.testing.assert_allclose(got["fwd_1"], [0.1, 0.1, 110 / 121 - 1, np.nan])
    np.testing.assert_allclose(got["fwd_2"], [0.21, 0.0, np.nan, np.nan])
    with pytest.raises(ValueError, match="positive"):
        forward_returns(close, (0,))


def test_per_signal_signed_forward_returns() -> None:
    candles, frame = hand_frame({0: 1.0, 2: 0.5, 4: 0.5}, {6: 1.0})
    report = signal_quality(candles, frame, horizons=(1, 3))
    table = report.per_signal
    assert list(table.index) == list(candles.index[[0, 2, 4, 6]])
    assert list(table["signal"]) == ["BUY", "BUY", "BUY", "SELL"]
    np.testing.assert_allclose(table["fwd_1"], [0.1, -1 / 11, 1 / 9, 21 / 121])
    np.testing.assert_allclose(table["fwd_3"], [0.1, -1 / 11, 1 / 99, np.nan])


def test_hit_rate_and_mean_per_confidence_bucket() -> None:
    # 0.5: two BUYs, one right and one wrong at both horizons.
    #      mean_1 = (-1/11 + 1/9) / 2 = 1/99; mean_3 = (-1/11 + 1/99) / 2 = -4/99
    # 1.0: both right at 1 candle; at 3 candles only the BUY is inside the data (hit 1/1).
    # all: hit_1 = 3/4, hit_3 = 2/3 (the NaN is left out, not counted as a miss).
    candles, frame = hand_frame({0: 1.0, 2: 0.5, 4: 0.5}, {6: 1.0})
    table = signal_quality(candles, frame, horizons=(1, 3)).by_confidence
    assert list(table.index) == ["0.5", "1", ALL]
    assert list(table["signals"]) == [2, 2, 4]
    np.testing.assert_allclose(table["hit_rate_1"], [0.5, 1.0, 0.75])
    np.testing.assert_allclose(table["hit_rate_3"], [0.5, 1.0, 2 / 3])
    np.testing.assert_allclose(table["mean_return_1"].iloc[:2], [1 / 99, (0.1 + 21 / 121) / 2])
    np.testing.assert_allclose(table["mean_return_3"].iloc[:2], [-4 / 99, 0.1])
    expected_all_1 = (0.1 - 1 / 11 + 1 / 9 + 21 / 121) / 4
    assert table.loc[ALL, "mean_return_1"] == pytest.approx(expected_all_1)


def test_default_horizons_nan_when_the_data_ends() -> None:
    candles, frame = hand_frame({0: 1.0, 2: 0.5, 4: 0.5}, {6: 1.0})
    report = signal_quality(candles, frame)
    assert report.horizons == (1, 5, 15)
    # 5 candles ahead: only rows 0 and 2 fit (close 110 and 100).
    np.testing.assert_allclose(report.per_signal["fwd_5"], [0.1, 100 / 121 - 1, np.nan, np.nan])
    assert report.per_signal["fwd_15"].isna().all()
    row = report.by_confidence.loc[ALL]
    assert np.isnan(row["hit_rate_15"]) and np.isnan(row["mean_return_15"])
    assert row["hit_rate_5"] == 0.5
    records = report.to_records()
    assert records[-1]["confidence"] == ALL and records[-1]["hit_rate_15"] is None


def test_bins_when_confidences_are_many() -> None:
    confidences = pd.Series(np.linspace(0.05, 0.95, 12))
    labels = confidence_buckets(confidences)
    assert labels.nunique() == 5 and labels.iloc[0] == "[0.00, 0.20]"
    assert labels.iloc[-1] == "(0.80, 1.00]"
    two = confidence_buckets(pd.Series([0.0, 0.5, 0.51, 1.0]), bins=2)
    assert list(two) == ["[0.00, 0.50]", "[0.00, 0.50]", "(0.50, 1.00]", "(0.50, 1.00]"]


def test_binned_report_orders_buckets_by_confidence() -> None:
    buys = {i: 0.9 - 0.07 * i for i in range(12)}
    candles, frame = hand_frame(buys, {}, n=30)
    table = signal_quality(candles, frame, horizons=(1,), bins=3).by_confidence
    assert list(table.index) == ["[0.00, 0.33]", "(0.33, 0.67]", "(0.67, 1.00]", ALL]
    assert table["signals"].sum() == 24 and table.loc[ALL, "signals"] == 12
    # A rising ramp: every BUY is right.
    assert (table["hit_rate_1"] == 1.0).all()


def test_no_signals() -> None:
    candles, frame = hand_frame({}, {})
    report = signal_quality(candles, frame)
    assert report.per_signal.empty
    assert list(report.by_confidence.index) == [ALL]
    assert report.by_confidence.loc[ALL, "signals"] == 0


def test_quality_figure_has_both_panels() -> None:
    candles, frame = hand_frame({0: 1.0, 2: 0.5, 4: 0.5}, {6: 1.0})
    fig = quality_figure(signal_quality(candles, frame, horizons=(1, 3)))
    assert len(fig.data) == 4
    assert list(fig.data[0].x) == ["0.5", "1"]
    np.testing.assert_allclose(fig.data[0].y, [0.5, 1.0])
