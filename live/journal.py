"""The durable journal of emitted signals (SQLite, WAL): ``seq`` numbering and processed marks.

Three tables:

- ``signals(seq, params_id, candle_ts, line, emitted_at, symbol)``: every signal the runner
  emitted, as the exact wire line it sent. ``seq`` increases by one per signal, across every
  stream of the runner, and survives restarts; ``UNIQUE(symbol, params_id, candle_ts)`` makes a
  second emission for the same candle impossible (``params_id`` does not name the symbol: two
  symbols may run one frozen set). A journal written before ``symbol`` was a column is rebuilt
  with it at open, once (the symbol read from each stored line).
- ``state(symbol, timeframe, params_id, last_candle_ts, updated_at)``: the newest candle the
  runner has decided for each series and parameter set.
- ``meta(key, value)``: ``stream``, the journal's identity (a uuid4 hex made when the journal is
  created, or on the first open of an older journal, and kept for its lifetime). A client that
  sees another stream in the hello knows the seqs restarted: the journal was replaced or lost.

A damaged journal (not a database, or failing ``PRAGMA quick_check``) is refused at open with a
`DataError` naming the file: the runner stops with one line instead of retrying forever.

`Journal.record` appends a step's signals *and* advances the processed mark in one transaction
(`Journal.record_streams`: the marks of every stream the step moved, in the same one),
and the runner sends nothing before that transaction commits. A crash before the commit loses
nothing (the candles are decided again on restart, from the old mark); a crash after it emits
nothing twice (the mark moved past them, and a client gets them back with ``resume``).

Durability: ``synchronous=NORMAL`` in WAL mode survives a killed process (SIGKILL, OOM) but may
lose the last commits on power loss; pass ``durable=True`` for ``synchronous=FULL`` (an fsync
per step, a few milliseconds on most disks).

Checkpoints: SQLite's automatic checkpoint copies the WAL back into the database inside the
COMMIT that crosses its threshold, fsync included: a few milliseconds added to whichever signal
happens to be journaled then. The threshold is raised to `AUTO_CHECKPOINT_PAGES` (a bound on the
WAL, not the usual path), and the runner calls `Journal.checkpoint` when it is idle; that runs on
a connection of its own and never waits for the writer (PASSIVE).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from signals.errors import DataError
from signals.protocol import Signal, encode

_SCHEMA = """
CREATE TABLE IF NOT EXISTS signals (
    seq INTEGER PRIMARY KEY,
    params_id TEXT NOT NULL,
    candle_ts INTEGER NOT NULL,
    line TEXT NOT NULL,
    emitted_at REAL NOT NULL,
    symbol TEXT NOT NULL,
    UNIQUE (symbol, params_id, candle_ts)
);
CREATE TABLE IF NOT EXISTS state (
    symbol TEXT NOT NULL,
    timeframe TEXT NOT NULL,
    params_id TEXT NOT NULL,
    last_candle_ts INTEGER NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (symbol, timeframe, params_id)
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


AUTO_CHECKPOINT_PAGES = 10_000  # ~40 MB of WAL at 4 KiB pages: only reached without idle time


@dataclass(frozen=True)
class Entry:
    """One journaled signal: its seq and the exact line that was (or will be) sent."""

    seq: int
    line: bytes


@dataclass(frozen=True)
class SeriesKey:
    """The series and parameter set a processed mark belongs to."""

    symbol: str
    timeframe: str
    params_id: str


class Journal:
    """Append-only signal journal plus processed marks, safe to share between two threads."""

    def __init__(
        self, path: Path | str, *, durable: bool = False, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = Path(path)
        self.clock = clock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(
                self.path, timeout=10.0, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise DataError(f"{self.path}: cannot open the signal journal: {exc}") from None
        try:
            self._check()
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
            self._conn.execute(f"PRAGMA wal_autocheckpoint = {AUTO_CHECKPOINT_PAGES}")
            self._add_symbol()
            self._conn.executescript(_SCHEMA)
            self.stream = self._stream()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise DataError(
                f"{self.path}: the signal journal is damaged ({exc}); move it aside to start a "
                "new journal (a new stream: clients see its id change in the hello)"
            ) from None
        except sqlite3.Error as exc:
            self._conn.close()
            raise DataError(f"{self.path}: cannot open the signal journal: {exc}") from None
        self._lock = threading.Lock()
        self._checkpointer: sqlite3.Connection | None = None
        self._checkpoint_lock = threading.Lock()

    def _check(self) -> None:
        """Raise `sqlite3.DatabaseError` unless ``PRAGMA quick_check`` finds the file sound."""
        rows = self._conn.execute("PRAGMA quick_check").fetchall()
        if [tuple(row) for row in rows] != [("ok",)]:
            raise sqlite3.DatabaseError(f"quick_check: {rows[0][0]}")

    def _add_symbol(self) -> None:
        """Rebuild a journal whose ``signals`` table has no ``symbol`` column (written before)."""
        columns = [row[1] for row in self._conn.execute("PRAGMA table_info(signals)")]
        if not columns or "symbol" in columns:
            return
        self._conn.executescript(
            "BEGIN IMMEDIATE;"
            "ALTER TABLE signals RENAME TO signals_before_symbol;"
            + _SCHEMA
            + "INSERT INTO signals SELECT seq, params_id, candle_ts, line, emitted_at, "
            "COALESCE(json_extract(line, '$.symbol'), '') FROM signals_before_symbol ORDER BY seq;"
            "DROP TABLE signals_before_symbol;"
            "COMMIT;"
        )

    def _stream(self) -> str:
        """Return the journal's stream id, creating it on the first open."""
        self._conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('stream', ?)", (uuid.uuid4().hex,)
        )
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'stream'").fetchone()
        return str(row[0])

    def close(self) -> None:
        """Close the journal."""
        with self._checkpoint_lock:
            if self._checkpointer is not None:
                self._checkpointer.close()
                self._checkpointer = None
        with self._lock:
            self._conn.close()

    def checkpoint(self) -> tuple[int, int]:
        """Copy committed WAL frames into the database without waiting for the writer.

        Returns (frames in the WAL, frames checkpointed). Safe to call from any thread while
        `record` runs on another: it uses a connection of its own (PASSIVE mode).
        """
        with self._checkpoint_lock:
            if self._checkpointer is None:
                self._checkpointer = sqlite3.connect(
                    self.path, timeout=0, isolation_level=None, check_same_thread=False
                )
            row = self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(row[1]), int(row[2])

    def last_seq(self) -> int:
        """Return the seq of the newest journaled signal (0 when empty)."""
        with self._lock:
            row = self._conn.execute("SELECT COALESCE(MAX(seq), 0) FROM signals").fetchone()
        return int(row[0])

    def last_processed(self, key: SeriesKey) -> int | None:
        """Return the newest candle_ts decided for `key`, or None if it never ran."""
        with self._lock:
            row = self._conn.execute(
                "SELECT last_candle_ts FROM state WHERE symbol=? AND timeframe=? AND params_id=?",
                (key.symbol, key.timeframe, key.params_id),
            ).fetchone()
        return None if row is None else int(row[0])

    def set_processed(self, key: SeriesKey, candle_ts: int) -> None:
        """Move the processed mark of `key` to `candle_ts` (no signals)."""
        self.record(key, candle_ts, [])

    def record(
        self,
        key: SeriesKey,
        candle_ts: int,
        records: Iterable[dict[str, Any]],
        *,
        stale: Callable[[int], bool] = lambda _ts: False,
    ) -> list[Entry]:
        """Journal `records` (wire signal objects without seq) and move the mark, atomically.

        Returns the new entries in seq order. A record whose (symbol, params_id, candle_ts) is
        already journaled is not journaled again.
        """
        return self.record_streams([(key, candle_ts, stale)], records)

    def record_streams(
        self,
        marks: Sequence[tuple[SeriesKey, int, Callable[[int], bool]]],
        records: Iterable[dict[str, Any]],
    ) -> list[Entry]:
        """Journal `records` of several streams and move each stream's mark, in one transaction.

        `marks` holds (key, newest decided candle, its stale rule) per stream; a record is
        flagged stale by the rule of its own stream. Returns the new entries in seq order.
        """
        stale_of = _stale_rule(marks)
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                entries = self._append(conn, records, stale_of)
                now = self.clock()
                for key, candle_ts, _ in marks:
                    conn.execute(
                        "INSERT INTO state VALUES (?,?,?,?,?) ON CONFLICT(symbol, timeframe, "
                        "params_id) DO UPDATE SET last_candle_ts=excluded.last_candle_ts, "
                        "updated_at=excluded.updated_at",
                        (key.symbol, key.timeframe, key.params_id, int(candle_ts), now),
                    )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # SQLite may have rolled back already (disk full)
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise
        return entries

    def _append(
        self,
        conn: sqlite3.Connection,
        records: Iterable[dict[str, Any]],
        stale_of: Callable[[dict[str, Any]], bool],
    ) -> list[Entry]:
        seq = int(conn.execute("SELECT COALESCE(MAX(seq), 0) FROM signals").fetchone()[0])
        entries: list[Entry] = []
        for record in records:
            symbol, params_id = record["symbol"], record["params_id"]
            candle_ts = record["candle_ts"]
            emitted_at = self.clock()
            signal = Signal(**record, seq=seq + 1, emitted_at=emitted_at, stale=stale_of(record))
            line = encode(signal)
            added = conn.execute(
                "INSERT INTO signals VALUES (?,?,?,?,?,?)"
                " ON CONFLICT (symbol, params_id, candle_ts) DO NOTHING",
                (seq + 1, params_id, candle_ts, line.decode("utf-8"), emitted_at, symbol),
            ).rowcount
            if added:  # else journaled before: not again (its seq stays unused)
                seq += 1
                entries.append(Entry(seq, line))
        return entries

    def since(self, seq: int, *, limit: int | None = None) -> list[Entry]:
        """Return the journaled signals after `seq`, in order (at most `limit`)."""
        sql = "SELECT seq, line FROM signals WHERE seq > ? ORDER BY seq"
        params: tuple[int, ...] = (int(seq),)
        if limit is not None:
            sql += " LIMIT ?"
            params = (int(seq), int(limit))
        with self._lock:
            rows = self._conn.execute(sql, params).fetchall()
        return [Entry(int(s), line.encode("utf-8")) for s, line in rows]

    def signals(self, since_seq: int = 0) -> list[dict[str, Any]]:
        """Return the journaled signals after `since_seq` as decoded objects (for tools/tests)."""
        return [json.loads(entry.line) for entry in self.since(since_seq)]


def _stale_rule(
    marks: Sequence[tuple[SeriesKey, int, Callable[[int], bool]]],
) -> Callable[[dict[str, Any]], bool]:
    """Return whether a record is stale, by the rule of its own stream."""
    if len(marks) == 1:  # one stream: its rule is every record's (as before streams)
        only = marks[0][2]
        return lambda record: only(record["candle_ts"])
    rules = {(k.symbol, k.timeframe, k.params_id): stale for k, _, stale in marks}

    def stale_of(record: dict[str, Any]) -> bool:
        rule = rules.get((record["symbol"], record["timeframe"], record["params_id"]))
        return rule is not None and rule(record["candle_ts"])

    return stale_of
