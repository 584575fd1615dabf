"""Candle validation: each violation class, gaps, higher-timeframe consistency, load_candles."""

from __future__ import annotations

import itertools
import logging
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signals.config import parse_settings
from signals.data import validate
from signals.data.aggregate import aggregate
from signals.data.load import load_candles
from signals.data.store import connect_writable, write_candles
from signals.data.timeparse import parse_when
from signals.data.validate import (
    Gap,
    GapReport,
    Violation,
    check_consistency,
    check_frame,
    find_gaps,
    list_gaps,
    validate_or_raise,
)
from signals.errors import DataError, SignalsError

T0 = 1680307200  # 2023-04-01T00:00:00Z


def candles(n: int = 10, *, start: int = T0, step: int = 60, seed: int = 1) -> pd.DataFrame:
    """A valid random-walk candle frame as CandleStore returns it."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.003, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.003, n))
    volume = rng.uniform(1, 10, n)
    index = pd.DatetimeIndex(
        pd.to_datetime(start + step * np.arange(n), unit="s", utc=True), name="time"
    )
    return pd.DataFrame(
        {
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
            "buy_volume": volume * rng.uniform(0, 1, n),
            "trades": rng.integers(1, 100, n).astype("float64"),
        },
        index=index,
    )


def check(frame: pd.DataFrame) -> list[Violation]:
    return check_frame(frame, timeframe="1m", symbol="BTCUSDT", origin="candles.db")


def with_index(frame: pd.DataFrame, seconds: list[int]) -> pd.DataFrame:
    out = frame.copy()
    out.index = pd.DatetimeIndex(pd.to_datetime(seconds, unit="s", utc=True), name="time")
    return out


def test_clean_frame_has_no_violations() -> None:
    assert check(candles(500)) == []


def test_violation_str_names_origin_timeframe_symbol_timestamp_and_field() -> None:
    v = Violation("candles.db", "BTCUSDT", "1m", T0 + 300, "high", "high 10.0 below x 11.0")
    assert str(v) == "candles.db 1m BTCUSDT 2023-04-01T00:05:00Z high: high 10.0 below x 11.0"


def _set(col: str, value: float):
    def tamper(frame: pd.DataFrame) -> pd.DataFrame:
        frame.iloc[5, frame.columns.get_loc(col)] = value
        return frame

    return tamper


def _high_below(frame: pd.DataFrame) -> pd.DataFrame:
    frame.iloc[5, frame.columns.get_loc("high")] = (
        max(frame["open"].iloc[5], frame["close"].iloc[5]) - 1
    )
    return frame


def _low_above(frame: pd.DataFrame) -> pd.DataFrame:
    frame.iloc[5, frame.columns.get_loc("low")] = (
        min(frame["open"].iloc[5], frame["close"].iloc[5]) + 1
    )
    return frame


def _buy_above(frame: pd.DataFrame) -> pd.DataFrame:
    frame.iloc[5, frame.columns.get_loc("buy_volume")] = frame["volume"].iloc[5] * 1.01
    return frame


def _duplicate(frame: pd.DataFrame) -> pd.DataFrame:
    seconds = [T0 + 60 * i for i in range(len(frame))]
    seconds[5] = seconds[4]
    return with_index(frame, seconds)


def _out_of_order(frame: pd.DataFrame) -> pd.DataFrame:
    seconds = [T0 + 60 * i for i in range(len(frame))]
    seconds[4], seconds[5] = seconds[5], seconds[4]
    return with_index(frame, seconds)


def _misaligned(frame: pd.DataFrame) -> pd.DataFrame:
    seconds = [T0 + 60 * i for i in range(len(frame))]
    seconds[5] += 7
    return with_index(frame, seconds)


CASES = {
    "duplicate": (_duplicate, "timestamp", "duplicate"),
    "out_of_order": (_out_of_order, "timestamp", "out of order"),
    "misaligned": (_misaligned, "timestamp", "not aligned"),
    "high_below": (_high_below, "high", "below max(open, close)"),
    "low_above": (_low_above, "low", "above min(open, close)"),
    "negative_close": (_set("close", -1.0), "close", "negative"),
    "negative_volume": (_set("volume", -3.0), "volume", "negative"),
    "nan_open": (_set("open", np.nan), "open", "NaN"),
    "nan_volume": (_set("volume", np.nan), "volume", "NaN"),
    "negative_buy_volume": (_set("buy_volume", -0.5), "buy_volume", "negative"),
    "negative_trades": (_set("trades", -2.0), "trades", "negative"),
    "buy_above_volume": (_buy_above, "buy_volume", "above volume"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_violation_class_gives_a_clear_error(case: str) -> None:
    tamper, field, phrase = CASES[case]
    frame = tamper(candles(10))
    violations = check(frame)
    assert violations, f"{case} not detected"
    first = violations[0]
    assert first.field == field
    assert phrase in first.message
    # the timestamp is the one of the tampered row (row 5, or row 4 for the swap)
    assert first.timestamp == int(frame.index[5].timestamp())
    with pytest.raises(DataError) as err:
        validate_or_raise(frame, timeframe="1m", symbol="BTCUSDT", origin="/data/candles.db")
    message = str(err.value)
    expected_time = pd.Timestamp(first.timestamp, unit="s", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
    for part in ("/data/candles.db", " 1m ", "BTCUSDT", expected_time, f" {field}: ", phrase):
        assert part in message, (part, message)


def test_nan_buy_volume_and_trades_mean_unknown_and_are_allowed() -> None:
    frame = candles(10)
    frame["buy_volume"] = np.nan
    frame["trades"] = np.nan
    assert check(frame) == []


def test_buy_volume_equal_to_volume_within_float_noise_is_allowed() -> None:
    frame = candles(10)
    frame["buy_volume"] = frame["volume"] * (1 + 1e-12)
    assert check(frame) == []


def test_error_counts_further_violations_and_orders_by_row() -> None:
    frame = candles(20)
    frame.iloc[3, frame.columns.get_loc("volume")] = -1.0
    frame.iloc[3, frame.columns.get_loc("buy_volume")] = np.nan
    frame.iloc[12, frame.columns.get_loc("close")] = np.nan
    frame.iloc[15, frame.columns.get_loc("open")] = np.nan
    violations = check(frame)
    assert [v.timestamp for v in violations] == [
        int(frame.index[i].timestamp()) for i in (3, 12, 15)
    ]
    with pytest.raises(DataError, match=r"and 2 more violations"):
        validate_or_raise(frame, timeframe="1m", symbol="BTCUSDT", origin="x.db")


def test_missing_column_is_a_violation() -> None:
    frame = candles(5).drop(columns=["low"])
    (violation,) = check(frame)
    assert violation.field == "low" and "missing columns" in violation.message


def test_a_million_clean_rows_have_no_violation_and_no_gap() -> None:
    # how long this takes is measured in benchmarks/checks_bench.py, not here
    frame = candles(1_000_000)
    assert check(frame) == []
    assert find_gaps(frame, "1m").count == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 40), max_size=30), st.booleans())
def test_gaps_are_the_same_for_sorted_and_shuffled_stamps(
    minutes: list[int], shuffle: bool
) -> None:
    stamps = sorted(minutes) if not shuffle else minutes
    frame = with_index(candles(len(stamps)), [T0 + 60 * m for m in stamps])
    unique = sorted(set(minutes))
    expected = [
        Gap(T0 + 60 * (a + 1), b - a - 1) for a, b in itertools.pairwise(unique) if b > a + 1
    ]
    assert list_gaps(frame, "1m") == expected


# -- gaps ------------------------------------------------------------------------------------


def test_gaps_are_counted_with_the_largest_one() -> None:
    seconds = [T0 + 60 * i for i in range(30)]
    del seconds[20:25]  # 5 missing from minute 20
    del seconds[5:7]  # 2 missing from minute 5
    frame = with_index(candles(len(seconds)), seconds)
    assert list_gaps(frame, "1m") == [
        type(list_gaps(frame, "1m")[0])(T0 + 300, 2),
        type(list_gaps(frame, "1m")[0])(T0 + 1200, 5),
    ]
    report = find_gaps(frame, "1m")
    assert report == GapReport(count=2, missing_candles=7, largest=5, largest_at=T0 + 1200)
    assert "largest 5 candles at 2023-04-01T00:20:00Z" in str(report)
    assert check(frame) == []  # a gap is not a violation


def test_no_gaps_in_a_contiguous_or_tiny_series() -> None:
    assert find_gaps(candles(50), "1m") == GapReport(0, 0, 0, None)
    assert find_gaps(candles(1), "1m").count == 0
    assert find_gaps(candles(0), "1m").count == 0


def test_gaps_on_a_higher_timeframe_use_its_step() -> None:
    frame = with_index(candles(3, step=3600), [T0, T0 + 3600, T0 + 4 * 3600])
    assert find_gaps(frame, "1h") == GapReport(1, 2, 2, T0 + 7200)


# -- consistency -------------------------------------------------------------------------------


def hourly_and_minutes(hours: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    base = candles(60 * hours)
    higher = aggregate(base, base="1m", target="1h").drop(columns=["complete"])
    return higher, base


def consistency(higher: pd.DataFrame, base: pd.DataFrame) -> list[Violation]:
    return check_consistency(
        higher, base, base_tf="1m", higher_tf="1h", symbol="BTCUSDT", origin="candles.db"
    )


def test_consistent_higher_timeframe_passes() -> None:
    higher, base = hourly_and_minutes()
    assert consistency(higher, base) == []


@pytest.mark.parametrize("field", ["open", "high", "low", "close", "volume", "trades"])
def test_tampered_hourly_candle_is_caught(field: str) -> None:
    higher, base = hourly_and_minutes()
    higher.iloc[1, higher.columns.get_loc(field)] += 1.0
    (violation,) = consistency(higher, base)
    assert violation.field == field
    assert violation.timeframe == "1h"
    assert violation.timestamp == T0 + 3600
    assert "aggregated from 1m" in violation.message
    assert str(violation).startswith("candles.db 1h BTCUSDT 2023-04-01T01:00:00Z " + field)


def test_volume_float_noise_is_tolerated() -> None:
    higher, base = hourly_and_minutes()
    higher["volume"] *= 1 + 1e-8
    assert consistency(higher, base) == []


def test_incomplete_hours_are_not_compared() -> None:
    higher, base = hourly_and_minutes()
    higher.iloc[2, higher.columns.get_loc("close")] += 5.0
    base = base.drop(base.index[150])  # hour 2 loses a minute: it cannot be checked
    assert consistency(higher, base) == []


# -- property ----------------------------------------------------------------------------------


@st.composite
def random_walk(draw: st.DrawFn) -> pd.DataFrame:
    n = draw(st.integers(1, 200))
    seed = draw(st.integers(0, 2**32 - 1))
    start = draw(st.integers(0, 10**6)) * 60
    rng = np.random.default_rng(seed)
    scale = draw(st.sampled_from([1e-6, 1e-2, 1.0, 1e4]))
    steps = np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    close = scale * steps
    open_ = np.concatenate([[scale], close[:-1]])
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, n))
    volume = rng.exponential(5, n) * draw(st.sampled_from([0.0, 1.0]))
    buy = volume * rng.uniform(0, 1, n)
    unknown = rng.uniform(0, 1, n) < 0.2
    frame = candles(n, start=start)
    frame[["open", "high", "low", "close", "volume"]] = np.column_stack(
        [open_, high, low, close, volume]
    )
    frame["buy_volume"] = np.where(unknown, np.nan, buy)
    keep = rng.uniform(0, 1, n) > draw(st.sampled_from([0.0, 0.3]))  # gaps are not violations
    return frame[keep]


@settings(max_examples=100, deadline=None)
@given(random_walk())
def test_any_valid_random_walk_has_no_violations(frame: pd.DataFrame) -> None:
    assert check(frame) == []
    higher = aggregate(frame, base="1m", target="15m").drop(columns=["complete"])
    assert check_consistency(higher, frame, base_tf="1m", higher_tf="15m") == []


TAMPER_VALUES = [np.nan, np.inf, -np.inf, -1.0, 0.0, 1e9]
TAMPER_TIMES = ["duplicate", "misaligned", "backwards"]
VALUE_COLUMNS = ["open", "high", "low", "close", "volume", "buy_volume", "trades"]


@settings(max_examples=300, deadline=None)
@given(
    random_walk(),
    st.lists(
        st.tuples(
            st.integers(0, 10**6),
            st.sampled_from([*VALUE_COLUMNS, "timestamp"]),
            st.integers(0, len(TAMPER_VALUES) - 1),
        ),
        max_size=3,
    ),
)
def test_quick_clean_check_agrees_with_the_detailed_checks(
    frame: pd.DataFrame, tampering: list[tuple[int, str, int]]
) -> None:
    # check_arrays answers "clean" from a few array operations before its detailed checks: it
    # must say so exactly when the detailed checks find nothing.
    ts = validate.epoch_seconds(frame.index).copy()
    columns = {c: frame[c].to_numpy("float64").copy() for c in VALUE_COLUMNS}
    for row, field, pick in tampering:
        if not len(ts):
            break
        i = row % len(ts)
        if field != "timestamp":
            columns[field][i] = TAMPER_VALUES[pick]
        elif i > 0:
            how = TAMPER_TIMES[pick % len(TAMPER_TIMES)]
            ts[i] = {"duplicate": ts[i - 1], "misaligned": ts[i] + 30, "backwards": ts[i - 1] - 60}[
                how
            ]
    detailed = validate._Collector(ts, origin="t", symbol="BTCUSDT", timeframe="1m")
    validate._check_all(detailed, ts, columns, 60)
    assert validate._clean(ts, columns, 60) == (detailed.items == [])
    found = validate.check_arrays(ts, columns, timeframe="1m", symbol="BTCUSDT", origin="t")
    assert found == detailed.sorted()


# -- load_candles ------------------------------------------------------------------------------


def make_db(path: Path, frame: pd.DataFrame, *, symbol: str = "BTCUSDT", tf: str = "1m") -> Path:
    conn = connect_writable(path)
    write_candles(conn, frame, symbol=symbol, timeframe=tf)
    conn.close()
    return path


def test_load_candles_returns_the_validated_frame(tmp_path: Path) -> None:
    frame = candles(100)
    db = make_db(tmp_path / "candles.db", frame)
    loaded = load_candles(db, symbol="BTCUSDT", timeframe="1m")
    pd.testing.assert_frame_equal(loaded, frame, check_index_type=False)
    part = load_candles(
        db, symbol="BTCUSDT", timeframe="1m", start="2023-04-01T00:10Z", end=T0 + 1200
    )
    assert len(part) == 11 and part.index[0] == frame.index[10]


def test_load_candles_raises_on_a_violation(tmp_path: Path) -> None:
    frame = candles(30)
    frame.iloc[7, frame.columns.get_loc("high")] = 1.0
    db = make_db(tmp_path / "candles.db", frame)
    with pytest.raises(DataError) as err:
        load_candles(db, symbol="BTCUSDT", timeframe="1m")
    assert f"{db}" in str(err.value) and "2023-04-01T00:07:00Z high:" in str(err.value)


def test_load_candles_logs_gaps_and_does_not_fill_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    frame = candles(30).drop(candles(30).index[10:13])
    db = make_db(tmp_path / "candles.db", frame)
    with caplog.at_level(logging.WARNING, logger="signals.data.load"):
        loaded = load_candles(db, symbol="BTCUSDT", timeframe="1m")
    assert len(loaded) == 27
    assert "1 gaps, 3 missing candles, largest 3 candles at 2023-04-01T00:10:00Z" in caplog.text


def test_load_candles_without_rows_lists_the_series(tmp_path: Path) -> None:
    db = make_db(tmp_path / "candles.db", candles(10))
    make_db(db, candles(3, step=3600), symbol="ETHUSDT", tf="1h")
    with pytest.raises(DataError) as err:
        load_candles(db, symbol="BTCUSDT", timeframe="5m")
    message = str(err.value)
    assert "no closed candles for BTCUSDT 5m" in message
    assert "BTCUSDT 1m, ETHUSDT 1h" in message


def test_load_candles_missing_db_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nowhere\.db: database not found"):
        load_candles(tmp_path / "nowhere.db", symbol="BTCUSDT", timeframe="1m")


# -- parse_when --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023-04-01", T0),
        ("2023-04-01T00:05", T0 + 300),
        ("2023-04-01T00:05:00Z", T0 + 300),
        ("2023-04-01 02:05:00+02:00", T0 + 300),
        ("1680307200", T0),
        ("1680307200000", T0),
    ],
)
def test_parse_when(text: str, expected: int) -> None:
    assert parse_when(text) == expected


@pytest.mark.parametrize("text", ["yesterday-ish", "2023-13-45", ""])
def test_parse_when_rejects_bad_input_clearly(text: str) -> None:
    with pytest.raises(SignalsError, match="cannot read"):
        parse_when(text)


def test_load_candles_honours_the_configured_source(tmp_path: Path) -> None:
    db = tmp_path / "klines.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE k (t INTEGER, o REAL, h REAL, l REAL, c REAL, v REAL)")
    conn.executemany(
        "INSERT INTO k VALUES (?,?,?,?,?,?)",
        [(T0 + 300 * i, 10.0, 11.0, 9.0, 10.5, 2.0) for i in range(4)],
    )
    conn.commit()
    conn.close()
    columns = {"symbol": None, "timeframe": None, "closed": None, "buy_volume": None}
    columns |= {"trades": None, "timestamp": "t", "open": "o", "high": "h", "low": "l"}
    columns |= {"close": "c", "volume": "v"}
    raw = {"table": "k", "symbol": "BTCUSDT", "timeframe": "5m", "columns": columns}
    settings = parse_settings({"data": {"source": raw, "busy_timeout_ms": 100}})
    frame = load_candles(db, symbol="BTCUSDT", timeframe="5m", settings=settings)
    assert len(frame) == 4 and frame["close"].eq(10.5).all()
    assert frame["buy_volume"].isna().all()


_VALUE = st.one_of(
    st.floats(min_value=0, max_value=100), st.sampled_from([float("nan"), float("inf"), -1.0])
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 10), *[_VALUE] * 7), min_size=1, max_size=6),
)
def test_the_quick_matrix_check_agrees_with_the_detailed_checks(rows: list[tuple]) -> None:
    # the live engine asks `clean_matrix` first and runs the detailed checks only when it says
    # no: it must say yes exactly when they find nothing, for all candles
    from signals.data.schema import CANDLE_COLUMNS

    assert validate.CHECKED_COLUMNS == CANDLE_COLUMNS  # the engine passes its window as it is
    ts = np.array([r[0] * 30 for r in rows], dtype="int64")  # half of them off the 60 s step
    values = np.array([r[1:] for r in rows], dtype="float64")
    columns = {name: values[:, i] for i, name in enumerate(CANDLE_COLUMNS)}
    assert validate.clean_matrix(ts, values, 60) == (not _detailed(ts, columns))


def _detailed(ts: np.ndarray, columns: dict[str, np.ndarray]) -> list[object]:
    # the detailed checks alone (check_arrays asks clean_matrix first: it cannot judge it)
    out = validate._Collector(ts, origin="test", symbol="X", timeframe="1m")
    validate._check_all(out, ts, columns, 60)
    return out.items


_FAULTS = (
    None, "buy_above_volume", "high_below_open", "high_below_close", "low_above_open",
    "low_above_close", "negative", "infinite", "nan_required", "nan_optional", "misaligned",
    "duplicate", "backwards",
)  # fmt: skip


@st.composite
def _valid_candles_with_one_fault(  # noqa: C901  # one branch per fault
    draw: st.DrawFn,
) -> tuple[np.ndarray, np.ndarray, str | None]:
    # Valid candles (the usual case), then at most one fault on one row: the checks must
    # agree on candles that pass every check but one, which random values rarely reach.
    n = draw(st.integers(1, 8))
    price = st.floats(1.0, 100.0)
    rows = []
    for _ in range(n):
        o, c = draw(price), draw(price)
        h = max(o, c) + draw(st.floats(0.0, 5.0))
        low = min(o, c) - draw(st.floats(0.0, min(o, c) - 0.5))
        vol = draw(st.floats(0.0, 1e6))
        share = draw(st.one_of(st.just(float("nan")), st.floats(0.0, 1.0)))
        buy = share * vol
        rows.append([o, h, low, c, vol, buy, float(draw(st.integers(0, 1000)))])
    ts = np.arange(n, dtype="int64") * 60 + 1_700_000_040
    values = np.array(rows, dtype="float64")
    fault = draw(st.sampled_from(_FAULTS))
    k = draw(st.integers(0, n - 1))
    o, h, low, c, vol = values[k, :5]
    if fault == "buy_above_volume":
        values[k, 5] = vol * (1 + 1e-6) + 1e-3
    elif fault == "high_below_open":
        values[k, 1] = o - 1e-6 * o
    elif fault == "high_below_close":
        values[k, 1] = c - 1e-6 * c
    elif fault == "low_above_open":
        values[k, 2] = o + 1e-6 * o
    elif fault == "low_above_close":
        values[k, 2] = c + 1e-6 * c
    elif fault == "negative":
        values[k, draw(st.integers(0, 6))] = -1.0
    elif fault == "infinite":
        values[k, draw(st.integers(0, 6))] = float("inf")
    elif fault == "nan_required":
        values[k, draw(st.integers(0, 4))] = float("nan")
    elif fault == "nan_optional":
        values[k, draw(st.integers(5, 6))] = float("nan")  # allowed: unknown
    elif fault == "misaligned":
        ts[k] += 7
    elif fault == "duplicate" and n > 1:
        ts[k] = ts[k - 1] if k else ts[1]
    elif fault == "backwards" and n > 1:
        ts[[0, n - 1]] = ts[[n - 1, 0]]
    return ts, values, fault


@settings(max_examples=400, deadline=None)
@given(_valid_candles_with_one_fault())
def test_the_quick_check_agrees_on_candles_with_one_fault(
    case: tuple[np.ndarray, np.ndarray, str | None],
) -> None:
    # both paths of `clean_matrix` (a few rows in plain floats, more in arrays) against the
    # detailed checks, on valid candles and on candles with exactly one fault
    from signals.data.schema import CANDLE_COLUMNS

    ts, values, _fault = case
    columns = {name: values[:, i] for i, name in enumerate(CANDLE_COLUMNS)}
    assert validate.clean_matrix(ts, values, 60) == (not _detailed(ts, columns))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(st.none(), st.integers(-(2**62) // 10**9 + 1, 2**62 // 10**9 - 1)),
        max_size=20,
    ),
    st.integers(0, 10**9 - 1),
    st.sampled_from(["s", "ms", "us", "ns"]),
)
def test_epoch_seconds_equals_pandas_flooring_to_seconds(
    seconds: list[int | None], fraction_ns: int, unit: str
) -> None:
    # The one-operation path (asi8 // units per second) must equal as_unit("s") on every
    # index: fractions of a second and times before 1970 floor, NaT takes the pandas path.
    stamps = [None if s is None else s * 10**9 + fraction_ns for s in seconds]
    index = pd.DatetimeIndex(pd.to_datetime(stamps, utc=True)).as_unit("ns")
    if unit != "ns":
        index = pd.DatetimeIndex(index.floor({"s": "s", "ms": "ms", "us": "us"}[unit]))
        index = index.as_unit(unit)
    got = validate.epoch_seconds(index)
    want = index.as_unit("s").asi8.astype("int64")
    assert got.dtype == np.int64
    assert got.tolist() == want.tolist()
