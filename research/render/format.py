"""Numbers for people: percentages, money, prices, counts and durations, one function each.

The CLI tables, the HTML reports and the notebooks format through this module, so a figure reads
the same everywhere. Every function takes a plain number (or None); a missing figure (None, NaN)
reads ``n/a`` and an infinite one ``inf`` or ``-inf``, never a misleading 0.

>>> percent(0.0523, signed=True), money(12345.678, "USDT"), hours(30.5), metric("sharpe", 1.234)
('+5.23%', '12,345.68 USDT', '1 d 6 h', '1.23')
"""

from __future__ import annotations

import math
from collections.abc import Callable

NA = "n/a"

# how each metric of research/backtest/metrics.py reads (keys not listed read as ratios)
SIGNED_PERCENT = frozenset(
    {"total_return", "annual_return", "max_drawdown", "expectancy", "buy_hold_return"}
)
PERCENT = frozenset({"win_rate", "exposure"})
MONEY = frozenset({"fees_paid", "funding_paid", "final_equity", "pnl"})
LABELS = {
    "total_return": "Total return",
    "annual_return": "Annual return",
    "sharpe": "Sharpe ratio",
    "sortino": "Sortino ratio",
    "calmar": "Calmar ratio",
    "max_drawdown": "Max drawdown",
    "max_drawdown_days": "Longest drawdown",
    "win_rate": "Win rate",
    "profit_factor": "Profit factor",
    "expectancy": "Expectancy (mean trade return)",
    "sqn": "SQN",
    "trades": "Trades",
    "avg_holding_hours": "Average holding time",
    "exposure": "Exposure (time in market)",
    "fees_paid": "Fees paid",
    "buy_hold_return": "Buy and hold return",
    "funding_paid": "Funding paid",
    "cost_break_even_bps": "Cost break-even (per side)",
    "final_equity": "Final equity",
}
QUOTES = ("USDT", "USDC", "BUSD", "FDUSD", "USD", "EUR", "BTC", "ETH")


def _text(value: float | None, shown: Callable[[float], str]) -> str:
    """Return `shown(value)`, or the text of a missing or infinite figure."""
    if value is None:
        return NA
    number = float(value)
    if math.isnan(number):
        return NA
    if math.isinf(number):
        return "inf" if number > 0 else "-inf"
    return shown(number)


def percent(value: float | None, digits: int = 2, *, signed: bool = False) -> str:
    """Format a fraction as a percentage (0.05 -> ``5.00%``; ``+5.00%`` when signed)."""
    sign = "+" if signed else ""
    return _text(value, lambda v: f"{v:{sign}.{digits}%}")


def money(value: float | None, unit: str = "", digits: int = 2, *, signed: bool = False) -> str:
    """Format an amount with thousands separators and its currency (``12,345.68 USDT``)."""
    sign = "+" if signed else ""
    suffix = f" {unit}" if unit else ""
    return _text(value, lambda v: f"{v:{sign},.{digits}f}{suffix}")


def price(value: float | None) -> str:
    """Format a price with the decimals its size needs (``42,123.45``, ``1.2345``, ``0.000123``)."""
    return _text(value, lambda v: f"{v:,.2f}" if abs(v) >= 1000 else f"{v:.6g}")


def ratio(value: float | None, digits: int = 2) -> str:
    """Format a ratio (Sharpe, profit factor) with `digits` decimals."""
    return _text(value, lambda v: f"{v:.{digits}f}")


def count(value: float | None) -> str:
    """Format a count with thousands separators (``1,234``)."""
    return _text(value, lambda v: f"{round(v):,}")


def bps(value: float | None, digits: int = 1) -> str:
    """Format basis points (``2.4 bps``)."""
    return _text(value, lambda v: f"{v:.{digits}f} bps")


_UNITS = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))


def _duration(seconds: float) -> str:
    left = round(abs(seconds))
    parts: list[str] = []
    for unit, size in _UNITS:
        amount, left = divmod(left, size)
        if amount and len(parts) < 2:
            parts.append(f"{amount} {unit}")
        elif parts:  # the second unit is the one right after the first, even when 0
            break
    sign = "-" if seconds < 0 and parts else ""
    return sign + (" ".join(parts) or "0 s")


def duration(seconds: float | None) -> str:
    """Format a duration by its two largest units (``3 d 4 h``, ``4 h 12 min``, ``45 s``)."""
    return _text(seconds, _duration)


def hours(value: float | None) -> str:
    """Format a number of hours as a duration."""
    return _text(value, lambda v: _duration(v * 3600))


def days(value: float | None) -> str:
    """Format a number of days as a duration."""
    return _text(value, lambda v: _duration(v * 86400))


def quote_currency(symbol: str) -> str:
    """Return the quote currency a symbol ends with (``BTCUSDT`` -> ``USDT``), or ``""``."""
    upper = symbol.upper().replace("/", "").replace("-", "")
    return next((q for q in QUOTES if upper.endswith(q) and len(upper) > len(q)), "")


def label(key: str) -> str:
    """Return a metric's name for people (``max_drawdown`` -> ``Max drawdown``)."""
    return LABELS.get(key, key.replace("_", " ").capitalize())


def metric(key: str, value: float | None, unit: str = "") -> str:
    """Format one metric of a backtest by what it measures; `unit` is the money's currency."""
    if key in SIGNED_PERCENT:
        return percent(value, signed=True)
    if key in PERCENT:
        return percent(value, 1)
    if key in MONEY:
        return money(value, unit)
    if key == "trades":
        return count(value)
    if key == "cost_break_even_bps":
        return bps(value)
    if key == "max_drawdown_days":
        return days(value)
    if key == "avg_holding_hours":
        return hours(value)
    return ratio(value)
