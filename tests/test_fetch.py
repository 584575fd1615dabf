"""`signals data fetch` against a local fake of Bybit's v5 REST API, through a real ccxt client.

The fake is an HTTP server on 127.0.0.1 that answers ``/v5/market/instruments-info`` (so ccxt's
``load_markets`` works) and ``/v5/market/kline`` (newest first, like Bybit) from canned candles,
and can answer a kline request with an HTTP error to exercise retries.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import ccxt
import numpy as np
import pytest

from signals.data.aggregate import aggregate
from signals.data.crashpoint import ENV as CRASH_ENV
from signals.data.fetch import default_store_symbol, fetch_candles
from signals.data.importers import import_files
from signals.data.store import CandleStore, frame_from_rows
from signals.errors import DataError
from signals.timeframes import higher_timeframes

REPO = Path(__file__).resolve().parents[1]
T0 = 1704067200  # 2024-01-01 00:00 UTC

INSTRUMENT = {
    "symbol": "BTCUSDT",
    "baseCoin": "BTC",
    "quoteCoin": "USDT",
    "innovation": "0",
    "status": "Trading",
    "marginTrading": "both",
    "lotSizeFilter": {
        "basePrecision": "0.000001",
        "quotePrecision": "0.00000001",
        "minOrderQty": "0.000048",
        "maxOrderQty": "71.73956243",
        "minOrderAmt": "1",
        "maxOrderAmt": "2000000",
    },
    "priceFilter": {"tickSize": "0.01"},
}


def kline(ts: int) -> list[float]:
    """A deterministic 1m candle opening at `ts` (epoch s), as ccxt returns it."""
    i = (ts - T0) // 60
    base = 40000.0 + 10.0 * (i % 50) - 3.0 * (i % 7)
    close = base + (5.0 if i % 3 else -4.0)
    return [ts * 1000, base, max(base, close) + 2.5, min(base, close) - 1.5, close, 1.0 + i % 5]


class FakeBybit:
    """Bybit v5 market endpoints over local HTTP, serving canned 1m klines up to `now`."""

    def __init__(self, first: int, count: int) -> None:
        self.klines = [kline(first + 60 * i) for i in range(count)]
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.failures: list[int] = []  # HTTP codes to answer kline requests with, in order
        self.fail_after = 0  # kline requests served before the failures start
        self.hold_at: int | None = None  # the n-th kline request (1-based) waits for `release`
        self.held, self.release = threading.Event(), threading.Event()
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def extend(self, count: int) -> None:
        last = self.klines[-1][0] // 1000
        self.klines += [kline(last + 60 * (i + 1)) for i in range(count)]

    def kline_calls(self) -> list[dict[str, str]]:
        return [q for path, q in self.requests if path == "/v5/market/kline"]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def answer(self, path: str, query: dict[str, str]) -> tuple[int, object]:
        if path == "/v5/market/kline" and self.hold_at is not None:
            with self._lock:
                n = len(self.kline_calls()) + 1
            if n == self.hold_at:
                self.held.set()
                self.release.wait(60)
        with self._lock:
            self.requests.append((path, query))
            if path == "/v5/market/kline":
                served = len(self.kline_calls()) - 1
                if served >= self.fail_after and self.failures:
                    return self.failures.pop(0), "service unavailable"
                return 200, self._klines(query)
        if path == "/v5/market/instruments-info":
            items = [INSTRUMENT] if query.get("category") == "spot" else []
            result = {"category": query.get("category"), "list": items, "nextPageCursor": ""}
            return 200, {"retCode": 0, "retMsg": "OK", "result": result, "time": 0}
        return 404, {"retCode": 10001, "retMsg": f"unknown path {path}"}

    def _klines(self, query: dict[str, str]) -> dict[str, object]:
        start, limit = int(query.get("start", 0)), int(query.get("limit", 200))
        end = int(query.get("end", 2**62))
        rows = [k for k in self.klines if start <= k[0] <= end][:limit]
        items = [[str(v) for v in row] + ["0"] for row in reversed(rows)]  # newest first
        result = {"symbol": query["symbol"], "category": query["category"], "list": items}
        return {"retCode": 0, "retMsg": "OK", "result": result, "time": 0}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                code, body = fake.answer(url.path, query)
                data = (body if isinstance(body, str) else json.dumps(body)).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


def client(url: str) -> ccxt.Exchange:
    """A real ccxt bybit client whose REST calls go to the local fake."""
    exchange = ccxt.bybit({"enableRateLimit": False, "options": {"fetchMarkets": ["spot"]}})
    exchange.urls["api"] = {name: url for name in exchange.urls["api"]}
    return exchange


class Recorder:
    """Injected clock and sleep: time stands still, sleeps are recorded."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


