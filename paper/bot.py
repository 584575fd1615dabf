"""The reference paper bot: trades the live runner's signals on paper, exactly like the backtest.

It connects to the runner's Unix socket, records every signal in its SQLite ledger (a ``seq``
already recorded is ignored: exactly-once), reconnects with exponential backoff and resumes by
the last ``seq`` it recorded.

Seqs are numbered per journal, and the hello names the journal's ``stream``. The ledger records
the stream of its first hello; a later hello with another stream (the runner's journal was
replaced or lost, its seqs restarted) stops the bot with one line naming both streams, unless
``follow_new_stream`` is set: then it logs the switch, records the new stream and resumes from
seq 0 of it (signals are keyed by stream and seq, so the new stream's seqs are never taken for
the old stream's). An ``unknown_seq`` error (the journal of the same stream ends before the
ledger: restored from an older copy) is logged; the runner continues from its journal's end.

Execution mirrors `research.backtest.execution` (vectorbt, all-in, one position at a time):

- A signal on candle t fills at the **open of the next stored closed candle** after t (read from
  the candle database; the bot waits, polling ``PRAGMA data_version``, until that candle is
  stored). Signals fill in the order they were received (``seq`` order within a stream).
- ``long`` (default): BUY opens a long, SELL closes it. ``short``: SELL opens a short, BUY closes
  it. ``both``: the opposite signal closes and reverses. A signal that does not change the
  position (BUY while long, SELL while flat in ``long``) is recorded as ignored, as vectorbt
  ignores it.
- Costs come from `signals.costs.CostModel`: fee f = ``fee_fraction()`` per side, charged on
  top of the notional; slippage s = ``slippage_fraction(candles)`` of the fill candle's row
  (computed from the decision candle, no lookahead), moving the price against the trade.

With P the fill candle's open and C the cash before the fill (vectorbt's ``buy_nb``/``sell_nb``):

- open long:   price = P (1 + s),  size = C / (P (1 + s) (1 + f)),  fees = C - C / (1 + f),
  cash = 0
- close long:  price = P (1 - s),  cash += size x price - size x price x f
- open short:  price = P (1 - s),  size = C / (P (1 - s) (1 + f)),  cash += size x price (1 - f)
- close short: price = P (1 + s),  cash -= size x price + size x price x f
- a reversal is a close then an open at the same P (vectorbt does it as one order; the sizes are
  algebraically identical).
- trade pnl = size x (exit price - entry price) (negated for a short) - entry fees - exit fees;
  return = pnl / (size x entry price); equity = cash + position x close.

``signals paper report`` compares the ledger with a backtest (`compare_with_backtest`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import signal as signal_module
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from signals.config import CandleSource
from signals.costs import CostModel
from signals.data.store import CandleStore
from signals.errors import DataError, SignalsError
from signals.protocol import (
    MAX_LINE_BYTES,
    ErrorMessage,
    Heartbeat,
    Hello,
    ProtocolError,
    Resume,
    Signal,
    decode_server,
    encode,
)
from signals.timeframes import timeframe_seconds

log = logging.getLogger(__name__)
NO_FUNDING = (
    "the paper bot does not charge perpetual funding: the backtest it is compared with leaves "
    "funding out too (a `signals backtest` with these costs charges it)"
)

Direction = Literal["long", "short", "both"]
ATR_WINDOW_PER_PERIOD = 40  # Wilder's ATR forgets its start after ~37 x period candles

LEDGER_DDL = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS signals (id INTEGER PRIMARY KEY AUTOINCREMENT, "
    "stream TEXT NOT NULL DEFAULT '', seq INTEGER NOT NULL, signal TEXT NOT NULL, "
    "symbol TEXT NOT NULL, timeframe TEXT NOT NULL, candle_ts INTEGER NOT NULL, "
    "price REAL NOT NULL, confidence REAL, reasons TEXT, strategy TEXT, params_id TEXT, "
    "emitted_at REAL, stale INTEGER NOT NULL DEFAULT 0, received_at REAL NOT NULL, "
    "status TEXT NOT NULL DEFAULT 'pending', fill_ts INTEGER, note TEXT, UNIQUE (stream, seq))",
    "CREATE TABLE IF NOT EXISTS fills (id INTEGER PRIMARY KEY AUTOINCREMENT, "
    "stream TEXT NOT NULL DEFAULT '', seq INTEGER NOT NULL, candle_ts INTEGER NOT NULL, "
    "action TEXT NOT NULL, side TEXT NOT NULL, open REAL NOT NULL, slippage REAL NOT NULL, "
    "price REAL NOT NULL, "
    "size REAL NOT NULL, fees REAL NOT NULL, cash_after REAL NOT NULL, "
    "position_after REAL NOT NULL, filled_at REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS trades (id INTEGER PRIMARY KEY AUTOINCREMENT, "
    "direction TEXT NOT NULL, size REAL NOT NULL, entry_seq INTEGER NOT NULL, "
    "entry_time INTEGER NOT NULL, entry_price REAL NOT NULL, entry_fees REAL NOT NULL, "
    "exit_seq INTEGER, exit_time INTEGER, exit_price REAL, exit_fees REAL, pnl REAL, "
    "return REAL, status TEXT NOT NULL DEFAULT 'open')",
    "CREATE TABLE IF NOT EXISTS account (id INTEGER PRIMARY KEY CHECK (id = 1), "
    "cash REAL NOT NULL, position REAL NOT NULL, updated_at REAL NOT NULL)",
)


_SIGNAL_COLUMNS = (
    "seq, signal, symbol, timeframe, candle_ts, price, confidence, reasons, strategy, "
    "params_id, emitted_at, stale, received_at, status, fill_ts, note"
)


class PaperError(SignalsError):
    """The paper bot cannot run (ledger/config mismatch, runner serving other parameters)."""


# -- accounting (pure) -------------------------------------------------------------------------


@dataclass(frozen=True)
class Leg:
    """One side of a fill: ``open``/``close`` of a ``long``/``short`` at an adjusted price."""

    action: Literal["open", "close"]
    direction: Literal["long", "short"]
    side: Literal["buy", "sell"]
    price: float
    size: float
    fees: float
    cash_after: float
    position_after: float


def plan(direction: Direction, side: str, position: float) -> list[tuple[str, str]]:
    """Return the legs (action, long/short) a BUY/SELL triggers from a position, as vectorbt."""
    long_ok, short_ok = direction in ("long", "both"), direction in ("short", "both")
    if side == "BUY":
        if position < 0:
            return [("close", "short")] + ([("open", "long")] if direction == "both" else [])
        return [("open", "long")] if position == 0 and long_ok else []
    if position > 0:
        return [("close", "long")] + ([("open", "short")] if direction == "both" else [])
    return [("open", "short")] if position == 0 and short_ok else []


def execute(
    legs: list[tuple[str, str]],
    *,
    cash: float,
    position: float,
    open_: float,
    fee: float,
    slip: float,
) -> list[Leg]:
    """Apply the legs at the fill candle's open `open_`; see the module doc for the formulas."""
    out: list[Leg] = []
    for action, kind in legs:
        buying = (kind == "long") == (action == "open")
        price = open_ * (1 + slip) if buying else open_ * (1 - slip)
        if action == "open" and kind == "long":
            max_req_cash = cash / (1 + fee)
            size, fees, cash = max_req_cash / price, cash - max_req_cash, 0.0
            position = size
        elif action == "open":
            size = cash / (price * (1 + fee))
            fees = size * price * fee
            cash, position = cash + size * price - fees, -size
        else:
            size = abs(position)
            fees = size * price * fee
            cash = cash - size * price - fees if buying else cash + size * price - fees
            position = 0.0
        side: Literal["buy", "sell"] = "buy" if buying else "sell"
        out.append(Leg(action, kind, side, price, size, fees, cash, position))  # type: ignore[arg-type]
    return out


