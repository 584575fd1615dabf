"""``signals data check`` and ``export``, run as real processes on real SQLite files."""

from __future__ import annotations

import gzip
import json
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from signals.data.aggregate import aggregate
from signals.data.export import format_float
from signals.data.store import CandleStore, connect_writable, write_candles

T0 = 1680307200  # 2023-04-01T00:00:00Z


def minutes(n: int, *, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = np.round(30000 * np.exp(np.cumsum(rng.normal(0, 0.001, n))), 2)
    open_ = np.concatenate([[30000.0], close[:-1]])
    high = np.round(np.maximum(open_, close) * (1 + rng.uniform(0, 0.001, n)), 2)
    low = np.round(np.minimum(open_, close) * (1 - rng.uniform(0, 0.001, n)), 2)
    volume = rng.uniform(0.1, 50, n)
    index = pd.DatetimeIndex(
        pd.to_datetime(T0 + 60 * np.arange(n), unit="s", utc=True), name="time"
    )
    return pd.DataFrame(
        {
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
            "buy_volume": volume * rng.uniform(0, 1, n),
            "trades": rng.integers(1, 500, n).astype("float64"),
        },
        index=index,
    )


def build_db(path: Path, base: pd.DataFrame, *, hourly: pd.DataFrame | None = None) -> Path:
    """Write 1m candles plus 5m and 1h aggregates; incomplete buckets get closed=0."""
    conn = connect_writable(path)
    write_candles(conn, base, symbol="BTCUSDT", timeframe="1m")
    for tf in ("5m", "1h"):
        agg = aggregate(base, base="1m", target=tf)
        if tf == "1h" and hourly is not None:
            agg.loc[hourly.index, hourly.columns] = hourly
        write_candles(
            conn,
            agg.drop(columns="complete"),
            symbol="BTCUSDT",
            timeframe=tf,
            closed=agg["complete"],
        )
    conn.close()
    return path


def run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "signals", "data", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        check=False,
    )


@pytest.fixture
def clean_db(tmp_path: Path) -> Path:
    # 3 h 30 min: the last hour is incomplete (closed=0, never returned by the store)
    return build_db(tmp_path / "candles.db", minutes(210))


