"""Cost models: hand-computed slippage per fill, no lookahead, presets, files, funding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from research.backtest.execution import ExecutionModel, simulate
from research.backtest.run import funded_equity, funding_schedule, run_backtest
from signals.config import CostSettings, load_settings
from signals.costs import (
    MAX_SLIPPAGE,
    PRESETS,
    CostModel,
    apply_funding,
    average_true_range,
    costs_from_settings,
    load_costs,
)
from signals.errors import ConfigError
from strategies import get_strategy
from tests.candles import random_walk

# Eight 1m candles, open = close = 100, so range = true range = high - low.
#   row   high  low  range  volume   quote volume (x100)
#    0    101   99     2      100     10,000
#    1    102   98     4      400     40,000
#    2    101   99     2       25      2,500
#    3    103   97     6        0          0
#    4    102   98     4   10,000  1,000,000
#    5    101   99     2      100     10,000
#    6    104   96     8    1,600    160,000
#    7    102   98     4      100     10,000
HIGH = [101.0, 102, 101, 103, 102, 101, 104, 102]
LOW = [99.0, 98, 99, 97, 98, 99, 96, 98]
VOLUME = [100.0, 400, 25, 0, 10_000, 100, 1_600, 100]


def table() -> pd.DataFrame:
    """The eight candles above."""
    index = pd.date_range("2024-01-01", periods=8, freq="1min", tz="UTC", name="time")
    return pd.DataFrame(
        {"open": 100.0, "high": HIGH, "low": LOW, "close": 100.0, "volume": VOLUME}, index=index
    )


def next_open(per_candle: list[float]) -> list[float]:
    """Row t+1 carries the value of decision row t; row 0 keeps its own."""
    return [per_candle[0], *per_candle[:-1]]


# --- slippage models ---------------------------------------------------------------------------


def test_fixed_slippage_is_flat_and_the_old_interface_still_works() -> None:
    costs = CostModel(fee_bps=4.0, slippage_bps=2.0)
    assert costs.fee_fraction() == pytest.approx(0.0004)
    np.testing.assert_allclose(costs.slippage_fraction(table()), [0.0002] * 8)
    same = costs.slippage_fraction(table(), fill="close")
    np.testing.assert_allclose(same, [0.0002] * 8)


def test_range_slippage_uses_the_decision_candle() -> None:
    # s = 0 bps + 0.5 x (high - low) / close = 0.5 x range / 100
    per_candle = [0.01, 0.02, 0.01, 0.03, 0.02, 0.01, 0.04, 0.02]
    costs = CostModel(slippage_model="range", slippage_multiple=0.5, slippage_bps=0.0)
    np.testing.assert_allclose(costs.slippage_fraction(table(), fill="close"), per_candle)
    # next open: the fill on row t+1 uses row t's range (row 6's wide candle costs on row 7).
    expected = [0.01, 0.01, 0.02, 0.01, 0.03, 0.02, 0.01, 0.04]
    assert next_open(per_candle) == expected
    np.testing.assert_allclose(costs.slippage_fraction(table(), fill="next_open"), expected)


def test_atr_slippage_hand_computed() -> None:
    # ATR(3), true ranges 2 4 2 6 4 2 8 4: the running mean while warming up (2, 3, 8/3), then
    # Wilder: ATR_t = (2 x ATR_{t-1} + TR_t) / 3.
    atr = [2, 3, 8 / 3, 34 / 9, 104 / 27, 262 / 81, 1172 / 243, 3316 / 729]
    assert pytest.approx(34 / 9) == (2 * 8 / 3 + 6) / 3
    assert pytest.approx(3316 / 729) == (2 * 1172 / 243 + 4) / 3
    candles = table()
    got = average_true_range(
        candles["high"].to_numpy(), candles["low"].to_numpy(), candles["close"].to_numpy(), 3
    )
    np.testing.assert_allclose(got, atr)
    # s = 1 bp + 1.0 x ATR / 100
    per_candle = [1e-4 + a / 100 for a in atr]
    costs = CostModel(slippage_model="atr", atr_period=3, slippage_multiple=1.0, slippage_bps=1)
    np.testing.assert_allclose(costs.slippage_fraction(candles, fill="close"), per_candle)
    np.testing.assert_allclose(costs.slippage_fraction(candles), next_open(per_candle))


def test_true_range_reaches_back_to_the_previous_close() -> None:
    # A gap up from 100 to a 109..111 candle: TR = 111 - 100 = 11, not 2. ATR(2) = [2, 6.5].
    got = average_true_range(
        np.array([101.0, 111]), np.array([99.0, 109]), np.array([100.0, 110]), 2
    )
    np.testing.assert_allclose(got, [2.0, 6.5])


def test_volume_slippage_hand_computed() -> None:
    # N = 10,000; participation = N / (volume x 100) = 1, .25, 4, inf, .01, 1, .0625, 1
    # s = 1 bp + 10 bps x sqrt(participation) = 11, 6, 21, inf -> cap, 2, 11, 3.5, 11 bps
    per_candle = [0.0011, 0.0006, 0.0021, MAX_SLIPPAGE, 0.0002, 0.0011, 0.00035, 0.0011]
    costs = CostModel(slippage_model="volume", slippage_bps=1.0, impact_bps=10.0)
    got = costs.slippage_fraction(table(), fill="close", notional=10_000.0)
    np.testing.assert_allclose(got, per_candle)
    # A 4x larger order doubles the impact term (square root): row 0 = 1 + 10 x 2 = 21 bps.
    assert costs.slippage_fraction(table(), fill="close", notional=40_000.0)[0] == pytest.approx(
        0.0021
    )
    shifted = costs.slippage_fraction(table(), notional=10_000.0)
    np.testing.assert_allclose(shifted, next_open(per_candle))


@pytest.mark.parametrize("model", ["atr", "range", "volume"])
def test_next_open_slippage_never_reads_the_fill_candle(model: str) -> None:
    # Changing the fill candle (and everything after it) must not change its slippage.
    candles = random_walk(60, seed=3)
    costs = CostModel(slippage_model=model, slippage_multiple=0.3)
    before = costs.slippage_fraction(candles)
    altered = candles.copy()
    altered.iloc[40:, altered.columns.get_indexer(["high", "volume"])] *= [3.0, 0.01]
    after = costs.slippage_fraction(altered)
    np.testing.assert_array_equal(before[:41], after[:41])
    assert not np.array_equal(before[41:], after[41:])


def test_simulate_fills_at_next_open_with_the_decision_candles_slippage() -> None:
    # BUY decided on row 1 (range 4) fills at row 2's open: 100 x (1 + 0.5 x 4 / 100) = 102.
    # SELL decided on row 5 (range 2) fills at row 6's open: 100 x (1 - 0.01) = 99.
    candles = table()
    buy = pd.Series(False, index=candles.index)
    sell = buy.copy()
    buy.iloc[1], sell.iloc[5] = True, True
    costs = CostModel(fee_bps=0, slippage_model="range", slippage_multiple=0.5, slippage_bps=0)
    pf = simulate(candles, buy, sell, execution=ExecutionModel(), costs=costs, timeframe="1m")
    orders = pf.orders.values
    assert list(orders["idx"]) == [2, 6]
    np.testing.assert_allclose(orders["price"], [102.0, 99.0])


def test_slippage_is_finite_and_capped_on_odd_candles() -> None:
    candles = table()
    candles.loc[candles.index[2], "volume"] = np.nan
    costs = CostModel(slippage_model="volume", slippage_bps=1.0)
    got = costs.slippage_fraction(candles, fill="close")
    assert np.isfinite(got).all() and got.max() <= MAX_SLIPPAGE
    assert got[2] == pytest.approx(1e-4)  # unknown volume: the floor only


# --- presets, overrides, files ----------------------------------------------------------------


def test_presets() -> None:
    spot, perp = load_costs("bybit-spot"), load_costs("bybit-perp")
    assert (spot.fee_bps, spot.maker_fee_bps, spot.has_funding) == (10.0, 10.0, False)
    assert (perp.fee_bps, perp.maker_fee_bps, perp.funding_rate) == (5.5, 2.0, 0.0001)
    # Market orders pay taker.
    assert perp.fee_fraction() == pytest.approx(0.00055)
    assert set(PRESETS) == {"bybit-spot", "bybit-perp"}


def test_misspelt_preset_suggests_the_closest() -> None:
    with pytest.raises(ConfigError, match="did you mean 'bybit-perp'"):
        load_costs("bybit-prep")


def test_with_total_bps_keeps_the_split_and_flattens_slippage() -> None:
    atr = CostModel(fee_bps=6.0, slippage_bps=2.0, slippage_model="atr", funding_rate=0.0001)
    flat = atr.with_total_bps(20.0)
    assert (flat.fee_bps, flat.slippage_bps, flat.slippage_model) == (15.0, 5.0, "fixed")
    assert flat.funding_rate == 0.0001
    assert CostModel(fee_bps=0, slippage_bps=0).with_total_bps(3).fee_bps == 3


def test_with_overrides() -> None:
    atr = load_costs("bybit-perp").model_copy(update={"slippage_model": "atr"})
    assert atr.with_overrides() is atr
    fee = atr.with_overrides(fee_bps=2.0)
    assert (fee.fee_bps, fee.slippage_model, fee.funding_rate) == (2.0, "atr", 0.0001)
    slip = atr.with_overrides(slippage_bps=3.0)
    assert (slip.fee_bps, slip.slippage_bps, slip.slippage_model) == (5.5, 3.0, "fixed")
    with pytest.raises(ValueError, match="fee_bps"):
        atr.with_overrides(fee_bps=-1)


def test_load_costs_from_yaml_with_a_preset_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "costs.yaml"
    path.write_text(
        "preset: bybit-perp\nslippage_model: atr\nslippage_multiple: 0.2\natr_period: 20\n"
        "funding_file: rates.csv\n"
    )
    costs = load_costs(path)
    assert (costs.fee_bps, costs.maker_fee_bps) == (5.5, 2.0)
    assert (costs.slippage_model, costs.slippage_multiple, costs.atr_period) == ("atr", 0.2, 20)
    # The file's funding source replaces the preset's rate; relative to the costs file.
    assert costs.funding_rate is None and costs.funding_file == tmp_path / "rates.csv"


def test_load_costs_from_json_and_taker_alias(tmp_path: Path) -> None:
    path = tmp_path / "costs.json"
    path.write_text(json.dumps({"taker_fee_bps": 7, "maker_fee_bps": 1, "slippage_bps": 0}))
    assert load_costs(str(path)) == CostModel(fee_bps=7, maker_fee_bps=1, slippage_bps=0)


def test_misspelt_key_is_named_with_a_suggestion(tmp_path: Path) -> None:
    path = tmp_path / "costs.yaml"
    path.write_text("slipage_model: atr\n")
    with pytest.raises(ConfigError) as err:
        load_costs(path)
    message = str(err.value)
    assert str(path) in message
    assert "slipage_model: unknown key; did you mean 'slippage_model'?" in message


def test_bad_values_name_the_key(tmp_path: Path) -> None:
    path = tmp_path / "costs.yaml"
    path.write_text("slippage_model: sqrt\natr_period: 0\n")
    with pytest.raises(ConfigError) as err:
        load_costs(path)
    assert "slippage_model:" in str(err.value) and "atr_period:" in str(err.value)
    path.write_text("funding_rate: 0.0001\nfunding_file: x.csv\n")
    with pytest.raises(ConfigError, match="funding_rate or funding_file"):
        load_costs(path)


def test_missing_costs_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="neither a cost preset"):
        load_costs(tmp_path / "nope.yaml")


def test_config_costs_section_names_a_preset_or_gives_fields(tmp_path: Path) -> None:
    cfg = tmp_path / "signals.yaml"
    cfg.write_text("costs:\n  preset: bybit-spot\n  slippage_model: range\n")
    costs = costs_from_settings(load_settings(cfg).costs)
    # The config's default fee (5.5, not written) does not override the preset's 10.
    assert (costs.fee_bps, costs.slippage_model) == (10.0, "range")
    cfg.write_text("costs:\n  fee_bps: 2.0\n  slippage_bps: 0.5\n")
    assert costs_from_settings(load_settings(cfg).costs) == CostModel(fee_bps=2, slippage_bps=0.5)
    assert costs_from_settings(CostSettings()) == CostModel()
    cfg.write_text("costs:\n  fundng_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"did you mean 'costs\.funding_rate'"):
        load_settings(cfg)


def test_cost_settings_mirror_the_cost_model() -> None:
    assert set(CostSettings.model_fields) == {"preset", *CostModel.model_fields}


# --- funding -----------------------------------------------------------------------------------


def flat_hours(n: int = 12) -> pd.DataFrame:
    """`n` flat 1h candles at 100 opening at 05:00 UTC (closes 06:00 .. 05:00 + n h)."""
    index = pd.date_range("2024-01-01 05:00", periods=n, freq="1h", tz="UTC", name="time")
    return pd.DataFrame(
        {"open": 100.0, "high": 100.0, "low": 100.0, "close": 100.0, "volume": 1.0}, index=index
    )


def held(direction: str, costs: CostModel) -> tuple[np.ndarray, np.ndarray | None]:
    """Enter on the 05:00 candle's decision, exit on the 15:00 candle's (next-open fills)."""
    candles = flat_hours()
    first = pd.Series(False, index=candles.index)
    last = first.copy()
    first.iloc[0], last.iloc[10] = True, True
    buy, sell = (first, last) if direction == "long" else (last, first)
    execution = ExecutionModel(direction=direction)  # type: ignore[arg-type]  # a parametrized str
    pf = simulate(candles, buy, sell, execution=execution, costs=costs, timeframe="1h")
    return funded_equity(pf, candles, "1h", funding_schedule(candles, "1h", costs))


FREE = {"fee_bps": 0.0, "slippage_bps": 0.0}


def test_long_pays_fixed_funding_at_08_and_16_utc() -> None:
    # All-in long of 100 units at 100 (value 10,000), filled at 06:00, sold at the 16:00 open.
    # 08:00: position at the close of the 07:00 candle (row 2): 10,000 x 0.0001 = 1.00 paid.
    # 16:00: position at the close of the 15:00 candle (row 10), still held: 1.00 paid.
    equity, paid = held("long", CostModel(funding_rate=0.0001, **FREE))
    assert paid is not None
    expected_paid = np.zeros(12)
    expected_paid[[2, 10]] = 1.0
    np.testing.assert_allclose(paid.ravel(), expected_paid)
    np.testing.assert_allclose(
        equity.ravel()[[0, 1, 2, 9, 10, 11]], [1e4, 1e4, 9999, 9999, 9998, 9998]
    )


def test_short_receives_positive_funding() -> None:
    equity, paid = held("short", CostModel(funding_rate=0.0001, **FREE))
    assert paid is not None and paid.sum() == pytest.approx(-2.0)
    assert equity.ravel()[-1] == pytest.approx(10_002.0)


def test_no_funding_without_a_rate() -> None:
    equity, paid = held("long", CostModel(**FREE))
    assert paid is None and equity.ravel()[-1] == pytest.approx(10_000.0)


@pytest.mark.parametrize(
    "stamps",
    [
        ["2024-01-01T08:00:00Z", "2024-01-01T12:00:00Z", "2024-01-01T16:00:00Z"],
        [1704096000, 1704110400, 1704124800],  # epoch seconds
        [1704096000000, 1704110400000, 1704124800000],  # epoch milliseconds
    ],
)
def test_funding_rate_file(tmp_path: Path, stamps: list) -> None:
    # 08:00 +0.0003 -> 3.00 paid; 12:00 +0.0002 -> 2.00 paid; 16:00 -0.0001 -> 1.00 received;
    # a row before the data (04:00) and one after it are not charged. Net 4.00 paid.
    rows = [("2024-01-01T04:00:00Z", 0.01), *zip(stamps, [0.0003, 0.0002, -0.0001], strict=True)]
    rows.append(("2024-01-02T08:00:00Z", 0.01))
    if not isinstance(stamps[0], str):
        scale = stamps[0] // 1704096000  # 1 for seconds, 1000 for milliseconds
        rows[0], rows[-1] = (1704081600 * scale, 0.01), (1704182400 * scale, 0.01)
    pd.DataFrame(rows, columns=["timestamp", "rate"]).to_csv(tmp_path / "f.csv", index=False)
    equity, paid = held("long", CostModel(funding_file=tmp_path / "f.csv", **FREE))
    assert paid is not None
    np.testing.assert_allclose(paid.ravel()[[2, 6, 10]], [3.0, 2.0, -1.0])
    assert paid.sum() == pytest.approx(4.0)
    assert equity.ravel()[-1] == pytest.approx(9_996.0)


def test_funding_file_needs_its_columns(tmp_path: Path) -> None:
    (tmp_path / "f.csv").write_text("time,funding\n1,0.1\n")
    with pytest.raises(ConfigError, match="timestamp,rate"):
        CostModel(funding_file=tmp_path / "f.csv").funding_rates(
            pd.Timestamp(0, tz="UTC"), pd.Timestamp(10, tz="UTC")
        )


def test_apply_funding_on_series_and_columns() -> None:
    # Closes at 08:00 .. 20:00 every 2 h; funding 0.0001 at 08:00 (row 0) and 16:00 (row 4).
    index = pd.date_range("2024-01-01 08:00", periods=7, freq="2h", tz="UTC")
    funding = pd.Series(
        0.0001, index=pd.DatetimeIndex(["2024-01-01 08:00", "2024-01-01 16:00"], tz="UTC")
    )
    equity = pd.Series(10_000.0, index=index)
    value = pd.Series([10_000.0, 0, 0, 0, 12_000.0, 0, 0], index=index)
    adjusted, paid = apply_funding(equity, value, index, funding)
    assert isinstance(adjusted, pd.Series) and isinstance(paid, pd.Series)
    np.testing.assert_allclose(paid.to_numpy(), [1.0, 0, 0, 0, 1.2, 0, 0])
    np.testing.assert_allclose(adjusted.to_numpy(), 10_000 - np.array([1, 1, 1, 1, 2.2, 2.2, 2.2]))
    # Two columns: a long and a short of the same size.
    both = np.column_stack([value.to_numpy(), -value.to_numpy()])
    adjusted2, paid2 = apply_funding(np.full((7, 2), 1e4), both, index, funding)
    np.testing.assert_allclose(paid2.sum(axis=0), [2.2, -2.2])
    np.testing.assert_allclose(adjusted2[-1], [1e4 - 2.2, 1e4 + 2.2])


def test_run_backtest_reports_funding_paid() -> None:
    candles = random_walk(1500, seed=5)
    strategy = get_strategy("scalping")
    spot = run_backtest(candles, strategy, timeframe="1m", costs=load_costs("bybit-spot"))
    perp = run_backtest(candles, strategy, timeframe="1m", costs=load_costs("bybit-perp"))
    assert "funding_paid" not in spot.metrics
    assert np.isfinite(perp.metrics["funding_paid"])
    assert perp.metrics["total_return"] == pytest.approx(perp.equity.iloc[-1] / 10_000 - 1)


# --- property: more costs never help -----------------------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    model=st.sampled_from(["fixed", "atr", "range", "volume"]),
    fee=st.floats(0, 30),
    slip=st.floats(0, 30),
    more_fee=st.floats(0, 30),
    more_slip=st.floats(0, 30),
    more_multiple=st.floats(0, 1),
)
def test_higher_costs_never_give_a_higher_total_return(
    seed: int,
    model: str,
    fee: float,
    slip: float,
    more_fee: float,
    more_slip: float,
    more_multiple: float,
) -> None:
    # Long only, all-in: each trade multiplies equity by exit(1-s)(1-f) / entry(1+s)(1+f),
    # which falls as any cost rises, so the compounded total return cannot rise.
    candles = random_walk(300, seed=seed)
    rng = np.random.default_rng(seed)
    buy = pd.Series(rng.random(300) < 0.05, index=candles.index)
    sell = pd.Series(rng.random(300) < 0.05, index=candles.index)
    low = CostModel(fee_bps=fee, slippage_bps=slip, slippage_model=model, slippage_multiple=0.1)
    high = low.model_copy(
        update={
            "fee_bps": fee + more_fee,
            "slippage_bps": slip + more_slip,
            "slippage_multiple": 0.1 + more_multiple,
            "impact_bps": 10.0 + 10 * more_multiple,
        }
    )

    def final(costs: CostModel) -> float:
        pf = simulate(candles, buy, sell, execution=ExecutionModel(), costs=costs, timeframe="1m")
        return float(pf.value().to_numpy().ravel()[-1])

    assert final(high) <= final(low) * (1 + 1e-12)


@pytest.mark.parametrize("direction", ["long", "both"])
@pytest.mark.parametrize("funding", [None, 0.0001])
def test_cost_break_even_is_where_the_net_return_crosses_zero(
    direction: str, funding: float | None
) -> None:
    from research.backtest.run import cost_break_even_bps

    candles = random_walk(3000, seed=8)
    # Signals that peek ahead (fine here: only the cost arithmetic is under test) so that the
    # strategy is profitable before costs and a break-even level exists.
    ahead = candles["close"].shift(-6) / candles["open"].shift(-1) - 1.0
    buy = (ahead > 0.004) & (np.arange(len(candles)) % 7 == 0)
    sell = (ahead < -0.004) & (np.arange(len(candles)) % 7 == 0)
    execution = ExecutionModel(direction=direction)  # type: ignore[arg-type]  # a parametrized str
    costs = CostModel(fee_bps=5.5, slippage_bps=1.0, funding_rate=funding)
    level = cost_break_even_bps(
        candles, buy, sell, timeframe="1m", execution=execution, costs=costs
    )
    assert 1.0 < level < 1000.0

    def net(total_bps: float) -> float:  # through the Portfolio, independently of the search
        at = costs.with_total_bps(total_bps)
        pf = simulate(candles, buy, sell, execution=execution, costs=at, timeframe="1m")
        values, _ = funded_equity(pf, candles, "1m", funding_schedule(candles, "1m", at))
        return float(values[-1].ravel()[0] / execution.init_cash - 1.0)

    assert net(level - 0.05) > 0 > net(level + 0.05)
