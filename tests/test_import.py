"""Importers on small real files written by the tests, into real SQLite databases."""

from __future__ import annotations

import gzip
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from signals.data.importers import (
    detect_format,
    detect_timeframe,
    import_files,
    parse_file,
)
from signals.data.store import CandleStore
from signals.errors import DataError

T0 = 1_680_307_200  # 2023-04-01 00:00 UTC, a day boundary
HEADER = "timestamp,open,high,low,close,volume,buy_volume,trades"
BINANCE_HEADER = (
    "open_time,open,high,low,close,volume,close_time,quote_volume,count,"
    "taker_buy_volume,taker_buy_quote_volume,ignore"
)
BYBIT_HEADER = (
    "timestamp,symbol,side,size,price,tickDirection,trdMatchID,grossValue,homeNotional,"
    "foreignNotional"
)


def candles(n: int, *, start: int = T0, step: int = 60) -> pd.DataFrame:
    """Deterministic valid candles: n rows from `start`, spaced `step` seconds."""
    i = np.arange(n)
    close = 100.0 + np.round(np.sin(i / 7.0) * 5, 2)
    open_ = np.concatenate([[100.0], close[:-1]])
    return pd.DataFrame(
        {
            "timestamp": start + i * step,
            "open": open_,
            "high": np.maximum(open_, close) + 0.5,
            "low": np.minimum(open_, close) - 0.5,
            "close": close,
            "volume": 10.0 + i,
            "buy_volume": 4.0 + i / 2,
            "trades": 100 + i,
        }
    )


def interchange_text(frame: pd.DataFrame) -> str:
    lines = [HEADER]
    for r in frame.itertuples(index=False):
        lines.append(
            f"{r.timestamp},{r.open},{r.high},{r.low},{r.close},{r.volume},{r.buy_volume},{r.trades}"
        )
    return "\n".join(lines) + "\n"


def binance_text(frame: pd.DataFrame, *, unit: int = 1000, header: bool = False) -> str:
    lines = [BINANCE_HEADER] if header else []
    for r in frame.itertuples(index=False):
        open_time = r.timestamp * unit
        close_time = open_time + 60 * unit - 1
        lines.append(
            f"{open_time},{r.open:.8f},{r.high:.8f},{r.low:.8f},{r.close:.8f},{r.volume:.8f},"
            f"{close_time},{r.volume * r.close:.8f},{r.trades},{r.buy_volume:.8f},"
            f"{r.buy_volume * r.close:.8f},0"
        )
    return "\n".join(lines) + "\n"


def write(path: Path, text: str, *, gz: bool = False) -> Path:
    if gz:
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


def table(db: Path) -> list[tuple]:
    if not db.exists():  # a refused import does not even create the database
        return []
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT * FROM candles ORDER BY symbol, timeframe, timestamp"
        ).fetchall()


def rows_of(db: Path, timeframe: str) -> pd.DataFrame:
    with sqlite3.connect(db) as conn:
        return pd.read_sql_query(
            "SELECT * FROM candles WHERE timeframe = ? ORDER BY timestamp",
            conn,
            params=(timeframe,),
        )


def assert_candles_equal(db: Path, expected: pd.DataFrame, timeframe: str = "1m") -> None:
    got = rows_of(db, timeframe)
    assert got["timestamp"].tolist() == expected["timestamp"].tolist()
    for col in ("open", "high", "low", "close", "volume", "buy_volume", "trades"):
        np.testing.assert_allclose(got[col].to_numpy(float), expected[col].to_numpy(float))
    assert (got["closed"] == 1).all()