@pytest.fixture
def fake() -> Iterator[FakeBybit]:
    server = FakeBybit(T0, 2500)  # candle 2499 is still forming at NOW
    yield server
    server.close()


NOW = T0 + 2499 * 60 + 30


def run(fake: FakeBybit, db: Path, rec: Recorder, **kw: object):
    params: dict[str, object] = {
        "exchange": client(fake.url),
        "symbol": "BTC/USDT",
        "timeframe": "1m",
        "since": T0,
        "db": db,
        "progress": False,
        "clock": rec.clock,
        "sleep": rec.sleep,
    }
    params.update(kw)
    return fetch_candles(**params)


def rows(db: Path, timeframe: str = "1m") -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT timestamp, open, high, low, close, volume, buy_volume, trades, closed "
            "FROM candles WHERE symbol = 'BTCUSDT' AND timeframe = ? ORDER BY timestamp",
            (timeframe,),
        ).fetchall()


def test_full_backfill_skips_forming_candle_and_sleeps(fake: FakeBybit, tmp_path: Path) -> None:
    db, rec = tmp_path / "candles.db", Recorder(NOW)
    summary = run(fake, db, rec)
    stored = rows(db)
    assert len(stored) == 2499 and summary.stored == 2499
    assert [r[0] for r in stored] == [T0 + 60 * i for i in range(2499)]
    assert all(r[-1] == 1 for r in stored)
    assert stored[0][1:6] == tuple(kline(T0)[1:])
    assert stored[0][6] is None and stored[0][7] is None  # buy volume / trades unknown
    assert summary.skipped_forming == 1
    assert summary.first == T0 and summary.last == T0 + 2498 * 60
    calls = fake.kline_calls()
    assert [int(q["start"]) // 1000 for q in calls] == [T0, T0 + 60_000, T0 + 120_000]
    assert all(q["limit"] == "1000" and q["interval"] == "1" for q in calls)
    assert summary.calls == 3
    assert rec.sleeps == [0.02, 0.02]  # bybit's rateLimit (20 ms) between the three calls
    assert "forming" in summary.describe()


def test_higher_timeframes_aggregated(fake: FakeBybit, tmp_path: Path) -> None:
    db = tmp_path / "candles.db"
    summary = run(fake, db, Recorder(NOW))
    # 2499 closed minutes = 41 whole hours + 39 minutes
    assert summary.aggregated == {"5m": 500, "15m": 167, "1h": 42, "4h": 11, "1d": 2}
    with CandleStore(db) as store:
        base = store.history("BTCUSDT", "1m")
        hourly = store.history("BTCUSDT", "1h")
        daily = store.history("BTCUSDT", "1d")
    assert len(hourly) == 41 and len(daily) == 1  # only complete candles are closed
    grouped = base.groupby(base.index.floor("1h"))
    assert (hourly["high"] == grouped["high"].max().iloc[:41]).all()
    assert (hourly["low"] == grouped["low"].min().iloc[:41]).all()
    assert (hourly["open"] == grouped["open"].first().iloc[:41]).all()
    assert (hourly["volume"] == grouped["volume"].sum().iloc[:41]).all()
    assert hourly["buy_volume"].isna().all()
    forming_hour = [r for r in rows(db, "1h") if r[-1] == 0]
    assert [r[0] for r in forming_hour] == [T0 + 41 * 3600]


def test_resume_from_last_stored_candle(fake: FakeBybit, tmp_path: Path) -> None:
    db = tmp_path / "candles.db"
    run(fake, db, Recorder(NOW))
    before = len(fake.kline_calls())
    fake.extend(100)  # 100 more minutes pass; the formerly forming candle is now closed
    rec = Recorder(NOW + 100 * 60)
    summary = run(fake, db, rec, since=T0 - 86400)  # an earlier --since is ignored
    new_calls = fake.kline_calls()[before:]
    assert len(new_calls) == 1  # no re-fetch of old pages
    assert int(new_calls[0]["start"]) // 1000 == T0 + 2499 * 60
    assert summary.resumed and summary.start == T0 + 2499 * 60
    assert "resuming" in summary.describe() and "ignored" in summary.describe()
    assert summary.stored == 100
    stored = [r[0] for r in rows(db)]
    assert stored == [T0 + 60 * i for i in range(2599)]  # no duplicates, no gaps
    assert rec.sleeps == []  # a single call needs no pause
    # nothing new: no request at all
    again = run(fake, db, rec)
    assert again.calls == 0 and again.stored == 0 and "up to date" in again.describe()


def test_until_bounds_the_backfill(fake: FakeBybit, tmp_path: Path) -> None:
    db = tmp_path / "candles.db"
    summary = run(fake, db, Recorder(NOW), until=T0 + 1500 * 60, limit=600)
    assert summary.stored == 1500 and summary.calls == 3
    assert [r[0] for r in rows(db)][-1] == T0 + 1499 * 60
    assert summary.skipped_forming == 0


def test_since_is_aligned_to_candle_open(fake: FakeBybit, tmp_path: Path) -> None:
    db = tmp_path / "candles.db"
    summary = run(fake, db, Recorder(NOW), since=T0 + 90, until=T0 + 600)
    assert [r[0] for r in rows(db)] == [T0 + 60 * i for i in range(2, 10)]
    assert summary.start == T0 + 120


def test_retries_transient_errors_with_backoff(fake: FakeBybit, tmp_path: Path) -> None:
    db, rec = tmp_path / "candles.db", Recorder(NOW)
    fake.fail_after, fake.failures = 1, [503, 429, 502]
    summary = run(fake, db, rec, backoff=0.5)
    assert summary.stored == 2499 and summary.retries == 3
    assert rec.sleeps == [0.02, 0.5, 1.0, 2.0, 0.02]
    assert len(fake.kline_calls()) == 6


def test_gives_up_after_retries_keeping_what_was_stored(fake: FakeBybit, tmp_path: Path) -> None:
    db, rec = tmp_path / "candles.db", Recorder(NOW)
    fake.fail_after, fake.failures = 1, [503] * 10
    with pytest.raises(DataError, match=r"failed after 3 retries.*1000 candles stored so far"):
        run(fake, db, rec, retries=3)
    assert len(rows(db)) == 1000
    assert len(rows(db, "1h")) == 17  # the stored part is aggregated too (16 whole hours + 1)
    fake.failures = []
    summary = run(fake, db, rec)  # resumes where it stopped
    assert summary.resumed and summary.stored == 1499
    assert len(rows(db)) == 2499


def test_unknown_symbol_is_a_clear_error(fake: FakeBybit, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="FOO/BAR"):
        run(fake, tmp_path / "candles.db", Recorder(NOW), symbol="FOO/BAR")


def test_store_symbol_default() -> None:
    assert default_store_symbol("BTC/USDT") == "BTCUSDT"
    assert default_store_symbol("BTC/USDT:USDT") == "BTCUSDT"


def test_cli_fetch_subprocess(tmp_path: Path) -> None:
    now = int(time.time())
    first = now - now % 60 - 300 * 60  # 300 closed minutes, then the forming one
    server = FakeBybit(first, 301)
    try:
        db = tmp_path / "cli.db"
        args = [sys.executable, "-m", "signals", "data", "fetch", "--exchange", "bybit"]
        args += ["--symbol", "BTC/USDT", "--timeframe", "1m", "--since", str(first)]
        args += ["--db", str(db), "--api-url", server.url, "--no-progress"]
        proc = subprocess.run(args, capture_output=True, text=True, cwd=REPO, timeout=120)
        assert proc.returncode == 0, proc.stderr
        # the forming candle closes if a minute boundary passed while the command ran
        crossed = int(time.time()) // 60 != now // 60
        expected = {300, 301} if crossed else {300}
        assert any(f"{n} closed candles stored" in proc.stdout for n in expected), proc.stdout
        with sqlite3.connect(db) as conn:
            count = conn.execute(
                "SELECT COUNT(*) FROM candles WHERE symbol='BTCUSDT' AND timeframe='1m'"
            ).fetchone()[0]
            tfs = {tf for (tf,) in conn.execute("SELECT DISTINCT timeframe FROM candles")}
        assert count in expected
        assert tfs == {"1m", "5m", "15m", "1h", "4h", "1d"}
    finally:
        server.close()


def test_cli_fetch_bad_date_is_clear_error(tmp_path: Path) -> None:
    args = [sys.executable, "-m", "signals", "data", "fetch", "--since", "yesterday-ish"]
    args += ["--db", str(tmp_path / "x.db")]
    proc = subprocess.run(args, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2
    assert "yesterday-ish" in proc.stderr and "Traceback" not in proc.stderr


# -- invalid exchange data -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({2: 39000.0}, r"high: high 39000\.0 below max\(open, close\)"),  # high < low
        ({5: -1.0}, r"volume: volume -1\.0 is negative"),
    ],
    ids=["high-below-low", "negative-volume"],
)
def test_invalid_candle_from_exchange_is_not_stored(
    fake: FakeBybit, tmp_path: Path, change: dict[int, float], pattern: str
) -> None:
    for col, value in change.items():
        fake.klines[1500][col] = value  # on the second page of 1000
    db = tmp_path / "candles.db"
    with pytest.raises(DataError, match=pattern) as info:
        run(fake, db, Recorder(NOW))
    message = str(info.value)
    assert "2024-01-02T01:00:00Z" in message  # the bad candle's open time (T0 + 1500 min)
    assert "nothing of this page was stored, the 1000 candles stored before it" in message
    assert [r[0] for r in rows(db)] == [T0 + 60 * i for i in range(1000)]  # before: all 2499
    assert mismatched_aggregates(db) == []  # what was stored is aggregated