def test_check_clean_database_exits_0_with_a_report(clean_db: Path) -> None:
    result = run("check", "--db", clean_db, cwd=clean_db.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: no violations" in result.stdout
    lines = {
        line.split("│")[2].strip(): line
        for line in result.stdout.splitlines()
        if "│ BTCUSDT" in line
    }
    assert set(lines) == {"1m", "5m", "1h"}
    assert "210" in lines["1m"] and "2023-04-01T03:29:00Z" in lines["1m"]


def test_check_json_reports_rows_incomplete_gaps_and_consistency(clean_db: Path) -> None:
    result = run("check", "--db", clean_db, "--json", cwd=clean_db.parent)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    series = {s["timeframe"]: s for s in report["series"]}
    assert report["ok"] is True
    assert series["1m"]["rows"] == 210 and series["1m"]["consistency"] is None
    assert series["1h"]["rows"] == 3 and series["1h"]["incomplete"] == 1
    assert series["1h"]["last_time"] == "2023-04-01T02:00:00Z"
    assert series["5m"]["rows"] == 42 and series["5m"]["incomplete"] == 0
    assert series["1h"]["consistency"] == {"base": "1m", "compared": 3, "count": 0, "items": []}
    assert series["5m"]["consistency"]["compared"] == 42
    assert series["1m"]["gaps"]["count"] == 0


def test_check_reports_gaps_without_failing(tmp_path: Path) -> None:
    base = minutes(120)
    db = build_db(tmp_path / "candles.db", base.drop(base.index[30:34]))
    result = run("check", "--db", db, "--json", "--symbol", "BTCUSDT", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    gaps = {s["timeframe"]: s["gaps"] for s in json.loads(result.stdout)["series"]}
    assert gaps["1m"] == {
        "count": 1,
        "missing_candles": 4,
        "largest": 4,
        "largest_at": T0 + 30 * 60,
    }


def test_check_lists_a_violation_and_exits_1(tmp_path: Path) -> None:
    base = minutes(120)
    base.iloc[7, base.columns.get_loc("low")] = base["high"].iloc[7] + 5  # low above the body
    db = build_db(tmp_path / "candles.db", base)
    result = run("check", "--db", db, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{db} 1m BTCUSDT 2023-04-01T00:07:00Z low: low " in result.stdout
    assert "above min(open, close)" in result.stdout
    assert "FAILED: violations found" in result.stdout


def test_check_catches_a_tampered_hourly_candle(tmp_path: Path) -> None:
    base = minutes(180)
    hourly = aggregate(base, base="1m", target="1h").drop(columns="complete").iloc[[1]]
    hourly["close"] += 10.0
    db = build_db(tmp_path / "candles.db", base, hourly=hourly)
    result = run("check", "--db", db, "--json", cwd=tmp_path)
    assert result.returncode == 1
    series = {s["timeframe"]: s for s in json.loads(result.stdout)["series"]}
    (item,) = series["1h"]["consistency"]["items"]
    assert item["time"] == "2023-04-01T01:00:00Z" and item["field"] == "close"
    assert series["1h"]["violations"]["count"] == 0  # the candle itself is well-formed
    assert series["5m"]["consistency"]["count"] == 0


def test_check_missing_database_is_a_clear_error(tmp_path: Path) -> None:
    result = run("check", "--db", tmp_path / "nope.db", cwd=tmp_path)
    assert result.returncode == 2
    assert "nope.db: database not found" in result.stderr
    assert "Traceback" not in result.stderr


# -- export ------------------------------------------------------------------------------------


def read_interchange(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path, dtype={"trades": "Int64"})
    assert list(frame.columns) == [
        "timestamp",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "buy_volume",
        "trades",
    ]
    index = pd.DatetimeIndex(
        pd.to_datetime(frame.pop("timestamp"), unit="s", utc=True), name="time"
    )
    frame.index = index
    return frame.astype("float64")


def stored(db: Path, timeframe: str = "1m") -> pd.DataFrame:
    with CandleStore(db) as store:
        return store.history("BTCUSDT", timeframe)


@pytest.mark.parametrize("name", ["out.csv", "out.csv.gz"])
def test_export_round_trip_equals_the_stored_frame(clean_db: Path, name: str) -> None:
    out = clean_db.parent / name
    result = run("export", "--db", clean_db, "--timeframe", "1m", "--out", out, cwd=clean_db.parent)
    assert result.returncode == 0, result.stderr
    assert "wrote 210 BTCUSDT 1m candles" in result.stdout
    if name.endswith(".gz"):
        assert out.read_bytes()[:2] == b"\x1f\x8b"
    pd.testing.assert_frame_equal(read_interchange(out), stored(clean_db), check_index_type=False)


def test_gzip_export_is_byte_identical_on_rerun(clean_db: Path) -> None:
    outs = [clean_db.parent / f"{i}.csv.gz" for i in range(2)]
    for out in outs:
        assert (
            run(
                "export", "--db", clean_db, "--timeframe", "5m", "--out", out, cwd=clean_db.parent
            ).returncode
            == 0
        )
    assert outs[0].read_bytes() == outs[1].read_bytes()
    with gzip.open(outs[0], "rt") as fh:
        assert fh.readline() == "timestamp,open,high,low,close,volume,buy_volume,trades\n"


def test_export_text_format_unknowns_integers_and_range(tmp_path: Path) -> None:
    base = minutes(10)
    base["open"] = 4000.0
    base["high"] = 4000.5
    base["low"] = 3999.0
    base["close"] = 4000.25
    base["volume"] = 0.1 + 0.2  # 0.30000000000000004 must survive
    base.iloc[2:4, base.columns.get_loc("buy_volume")] = np.nan
    base.iloc[3:5, base.columns.get_loc("trades")] = np.nan
    conn = connect_writable(tmp_path / "candles.db")
    write_candles(conn, base, symbol="BTCUSDT", timeframe="1m")
    conn.close()
    out = tmp_path / "x.csv"
    result = run(
        "export",
        "--db",
        tmp_path / "candles.db",
        "--timeframe",
        "1m",
        "--from",
        "2023-04-01T00:02Z",
        "--to",
        str(T0 + 4 * 60),
        "--out",
        out,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    trades = [int(v) for v in base["trades"].iloc[2:3]]
    buy = repr(float(base["buy_volume"].iloc[4]))
    assert out.read_text().splitlines() == [
        "timestamp,open,high,low,close,volume,buy_volume,trades",
        f"{T0 + 120},4000,4000.5,3999,4000.25,0.30000000000000004,,{trades[0]}",
        f"{T0 + 180},4000,4000.5,3999,4000.25,0.30000000000000004,,",
        f"{T0 + 240},4000,4000.5,3999,4000.25,0.30000000000000004,{buy},",
    ]


def test_export_of_an_absent_series_names_what_exists(clean_db: Path) -> None:
    out = clean_db.parent / "x.csv"
    result = run("export", "--db", clean_db, "--timeframe", "4h", "--out", out, cwd=clean_db.parent)
    assert result.returncode == 2
    assert "no closed candles for BTCUSDT 4h" in result.stderr
    assert "BTCUSDT 1m" in result.stderr
    assert not out.exists()


def test_export_bad_date_is_a_clear_error(clean_db: Path) -> None:
    result = run(
        "export",
        "--db",
        clean_db,
        "--timeframe",
        "1m",
        "--from",
        "soon",
        "--out",
        "x.csv",
        cwd=clean_db.parent,
    )
    assert result.returncode == 2
    assert "cannot read 'soon' as a time" in result.stderr


@pytest.mark.parametrize(
    ("value", "text"),
    [(4000.0, "4000"), (0.1, "0.1"), (1e16, "1e+16"), (1e-7, "1e-07"), (-0.0, "-0"), (np.nan, "")],
)
def test_format_float_is_shortest_round_trip(value: float, text: str) -> None:
    assert format_float(value) == text
    if text:
        assert float(text) == value


def test_check_foreign_schema_through_config_counts_forming_candles(tmp_path: Path) -> None:
    db = tmp_path / "klines.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE klines (open_time INTEGER, o REAL, h REAL, l REAL, c REAL, v REAL)")
    rows = [(T0 * 1000 + 60_000 * i, 10.0, 11.0, 9.0, 10.5, 1.0) for i in range(5)]
    # Ten minutes ahead: still "forming" however long the subprocess below takes to start
    # (a candle of the current minute closes when the minute turns, which made this flaky).
    forming = (int(time.time()) // 60 + 10) * 60
    rows.append((forming * 1000, 10.0, 11.0, 9.0, 10.5, 1.0))  # still forming
    rows.append((T0 * 1000 + 60_000 * 2, 10.0, 11.0, 9.0, 10.5, 1.0))  # a duplicate
    conn.executemany("INSERT INTO klines VALUES (?,?,?,?,?,?)", rows)
    conn.commit()
    conn.close()
    config = tmp_path / "foreign.yaml"
    config.write_text(
        textwrap.dedent(
            """
            data:
              source:
                table: klines
                timestamp_unit: ms
                symbol: BTCUSDT
                timeframe: 1m
                columns: {symbol: null, timeframe: null, closed: null, buy_volume: null,
                          trades: null, timestamp: open_time, open: o, high: h, low: l,
                          close: c, volume: v}
            """
        )
    )
    result = run("check", "--db", db, "--config", config, "--json", cwd=tmp_path)
    assert result.returncode == 1, result.stderr  # the duplicate
    (series,) = json.loads(result.stdout)["series"]
    assert (series["symbol"], series["timeframe"]) == ("BTCUSDT", "1m")
    assert series["rows"] == 6 and series["incomplete"] == 1
    (item,) = series["violations"]["items"]
    assert item["field"] == "timestamp" and item["message"] == "duplicate timestamp"
    assert item["time"] == "2023-04-01T00:02:00Z"
    assert series["gaps"]["count"] == 0


def test_check_reports_a_series_with_an_unknown_timeframe(clean_db: Path) -> None:
    conn = sqlite3.connect(clean_db)
    conn.execute("INSERT INTO candles (symbol, timeframe, timestamp) VALUES ('BTCUSDT', '3m', 0)")
    conn.commit()
    conn.close()
    result = run("check", "--db", clean_db, "--json", cwd=clean_db.parent)
    assert result.returncode == 1
    series = {s["timeframe"]: s for s in json.loads(result.stdout)["series"]}
    assert "unknown timeframe '3m'" in series["3m"]["violations"]["items"][0]["message"]
    assert series["1m"]["violations"]["count"] == 0


def test_check_symbol_filter_and_absent_symbol(clean_db: Path) -> None:
    result = run("check", "--db", clean_db, "--symbol", "ETHUSDT", cwd=clean_db.parent)
    assert result.returncode == 2
    assert "no candle series for ETHUSDT" in result.stderr


@pytest.mark.realdata
def test_export_of_real_candles_is_byte_identical_to_the_interchange_source(
    shared_data: Path, tmp_path: Path
) -> None:
    source = shared_data / "BTCUSDT-1m-2023-04.csv.gz"
    raw = pd.read_csv(source)  # pandas 3 parses floats with round-trip precision
    raw.index = pd.DatetimeIndex(
        pd.to_datetime(raw.pop("timestamp"), unit="s", utc=True), name="time"
    )
    conn = connect_writable(tmp_path / "candles.db")
    write_candles(conn, raw.astype("float64"), symbol="BTCUSDT", timeframe="1m")
    conn.close()
    out = tmp_path / "out.csv.gz"
    result = run(
        "export", "--db", tmp_path / "candles.db", "--timeframe", "1m", "--out", out, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert gzip.decompress(out.read_bytes()) == gzip.decompress(source.read_bytes())