# -- formats -------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_interchange_import(tmp_path: Path, gz: bool) -> None:
    frame = candles(120)
    path = write(tmp_path / ("c.csv.gz" if gz else "c.csv"), interchange_text(frame), gz=gz)
    db = tmp_path / "candles.db"
    summary = import_files([path], db=db, progress=False)
    (item,) = summary.files
    assert (item.format, item.timeframe, item.rows_read, item.rows_written) == (
        "interchange",
        "1m",
        120,
        120,
    )
    assert_candles_equal(db, frame)
    assert (item.aggregated["5m"].complete, item.aggregated["5m"].incomplete) == (24, 0)
    assert (item.aggregated["1h"].complete, item.aggregated["1h"].incomplete) == (2, 0)
    assert (item.aggregated["1d"].complete, item.aggregated["1d"].incomplete) == (0, 1)
    hour = rows_of(db, "1h").iloc[0]
    first = frame.iloc[:60]
    assert hour["timestamp"] == T0
    assert hour["open"] == first["open"].iloc[0]
    assert hour["high"] == first["high"].max()
    assert hour["low"] == first["low"].min()
    assert hour["close"] == first["close"].iloc[-1]
    assert hour["volume"] == pytest.approx(first["volume"].sum())
    assert hour["buy_volume"] == pytest.approx(first["buy_volume"].sum())
    assert hour["trades"] == first["trades"].sum()
    with CandleStore(db) as store:
        assert len(store.history("BTCUSDT", "1h")) == 2
        assert store.history("BTCUSDT", "1d").empty  # the day is incomplete: never returned


def test_interchange_empty_optional_fields(tmp_path: Path) -> None:
    text = f"{HEADER}\n{T0},1,2,0.5,1.5,10,,\n{T0 + 3600},1.5,3,1,2,20,,\n"
    db = tmp_path / "c.db"
    import_files([write(tmp_path / "h.csv", text)], db=db, progress=False)
    got = rows_of(db, "1h")
    assert got["buy_volume"].isna().all() and got["trades"].isna().all()
    assert got["volume"].tolist() == [10.0, 20.0]


@pytest.mark.parametrize(
    ("unit", "header"),
    [(1000, False), (1000, True), (1_000_000, False), (1_000_000, True)],
    ids=["ms", "ms-header", "us", "us-header"],
)
def test_binance_klines(tmp_path: Path, unit: int, header: bool) -> None:
    frame = candles(30)
    path = write(tmp_path / "BTCUSDT-1m.csv", binance_text(frame, unit=unit, header=header))
    assert detect_format(path).name == "binance"
    assert detect_format(path).header is header
    db = tmp_path / "c.db"
    (item,) = import_files([path], db=db, progress=False).files
    assert (item.format, item.timeframe, item.rows_written) == ("binance", "1m", 30)
    assert_candles_equal(db, frame)  # taker buy base → buy_volume, count → trades


def test_binance_zip_archive(tmp_path: Path) -> None:
    frame = candles(10)
    path = tmp_path / "BTCUSDT-1m-2025-01-01.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("BTCUSDT-1m-2025-01-01.csv", binance_text(frame, unit=10**6))
    db = tmp_path / "c.db"
    (item,) = import_files([path], db=db, progress=False).files
    assert (item.format, item.rows_written) == ("binance", 10)
    assert_candles_equal(db, frame)


def test_binance_gzip_with_mixed_units(tmp_path: Path) -> None:
    frame = candles(10)
    text = binance_text(frame.iloc[:5], unit=1000) + binance_text(frame.iloc[5:], unit=10**6)
    path = write(tmp_path / "k.csv.gz", text, gz=True)
    db = tmp_path / "c.db"
    import_files([path], db=db, progress=False)
    assert_candles_equal(db, frame)


def bybit_text(trades: list[tuple[float, str, float, float]], symbol: str = "BTCUSDT") -> str:
    lines = [BYBIT_HEADER]
    for k, (ts, side, size, price) in enumerate(trades):
        lines.append(
            f"{ts},{symbol},{side},{size},{price},PlusTick,id-{k},{int(size * price * 1e8)},"
            f"{size},{size * price}"
        )
    return "\n".join(lines) + "\n"


TRADES = [
    # minute T0
    (T0 + 0.25, "Buy", 0.5, 100.0),
    (T0 + 10.5, "Sell", 0.25, 99.0),
    (T0 + 59.5, "Buy", 1.0, 101.5),
    (T0 + 59.5, "Sell", 2.0, 100.5),  # same time as the previous trade: later in file = close
    # minute T0+60: no trades, so no candle
    # minute T0+120
    (T0 + 120.0, "Sell", 0.1, 102.0),
    (T0 + 150.75, "Buy", 0.3, 103.0),
]