# -- a fetch killed anywhere is repaired by the next run -------------------------------------


def mismatched_aggregates(db: Path, symbol: str = "BTCUSDT") -> list[str]:
    """The higher timeframes whose stored buckets differ from aggregate(stored 1m), all of them
    (closed flag included), over the whole stored range."""
    with sqlite3.connect(db) as conn:
        base = frame_from_rows(
            conn.execute(
                "SELECT timestamp, open, high, low, close, volume, buy_volume, trades FROM candles "
                "WHERE symbol = ? AND timeframe = '1m' AND closed = 1 ORDER BY timestamp",
                (symbol,),
            ).fetchall(),
            ["timestamp", "open", "high", "low", "close", "volume", "buy_volume", "trades"],
        )
        bad = []
        for tf in higher_timeframes("1m"):
            want = aggregate(base, base="1m", target=tf)
            got = conn.execute(
                "SELECT timestamp, open, high, low, close, volume, buy_volume, trades, closed "
                "FROM candles WHERE symbol = ? AND timeframe = ? ORDER BY timestamp",
                (symbol, tf),
            ).fetchall()
            got_arr = np.array(got, dtype="float64").reshape(-1, 9)
            want_ts = want.index.as_unit("s").asi8
            same = got_arr[:, 0].astype("int64").tolist() == want_ts.tolist() and np.allclose(
                got_arr[:, 1:8],
                want[["open", "high", "low", "close", "volume", "buy_volume", "trades"]].to_numpy(
                    "float64"
                ),
                equal_nan=True,
            )
            if not same or got_arr[:, 8].tolist() != want["complete"].astype(float).tolist():
                bad.append(tf)
    return bad


