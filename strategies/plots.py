"""What a strategy asks the reports to draw: indicator lines on the price panel, oscillator panels.

A strategy declares next to its rules a ``plots(candles, params)`` method returning `Plot`
items: a named series and the panel it goes on (``PRICE``, or the name of an oscillator panel,
shared by the items that name it), with optional horizontal guide levels (e.g. an RSI's 30/70).
Display only: decisions never read them, so a declaration can change without changing a
strategy's behaviour. A strategy without one gets the lines its parameter names suggest
(research/render/charts.py).

>>> def plots(self, candles, params):  # doctest: +SKIP
...     rsi = ind.rsi(candles["close"], params.rsi_period)
...     return [Plot(f"RSI{params.rsi_period}", rsi, "RSI", levels=(30.0, 70.0))]
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

PRICE = "price"


@dataclass(frozen=True)
class Plot:
    """One series a report draws: its name, values on the candles' index, panel, guide levels."""

    name: str
    series: pd.Series
    panel: str = PRICE
    levels: tuple[float, ...] = ()
