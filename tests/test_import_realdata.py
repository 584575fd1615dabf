"""Import the real BTCUSDT candles of ../shared/data (skipped with a reason when absent)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from signals.data.importers import import_files
from signals.data.store import CandleStore
from signals.data.validate import check_consistency, find_gaps

pytestmark = pytest.mark.realdata

APRIL = "BTCUSDT-1m-2023-04.csv.gz"
HOURLY = "BTCUSDT-1h-2017-08_2023-06.csv.gz"
MONTHS = [f"BTCUSDT-1m-2023-{m:02d}.csv.gz" for m in (4, 5, 6)]


def count(db: Path, timeframe: str, closed: int | None = None) -> int:
    sql = "SELECT COUNT(*) FROM candles WHERE symbol = 'BTCUSDT' AND timeframe = ?"
    params: list[object] = [timeframe]
    if closed is not None:
        sql += " AND closed = ?"
        params.append(closed)
    with sqlite3.connect(db) as conn:
        return int(conn.execute(sql, params).fetchone()[0])


def test_import_one_month_of_minutes(shared_data: Path, tmp_path: Path) -> None:
    db = tmp_path / "candles.db"
    (item,) = import_files([shared_data / APRIL], db=db, progress=False).files
    assert (item.format, item.timeframe, item.rows_read, item.rows_written) == (
        "interchange",
        "1m",
        43_200,
        43_200,
    )
    assert count(db, "1m") == 43_200
    assert count(db, "1h", closed=1) == 720 and count(db, "1h", closed=0) == 0
    assert (item.aggregated["1h"].complete, item.aggregated["1h"].incomplete) == (720, 0)
    assert item.aggregated["1d"].complete == 30

    # the first hour, aggregated by hand from the CSV with pandas
    csv = pd.read_csv(shared_data / APRIL)
    first = csv[csv["timestamp"] < csv["timestamp"].iloc[0] + 3600]
    assert len(first) == 60
    with CandleStore(db) as store:
        hour = store.history("BTCUSDT", "1h").iloc[0]
        minutes = store.history("BTCUSDT", "1m")
    assert hour.name == pd.Timestamp("2023-04-01 00:00", tz="UTC")
    assert hour["open"] == first["open"].iloc[0]
    assert hour["high"] == first["high"].max()
    assert hour["low"] == first["low"].min()
    assert hour["close"] == first["close"].iloc[-1]
    assert hour["volume"] == pytest.approx(first["volume"].sum(), rel=1e-12)
    assert hour["buy_volume"] == pytest.approx(first["buy_volume"].sum(), rel=1e-12)
    assert hour["trades"] == first["trades"].sum()
    # every stored minute equals its CSV row
    np.testing.assert_array_equal(minutes["close"].to_numpy(), csv["close"].to_numpy())
    np.testing.assert_array_equal(minutes["trades"].to_numpy(), csv["trades"].to_numpy(float))


def test_import_hourly_history_and_its_gaps(shared_data: Path, tmp_path: Path) -> None:
    db = tmp_path / "candles.db"
    (item,) = import_files([shared_data / HOURLY], db=db, progress=False).files
    assert (item.timeframe, item.rows_written) == ("1h", 51_324)  # detected, not given
    assert count(db, "1h") == 51_324
    with CandleStore(db) as store:
        hourly = store.history("BTCUSDT", "1h")
    gaps = find_gaps(hourly, "1h")
    assert (gaps.count, gaps.missing_candles) == (28, 128)
    assert gaps.largest == 33  # 2018-02-08 01:00 → 2018-02-09 09:00
    assert gaps.largest_at == int(pd.Timestamp("2018-02-08 01:00", tz="UTC").timestamp())
    # higher timeframes over the gaps stay incomplete (closed = 0), never invented
    assert item.aggregated["4h"].incomplete > 0
    assert count(db, "4h", closed=0) == item.aggregated["4h"].incomplete


@pytest.mark.parametrize("order", ["hourly-first", "minutes-first"])
def test_all_files_import_consistently_in_either_order(
    shared_data: Path, tmp_path: Path, order: str
) -> None:
    db = tmp_path / "candles.db"
    files = [shared_data / HOURLY, *(shared_data / m for m in MONTHS)]
    if order == "minutes-first":
        files = files[1:] + files[:1]
    summary = import_files(files, db=db, progress=False)  # timed in benchmarks/checks_bench.py
    assert summary.rows_written == 51_324 + 131_040
    assert count(db, "1m") == 131_040
    with CandleStore(db) as store:
        minutes = store.history("BTCUSDT", "1m")
        for tf in ("5m", "15m", "1h", "4h", "1d"):
            higher = store.history("BTCUSDT", tf, start=minutes.index[0], end=minutes.index[-1])
            assert check_consistency(higher, minutes, base_tf="1m", higher_tf=tf) == []
        hourly = store.history("BTCUSDT", "1h", start="2023-04-01", end="2023-06-30 23:00")
    assert len(hourly) == 91 * 24
    assert hourly["buy_volume"].notna().all()  # built from the minutes, which know it


def test_cli_imports_real_file(shared_data: Path, tmp_path: Path) -> None:
    db = tmp_path / "candles.db"
    cmd = [sys.executable, "-m", "signals", "data", "import", str(shared_data / APRIL)]
    proc = subprocess.run(
        [*cmd, "--db", str(db), "--no-progress"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert APRIL in proc.stdout
    assert "43,200" in proc.stdout and "720" in proc.stdout
    assert count(db, "1m") == 43_200
    # importing it again changes nothing
    with sqlite3.connect(db) as conn:
        before = conn.execute("SELECT * FROM candles ORDER BY timeframe, timestamp").fetchall()
    proc = subprocess.run(
        [*cmd, "--db", str(db), "--no-progress"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    with sqlite3.connect(db) as conn:
        after = conn.execute("SELECT * FROM candles ORDER BY timeframe, timestamp").fetchall()
    assert after == before
