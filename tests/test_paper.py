"""The paper bot against a fake runner on a real Unix socket, real SQLite, real subprocesses.

The fake runner speaks signals/protocol.py: hello (with last_seq), then on a client's resume the
journal after since_seq, then whatever is published live, plus heartbeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from paper.accounting import NO_FUNDING, execute, plan, trade_pnl
from paper.bot import PaperBot, PaperConfig
from paper.errors import PaperError
from paper.ledger import Ledger, read_table
from research.backtest.versus_paper import compare_with_backtest
from signals.costs import CostModel
from signals.data.load import load_candles
from signals.data.store import connect_writable, write_candles
from signals.data.synth import write_synth_db
from signals.frozen import freeze, write_frozen
from signals.protocol import ErrorMessage, Heartbeat, Hello, Signal, decode_client, encode
from signals.scan import signal_records
from strategies import get_strategy

T0 = int(pd.Timestamp("2024-01-01", tz="UTC").timestamp())


# -- a fake runner -----------------------------------------------------------------------------


class FakeRunner:
    """An asyncio UDS server: hello, resume from its journal, live publishing, heartbeats."""

    def __init__(
        self,
        path: Path,
        *,
        drop_after: int | None = None,
        overlap: int = 0,
        heartbeat: float = 0.05,
        params_id: str = "pid",
        stream: str | None = None,
    ) -> None:
        self.path, self.drop_after, self.overlap = path, drop_after, overlap
        self.heartbeat, self.params_id, self.stream = heartbeat, params_id, stream
        self.journal: list[Signal] = []
        self.clients: list[asyncio.StreamWriter] = []
        self.resumes: list[int] = []
        self.connections = 0
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_unix_server(self._serve, path=str(self.path))

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.clients:
            writer.close()
        await self.server.wait_closed()

    def add(self, records: list[dict]) -> None:
        """Append signals to the journal without sending them (as if emitted before)."""
        for record in records:
            seq = len(self.journal) + 1
            self.journal.append(Signal(**record, seq=seq, emitted_at=time.time()))

    async def publish(self, record: dict) -> None:
        """Emit one live signal to every connected client."""
        self.add([record])
        for writer in list(self.clients):
            writer.write(encode(self.journal[-1]))
            await writer.drain()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        first_connection = self.connections == 1
        hello = Hello(strategy="s", params_id=self.params_id, symbol="BTCUSDT", timeframe="1m",
                      last_seq=len(self.journal), stream=self.stream)  # fmt: skip
        writer.write(encode(hello))
        try:
            line = await asyncio.wait_for(reader.readline(), timeout=2.0)
            since = decode_client(line).since_seq  # type: ignore[union-attr]  # the bot's first line is a Resume
            self.resumes.append(since)
            if since > len(self.journal):  # as live.hub.Hub.resume
                message = f"since_seq {since} is beyond this journal's last seq {len(self.journal)}"
                writer.write(encode(ErrorMessage(code="unknown_seq", message=message)))
            for sent, sig in enumerate(self.journal[max(0, since - self.overlap) :], start=1):
                writer.write(encode(sig))
                if first_connection and self.drop_after is not None and sent >= self.drop_after:
                    await writer.drain()
                    writer.close()  # mid-stream: the client must reconnect and resume
                    return
            await writer.drain()
            self.clients.append(writer)
            while True:
                await asyncio.sleep(self.heartbeat)
                writer.write(encode(Heartbeat(last_seq=len(self.journal), ts=time.time())))
                await writer.drain()
        except (ConnectionError, TimeoutError, asyncio.CancelledError):
            pass
        finally:
            if writer in self.clients:
                self.clients.remove(writer)
            writer.close()


def record(side: str, candle: int, price: float = 100.0) -> dict:
    """A wire-protocol signal (without seq/emitted_at) on 1m candle number `candle`."""
    return {
        "signal": side, "symbol": "BTCUSDT", "timeframe": "1m", "candle_ts": T0 + 60 * candle,
        "price": price, "confidence": 0.8, "reasons": ["rule"], "strategy": "s",
        "params_id": "pid",
    }  # fmt: skip


def ladder(n: int, first: int = 0) -> pd.DataFrame:
    """1m candles number first..first+n-1 whose open is 100 + number (hand-computable fills)."""
    number = np.arange(first, first + n, dtype="float64")
    open_ = 100.0 + number
    index = pd.date_range(pd.Timestamp(T0 + 60 * first, unit="s", tz="UTC"), periods=n,
                          freq="1min", name="time")  # fmt: skip
    return pd.DataFrame(
        {"open": open_, "high": open_ + 1.0, "low": open_ - 0.5, "close": open_ + 0.5,
         "volume": 10.0, "buy_volume": 5.0, "trades": 20.0},
        index=index,
    )  # fmt: skip


def write_db(path: Path, frame: pd.DataFrame) -> None:
    conn = connect_writable(path)
    write_candles(conn, frame, symbol="BTCUSDT", timeframe="1m")
    conn.close()


def config(tmp_path: Path, **kw: object) -> PaperConfig:
    base: dict = {
        "socket": tmp_path / "runner.sock", "db": tmp_path / "candles.db",
        "ledger": tmp_path / "paper.db", "costs": CostModel(fee_bps=10.0, slippage_bps=5.0),
        "since_seq": 0, "reconnect_min": 0.01, "reconnect_max": 0.1, "idle_timeout": 5.0,
    }  # fmt: skip
    base.update(kw)
    return PaperConfig(**base)


async def run_until(
    bot: PaperBot, done: Callable[[], bool], *, timeout: float = 10.0, during=None
) -> None:
    """Run the bot until `done()` (checked every 10 ms), then stop it as SIGTERM would."""
    stop = asyncio.Event()
    task = asyncio.create_task(bot.run(stop))
    if during is not None:
        await during()
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "condition not reached in time"
        if task.done():
            task.result()  # raises what stopped the bot
            raise AssertionError("the bot stopped by itself")
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, timeout=5.0)


def statuses(ledger: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(ledger) as conn:
        return conn.execute("SELECT seq, status FROM signals ORDER BY seq").fetchall()


# -- accounting against vectorbt ---------------------------------------------------------------


FEE, SLIP = 0.001, 0.0005  # 10 bps fee per side, 5 bps slippage


def test_fill_at_next_open_hand_computed(tmp_path: Path) -> None:
    write_db(tmp_path / "candles.db", ladder(10))

    async def scenario() -> None:
        runner = FakeRunner(tmp_path / "runner.sock")
        runner.add([record("BUY", 2), record("SELL", 5)])
        await runner.start()
        bot = PaperBot(config(tmp_path))
        try:
            await run_until(bot, lambda: bot.ledger.last_seq() == 2 and not bot.ledger.pending())
        finally:
            bot.close()
            await runner.stop()

    asyncio.run(scenario())
    fills = read_table(tmp_path / "paper.db", "fills")
    # BUY on candle 2 fills at candle 3's open 103: price 103 x 1.0005 = 103.0515,
    # size = 10000 / (103.0515 x 1.001) = 96.941917..., fees = 10000 - 10000 / 1.001 = 9.99001
    entry, exit_ = fills.iloc[0], fills.iloc[1]
    assert entry["candle_ts"] == T0 + 180 and entry["open"] == 103.0
    assert entry["price"] == pytest.approx(103.0515, rel=1e-12)
    assert entry["size"] == pytest.approx(10000 / (103.0515 * 1.001), rel=1e-12)
    assert entry["size"] == pytest.approx(96.941917, rel=1e-6)
    assert entry["fees"] == pytest.approx(9.990010, rel=1e-6)
    assert entry["cash_after"] == 0.0
    # SELL on candle 5 fills at candle 6's open 106: price 106 x 0.9995 = 105.947,
    # proceeds 96.941917 x 105.947 = 10270.7053, fee 10.2707053, cash 10260.4346
    size = 10000 / (103.0515 * 1.001)
    assert exit_["candle_ts"] == T0 + 360 and exit_["price"] == pytest.approx(105.947, rel=1e-12)
    assert exit_["fees"] == pytest.approx(size * 105.947 * 0.001, rel=1e-12)
    assert exit_["cash_after"] == pytest.approx(size * 105.947 * 0.999, rel=1e-12)
    assert exit_["cash_after"] == pytest.approx(10260.4346, abs=1e-4)
    trades = read_table(tmp_path / "paper.db", "trades")
    assert len(trades) == 1 and trades["status"].iloc[0] == "closed"
    # pnl = size x (105.947 - 103.0515) - 9.99001 - 10.27071 = 260.4346
    assert trades["pnl"].iloc[0] == pytest.approx(260.4346, abs=1e-4)
    assert trades["pnl"].iloc[0] == pytest.approx(exit_["cash_after"] - 10000, rel=1e-12)


@pytest.mark.parametrize("direction", ["long", "short", "both"])
def test_accounting_equals_vectorbt(direction: str) -> None:
    from research.backtest.execution import ExecutionModel, simulate
    from research.backtest.run import trade_list
    from tests.candles import random_walk

    candles = random_walk(300, seed=4)
    rng = np.random.default_rng(9)
    sides = rng.choice(["BUY", "SELL", None], size=len(candles), p=[0.05, 0.05, 0.9])
    buy = pd.Series(sides == "BUY", index=candles.index)
    sell = pd.Series(sides == "SELL", index=candles.index)
    costs = CostModel(fee_bps=7.5, slippage_bps=3.0)
    pf = simulate(candles, buy, sell, execution=ExecutionModel(direction=direction),
                  costs=costs, timeframe="1m")  # fmt: skip
    expected = trade_list(pf, candles.index)
    cash, position, trades = 10_000.0, 0.0, []
    opens = candles["open"].to_numpy()
    for i in np.flatnonzero(sides[:-1] != None):  # noqa: E711
        legs = execute(plan(direction, sides[i], position), cash=cash, position=position,
                       open_=opens[i + 1], fee=costs.fee_fraction(), slip=3e-4)  # fmt: skip
        for leg in legs:
            if leg.action == "open":
                trades.append([leg.direction, i + 1, leg.price, leg.size, leg.fees])
            else:
                kind, at, entry, size, fees = trades[-1]
                pnl, _ = trade_pnl(kind, size, entry, leg.price, fees + leg.fees)
                trades[-1] = [kind, at, entry, size, fees, i + 1, leg.price, pnl]
            cash, position = leg.cash_after, leg.position_after
    closed = expected[expected["status"] == "closed"]
    assert len(closed) == sum(len(t) == 8 for t in trades) and len(closed) > 5
    for ours, (_, theirs) in zip(trades, closed.iterrows(), strict=False):
        assert ours[0] == theirs["direction"]
        assert candles.index[ours[1]] == theirs["entry_time"]
        assert candles.index[ours[5]] == theirs["exit_time"]
        assert ours[2] == pytest.approx(theirs["entry_price"], rel=1e-12)
        assert ours[3] == pytest.approx(theirs["size"], rel=1e-9)
        assert ours[7] == pytest.approx(theirs["pnl"], rel=1e-9, abs=1e-8)
    final = cash + position * candles["close"].iloc[-1]
    assert final == pytest.approx(float(np.asarray(pf.value()).ravel()[-1]), rel=1e-9)


def test_plan_rules() -> None:
    assert plan("long", "BUY", 0.0) == [("open", "long")]
    assert plan("long", "BUY", 1.0) == []
    assert plan("long", "SELL", 0.0) == []
    assert plan("long", "SELL", 1.0) == [("close", "long")]
    assert plan("short", "SELL", 0.0) == [("open", "short")]
    assert plan("short", "BUY", -1.0) == [("close", "short")]
    assert plan("both", "SELL", 1.0) == [("close", "long"), ("open", "short")]
    assert plan("both", "BUY", -1.0) == [("close", "short"), ("open", "long")]


# -- the bot on a socket -----------------------------------------------------------------------


def test_waits_for_the_next_candle(tmp_path: Path) -> None:
    db = tmp_path / "candles.db"
    write_db(db, ladder(6))  # candles 0..5: the signal's next candle is not stored yet

    async def scenario() -> None:
        runner = FakeRunner(tmp_path / "runner.sock")
        await runner.start()
        bot = PaperBot(config(tmp_path))
        try:

            async def during() -> None:
                await asyncio.sleep(0.2)
                await runner.publish(record("BUY", 5))
                await asyncio.sleep(0.3)
                assert statuses(tmp_path / "paper.db") == [(1, "pending")]
                assert bot.position == 0.0
                write_db(db, ladder(1, first=6))  # the pipeline stores candle 6

            await run_until(bot, lambda: bot.position > 0, during=during)
        finally:
            bot.close()
            await runner.stop()

    asyncio.run(scenario())
    fills = read_table(tmp_path / "paper.db", "fills")
    assert fills["candle_ts"].tolist() == [T0 + 360] and fills["open"].tolist() == [106.0]
    assert statuses(tmp_path / "paper.db") == [(1, "filled")]


def test_reconnect_and_resume_without_duplicates(tmp_path: Path) -> None:
    write_db(tmp_path / "candles.db", ladder(30))
    sides = ["BUY", "SELL", "SELL", "BUY", "BUY", "SELL", "BUY", "SELL"]

    async def scenario() -> tuple[FakeRunner, PaperBot]:
        # drops the first connection after 3 signals; on resume re-sends 2 already-seen ones
        runner = FakeRunner(tmp_path / "runner.sock", drop_after=3, overlap=2)
        runner.add([record(side, 2 + 2 * i) for i, side in enumerate(sides[:5])])
        await runner.start()
        bot = PaperBot(config(tmp_path))
        try:

            async def during() -> None:
                while runner.connections < 2:
                    await asyncio.sleep(0.01)
                for i, side in enumerate(sides[5:], start=5):
                    await runner.publish(record(side, 2 + 2 * i))

            await run_until(bot, lambda: len(statuses(bot.config.ledger)) == 8
                            and not bot.ledger.pending(), during=during)  # fmt: skip
        finally:
            bot.close()
            await runner.stop()
        return runner, bot

    runner, bot = asyncio.run(scenario())
    assert runner.resumes == [0, 3]
    assert bot.connections == 2 and bot.duplicates == 2
    signals = read_table(tmp_path / "paper.db", "signals")
    assert signals["seq"].tolist() == list(range(1, 9))
    assert signals["signal"].tolist() == sides
    # long-only: BUY opens, SELL closes, others are ignored (as vectorbt ignores them)
    assert signals["status"].tolist() == ["filled", "filled", "ignored", "filled", "ignored",
                                          "filled", "filled", "filled"]  # fmt: skip
    trades = read_table(tmp_path / "paper.db", "trades")
    assert trades["entry_seq"].tolist() == [1, 4, 7] and trades["exit_seq"].tolist() == [2, 6, 8]
    fills = read_table(tmp_path / "paper.db", "fills")
    assert fills["seq"].tolist() == [1, 2, 4, 6, 7, 8]
    assert fills["candle_ts"].tolist() == [T0 + 60 * (3 + 2 * (s - 1)) for s in fills["seq"]]


def test_restart_continues_from_the_ledger(tmp_path: Path) -> None:
    write_db(tmp_path / "candles.db", ladder(20))

    async def session(
        records: list[dict], expect: int, **kw: object
    ) -> tuple[FakeRunner, PaperBot]:
        runner = FakeRunner(tmp_path / "runner.sock", **kw)  # type: ignore[arg-type]  # test keyword arguments, typed object
        runner.add(records)
        await runner.start()
        bot = PaperBot(config(tmp_path))
        try:
            await run_until(bot, lambda: bot.ledger.last_seq() == expect
                            and not bot.ledger.pending())  # fmt: skip
        finally:
            bot.close()
            await runner.stop()
        return runner, bot

    asyncio.run(session([record("BUY", 2)], 1))
    # the runner's journal grew while the bot was down; a sloppy runner re-sends everything
    records = [record("BUY", 2), record("SELL", 4), record("BUY", 6)]
    runner, bot = asyncio.run(session(records, 3, overlap=10))
    assert runner.resumes == [1] and bot.duplicates == 1
    trades = read_table(tmp_path / "paper.db", "trades")
    assert trades["status"].tolist() == ["closed", "open"]
    assert trades["entry_time"].tolist() == [T0 + 180, T0 + 420]
    meta = dict(
        zip(*read_table(tmp_path / "paper.db", "meta").to_dict("list").values(), strict=True)
    )
    assert json.loads(meta["params_id"]) == "pid" and json.loads(meta["start_seq"]) == 0
    with pytest.raises(PaperError, match="ledger was recorded with"):
        PaperBot(config(tmp_path, init_cash=5000.0))


def test_refuses_a_runner_with_other_parameters(tmp_path: Path) -> None:
    write_db(tmp_path / "candles.db", ladder(5))

    async def scenario(params_id: str, seq: int) -> None:
        runner = FakeRunner(tmp_path / "runner.sock", params_id=params_id)
        runner.add([record("BUY", 1), record("SELL", 2)])
        await runner.start()
        bot = PaperBot(config(tmp_path))
        try:
            await run_until(bot, lambda: bot.ledger.last_seq() == seq, timeout=5)
        finally:
            bot.close()
            await runner.stop()

    asyncio.run(scenario("pid", 2))
    with pytest.raises(PaperError, match="params_id pid, the runner serves other"):
        asyncio.run(scenario("other", 3))


def test_unknown_seq_is_logged_and_the_stream_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The runner's journal (same stream) was restored from an older copy: it ends at seq 1,
    # the ledger at seq 3. The runner answers unknown_seq and goes on from its end.
    write_db(tmp_path / "candles.db", ladder(20))

    async def session(records: list[dict], expect: int, publish: list[dict]) -> PaperBot:
        runner = FakeRunner(tmp_path / "runner.sock", stream="s1")
        runner.add(records)
        await runner.start()
        bot = PaperBot(config(tmp_path))

        async def during() -> None:
            while not runner.clients:
                await asyncio.sleep(0.01)
            for item in publish:
                await runner.publish(item)

        try:
            await run_until(bot, lambda: bot.ledger.last_seq() == expect, during=during)
        finally:
            bot.close()
            await runner.stop()
        return bot

    asyncio.run(session([record("BUY", 2), record("SELL", 4), record("BUY", 6)], 3, []))
    with caplog.at_level("WARNING", logger="paper.bot"):
        bot = asyncio.run(session([record("BUY", 2)], 4, [record("SELL", 4), record("BUY", 6),
                                                          record("SELL", 8)]))  # fmt: skip
    assert bot.unknown_seq == 1 and bot.duplicates == 2
    assert "event=unknown_seq ledger_seq=3 stream=s1" in caplog.text
    assert statuses(tmp_path / "paper.db")[-1] == (4, "filled")


def test_a_ledger_from_before_streams_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "paper.db"
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(
            "CREATE TABLE signals (seq INTEGER PRIMARY KEY, signal TEXT NOT NULL, "
            "symbol TEXT NOT NULL, timeframe TEXT NOT NULL, candle_ts INTEGER NOT NULL, "
            "price REAL NOT NULL, confidence REAL, reasons TEXT, strategy TEXT, params_id TEXT, "
            "emitted_at REAL, stale INTEGER NOT NULL DEFAULT 0, received_at REAL NOT NULL, "
            "status TEXT NOT NULL DEFAULT 'pending', fill_ts INTEGER, note TEXT)"
        )
        conn.execute("CREATE TABLE fills (id INTEGER PRIMARY KEY AUTOINCREMENT, seq INTEGER "
                     "NOT NULL, candle_ts INTEGER NOT NULL, action TEXT NOT NULL, side TEXT NOT "
                     "NULL, open REAL NOT NULL, slippage REAL NOT NULL, price REAL NOT NULL, "
                     "size REAL NOT NULL, fees REAL NOT NULL, cash_after REAL NOT NULL, "
                     "position_after REAL NOT NULL, filled_at REAL NOT NULL)")  # fmt: skip
        conn.execute("INSERT INTO signals (seq, signal, symbol, timeframe, candle_ts, price, "
                     "received_at, status) VALUES (7, 'BUY', 'BTCUSDT', '1m', 60, 1.0, 0, "
                     "'filled')")  # fmt: skip
        conn.execute("INSERT INTO fills (seq, candle_ts, action, side, open, slippage, price, "
                     "size, fees, cash_after, position_after, filled_at) "
                     "VALUES (7, 120, 'open long', 'buy', 1, 0, 1, 1, 0, 0, 1, 0)")  # fmt: skip
    ledger = Ledger(path)
    try:
        assert ledger.last_seq() == 7 and ledger.has(7)
        ledger.adopt_stream("abc")  # the first hello with a stream claims the old signals
        assert ledger.last_seq() == 7 and ledger.stream == "abc"
    finally:
        ledger.close()
    assert read_table(path, "signals")[["stream", "seq", "status"]].values.tolist() == [
        ["abc", 7, "filled"]
    ]
    assert read_table(path, "fills")["stream"].tolist() == ["abc"]


# -- paper versus backtest ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    write_synth_db(out, days=4, seed=11)
    return out


def scripted(db: Path, strategy_name: str, frozen_path: Path, direction: str = "long") -> list:
    strategy = get_strategy(strategy_name)
    frozen = freeze(strategy=strategy_name, timeframe="1m", params=strategy.params(),
                    direction=direction)  # fmt: skip
    write_frozen(frozen, frozen_path)
    candles = load_candles(db, symbol="BTCUSDT", timeframe="1m")
    return signal_records(candles, strategy, strategy.params(), symbol="BTCUSDT", timeframe="1m")


def paper_trade(tmp_path: Path, db: Path, records: list[dict], **kw: object) -> Path:
    """Serve `records` from a fake runner's journal to a fresh bot; return its ledger."""

    async def scenario() -> None:
        runner = FakeRunner(tmp_path / "runner.sock", params_id=records[0]["params_id"])
        runner.add(records)
        await runner.start()
        bot = PaperBot(config(tmp_path, db=db, **kw))
        try:
            await run_until(bot, lambda: bot.ledger.last_seq() == len(records)
                            and len(bot.ledger.pending()) <= 1, timeout=60)  # fmt: skip
        finally:
            bot.close()
            await runner.stop()

    asyncio.run(scenario())
    return tmp_path / "paper.db"


