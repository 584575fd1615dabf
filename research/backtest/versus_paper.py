"""The paper bot's ledger versus a backtest of the same frozen parameters, trade by trade.

``signals paper report --params`` and the live demo call `compare_with_backtest`: it backtests
the frozen parameters over the candles the bot traded (with the costs, direction and initial cash
its ledger records) and pairs the trades by rank: entry/exit candle and side must be equal,
prices and sizes equal within `PRICE_TOLERANCE` (relative), P&L within a tolerance per trade.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from paper.accounting import NO_FUNDING, trade_pnl
from paper.errors import PaperError
from paper.ledger import Ledger, paper_summary, read_table
from signals.config import CandleSource
from signals.costs import CostModel
from signals.timeframes import timeframe_seconds

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
    # what the HTML report draws: the backtest's equity and the closes over the span, the run
    backtest_equity: pd.Series | None = None
    closes: pd.Series | None = None
    run: dict[str, str] = field(default_factory=dict)  # strategy, symbol, timeframe, params_id

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
    before it only warm the strategy and the slippage model up (`run_backtest`'s `since`), so
    both start flat with the history a live bot has.
    The backtest uses the costs, direction and initial cash recorded in the ledger; candles
    are read through `source` (``data.source`` of the config).
    """
    from research.backtest.execution import ExecutionModel
    from research.backtest.run import run_backtest
    from signals.config import DataSettings, Settings
    from signals.data.load import load_candles
    from signals.frozen import load_frozen, typed_params
    from signals.strategy_paths import get_strategy

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
    init_cash = float(info.get("init_cash", 10_000.0))
    costs, notes = CostModel.model_validate(info.get("costs", {})), []
    if costs.has_funding:  # the bot charges none: compare like with like, and say so
        costs = costs.model_copy(update={"funding_rate": None, "funding_file": None})
        notes.append(NO_FUNDING)
    history = max(strategy.lookback(params), costs.slippage_warmup())
    candles = load_candles(
        Path(db), symbol=frozen.symbol, timeframe=frozen.timeframe, start=first - history * step,
        settings=Settings(data=DataSettings(source=source or CandleSource())),
    )  # fmt: skip
    since = pd.Timestamp(first, unit="s", tz="UTC")
    result = run_backtest(
        candles, strategy, params, timeframe=frozen.timeframe, since=since,
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
        **_drawn(result.equity, candles, since, frozen),
    )


def _drawn(
    equity: pd.Series, candles: pd.DataFrame, since: pd.Timestamp, frozen: Any
) -> dict[str, Any]:
    """What the HTML report draws besides the trades: the curves over the span, the run."""
    run = {k: str(getattr(frozen, k)) for k in ("strategy", "symbol", "timeframe", "params_id")}
    return {"backtest_equity": equity.loc[since:], "closes": candles["close"].loc[since:],
            "run": run}  # fmt: skip


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
        "entry_fees": float(row["entry_fees"]),
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


def equity_from_trades(
    trades: list[dict[str, Any]], closes: pd.Series, init_cash: float
) -> pd.Series:
    """Return the equity at each close of a list of trades (``TradeRow.paper`` dicts), in order.

    As the backtest values it: flat cash between trades; while a trade is open, the cash before
    it less its entry fees plus its gain at the close (entry at an open, so the entry candle's
    close counts); from its exit candle on, the cash before it plus its P&L.
    """
    index = closes.index
    price = closes.to_numpy(dtype="float64")
    equity = np.full(len(index), float(init_cash))
    cash = float(init_cash)
    for trade in trades:
        start = int(index.searchsorted(trade["entry_time"]))
        sign = 1.0 if trade["direction"] == "long" else -1.0
        exit_time = trade.get("exit_time")
        stop = len(index) if exit_time is None else int(index.searchsorted(exit_time))
        held = price[start:stop] - trade["entry_price"]
        equity[start:stop] = cash - trade["entry_fees"] + sign * trade["size"] * held
        if exit_time is not None:
            cash += trade["pnl"]
            equity[stop:] = cash
    return pd.Series(equity, index=index, name="paper")