def trade_pnl(
    direction: str, size: float, entry: float, exit_: float, fees: float
) -> tuple[float, float]:
    """Return (pnl, return) of a trade as vectorbt computes them."""
    diff = size * exit_ - size * entry
    pnl = (-diff if direction == "short" else diff) - fees
    return pnl, pnl / (size * entry)


# -- ledger ------------------------------------------------------------------------------------


class Ledger:
    """The bot's SQLite ledger: meta, signals, fills, trades and the account, one commit a step."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, timeout=5.0)
        self.conn.execute("PRAGMA journal_mode = WAL")
        with self.conn:
            self._migrate()
            for ddl in LEDGER_DDL:
                self.conn.execute(ddl)
        self.stream: str = str(self.meta().get("stream", ""))

    def _columns(self, table: str) -> set[str]:
        return {row[1] for row in self.conn.execute(f"PRAGMA table_info({table})")}

    def _migrate(self) -> None:
        """Key the signals of a ledger written before streams by (stream, seq) (stream '')."""
        if "seq" in (signals := self._columns("signals")) and "stream" not in signals:
            self.conn.execute("ALTER TABLE signals RENAME TO signals_before_streams")
            self.conn.execute(LEDGER_DDL[1])
            self.conn.execute(
                f"INSERT INTO signals ({_SIGNAL_COLUMNS}) SELECT {_SIGNAL_COLUMNS} "
                "FROM signals_before_streams ORDER BY seq"
            )
            self.conn.execute("DROP TABLE signals_before_streams")
        if "seq" in (fills := self._columns("fills")) and "stream" not in fills:
            self.conn.execute("ALTER TABLE fills ADD COLUMN stream TEXT NOT NULL DEFAULT ''")

    def adopt_stream(self, stream: str) -> None:
        """Record the stream of the first hello; signals recorded without one belong to it."""
        with self.conn:
            for table in ("signals", "fills"):
                self.conn.execute(f"UPDATE {table} SET stream = ? WHERE stream = ''", (stream,))
            self.conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('stream', ?)",
                (json.dumps(stream),),
            )
        self.stream = stream

    def switch_stream(self, stream: str) -> None:
        """Follow a new stream from its seq 0 (the old stream's signals stay recorded)."""
        self.set_meta(stream=stream, start_seq=0)
        self.stream = stream

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def meta(self) -> dict[str, Any]:
        """Return the meta table (values JSON-decoded)."""
        rows = self.conn.execute("SELECT key, value FROM meta").fetchall()
        return {key: json.loads(value) for key, value in rows}

    def set_meta(self, **values: Any) -> None:
        """Store meta values (JSON-encoded), in one commit."""
        with self.conn:
            self.conn.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [(k, json.dumps(v)) for k, v in values.items()],
            )

    def last_seq(self) -> int | None:
        """Return the highest seq recorded of the current stream, or None when none was."""
        row = self.conn.execute(
            "SELECT MAX(seq) FROM signals WHERE stream = ?", (self.stream,)
        ).fetchone()
        return None if row[0] is None else int(row[0])

    def has(self, seq: int) -> bool:
        """Whether signal `seq` of the current stream is already recorded."""
        row = self.conn.execute(
            "SELECT 1 FROM signals WHERE stream = ? AND seq = ?", (self.stream, seq)
        ).fetchone()
        return row is not None

    def recorded(self, seq: int) -> tuple[int, str] | None:
        """Return (candle_ts, side) of signal `seq` of the current stream, if recorded."""
        row = self.conn.execute(
            "SELECT candle_ts, signal FROM signals WHERE stream = ? AND seq = ?",
            (self.stream, seq),
        ).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    def record_signal(self, sig: Signal, received_at: float) -> bool:
        """Record a signal as pending; return False (and change nothing) if its seq is known."""
        with self.conn:
            cur = self.conn.execute(
                "INSERT OR IGNORE INTO signals (stream, seq, signal, symbol, timeframe, "
                "candle_ts, price, confidence, reasons, strategy, params_id, emitted_at, stale, "
                "received_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (self.stream, sig.seq, sig.signal, sig.symbol, sig.timeframe, sig.candle_ts,
                 sig.price, sig.confidence, json.dumps(sig.reasons), sig.strategy, sig.params_id,
                 sig.emitted_at, int(sig.stale), received_at),
            )  # fmt: skip
        return cur.rowcount == 1

    def pending(self) -> list[sqlite3.Row]:
        """Return the signals not yet filled, in the order they were received."""
        self.conn.row_factory = sqlite3.Row
        try:
            return self.conn.execute(
                "SELECT * FROM signals WHERE status = 'pending' ORDER BY id"
            ).fetchall()
        finally:
            self.conn.row_factory = None

    def account(self, init_cash: float) -> tuple[float, float]:
        """Return (cash, signed position); a fresh ledger has `init_cash` and no position."""
        row = self.conn.execute("SELECT cash, position FROM account WHERE id = 1").fetchone()
        return (init_cash, 0.0) if row is None else (float(row[0]), float(row[1]))

    def open_trade(self) -> tuple[int, str, float, float] | None:
        """Return (id, direction, entry_price, entry_fees) of the open trade, if any."""
        row = self.conn.execute(
            "SELECT id, direction, entry_price, entry_fees FROM trades WHERE status = 'open'"
        ).fetchone()
        return None if row is None else (int(row[0]), str(row[1]), float(row[2]), float(row[3]))

    def apply(
        self,
        seq: int,
        fill_ts: int,
        open_: float,
        slip: float,
        legs: list[Leg],
        *,
        stream: str | None = None,
    ) -> None:
        """Record the fills of signal `seq` of `stream` (default: the current one) or that it
        was ignored, in one transaction."""
        now = time.time()
        stream = self.stream if stream is None else stream
        with self.conn:
            status, note = ("filled", None) if legs else ("ignored", "does not change the position")
            self.conn.execute(
                "UPDATE signals SET status = ?, fill_ts = ?, note = ? WHERE stream = ? AND seq = ?",
                (status, fill_ts, note, stream, seq),
            )
            for leg in legs:
                self._fill(seq, fill_ts, open_, slip, leg, now, stream)
            if legs:
                last = legs[-1]
                self.conn.execute(
                    "INSERT OR REPLACE INTO account (id, cash, position, updated_at) "
                    "VALUES (1, ?, ?, ?)",
                    (last.cash_after, last.position_after, now),
                )

    def _fill(
        self, seq: int, fill_ts: int, open_: float, slip: float, leg: Leg, now: float, stream: str
    ) -> None:
        self.conn.execute(
            "INSERT INTO fills (stream, seq, candle_ts, action, side, open, slippage, price, size, "
            "fees, cash_after, position_after, filled_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (stream, seq, fill_ts, f"{leg.action} {leg.direction}", leg.side, open_, slip,
             leg.price, leg.size, leg.fees, leg.cash_after, leg.position_after, now),
        )  # fmt: skip
        if leg.action == "open":
            self.conn.execute(
                "INSERT INTO trades (direction, size, entry_seq, entry_time, entry_price, "
                "entry_fees) VALUES (?,?,?,?,?,?)",
                (leg.direction, leg.size, seq, fill_ts, leg.price, leg.fees),
            )
            return
        trade = self.open_trade()
        if trade is None:
            raise PaperError(f"{self.path}: closing a {leg.direction} but no trade is open")
        trade_id, direction, entry_price, entry_fees = trade
        pnl, ret = trade_pnl(direction, leg.size, entry_price, leg.price, entry_fees + leg.fees)
        self.conn.execute(
            "UPDATE trades SET exit_seq = ?, exit_time = ?, exit_price = ?, exit_fees = ?, "
            "pnl = ?, return = ?, status = 'closed' WHERE id = ?",
            (seq, fill_ts, leg.price, leg.fees, pnl, ret, trade_id),
        )