@pytest.mark.parametrize(("strategy", "direction"), [("scalping", "long"), ("ema_cross", "both")])
def test_paper_equals_backtest(synth: Path, tmp_path: Path, strategy: str, direction: str) -> None:
    db, frozen = synth / "candles.db", tmp_path / "frozen.json"
    records = scripted(db, strategy, frozen, direction)
    assert len(records) > 50
    # start mid-history: the backtest starts flat on the first signal the bot saw
    records = records[7:]
    costs = CostModel(fee_bps=5.5, slippage_model="atr", slippage_bps=1.0)
    ledger = paper_trade(tmp_path, db, records, direction=direction, costs=costs)
    comparison = compare_with_backtest(ledger, db, frozen)
    assert comparison.ok, comparison.verdict()
    assert len(comparison.rows) > 10
    # tolerance 1e-9 x 10,000 = 1e-5 per trade; measured <= 3.2e-12 (float rounding: vectorbt
    # reverses in one order and splits its fees; the bot closes then opens)
    assert comparison.max_pnl_diff < 1e-9
    assert comparison.paper["total_return"] == pytest.approx(
        comparison.backtest["total_return"], abs=1e-9
    )
    assert comparison.paper["fees"] == pytest.approx(comparison.backtest["fees"], rel=1e-9)


