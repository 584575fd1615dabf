"""The reference paper bot: trades the live runner's signals on paper, exactly like the backtest.

It connects to the runner's Unix socket (`paper.connection`), records every signal in its SQLite
ledger (`paper.ledger`; a ``seq`` already recorded is ignored: exactly-once), reconnects with
exponential backoff and resumes by the last ``seq`` it recorded. A signal fills at the open of
the next stored closed candle, with the legs, fees and P&L of `paper.accounting`.

Seqs are numbered per journal, and the hello names the journal's ``stream``. The ledger records
the stream of its first hello; a later hello with another stream (the runner's journal was
replaced or lost, its seqs restarted) stops the bot with one line naming both streams, unless
``follow_new_stream`` is set: then it logs the switch, records the new stream and resumes from
seq 0 of it (signals are keyed by stream and seq, so the new stream's seqs are never taken for
the old stream's). An ``unknown_seq`` error (the journal of the same stream ends before the
ledger: restored from an older copy) is logged; the runner continues from its journal's end.

A runner may serve several frozen sets (streams: its hello lists them; one ``seq`` across them).
The bot trades one: the only stream of a one-stream runner, else the one stream its
``symbol`` / ``timeframe`` / ``strategy`` choice matches (none or several: it stops with one line
naming the streams). Signals of the other streams are not recorded; their seqs are skipped.

``signals paper report`` compares the ledger with a backtest
(`research.backtest.versus_paper.compare_with_backtest`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal as signal_module
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paper.accounting import NO_FUNDING, Direction, execute, plan
from paper.connection import RunnerConnection
from paper.errors import PaperError
from paper.ledger import Ledger
from signals.config import CandleSource
from signals.costs import CostModel
from signals.data.store import CandleStore
from signals.errors import DataError
from signals.protocol import ErrorMessage, Heartbeat, Hello, Signal, StreamInfo, decode_server
from signals.timeframes import timeframe_seconds

log = logging.getLogger(__name__)


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
    symbol: str | None = None  # which of a runner's streams to trade (None: any)
    timeframe: str | None = None
    strategy: str | None = None
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
        self.link = RunnerConnection(
            config.socket, self, reconnect_min=config.reconnect_min,
            reconnect_max=config.reconnect_max, idle_timeout=config.idle_timeout,
        )  # fmt: skip
        self.duplicates = 0
        self.unknown_seq = 0
        self.other_streams = 0  # signals of the runner's other streams, not recorded
        self._followed: StreamInfo | None = None  # set when the runner serves several streams

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
        chosen = self._choose(hello)
        meta = self.ledger.meta()
        known = meta.get("params_id")
        if known is not None and known != chosen.params_id:
            raise PaperError(
                f"{self.config.ledger}: ledger holds signals of params_id {known}, the runner "
                f"serves {chosen.params_id}; use a new ledger"
            )
        self._check_stream(hello)
        if known is None:
            start = hello.last_seq if self.config.since_seq is None else self.config.since_seq
            self.ledger.set_meta(
                params_id=chosen.params_id, strategy=chosen.strategy, symbol=chosen.symbol,
                timeframe=chosen.timeframe, start_seq=start,
            )  # fmt: skip
            meta = self.ledger.meta()
        last = self.ledger.last_seq()
        since = max(int(meta["start_seq"]), last if last is not None else 0)
        if hello.last_seq < since:
            log.warning("runner's last seq %d is behind the ledger's %d", hello.last_seq, since)
        return since

    def _choose(self, hello: Hello) -> StreamInfo:
        """Return the stream of the hello this bot trades (the only one, or the one chosen)."""
        first = StreamInfo(
            symbol=hello.symbol, timeframe=hello.timeframe, strategy=hello.strategy,
            params_id=hello.params_id,
        )  # fmt: skip
        streams = hello.streams or [first]
        cfg = self.config
        wanted = {"symbol": cfg.symbol, "timeframe": cfg.timeframe, "strategy": cfg.strategy}
        matching = [
            s for s in streams if all(v is None or getattr(s, k) == v for k, v in wanted.items())
        ]
        if len(matching) == 1:
            self._followed = matching[0] if len(streams) > 1 else None
            return matching[0]
        served = "; ".join(f"{s.symbol} {s.timeframe} {s.strategy} {s.params_id}" for s in streams)
        chosen = " ".join(f"--{k} {v}" for k, v in wanted.items() if v is not None) or "nothing"
        raise PaperError(
            f"the runner serves {len(streams)} stream(s) ({served}); {chosen} matches "
            f"{len(matching)}: choose one with --symbol, --timeframe and --strategy"
        )

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
        followed = self._followed
        if followed is not None and (sig.symbol, sig.timeframe, sig.strategy, sig.params_id) != (
            followed.symbol, followed.timeframe, followed.strategy, followed.params_id
        ):  # fmt: skip
            self.other_streams += 1
            if (sig.symbol, sig.timeframe) == (followed.symbol, followed.timeframe):
                log.warning(
                    "seq %d: %s %s %s signal of params_id %s, not the followed %s (reloaded?): "
                    "not recorded; restart with a new ledger to trade it", sig.seq, sig.symbol,
                    sig.timeframe, sig.strategy, sig.params_id, followed.params_id,
                )  # fmt: skip
            return False
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
        window = self.config.costs.slippage_warmup()
        candles = store.last_closed(symbol, timeframe, window, until=fill_time)
        slip = self.config.costs.slippage_fraction(
            candles, fill="next_open", notional=self.config.init_cash
        )
        return int(fill_time.timestamp()), float(frame["open"].iloc[0]), float(slip[-1])

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

    # -- running -------------------------------------------------------------------------------

    @property
    def connections(self) -> int:
        """Return how many times the bot connected to the runner."""
        return self.link.connections

    async def run(self, stop: asyncio.Event) -> None:
        """Connect (and reconnect) until `stop` is set, filling pending signals as candles land."""
        poller = asyncio.create_task(self._poll(stop))
        try:
            await self.link.run(stop)
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller

    async def _poll(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if self.db_changed() and self.ledger.pending():
                self.try_fill()
            await asyncio.sleep(self.config.poll_interval)


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
