"""Typer options shared by several commands, declared once (a command's own options stay inline).

A command takes one as the default of its parameter, e.g. ``db: Path = DB``; the parameter's
name gives the Python name, the option gives the flags, the default and the help text.
"""

from __future__ import annotations

import typer

# -- a strategy on stored candles: scan, bias, backtest, freeze, sweep, walkforward, reoptimise

STRATEGY = typer.Option(..., "--strategy", "-s", help="Strategy name (see `signals strategies`).")
DB = typer.Option(None, "--db", help="Candle database (default: data.candles_db in the config).")
TIMEFRAME = typer.Option(..., "--timeframe", "-t", help="Candle timeframe: 1m 5m 15m 1h 4h 1d.")
SYMBOL = typer.Option(None, "--symbol", help="Symbol (default: data.symbol, BTCUSDT).")
PARAMS = typer.Option(None, "--params", help="Frozen parameter file (JSON) to take params from.")
SET = typer.Option(None, "--set", help="Override one parameter: name=value (repeatable).")
FROM = typer.Option(None, "--from", help="First candle (ISO UTC date/time or epoch s).")
TO = typer.Option(None, "--to", help="Last candle (ISO UTC date/time or epoch s).")
CONFIG = typer.Option(None, "--config", help="YAML config (default: ./signals.yaml if present).")
STRATEGY_PATH = typer.Option(
    None,
    "--strategy-path",
    help="Folder of your strategy modules (repeatable; adds to strategy_paths in the config).",
)

# -- execution and costs: backtest, sweep, freeze, paper

DIRECTION = typer.Option("long", "--direction", help="long (default), short, or both (reverses).")
COSTS = typer.Option(
    None, "--costs", help="Cost preset (bybit-spot, bybit-perp) or a YAML/JSON costs file."
)
FEE_BPS = typer.Option(None, "--fee-bps", help="Taker fee per side in bps (overrides --costs).")
SLIPPAGE_BPS = typer.Option(
    None, "--slippage-bps", help="Fixed slippage per fill in bps (overrides)."
)

# -- candle databases: signals data ...

DB_WRITE = typer.Option(..., "--db", help="Candle database to write (created if missing).")
DATA_CONFIG = typer.Option(
    None, "--config", help="YAML config (table/column mapping); default ./signals.yaml."
)
PROGRESS = typer.Option(True, "--progress/--no-progress", help="Show a progress bar.")