def test_funding_is_left_out_of_both_sides_and_said(synth: Path, tmp_path: Path) -> None:
    # The bot charges no funding; compared with a backtest that did, equal trades would still
    # end at different equity. The comparison leaves it out of the backtest too, and says so.
    db, frozen = synth / "candles.db", tmp_path / "frozen.json"
    records = scripted(db, "ema_cross", frozen)
    costs = CostModel(fee_bps=5.5, slippage_bps=1.0, funding_rate=0.001)
    ledger = paper_trade(tmp_path, db, records, costs=costs)
    comparison = compare_with_backtest(ledger, db, frozen)
    assert comparison.ok, comparison.verdict()
    assert comparison.paper["total_return"] == pytest.approx(
        comparison.backtest["total_return"], abs=1e-9
    )
    assert comparison.notes == [NO_FUNDING]


def test_comparison_detects_a_difference(synth: Path, tmp_path: Path) -> None:
    db, frozen = synth / "candles.db", tmp_path / "frozen.json"
    records = scripted(db, "scalping", frozen)
    ledger = paper_trade(tmp_path, db, records)
    with sqlite3.connect(ledger) as conn:
        conn.execute("UPDATE trades SET exit_time = exit_time + 60 WHERE id = 3")
    comparison = compare_with_backtest(ledger, db, frozen)
    assert not comparison.ok
    assert "trade 3: exit_time differs" in comparison.verdict()


