"""``signals data import``: load candle and trade files into a candle database."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from signals.data.importers import ImportSummary


def _when(value: object) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M}"


def _int(value: int) -> str:
    return f"{value:,}"


def summary_table(summary: ImportSummary) -> object:
    """Return a rich Table of what an import did: per file its base candles, then per aggregated
    timeframe how many candles are closed and how many are still incomplete (``closed = 0``)."""
    from rich import box
    from rich.table import Table

    table = Table(title=f"{summary.symbol} → {summary.db}", title_justify="left", box=box.SIMPLE)
    table.add_column("file", overflow="fold")
    table.add_column("format")
    table.add_column("tf")
    table.add_column("rows", justify="right")
    table.add_column("closed", justify="right")
    table.add_column("incomplete", justify="right")
    table.add_column("first / last")
    for item in summary.files:
        table.add_row(
            item.path.name,
            item.format,
            item.timeframe,
            _int(item.rows_read),
            _int(item.rows_written),
            "0",
            f"{_when(item.first)}\n{_when(item.last)}",
        )
        for tf, count in item.aggregated.items():
            table.add_row("", "", tf, "", _int(count.complete), _int(count.incomplete), "")
        table.add_section()
    return table


def register(app: typer.Typer) -> None:
    """Add ``import`` to the ``signals data`` app."""

    @app.command("import")
    def import_command(
        files: list[Path] = typer.Argument(
            ...,
            help="Files to import: interchange CSV, Binance kline CSV or Bybit trade dump "
            "(plain, .gz or a one-file .zip; the format is detected).",
            show_default=False,
        ),
        db: Path = typer.Option(..., "--db", help="Candle database to write (created if missing)."),
        symbol: str = typer.Option("BTCUSDT", "--symbol", help="Symbol the candles belong to."),
        timeframe: str | None = typer.Option(
            None,
            "--timeframe",
            help="Timeframe of the files' candles (1m, 5m, 15m, 1h, 4h, 1d); detected from the "
            "candle spacing when omitted. For trade dumps: the candle size to build (default 1m).",
        ),
        no_progress: bool = typer.Option(
            False, "--no-progress", help="Do not show a progress bar per file."
        ),
    ) -> None:
        """Import candle or trade files; higher timeframes are aggregated, idempotently."""
        from rich.console import Console

        from signals.data.importers import import_files

        summary = import_files(
            files, db=db, symbol=symbol, timeframe=timeframe, progress=not no_progress
        )
        console = Console()
        if not console.is_terminal:  # piped or captured: do not squeeze the table into 80 cols
            console = Console(width=120)
        for repair in summary.repaired:
            console.print(f"repaired after an interrupted write: {repair}", markup=False)
        console.print(summary_table(summary))
        console.print(
            "Aggregated rows: candles rebuilt from the stored base candles over whole buckets; "
            "incomplete ones are stored with closed = 0 until their missing candles are imported."
        )