def fetch_cli(server: FakeBybit, db: Path, first: int, env: dict[str, str]) -> subprocess.Popen:
    args = [sys.executable, "-m", "signals", "data", "fetch", "--exchange", "bybit"]
    args += ["--symbol", "BTC/USDT", "--timeframe", "1m", "--since", str(first), "--limit", "100"]
    args += ["--db", str(db), "--api-url", server.url, "--no-progress"]
    return subprocess.Popen(
        args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


KILLS = [
    "between-pages",  # SIGKILL from outside while the 3rd page is requested: 2 pages committed
    "fetch:aggregate",  # all pages committed, killed before the higher timeframes are built
    "aggregate:5m",  # killed inside the aggregation transaction, after the 5m rows
    "aggregate:1h",  # ... after 5m, 15m and 1h
]


@pytest.mark.parametrize(
    ("kill", "then"), [*((k, "fetch") for k in KILLS), ("aggregate:5m", "import")]
)
def test_killed_fetch_is_repaired_by_the_next_run(tmp_path: Path, kill: str, then: str) -> None:
    now = int(time.time())
    first = now - now % 60 - 300 * 60  # 300 closed minutes (3 pages of 100), then a forming one
    server = FakeBybit(first, 301)
    try:
        db = tmp_path / "k.db"
        env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
        if kill == "between-pages":
            server.hold_at = 3
            proc = fetch_cli(server, db, first, env)
            assert server.held.wait(60), proc.communicate()
            proc.send_signal(signal.SIGKILL)
        else:
            proc = fetch_cli(server, db, first, {**env, CRASH_ENV: kill})
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == -signal.SIGKILL, err
        server.release.set()
        stored = len(rows(db))
        # (301: the forming minute closed while the command ran)
        assert stored in ({200} if kill == "between-pages" else {300, 301})
        assert mismatched_aggregates(db) == ["5m", "15m", "1h", "4h", "1d"]  # left broken
        if then == "fetch":  # the next fetch, in process, resumes and repairs
            summary = fetch_candles(
                exchange=client(server.url), symbol="BTC/USDT", timeframe="1m", since=first,
                db=db, limit=100, progress=False, sleep=lambda s: None,
            )  # fmt: skip
            assert mismatched_aggregates(db) == []  # every bucket equals aggregate(1m)
            assert summary.stored == len(rows(db)) - stored
            if kill != "between-pages":
                assert "repaired after an interrupted write" in summary.describe()
        else:  # or an import of anything (another symbol here) repairs it
            other = tmp_path / "eth.csv"
            other.write_text(
                "timestamp,open,high,low,close,volume,buy_volume,trades\n"
                f"{first},1,2,0.5,1.5,10,4,7\n{first + 60},1.5,2,1,1.2,10,4,7\n"
            )
            summary = import_files([other], db=db, symbol="ETHUSDT", progress=False)
            assert mismatched_aggregates(db) == []
            assert [r.symbol for r in summary.repaired] == ["BTCUSDT"]
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT COUNT(*) FROM aggregate_pending").fetchone()[0] == 0
    finally:
        server.close()
