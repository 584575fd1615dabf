"""Research commands: scan, bias (and later backtest, sweep, walk-forward)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the research commands to the root app."""
