"""The paper bot's accounting: which legs a signal triggers, their fills, fees and trade P&L.

Pure functions, no I/O. Execution mirrors `research.backtest.execution` (vectorbt, all-in, one
position at a time):

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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

NO_FUNDING = (
    "the paper bot does not charge perpetual funding: the backtest it is compared with leaves "
    "funding out too (a `signals backtest` with these costs charges it)"
)

Direction = Literal["long", "short", "both"]


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
        out.append(Leg(action, kind, side, price, size, fees, cash, position))  # type: ignore[arg-type]  # plan() gives only Leg's literals
    return out


def trade_pnl(
    direction: str, size: float, entry: float, exit_: float, fees: float
) -> tuple[float, float]:
    """Return (pnl, return) of a trade as vectorbt computes them."""
    diff = size * exit_ - size * entry
    pnl = (-diff if direction == "short" else diff) - fees
    return pnl, pnl / (size * entry)