def read_table(ledger: Path | str, table: str) -> pd.DataFrame:
    """Return one ledger table (signals, fills, trades, account, meta) as a DataFrame."""
    if table not in {"signals", "fills", "trades", "account", "meta"}:
        raise ValueError(f"no ledger table {table!r}")
    path = Path(ledger)
    if not path.exists():
        raise DataError(f"{path}: ledger not found")
    with contextlib.closing(sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)) as conn:
        order = {"meta": "key"}.get(table, "id")
        return pd.read_sql_query(f"SELECT * FROM {table} ORDER BY {order}", conn)


# -- the bot -----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class PaperConfig:
    """What the paper bot connects to, where it records, and how it executes."""

    socket: Path
    db: Path
    ledger: Path
    costs: CostModel = field(default_factory=CostModel)
    source: CandleSource = field(default_factory=CandleSource)  # data.source of the config
    direction: Direction = "long"
    init_cash: float = 10_000.0
    since_seq: int | None = None  # fresh ledger: resume from here (None: from the hello)
    follow_new_stream: bool = False  # a hello of another stream: record it from seq 0
    poll_interval: float = 0.02
    reconnect_min: float = 0.05
    reconnect_max: float = 5.0
    idle_timeout: float = 60.0

    def describe(self) -> dict[str, Any]:
        """Return the execution settings recorded in (and checked against) the ledger's meta."""
        return {
            "costs": self.costs.model_dump(mode="json"),
            "direction": self.direction,
            "init_cash": self.init_cash,
        }


