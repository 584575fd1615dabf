"""Transitional re-export: `signals.cli.walkforward` and `signals.cli.reoptimise` still import
their shared options from here. Once they import `signals.cli.options`, delete this module.

The research commands themselves live in `scan`, `backtest`, `demo` and `sweep`.
"""

from __future__ import annotations

from signals.cli.options import CONFIG, DB, FROM, STRATEGY, SYMBOL, TIMEFRAME, TO

__all__ = ["CONFIG", "DB", "FROM", "STRATEGY", "SYMBOL", "TIMEFRAME", "TO"]