def run_cli(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "signals", *args],
                          capture_output=True, text=True, timeout=300, **kw)  # type: ignore[call-overload]  # test keyword arguments, typed object  # fmt: skip


def test_report_cli(synth: Path, tmp_path: Path) -> None:
    db, frozen = synth / "candles.db", tmp_path / "frozen.json"
    ledger = paper_trade(tmp_path, db, scripted(db, "scalping", frozen))
    plain = run_cli("paper", "report", "--ledger", str(ledger), "--db", str(db))
    assert plain.returncode == 0, plain.stderr
    assert "trades" in plain.stdout and "total return" in plain.stdout
    good = run_cli(
        "paper", "report", "--ledger", str(ledger), "--db", str(db), "--params", str(frozen)
    )
    assert good.returncode == 0, good.stderr
    assert "AGREE:" in good.stdout and "paper vs backtest" in good.stdout
    with sqlite3.connect(ledger) as conn:
        conn.execute("UPDATE trades SET pnl = pnl + 1 WHERE id = 2")
    bad = run_cli(
        "paper", "report", "--ledger", str(ledger), "--db", str(db), "--params", str(frozen)
    )
    assert bad.returncode == 1
    assert "DISAGREE: trade 2: pnl differs" in bad.stdout


# -- the bot as a process ----------------------------------------------------------------------