def expected_trade_candles() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "timestamp": [T0, T0 + 120],
            "open": [100.0, 102.0],
            "high": [101.5, 103.0],
            "low": [99.0, 102.0],
            "close": [100.5, 103.0],
            "volume": [0.5 + 0.25 + 1.0 + 2.0, 0.1 + 0.3],
            "buy_volume": [0.5 + 1.0, 0.3],
            "trades": [4, 2],
        }
    )


@pytest.mark.parametrize("order", ["ascending", "descending"])
def test_bybit_trades_to_1m_candles(tmp_path: Path, order: str) -> None:
    trades = TRADES if order == "ascending" else TRADES[::-1]
    path = write(tmp_path / "BTCUSDT2023-04-01.csv.gz", bybit_text(trades), gz=True)
    assert detect_format(path).name == "bybit-trades"
    db = tmp_path / "c.db"
    (item,) = import_files([path], db=db, progress=False).files
    assert (item.format, item.timeframe, item.rows_read, item.rows_written) == (
        "bybit-trades",
        "1m",
        6,
        2,
    )
    # a file in descending time order gives the same candles (its ties are put back in order)
    assert_candles_equal(db, expected_trade_candles())
    five = rows_of(db, "5m").iloc[0]
    assert (five["open"], five["close"], five["trades"], five["closed"]) == (100.0, 103.0, 6, 0)


def test_bybit_other_symbol_is_refused_unless_named(tmp_path: Path) -> None:
    path = write(tmp_path / "eth.csv", bybit_text(TRADES, symbol="ETHUSDT"))
    with pytest.raises(DataError, match=r"line 2, field 'symbol'.*--symbol.*ETHUSDT"):
        import_files([path], db=tmp_path / "c.db", progress=False)
    import_files([path], db=tmp_path / "c.db", symbol="ETHUSDT", progress=False)
    assert {r[0] for r in table(tmp_path / "c.db")} == {"ETHUSDT"}


# -- detection -------------------------------------------------------------------------------


def test_detect_format_each_kind(tmp_path: Path) -> None:
    frame = candles(3)
    inter = write(tmp_path / "a.csv.gz", interchange_text(frame), gz=True)
    kl = write(tmp_path / "b.csv", binance_text(frame))
    trades = write(tmp_path / "c.csv", bybit_text(TRADES))
    assert (detect_format(inter).name, detect_format(inter).header) == ("interchange", True)
    assert (detect_format(kl).name, detect_format(kl).header) == ("binance", False)
    assert detect_format(trades).name == "bybit-trades"


@pytest.mark.parametrize(
    "text",
    ["date,price\n2023-01-01,1\n", "hello world\n", "", "1,2,3\n"],
    ids=["other-header", "prose", "empty", "three-numbers"],
)
def test_unrecognised_format(tmp_path: Path, text: str) -> None:
    path = write(tmp_path / "x.csv", text)
    first = text.split("\n")[0]
    with pytest.raises(DataError, match="unrecognised format") as info:
        import_files([path], db=tmp_path / "c.db", progress=False)
    assert str(path) in str(info.value)
    assert repr(first) in str(info.value)
    assert table(tmp_path / "c.db") == []


def test_timeframe_detected_from_spacing(tmp_path: Path) -> None:
    frame = candles(20, step=300)
    frame = frame.drop(index=[5, 6, 11])  # gaps do not change the most common spacing
    path = write(tmp_path / "five.csv", interchange_text(frame))
    assert parse_file(path).timeframe == "5m"
    (item,) = import_files([path], db=tmp_path / "c.db", progress=False).files
    assert item.timeframe == "5m"
    assert list(item.aggregated) == ["15m", "1h", "4h", "1d"]


def test_detect_timeframe_function() -> None:
    assert detect_timeframe([0, 3600, 7200, 14400]) == "1h"
    with pytest.raises(DataError, match="120 s is not a known timeframe"):
        detect_timeframe([0, 120, 240])
    with pytest.raises(DataError, match="fewer than two candles"):
        detect_timeframe([60])


