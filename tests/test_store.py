"""CandleStore on real SQLite files: reference and foreign schemas, ATTACH, concurrency, locks."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signals.config import CandleSource, ColumnMap, parse_settings
from signals.data.schema import ANALYSIS_COLUMNS, CANDLE_COLUMNS
from signals.data.store import (
    CandleStore,
    connect_writable,
    create_analysis_db,
    write_candles,
)
from signals.errors import DataError

T0 = 1680307200  # 2023-04-01T00:00:00Z


def candles(n: int, *, start: int = T0, step: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(n)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.001, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    index = pd.DatetimeIndex(
        pd.to_datetime(start + step * np.arange(n), unit="s", utc=True), name="time"
    )
    volume = rng.uniform(1, 5, n)
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) + 0.1,
            "low": np.minimum(open_, close) - 0.1,
            "close": close,
            "volume": volume,
            "buy_volume": volume / 2,
            "trades": np.arange(n, dtype="float64") + 1,
        },
        index=index,
    )


@pytest.fixture
def ref_db(tmp_path: Path) -> Path:
    """10 closed 1m candles, then 2 still forming (closed=0); plus 3 ETHUSDT 1h candles."""
    path = tmp_path / "candles.db"
    conn = connect_writable(path)
    frame = candles(12)
    closed = pd.Series([True] * 10 + [False] * 2, index=frame.index)
    write_candles(conn, frame, symbol="BTCUSDT", timeframe="1m", closed=closed)
    write_candles(conn, candles(3, step=3600), symbol="ETHUSDT", timeframe="1h")
    conn.close()
    return path


def ts(frame: pd.DataFrame) -> list[int]:
    return [int(t.timestamp()) for t in frame.index]


# -- reference schema --------------------------------------------------------------------------


def test_history_has_float64_columns_and_a_utc_index(ref_db: Path) -> None:
    with CandleStore(ref_db) as store:
        frame = store.history("BTCUSDT", "1m")
    assert list(frame.columns) == list(CANDLE_COLUMNS)
    assert all(dtype == np.float64 for dtype in frame.dtypes)
    assert isinstance(frame.index, pd.DatetimeIndex) and str(frame.index.tz) == "UTC"
    assert frame.index.name == "time"
    assert ts(frame) == [T0 + 60 * i for i in range(10)]  # closed=0 candles are not returned
    pd.testing.assert_frame_equal(frame, candles(12).iloc[:10], check_index_type=False)


def test_history_from_to_is_inclusive_and_accepts_timestamps(ref_db: Path) -> None:
    with CandleStore(ref_db) as store:
        part = store.history("BTCUSDT", "1m", start=T0 + 120, end=T0 + 300)
        assert ts(part) == [T0 + 120, T0 + 180, T0 + 240, T0 + 300]
        since = store.history("BTCUSDT", "1m", start=pd.Timestamp("2023-04-01 00:08"))
        assert ts(since) == [T0 + 480, T0 + 540]  # 00:10 and 00:11 are still forming
        until = store.history("BTCUSDT", "1m", end=pd.Timestamp("2023-04-01T00:01:00Z"))
        assert ts(until) == [T0, T0 + 60]
        assert store.history("BTCUSDT", "1m", start=T0 + 10_000).empty


def test_last_closed_and_closed_since_skip_forming_candles(ref_db: Path) -> None:
    with CandleStore(ref_db) as store:
        last = store.last_closed("BTCUSDT", "1m", 3)
        assert ts(last) == [T0 + 420, T0 + 480, T0 + 540]  # oldest first, none forming
        assert ts(store.closed_since("BTCUSDT", "1m", T0 + 420)) == [T0 + 480, T0 + 540]
        assert store.closed_since("BTCUSDT", "1m", T0 + 540).empty
        assert len(store.last_closed("BTCUSDT", "1m", 100)) == 10


def test_series_lists_symbol_timeframe_pairs(ref_db: Path) -> None:
    with CandleStore(ref_db) as store:
        assert store.series() == [("BTCUSDT", "1m"), ("ETHUSDT", "1h")]
        assert store.history("ETHUSDT", "1m").empty


def test_missing_database_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"absent\.db: database not found"):
        CandleStore(tmp_path / "absent.db")


def test_reader_is_read_only(ref_db: Path) -> None:
    with CandleStore(ref_db) as store, pytest.raises(sqlite3.OperationalError, match="readonly"):
        store._conn.execute("DELETE FROM candles")


def test_write_candles_stores_epoch_seconds_for_microsecond_index(tmp_path: Path) -> None:
    # pandas 3 builds datetime64[us] indexes; timestamps must still be stored in seconds
    frame = candles(2)
    frame.index = frame.index.as_unit("us")
    conn = connect_writable(tmp_path / "c.db")
    write_candles(conn, frame, symbol="BTCUSDT", timeframe="1m")
    assert conn.execute("SELECT timestamp FROM candles").fetchall() == [(T0,), (T0 + 60,)]
    conn.close()


# -- foreign schema ----------------------------------------------------------------------------


@pytest.fixture
def foreign_db(tmp_path: Path) -> Path:
    """A ``klines`` table: no symbol, no timeframe, no closed column, open_time in ms."""
    path = tmp_path / "binance.db"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE klines (open_time INTEGER PRIMARY KEY, o REAL, h REAL, l REAL, c REAL, "
        "v REAL, taker_buy REAL, n INTEGER)"
    )
    frame = candles(5)
    rows = [
        (t * 1000, *row)
        for t, row in zip(ts(frame), frame.itertuples(index=False, name=None), strict=True)
    ]
    conn.executemany("INSERT INTO klines VALUES (?,?,?,?,?,?,?,?)", rows)
    conn.commit()
    conn.close()
    return path


FOREIGN_YAML = {
    "data": {
        "source": {
            "table": "klines",
            "timestamp_unit": "ms",
            "symbol": "BTCUSDT",
            "timeframe": "1m",
            "columns": {
                "symbol": None,
                "timeframe": None,
                "closed": None,
                "timestamp": "open_time",
                "open": "o",
                "high": "h",
                "low": "l",
                "close": "c",
                "volume": "v",
                "buy_volume": "taker_buy",
                "trades": "n",
            },
        }
    }
}


def foreign_source() -> CandleSource:
    return parse_settings(FOREIGN_YAML).data.source


def test_foreign_schema_is_read_through_the_config_mapping(foreign_db: Path) -> None:
    with CandleStore(foreign_db, source=foreign_source(), clock=lambda: T0 + 10**6) as store:
        frame = store.history("BTCUSDT", "1m")
        assert store.series() == [("BTCUSDT", "1m")]
    assert ts(frame) == [T0 + 60 * i for i in range(5)]
    pd.testing.assert_frame_equal(frame, candles(5), check_index_type=False)


@pytest.mark.parametrize(
    ("now", "expected_last"),
    [
        (T0 + 4 * 60 + 59, T0 + 3 * 60),  # the 00:04 candle closes at 00:05: still forming
        (T0 + 5 * 60, T0 + 4 * 60),  # exactly at its close time it is closed
        (T0 + 60, T0),  # only the first candle has closed
    ],
)
def test_foreign_schema_closed_means_open_plus_timeframe_before_now(
    foreign_db: Path, now: int, expected_last: int
) -> None:
    with CandleStore(foreign_db, source=foreign_source(), clock=lambda: now) as store:
        assert ts(store.history("BTCUSDT", "1m"))[-1] == expected_last
        assert ts(store.last_closed("BTCUSDT", "1m", 1)) == [expected_last]
        assert ts(store.closed_since("BTCUSDT", "1m", expected_last - 60)) == [expected_last]


def test_foreign_schema_before_the_first_close_returns_nothing(foreign_db: Path) -> None:
    with CandleStore(foreign_db, source=foreign_source(), clock=lambda: T0 + 59) as store:
        assert store.history("BTCUSDT", "1m").empty


def test_foreign_schema_rejects_another_symbol_or_timeframe(foreign_db: Path) -> None:
    with CandleStore(foreign_db, source=foreign_source()) as store:
        with pytest.raises(DataError, match="holds only BTCUSDT, not ETHUSDT"):
            store.history("ETHUSDT", "1m")
        with pytest.raises(DataError, match="holds only 1m, not 5m"):
            store.history("BTCUSDT", "5m")


def test_foreign_schema_without_optional_columns_gives_nan(foreign_db: Path) -> None:
    source = CandleSource(
        table="klines",
        timestamp_unit="ms",
        symbol="BTCUSDT",
        timeframe="1m",
        columns=ColumnMap(
            symbol=None,
            timeframe=None,
            closed=None,
            timestamp="open_time",
            open="o",
            high="h",
            low="l",
            close="c",
            volume="v",
            buy_volume=None,
            trades=None,
        ),
    )
    with CandleStore(foreign_db, source=source, clock=lambda: T0 + 10**6) as store:
        frame = store.history("BTCUSDT", "1m")
    assert len(frame) == 5
    assert frame["buy_volume"].isna().all() and frame["trades"].isna().all()
    assert frame["trades"].dtype == np.float64


# -- analysis.db via ATTACH ----------------------------------------------------------------------


def test_analysis_db_is_joined_with_attach(ref_db: Path, tmp_path: Path) -> None:
    analysis = tmp_path / "analysis.db"
    conn = create_analysis_db(analysis)
    placeholders = ",".join("?" * (3 + len(ANALYSIS_COLUMNS)))
    for i in (0, 1, 2, 5):  # minutes 3, 4 and 6.. have no analysis row
        values = [float(i * 100 + k) for k in range(len(ANALYSIS_COLUMNS))]
        conn.execute(
            f"INSERT INTO analysis VALUES ({placeholders})",
            ["BTCUSDT", "1m", T0 + 60 * i, *values],
        )
    conn.commit()
    conn.close()
    with CandleStore(ref_db, analysis_db=analysis) as store:
        attached = [row[1] for row in store._conn.execute("PRAGMA database_list")]
        frame = store.history("BTCUSDT", "1m", with_analysis=True)
        plain = store.history("BTCUSDT", "1m")
    assert "an" in attached  # one connection, analysis.db attached to it
    assert list(frame.columns) == [*CANDLE_COLUMNS, *ANALYSIS_COLUMNS]
    assert len(frame) == 10  # a left join: candles without analysis stay
    assert frame["ema_9"].iloc[5] == 500.0 and frame["net_flow"].iloc[1] == 114.0
    assert frame["ema_9"].iloc[[3, 4, 6]].isna().all()
    pd.testing.assert_frame_equal(frame[list(CANDLE_COLUMNS)], plain)


def test_with_analysis_needs_an_analysis_db(ref_db: Path, tmp_path: Path) -> None:
    with CandleStore(ref_db) as store, pytest.raises(DataError, match="analysis database"):
        store.history("BTCUSDT", "1m", with_analysis=True)
    with pytest.raises(DataError, match=r"nothere\.db: analysis database not found"):
        CandleStore(ref_db, analysis_db=tmp_path / "nothere.db")


# -- another process writing, locks, data_version ------------------------------------------------

WRITER = textwrap.dedent(
    """
    import sys, time
    import numpy as np, pandas as pd
    from signals.data.store import connect_writable, write_candles

    path, n = sys.argv[1], int(sys.argv[2])
    conn = connect_writable(path)
    print("ready", flush=True)
    for i in range(n):
        t = 1680307200 + 60 * (1000 + i)
        frame = pd.DataFrame(
            {"open": [1.0], "high": [2.0], "low": [0.5], "close": [1.5], "volume": [3.0],
             "buy_volume": [1.0], "trades": [7.0]},
            index=pd.to_datetime([t], unit="s", utc=True),
        )
        write_candles(conn, frame, symbol="BTCUSDT", timeframe="1m")
        time.sleep(0.002)
    conn.close()
    print("done", flush=True)
    """
)


def test_reads_never_fail_while_another_process_writes(ref_db: Path) -> None:
    n = 300
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(ref_db), str(n)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
        counts = []
        with CandleStore(ref_db, busy_timeout_ms=5000) as store:
            while writer.poll() is None:
                counts.append(len(store.history("BTCUSDT", "1m")))
                with CandleStore(ref_db) as fresh:  # new connections too
                    counts.append(len(fresh.last_closed("BTCUSDT", "1m", 5000)))
            assert writer.wait(timeout=60) == 0
            counts.append(len(store.history("BTCUSDT", "1m")))
    finally:
        if writer.poll() is None:
            writer.kill()
        writer.communicate()  # reap it and close its pipe
    assert counts == sorted(counts), "a later read saw fewer candles than an earlier one"
    assert counts[-1] == 10 + n
    assert len(set(counts)) > 3, f"reads did not overlap the writes: {sorted(set(counts))}"


LOCKER = textwrap.dedent(
    """
    import sqlite3, sys, time
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    conn.execute("UPDATE candles SET volume = 99.0 WHERE timestamp = 1680307200")
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    conn.execute("COMMIT")
    """
)


def test_a_locked_database_is_waited_for_thanks_to_the_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "rollback.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = DELETE")  # in WAL readers are never blocked at all
    conn.close()
    conn = connect_writable(path)
    conn.execute("PRAGMA journal_mode = DELETE")
    write_candles(conn, candles(3), symbol="BTCUSDT", timeframe="1m")
    conn.close()
    hold = 1.0
    locker = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(path), str(hold)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
        locked_at = time.monotonic()
        with (
            CandleStore(path, busy_timeout_ms=0) as impatient,
            pytest.raises(DataError, match="locked"),
        ):
            impatient.history("BTCUSDT", "1m")
        with CandleStore(path, busy_timeout_ms=10_000) as patient:
            frame = patient.history("BTCUSDT", "1m")
        waited = time.monotonic() - locked_at
        assert locker.wait(timeout=30) == 0
    finally:
        if locker.poll() is None:
            locker.kill()
        locker.communicate()  # reap it and close its pipe
    assert len(frame) == 3
    assert frame["volume"].iloc[0] == 99.0  # read after the lock holder committed
    assert waited >= hold * 0.5


def test_data_version_changes_after_another_connection_commits(ref_db: Path) -> None:
    with CandleStore(ref_db) as store:
        before = store.data_version()
        assert store.data_version() == before  # nothing committed: unchanged
        writer = connect_writable(ref_db)
        write_candles(writer, candles(1, start=T0 + 60 * 500), symbol="BTCUSDT", timeframe="1m")
        after = store.data_version()
        writer.close()
        assert after != before
        assert len(store.history("BTCUSDT", "1m")) == 11


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2**34), max_size=50))
def test_frames_index_builder_equals_pandas_public_constructor(stamps: list[int]) -> None:
    # frame_from_arrays builds its index with pandas' internal constructor when it is equal to
    # the public one on this pandas (checked once at import): equal for every open-time array
    from signals.data import frames

    ts = np.array(stamps, dtype="int64")
    built = frames.frame_from_arrays(ts, np.zeros((len(ts), 1)), ["close"]).index
    public = pd.to_datetime(ts, unit="s", utc=True).as_unit("us").rename("time")
    assert built.equals(public) and built.dtype == public.dtype and built.name == "time"
    assert built.freq is None and built.is_monotonic_increasing == public.is_monotonic_increasing
    assert list(built.asi8) == list(public.asi8)


@settings(max_examples=100)
@given(
    st.integers(min_value=1, max_value=40).flatmap(
        lambda n: st.lists(
            st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=7, max_size=7),
            min_size=n,
            max_size=n,
        )
    )
)
def test_frames_window_builder_equals_pandas_public_constructor(rows: list[list[float]]) -> None:
    # the live engine's window frame (a prebuilt column Index) is built with pandas' internal
    # block classes when they give the public constructor's frame: equal for every matrix,
    # and holding its own copy of the values (a strategy writing into its candles never
    # writes into the engine's window)
    from live.engine import COLUMNS
    from signals.data import frames

    values = np.array(rows, dtype="float64")
    ts = 1_700_000_000 + 60 * np.arange(len(values), dtype="int64")
    built = frames.frame_from_arrays(ts, values, COLUMNS)
    public = pd.DataFrame(values, index=built.index, columns=COLUMNS)
    pd.testing.assert_frame_equal(built, public, check_exact=True)
    assert built.columns is COLUMNS and built.index.name == "time"
    before = values.copy()
    built.iloc[0, 0] = 123.0
    assert np.array_equal(values, before, equal_nan=True)
    values[0, 1] = -7.0
    assert built.iloc[0, 1] != -7.0 or before[0, 1] == -7.0


def test_frames_window_builder_falls_back_to_the_public_constructor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from signals.data import frames

    monkeypatch.setattr(frames, "BlockManager", None)  # a pandas without it
    assert frames._choose_frame_builder() is frames._public_frame
    monkeypatch.undo()

    def sharing(values: np.ndarray, index: pd.Index, columns: pd.Index) -> pd.DataFrame:
        return pd.DataFrame(values, index=index, columns=columns, copy=False)  # no own copy

    monkeypatch.setattr(frames, "_internal_frame", sharing)
    assert frames._choose_frame_builder() is frames._public_frame