class PaperBot:
    """Connect, record signals exactly once, fill them at the next candle's open."""

    def __init__(self, config: PaperConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.ledger = Ledger(config.ledger)
        self._check_meta()
        if config.costs.has_funding:
            log.warning("event=funding_not_charged note=%r", NO_FUNDING)
        self.cash, self.position = self.ledger.account(config.init_cash)
        self._store: CandleStore | None = None
        self._version: int | None = None
        self.connections = 0
        self.duplicates = 0
        self.unknown_seq = 0

    def _check_meta(self) -> None:
        meta, wanted = self.ledger.meta(), self.config.describe()
        recorded = {k: meta[k] for k in wanted if k in meta}
        if recorded and recorded != wanted:
            raise PaperError(
                f"{self.config.ledger}: ledger was recorded with {recorded}, not {wanted}; "
                "use a new ledger for other execution settings"
            )
        if not recorded:
            self.ledger.set_meta(**wanted)

    def close(self) -> None:
        """Close the ledger and the candle database."""
        if self._store is not None:
            self._store.close()
        self.ledger.close()

    # -- protocol ------------------------------------------------------------------------------

    def on_hello(self, hello: Hello) -> int:
        """Check the runner's hello against the ledger; return the seq to resume after."""
        meta = self.ledger.meta()
        known = meta.get("params_id")
        if known is not None and known != hello.params_id:
            raise PaperError(
                f"{self.config.ledger}: ledger holds signals of params_id {known}, the runner "
                f"serves {hello.params_id}; use a new ledger"
            )
        self._check_stream(hello)
        if known is None:
            start = hello.last_seq if self.config.since_seq is None else self.config.since_seq
            self.ledger.set_meta(
                params_id=hello.params_id, strategy=hello.strategy, symbol=hello.symbol,
                timeframe=hello.timeframe, start_seq=start,
            )  # fmt: skip
            meta = self.ledger.meta()
        last = self.ledger.last_seq()
        since = max(int(meta["start_seq"]), last if last is not None else 0)
        if hello.last_seq < since:
            log.warning("runner's last seq %d is behind the ledger's %d", hello.last_seq, since)
        return since

    def _check_stream(self, hello: Hello) -> None:
        """Record the hello's stream on first connect; refuse or follow another stream."""
        if hello.stream is None:  # a runner before streams: nothing to check
            return
        old = self.ledger.meta().get("stream")
        if old is None:
            self.ledger.adopt_stream(hello.stream)
            return
        if old == hello.stream:
            return
        if not self.config.follow_new_stream:
            raise PaperError(
                f"{self.config.ledger}: the runner serves journal stream {hello.stream}, this "
                f"ledger follows stream {old}: the runner's journal was replaced, its seqs "
                "restarted; restart with --follow-new-stream to record the new stream from its "
                "seq 0, or use a new ledger"
            )
        log.warning(
            "event=stream_switch old=%s new=%s ledger_seq=%s: the runner's journal was replaced; "
            "recording the new stream from seq 0", old, hello.stream, self.ledger.last_seq(),
        )  # fmt: skip
        self.ledger.switch_stream(hello.stream)

    def on_signal(self, sig: Signal) -> bool:
        """Record a signal once (a known seq is ignored); return whether it was new."""
        start = int(self.ledger.meta().get("start_seq", 0))
        if sig.seq <= start or not self.ledger.record_signal(sig, self.clock()):
            self.duplicates += 1
            known = self.ledger.recorded(sig.seq)
            if known is not None and known != (sig.candle_ts, sig.signal):
                log.warning(
                    "seq %d (%s candle %d) differs from the recorded seq %d (%s candle %d): "
                    "kept the recorded one", sig.seq, sig.signal, sig.candle_ts, sig.seq,
                    known[1], known[0],
                )  # fmt: skip
            return False
        log.info("signal %d %s candle %d price %.2f", sig.seq, sig.signal, sig.candle_ts, sig.price)
        return True

    def handle_line(self, line: bytes) -> None:
        """Process one line from the runner (signal, heartbeat, ...), then try pending fills."""
        message = decode_server(line)
        if isinstance(message, Signal):
            self.on_signal(message)
        elif isinstance(message, Heartbeat):
            log.debug("heartbeat last_seq %d", message.last_seq)
        elif isinstance(message, ErrorMessage):
            self.on_error(message)
        self.try_fill()

    def on_error(self, message: ErrorMessage) -> None:
        """Log an error line of the runner (``unknown_seq``: its journal ends before ours)."""
        if message.code == "unknown_seq":
            self.unknown_seq += 1
            log.warning(
                "event=unknown_seq ledger_seq=%s stream=%s: the runner's journal does not hold "
                "the ledger's last seq (replaced or restored from an older copy); it continues "
                "from its end, and seqs the ledger already holds are not recorded again "
                "(runner: %s)", self.ledger.last_seq(), self.ledger.stream or "-",
                message.message,
            )  # fmt: skip
        else:
            log.warning("runner error %s: %s", message.code, message.message)

    # -- fills ---------------------------------------------------------------------------------

    def _candles(self) -> CandleStore | None:
        if self._store is None:
            try:
                self._store = CandleStore(self.config.db, source=self.config.source)
            except DataError:
                return None
        return self._store

    def db_changed(self) -> bool:
        """Whether the candle database changed since the last call (PRAGMA data_version)."""
        store = self._candles()
        if store is None:
            return False
        version = store.data_version()
        changed, self._version = version != self._version, version
        return changed

    def try_fill(self) -> int:
        """Fill pending signals, in seq order, whose next candle is stored; return how many."""
        store = self._candles()
        if store is None:
            return 0
        done = 0
        for row in self.ledger.pending():
            found = self._next_candle(store, row["symbol"], row["timeframe"], int(row["candle_ts"]))
            if found is None:
                break
            self._fill(row, *found)
            done += 1
        return done

    def _next_candle(
        self, store: CandleStore, symbol: str, timeframe: str, after: int
    ) -> tuple[int, float, float] | None:
        """Return (open time, open, slippage) of the first closed candle after `after`."""
        step = timeframe_seconds(timeframe)
        frame = store.history(symbol, timeframe, start=after + 1, end=after + 64 * step)
        if frame.empty:
            frame = store.closed_since(symbol, timeframe, after)
        if frame.empty:
            return None
        fill_time = frame.index[0]
        window = self._slippage_window()
        candles = store.last_closed(symbol, timeframe, window, until=fill_time)
        slip = self.config.costs.slippage_fraction(
            candles, fill="next_open", notional=self.config.init_cash
        )
        return int(fill_time.timestamp()), float(frame["open"].iloc[0]), float(slip[-1])

    def _slippage_window(self) -> int:
        costs = self.config.costs
        if costs.slippage_model == "atr":
            return ATR_WINDOW_PER_PERIOD * costs.atr_period + 1
        return 2

    def _fill(self, row: sqlite3.Row, fill_ts: int, open_: float, slip: float) -> None:
        legs_plan = plan(self.config.direction, row["signal"], self.position)
        legs = execute(
            legs_plan, cash=self.cash, position=self.position, open_=open_,
            fee=self.config.costs.fee_fraction(), slip=slip,
        )  # fmt: skip
        self.ledger.apply(int(row["seq"]), fill_ts, open_, slip, legs, stream=row["stream"])
        if legs:
            self.cash, self.position = legs[-1].cash_after, legs[-1].position_after
        for leg in legs:
            log.info(
                "seq %d: %s %s %.8g @ %.2f (open %.2f, fees %.4f) cash %.2f",
                row["seq"], leg.action, leg.direction, leg.size, leg.price, open_, leg.fees,
                leg.cash_after,
            )  # fmt: skip

    # -- connection ----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Connect (and reconnect) until `stop` is set, filling pending signals as candles land."""
        poller = asyncio.create_task(self._poll(stop))
        try:
            await self._connect_loop(stop)
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller

    async def _poll(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if self.db_changed() and self.ledger.pending():
                self.try_fill()
            await asyncio.sleep(self.config.poll_interval)

    async def _connect_loop(self, stop: asyncio.Event) -> None:
        attempt = 0
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_unix_connection(
                    str(self.config.socket), limit=4 * MAX_LINE_BYTES
                )
            except OSError as exc:
                delay = min(self.config.reconnect_max, self.config.reconnect_min * 2**attempt)
                attempt += 1
                log.info("cannot connect to %s (%s); retrying in %.2f s", self.config.socket,
                         exc.strerror or exc, delay)  # fmt: skip
                await _wait(stop, delay)
                continue
            attempt = 0
            self.connections += 1
            try:
                await self._session(reader, writer, stop)
            except (ConnectionError, TimeoutError, ValueError) as exc:
                log.warning("connection lost: %s", exc or type(exc).__name__)
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

    async def _session(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stop: asyncio.Event
    ) -> None:
        first = await self._read(reader, stop)
        if first is None:
            return
        hello = decode_server(first)
        if not isinstance(hello, Hello):
            raise PaperError(f"expected hello from the runner, got {hello.type}")
        since = self.on_hello(hello)
        writer.write(encode(Resume(since_seq=since)))
        await writer.drain()
        log.info("connected to %s (%s %s); resuming after seq %d", self.config.socket,
                 hello.strategy, hello.timeframe, since)  # fmt: skip
        while not stop.is_set():
            line = await self._read(reader, stop)
            if line is None:
                return
            try:
                self.handle_line(line)
            except ProtocolError as exc:
                log.warning("ignoring a bad line from the runner: %s", exc)

    async def _read(self, reader: asyncio.StreamReader, stop: asyncio.Event) -> bytes | None:
        """Return the next line; None when stopping; raise ConnectionError at EOF or timeout."""
        read = asyncio.ensure_future(reader.readline())
        stopped = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait(
            {read, stopped}, timeout=self.config.idle_timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if read not in done:
            read.cancel()
            stopped.cancel()
            if stop.is_set():
                return None
            raise TimeoutError(f"no line from the runner in {self.config.idle_timeout:g} s")
        stopped.cancel()
        line = read.result()
        if not line.endswith(b"\n"):
            raise ConnectionError("runner closed the connection")
        return line


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


def run_paper(config: PaperConfig) -> PaperBot:
    """Run the bot until SIGTERM/SIGINT; return it (closed) for its counters."""
    bot = PaperBot(config)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal_module.SIGTERM, signal_module.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await bot.run(stop)

    try:
        asyncio.run(main())
    finally:
        bot.close()
    log.info("paper bot stopped: %d connections, %d duplicate signals ignored",
             bot.connections, bot.duplicates)  # fmt: skip
    return bot


# -- paper versus backtest ---------------------------------------------------------------------

PNL_TOLERANCE = 1e-9  # per trade, fraction of the initial cash (1e-5 on 10,000); measured 3e-12
PRICE_TOLERANCE = 1e-9  # relative, fill prices and sizes


@dataclass(frozen=True)
class TradeRow:
    """One trade of the paper bot next to the backtest's trade of the same rank."""

    n: int
    paper: dict[str, Any] | None
    backtest: dict[str, Any] | None
    pnl_diff: float
    problem: str | None = None


@dataclass(frozen=True)
class Comparison:
    """The paper bot's ledger compared with a backtest over the same candles."""

    rows: list[TradeRow]
    paper: dict[str, float]
    backtest: dict[str, float]
    span: tuple[pd.Timestamp, pd.Timestamp]
    tolerance: float
    signal_problems: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # how the comparison was made, not problems

    @property
    def max_pnl_diff(self) -> float:
        """Largest absolute P&L difference of matched trades (quote currency)."""
        return max((r.pnl_diff for r in self.rows if r.paper and r.backtest), default=0.0)

    @property
    def ok(self) -> bool:
        """Whether trades, signals and P&L agree within the tolerance."""
        return not (self.problems or self.signal_problems) and all(
            r.problem is None for r in self.rows
        )

    def verdict(self) -> str:
        """Return a one-paragraph verdict."""
        n = len(self.rows)
        if self.ok:
            return (
                f"AGREE: {n} trades equal (entry/exit candle and side); largest P&L difference "
                f"{self.max_pnl_diff:.3g} (tolerance {self.tolerance:.3g} per trade)"
            )
        bad = [f"trade {r.n}: {r.problem}" for r in self.rows if r.problem]
        return "DISAGREE: " + "; ".join([*self.problems, *self.signal_problems, *bad][:8])


class _SignalsFrom:
    """A strategy whose signals before `since` are masked (the backtest starts trading there)."""

    def __init__(self, strategy: Any, since: pd.Timestamp) -> None:
        self.strategy, self.since = strategy, since
        self.name = strategy.name

    def params(self, values: dict[str, Any] | None = None) -> Any:
        return self.strategy.params(values)

    def signals(self, candles: pd.DataFrame, params: Any = None) -> Any:
        frame = self.strategy.signals(candles, params)
        return frame.only_where(np.asarray(candles.index >= self.since))


def paper_summary(
    ledger: Path | str, db: Path | str, *, source: CandleSource | None = None
) -> dict[str, float]:
    """Return the bot's trades count, fees, final equity (at the last close) and total return."""
    meta = read_table(ledger, "meta")
    values = {k: json.loads(v) for k, v in zip(meta["key"], meta["value"], strict=True)}
    init_cash = float(values.get("init_cash", 10_000.0))
    account = read_table(ledger, "account")
    cash, position = (init_cash, 0.0) if account.empty else (
        float(account["cash"].iloc[0]), float(account["position"].iloc[0]))  # fmt: skip
    close = _last_close(db, values, source) if position else 0.0
    equity = cash + position * close
    trades, fills = read_table(ledger, "trades"), read_table(ledger, "fills")
    return {
        "trades": float(len(trades)),
        "closed_trades": float((trades["status"] == "closed").sum()),
        "fees": float(fills["fees"].sum()),
        "final_equity": equity,
        "total_return": equity / init_cash - 1.0,
        "init_cash": init_cash,
    }


def _last_close(db: Path | str, meta: dict[str, Any], source: CandleSource | None) -> float:
    with CandleStore(db, source=source) as store:
        last = store.last_closed(meta["symbol"], meta["timeframe"], 1)
    return float(last["close"].iloc[-1])


def compare_with_backtest(
    ledger: Path | str,
    db: Path | str,
    frozen_path: Path | str,
    *,
    tolerance: float = PNL_TOLERANCE,
    source: CandleSource | None = None,
) -> Comparison:
    """Backtest the frozen parameters over the ledger's span and compare trade by trade.

    The span runs from the first recorded signal's candle to the last candle in `db`; candles
    before it only warm the strategy up (its signals there are masked, so both start flat).
    The backtest uses the costs, direction and initial cash recorded in the ledger; candles
    are read through `source` (``data.source`` of the config).
    """
    from research.backtest.execution import ExecutionModel
    from research.backtest.run import run_backtest
    from signals.config import DataSettings, Settings
    from signals.data.load import load_candles
    from signals.frozen import load_frozen, typed_params
    from strategies import get_strategy

    frozen = load_frozen(frozen_path)
    strategy, params = get_strategy(frozen.strategy), typed_params(frozen)
    meta = Ledger(ledger)
    try:
        info = meta.meta()
    finally:
        meta.close()
    signals = read_table(ledger, "signals")
    if signals.empty:
        raise PaperError(f"{ledger}: no signals recorded; nothing to compare")
    step = timeframe_seconds(frozen.timeframe)
    first = int(signals["candle_ts"].min())
    candles = load_candles(
        Path(db), symbol=frozen.symbol, timeframe=frozen.timeframe,
        start=first - strategy.lookback(params) * step,
        settings=Settings(data=DataSettings(source=source or CandleSource())),
    )  # fmt: skip
    since = pd.Timestamp(first, unit="s", tz="UTC")
    init_cash = float(info.get("init_cash", 10_000.0))
    costs, notes = CostModel.model_validate(info.get("costs", {})), []
    if costs.has_funding:  # the bot charges none: compare like with like, and say so
        costs = costs.model_copy(update={"funding_rate": None, "funding_file": None})
        notes.append(NO_FUNDING)
    result = run_backtest(
        candles, _SignalsFrom(strategy, since), params, timeframe=frozen.timeframe,  # type: ignore[arg-type]
        execution=ExecutionModel(direction=info.get("direction", "long"), init_cash=init_cash),
        costs=costs,
    )  # fmt: skip
    paper = paper_summary(ledger, db, source=source) if info.get("symbol") else {}
    backtest = {
        "trades": float(len(result.trades)),
        "closed_trades": float((result.trades["status"] == "closed").sum()),
        "fees": float(result.trades["fees"].sum()),
        "final_equity": float(result.equity.iloc[-1]),
        "total_return": float(result.metrics["total_return"]),
        "init_cash": init_cash,
    }
    problems = []
    if info.get("params_id") not in (None, frozen.params_id):
        problems.append(f"ledger params_id {info['params_id']} is not {frozen.params_id}")
    rows = match_trades(
        read_table(ledger, "trades"), result.trades, float(candles["close"].iloc[-1]),
        abs_tol=tolerance * init_cash,
    )  # fmt: skip
    return Comparison(
        rows=rows,
        paper=paper,
        backtest=backtest,
        span=(since, candles.index[-1]),
        tolerance=tolerance * init_cash,
        signal_problems=_signal_problems(signals, result.signals.signal_rows(), since),
        problems=problems,
        notes=notes,
    )


def _signal_problems(
    ledger_signals: pd.DataFrame, rows: pd.DataFrame, since: pd.Timestamp
) -> list[str]:
    """Signals the bot received versus the strategy's over the span (candle and side)."""
    expected = {
        (int(ts.timestamp()), str(side))
        for ts, side in zip(rows.index, rows["signal"], strict=True)
        if ts >= since
    }
    got = set(
        zip(
            ledger_signals["candle_ts"].astype(int),
            ledger_signals["signal"].astype(str),
            strict=True,
        )
    )
    out = []
    if missing := sorted(expected - got):
        out.append(
            f"{len(missing)} signals of the strategy never reached the bot (first {missing[0]})"
        )
    if extra := sorted(got - expected):
        out.append(f"{len(extra)} signals the strategy does not give (first {extra[0]})")
    return out


def _paper_trade(row: dict[str, Any], last_close: float) -> dict[str, Any]:
    out = {
        "direction": row["direction"],
        "entry_time": pd.Timestamp(int(row["entry_time"]), unit="s", tz="UTC"),
        "entry_price": float(row["entry_price"]),
        "size": float(row["size"]),
        "status": row["status"],
    }
    if row["status"] == "closed":
        out.update(exit_time=pd.Timestamp(int(row["exit_time"]), unit="s", tz="UTC"),
                   exit_price=float(row["exit_price"]), pnl=float(row["pnl"]),
                   fees=float(row["entry_fees"]) + float(row["exit_fees"]))  # fmt: skip
    else:  # valued at the last close without exit costs, as vectorbt values an open trade
        pnl, _ = trade_pnl(row["direction"], out["size"], out["entry_price"], last_close,
                           float(row["entry_fees"]))  # fmt: skip
        out.update(exit_time=None, exit_price=last_close, pnl=pnl, fees=float(row["entry_fees"]))
    return out


def _backtest_trade(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "direction": row["direction"],
        "entry_time": row["entry_time"],
        "entry_price": float(row["entry_price"]),
        "size": float(row["size"]),
        "status": row["status"],
        "exit_time": row["exit_time"] if row["status"] == "closed" else None,
        "exit_price": float(row["exit_price"]),
        "pnl": float(row["pnl"]),
        "fees": float(row["fees"]),
    }


def match_trades(
    paper: pd.DataFrame, backtest: pd.DataFrame, last_close: float, *, abs_tol: float
) -> list[TradeRow]:
    """Pair the trades by rank and check candle, side, prices (relative) and P&L (absolute)."""
    ours = [_paper_trade(r, last_close) for r in paper.to_dict("records")]
    theirs = [_backtest_trade(r) for r in backtest.to_dict("records")]
    rows = []
    for n in range(max(len(ours), len(theirs))):
        a = ours[n] if n < len(ours) else None
        b = theirs[n] if n < len(theirs) else None
        diff = abs(a["pnl"] - b["pnl"]) if a and b else math.inf
        rows.append(TradeRow(n + 1, a, b, diff, _trade_problem(a, b, diff, abs_tol)))
    return rows


def _trade_problem(
    a: dict[str, Any] | None, b: dict[str, Any] | None, diff: float, abs_tol: float
) -> str | None:
    if a is None or b is None:
        return "only in the backtest" if a is None else "only in the paper ledger"
    for key in ("direction", "entry_time", "exit_time", "status"):
        if a[key] != b[key]:
            return f"{key} differs: paper {a[key]}, backtest {b[key]}"
    for key in ("entry_price", "exit_price", "size"):
        if not math.isclose(a[key], b[key], rel_tol=PRICE_TOLERANCE, abs_tol=0.0):
            return f"{key} differs: paper {a[key]!r}, backtest {b[key]!r}"
    if not diff <= abs_tol:
        return f"pnl differs by {diff:.3g} (tolerance {abs_tol:.3g})"
    return None