class ThreadedRunner:
    """A FakeRunner on its own event loop in a thread, for a bot running as a subprocess."""

    def __init__(self, path: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.runner = FakeRunner(path)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ThreadedRunner:
        self.thread.start()
        self.call(self.runner.start())
        return self

    def call(self, coro: object) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)  # type: ignore[arg-type]  # a coroutine, typed object

    def __exit__(self, *exc: object) -> None:
        self.call(self.runner.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def fill_count(ledger: Path) -> int:
    """Fills in the ledger, 0 while the bot has not created it yet."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM fills").fetchone()[0])
    except sqlite3.Error:
        return 0


def test_bot_process_trades_and_exits_on_sigterm(tmp_path: Path) -> None:
    db, ledger, sock = tmp_path / "candles.db", tmp_path / "paper.db", tmp_path / "runner.sock"
    write_db(db, ladder(10))
    with ThreadedRunner(sock) as threaded:
        threaded.runner.add([record("BUY", 2)])
        proc = subprocess.Popen(
            [sys.executable, "-m", "signals", "paper", "--socket", str(sock),
             "--db", str(db), "--ledger", str(ledger), "--fee-bps", "10", "--slippage-bps", "5",
             "--since-seq", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            wait_for(lambda: fill_count(ledger) == 1)
            threaded.call(threaded.runner.publish(record("SELL", 4)))
            wait_for(lambda: fill_count(ledger) == 2)
            os.kill(proc.pid, signal.SIGTERM)
            _, stderr = proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and "paper bot stopped" in stderr
    trades = read_table(ledger, "trades")
    assert trades["entry_price"].tolist() == [pytest.approx(103 * 1.0005)]
    assert trades["exit_price"].tolist() == [pytest.approx(105 * 0.9995)]


_LOADED = """
import importlib, json, pkgutil, sys
import paper
names = [m.name for m in pkgutil.walk_packages(paper.__path__, "paper.")]
for name in names:
    importlib.import_module(name)
by_paper = sorted({m.split(".")[0] for m in sys.modules})
import signals.cli.paper
print(json.dumps({"modules": names, "by_paper": by_paper,
                  "by_cli": sorted({m.split(".")[0] for m in sys.modules})}))
"""
HEAVY = {"vectorbt", "optuna", "plotly", "matplotlib", "papermill", "nbformat", "ipykernel",
         "IPython"}  # fmt: skip


def test_paper_does_not_import_research_vectorbt_or_plotting() -> None:
    # Every module of paper/ (the bot is held to live/'s rule), then the `signals paper` CLI:
    # no vectorbt, optuna, jupyter or plotting; paper/ imports nothing from research/ either.
    out = subprocess.run(
        [sys.executable, "-c", _LOADED], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    loaded = json.loads(out.stdout)
    assert {"paper.bot", "paper.accounting", "paper.ledger", "paper.connection"} <= set(
        loaded["modules"]
    )
    jupyter = {m for m in loaded["by_cli"] if m.startswith("jupyter")}
    assert not (HEAVY | {"research"}) & set(loaded["by_paper"]), loaded["by_paper"]
    assert not HEAVY & set(loaded["by_cli"]) and not jupyter, loaded["by_cli"]


# -- end to end: replay -> signals live -> signals paper -> report -----------------------------


@pytest.mark.slow
def test_end_to_end_with_the_live_runner(synth: Path, tmp_path: Path) -> None:
    from signals.data.replay import replay
    from tests.livekit import start_runner, stop_runner, wait_listening

    src, dst, sock = synth / "candles.db", tmp_path / "candles.db", tmp_path / "live.sock"
    ledger, frozen = tmp_path / "paper.db", tmp_path / "frozen.json"
    scripted(src, "scalping", frozen)
    candles = load_candles(src, symbol="BTCUSDT", timeframe="1m")
    start, end = candles.index[900], candles.index[2400]
    replay(from_db=src, to_db=dst, timeframe="1m", start=start, end=start, warmup=900,
           progress=False)  # fmt: skip
    runner = start_runner(frozen, dst, sock, "--journal", str(tmp_path / "journal.db"))
    bot = None
    try:
        wait_listening(sock, runner)
        bot = subprocess.Popen(
            [sys.executable, "-m", "signals", "paper", "--socket", str(sock),
             "--db", str(dst), "--ledger", str(ledger), "--since-seq", "0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        wait_for(lambda: _has_meta(ledger))  # connected: the hello is recorded
        replay(from_db=src, to_db=dst, timeframe="1m", start=start + pd.Timedelta("1min"),
               end=end, speed=1000.0, progress=False)  # fmt: skip
        strategy = get_strategy("scalping")
        expected = signal_records(candles[candles.index <= end], strategy, strategy.params(),
                                  symbol="BTCUSDT", timeframe="1m", since=start)  # fmt: skip
        last = expected[-1]["candle_ts"]
        wait_for(lambda: _last_filled_or_pending(ledger) == last, timeout=60)
        time.sleep(0.3)
        os.kill(bot.pid, signal.SIGTERM)
        _, stderr = bot.communicate(timeout=10)
        assert bot.returncode == 0, stderr
    finally:
        if bot is not None and bot.poll() is None:
            bot.kill()
            bot.communicate()
        stop_runner(runner)
    got = read_table(ledger, "signals")
    assert [(r["candle_ts"], r["signal"]) for r in expected] == list(
        zip(got["candle_ts"].tolist(), got["signal"].tolist(), strict=True)
    )
    report = run_cli("paper", "report", "--ledger", str(ledger), "--db", str(dst),
                     "--params", str(frozen))  # fmt: skip
    assert report.returncode == 0, report.stdout + report.stderr
    assert "AGREE:" in report.stdout


def _has_meta(ledger: Path) -> bool:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)) as conn:
            return (
                conn.execute("SELECT value FROM meta WHERE key = 'params_id'").fetchone()
                is not None
            )
    except sqlite3.Error:
        return False


def _last_filled_or_pending(ledger: Path) -> int | None:
    with contextlib.closing(sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)) as conn:
        row = conn.execute("SELECT MAX(candle_ts) FROM signals").fetchone()
    return None if row[0] is None else int(row[0])
