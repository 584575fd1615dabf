"""The paper bot's SQLite ledger: meta, signals, fills, trades and the account.

Signals are keyed by (stream, seq): a seq already recorded of a stream is ignored (exactly-once).
`read_table` and `paper_summary` read a ledger without writing it (``signals paper report``).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pandas as pd

from paper.accounting import Leg, trade_pnl
from paper.errors import PaperError
from signals.config import CandleSource
from signals.data.store import CandleStore
from signals.errors import DataError
from signals.protocol import Signal

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