def test_explicit_timeframe(tmp_path: Path) -> None:
    one = write(tmp_path / "one.csv", interchange_text(candles(1, step=3600)))
    with pytest.raises(DataError, match="pass --timeframe"):
        import_files([one], db=tmp_path / "c.db", progress=False)
    (item,) = import_files([one], db=tmp_path / "c.db", timeframe="1h", progress=False).files
    assert item.timeframe == "1h"
    assert len(rows_of(tmp_path / "c.db", "1h")) == 1
    # a file of 1m candles declared as 1h: the open times are not on the hour
    minutes = write(tmp_path / "m.csv", interchange_text(candles(5)))
    with pytest.raises(
        DataError, match=r"line 3, field 'timestamp': open time [0-9]+ not aligned to 1h"
    ):
        import_files([minutes], db=tmp_path / "c.db", timeframe="1h", progress=False)


def test_trades_with_explicit_timeframe(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", bybit_text(TRADES))
    (item,) = import_files([path], db=tmp_path / "c.db", timeframe="5m", progress=False).files
    assert (item.timeframe, item.rows_written) == ("5m", 1)
    five = rows_of(tmp_path / "c.db", "5m").iloc[0]
    assert (five["open"], five["high"], five["low"], five["close"]) == (100.0, 103.0, 99.0, 103.0)
    assert five["trades"] == 6 and five["closed"] == 1


# -- consistency -----------------------------------------------------------------------------


def test_import_twice_is_idempotent(tmp_path: Path) -> None:
    path = write(tmp_path / "c.csv", interchange_text(candles(200)))
    db = tmp_path / "c.db"
    import_files([path], db=db, progress=False)
    first = table(db)
    import_files([path], db=db, progress=False)
    assert table(db) == first
    assert len(first) == 200 + 40 + 14 + 4 + 1 + 1


def test_bucket_split_across_two_files(tmp_path: Path) -> None:
    frame = candles(60)
    a = write(tmp_path / "a.csv", interchange_text(frame.iloc[:30]))
    b = write(tmp_path / "b.csv", interchange_text(frame.iloc[30:]))
    db = tmp_path / "c.db"
    (item,) = import_files([a], db=db, progress=False).files
    assert (item.aggregated["1h"].complete, item.aggregated["1h"].incomplete) == (0, 1)
    hour = rows_of(db, "1h")
    assert hour["closed"].tolist() == [0]
    with CandleStore(db) as store:
        assert store.history("BTCUSDT", "1h").empty
        assert len(store.history("BTCUSDT", "15m")) == 2
    (item,) = import_files([b], db=db, progress=False).files
    assert (item.aggregated["1h"].complete, item.aggregated["1h"].incomplete) == (1, 0)
    with CandleStore(db) as store:
        got = store.history("BTCUSDT", "1h")
    assert len(got) == 1
    assert got["open"].iloc[0] == frame["open"].iloc[0]
    assert got["close"].iloc[0] == frame["close"].iloc[-1]
    assert got["high"].iloc[0] == frame["high"].max()
    assert got["volume"].iloc[0] == pytest.approx(frame["volume"].sum())
    assert got["trades"].iloc[0] == frame["trades"].sum()


def test_incomplete_aggregate_never_replaces_a_closed_candle(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    hourly = candles(2, step=3600)
    hourly[["buy_volume", "trades"]] = np.nan
    text = interchange_text(hourly).replace(",nan", ",")
    import_files([write(tmp_path / "h.csv", text)], db=db, progress=False)
    before = rows_of(db, "1h")
    # half an hour of minutes inside the first hour: its 1h aggregate is incomplete
    import_files([write(tmp_path / "m.csv", interchange_text(candles(30)))], db=db, progress=False)
    after = rows_of(db, "1h")
    pd.testing.assert_frame_equal(before, after)


def test_coarse_file_after_minutes_keeps_the_minute_aggregates(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    minutes = candles(60)
    import_files([write(tmp_path / "m.csv", interchange_text(minutes))], db=db, progress=False)
    built = rows_of(db, "1h")
    hourly = candles(2, step=3600)
    hourly[["buy_volume", "trades"]] = np.nan
    text = interchange_text(hourly).replace(",nan", ",")
    import_files([write(tmp_path / "h.csv", text)], db=db, progress=False)
    got = rows_of(db, "1h")
    # the hour covered by complete minutes keeps the values built from them (with buy volume)
    pd.testing.assert_series_equal(got.iloc[0], built.iloc[0], check_names=False)
    assert got["buy_volume"].iloc[0] == pytest.approx(minutes["buy_volume"].sum())
    # the other hour comes from the file
    assert got["close"].iloc[1] == hourly["close"].iloc[1]
    assert np.isnan(got["buy_volume"].iloc[1])


# -- malformed files -------------------------------------------------------------------------


def _corrupt(text: str, line: int, new: str) -> str:
    lines = text.split("\n")
    lines[line - 1] = new
    return "\n".join(lines)


@pytest.mark.parametrize(
    ("row", "pattern"),
    [
        (f"{T0 + 180},1,2,0.5,1.5,10,4", r"line 5: expected 8 fields .* found 7 fields"),
        (f"{T0 + 180},1,2,0.5,1.5,10,4,100,7", r"line 5: expected 8 fields .* found 9 fields"),
        (f"{T0 + 180},1,2,abc,1.5,10,4,100", r"line 5, field 'low': not a number \('abc'\)"),
        (f"{T0 + 180},1,2,0.5,,10,4,100", r"line 5, field 'close': empty required field"),
        (f"{T0 + 180},1,NaN,0.5,1.5,10,4,100", r"line 5, field 'high': not a number \('NaN'\)"),
        (f"{T0 + 180},1,2,0.5,1.5,10,4,1.5", r"line 5, field 'trades': not an integer"),
        (f"{T0 + 180},1,2,0.5,1.5,-10,4,100", r"line 5, field 'volume': negative value"),
        (f"{T0 + 120},1,2,0.5,1.5,10,4,100", r"line 5, field 'timestamp': duplicate"),
        ("", r"line 5: expected 8 fields .* found a blank line"),
    ],
    ids=[
        "short-row",
        "long-row",
        "non-numeric",
        "empty-required",
        "nan",
        "fractional-trades",
        "negative",
        "duplicate",
        "blank",
    ],
)
def test_malformed_row_writes_nothing(tmp_path: Path, row: str, pattern: str) -> None:
    text = interchange_text(candles(10))
    bad = write(tmp_path / "bad.csv", _corrupt(text, 5, row))
    db = tmp_path / "c.db"
    with pytest.raises(DataError, match=pattern) as info:
        import_files([bad], db=db, progress=False)
    assert str(bad) in str(info.value)
    assert table(db) == []


def test_malformed_binance_and_bybit_rows(tmp_path: Path) -> None:
    kl = binance_text(candles(5)).split("\n")
    kl[2] = kl[2].replace(",", ",x", 1)  # open of line 3
    path = write(tmp_path / "k.csv", "\n".join(kl))
    with pytest.raises(DataError, match=r"k.csv: line 3, field 'open': not a number"):
        import_files([path], db=tmp_path / "c.db", progress=False)
    tr = bybit_text(TRADES).split("\n")
    tr[3] = tr[3].replace(",Buy,", ",Long,").replace(",Sell,", ",Long,")
    path = write(tmp_path / "t.csv", "\n".join(tr))
    with pytest.raises(DataError, match=r"t.csv: line 4, field 'side': expected Buy or Sell"):
        import_files([path], db=tmp_path / "c.db", progress=False)
    assert table(tmp_path / "c.db") == []


def test_one_bad_file_stops_all_files(tmp_path: Path) -> None:
    # every file is validated before any is written: a bad second file keeps the first out too
    good = write(tmp_path / "good.csv", interchange_text(candles(5)))
    bad = write(tmp_path / "bad.csv", _corrupt(interchange_text(candles(5)), 3, "oops"))
    db = tmp_path / "c.db"
    with pytest.raises(DataError, match=r"bad\.csv: line 3.*none of the 2 files was imported"):
        import_files([good, bad], db=db, progress=False)
    assert table(db) == []
    # into an existing database: its candles stay exactly as they were
    import_files([good], db=db, progress=False)
    before = table(db)
    later = write(tmp_path / "later.csv", interchange_text(candles(5, start=T0 + 3600)))
    with pytest.raises(DataError, match=r"bad\.csv: line 3"):
        import_files([later, bad], db=db, progress=False)
    assert table(db) == before


# a candle file whose rows parse but break a candle rule: refused whole, naming line and field
BAD_ROWS = [
    ("high-below-low", {"high": 90.0, "low": 95.0}, r"line 8, field 'high': high 90\.0 below"),
    ("low-above-open", {"low": 200.0}, r"line 8, field 'low': low 200\.0 above min\(open"),
    ("buy-over-volume", {"buy_volume": 1e6}, r"line 8, field 'buy_volume': buy_volume 1000000"),
]


@pytest.mark.parametrize(
    ("change", "pattern"), [b[1:] for b in BAD_ROWS], ids=[b[0] for b in BAD_ROWS]
)
@pytest.mark.parametrize("kind", ["interchange", "binance"])
def test_inconsistent_row_writes_nothing(
    tmp_path: Path, kind: str, change: dict[str, float], pattern: str
) -> None:
    frame = candles(700)  # today (before the fix): 699 rows written, the bad one too
    for col, value in change.items():
        frame.loc[6 if kind == "interchange" else 7, col] = value  # line 8 either way
    text = interchange_text(frame) if kind == "interchange" else binance_text(frame)
    bad = write(tmp_path / f"{kind}.csv", text)
    db = tmp_path / "c.db"
    with pytest.raises(DataError, match=pattern) as info:
        import_files([bad], db=db, progress=False)
    assert str(bad) in str(info.value)
    assert table(db) == []


def test_every_bad_row_is_counted_and_out_of_order_is_refused(tmp_path: Path) -> None:
    frame = candles(20)
    frame.loc[[3, 9, 12], "buy_volume"] = 1e6
    path = write(tmp_path / "many.csv", interchange_text(frame))
    with pytest.raises(
        DataError, match=r"line 5, field 'buy_volume'.*\(and 2 more in this file, lines 11, 14\)"
    ):
        import_files([path], db=tmp_path / "c.db", progress=False)
    swapped = candles(10).iloc[[0, 1, 2, 4, 3, 5, 6, 7, 8, 9]]
    path = write(tmp_path / "swapped.csv", interchange_text(swapped))
    with pytest.raises(DataError, match=r"line 6, field 'timestamp': out of order"):
        import_files([path], db=tmp_path / "c.db", progress=False)
    assert table(tmp_path / "c.db") == []


def test_missing_file_and_unknown_timeframe(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        import_files([tmp_path / "nope.csv"], db=tmp_path / "c.db", progress=False)
    path = write(tmp_path / "c.csv", interchange_text(candles(3)))
    with pytest.raises(Exception, match="unknown timeframe '2h'"):
        import_files([path], db=tmp_path / "c.db", timeframe="2h", progress=False)


def test_cli_reports_malformed_file_in_one_line(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.csv", _corrupt(interchange_text(candles(5)), 4, "1,2"))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "signals",
            "data",
            "import",
            str(bad),
            "--db",
            str(tmp_path / "c.db"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "error:" in proc.stderr and "bad.csv: line 4" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_refuses_inconsistent_file_exit_2(tmp_path: Path) -> None:
    good = write(tmp_path / "good.csv", interchange_text(candles(60)))
    frame = candles(60, start=T0 + 3600)
    frame.loc[9, "high"] = frame.loc[9, "low"] - 1.0  # high < low on line 11
    bad = write(tmp_path / "bad.csv", interchange_text(frame))
    db = tmp_path / "c.db"
    args = [sys.executable, "-m", "signals", "data", "import", str(good), str(bad)]
    proc = subprocess.run(
        [*args, "--db", str(db), "--no-progress"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2, proc.stderr
    assert "bad.csv: line 11, field 'high'" in proc.stderr
    assert "none of the 2 files was imported" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert table(db) == []
