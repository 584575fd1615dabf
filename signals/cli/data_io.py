"""``signals data import | check | export``: candles from files into a database, its check,
and back out as interchange CSV. Thin wrappers over `signals.data` functions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from signals.cli.options import DATA_CONFIG, DB_WRITE

if TYPE_CHECKING:
    from rich.table import Table

    from signals.data.check import DatabaseReport, SeriesReport
    from signals.data.importers import ImportSummary

SHOWN_VIOLATIONS = 5
PIPE_WIDTH = 200
COLUMNS = (
    "symbol",
    "tf",
    "rows",
    "first",
    "last",
    "incomplete",
    "gaps",
    "missing",
    "largest gap",
    "violations",
    "vs 1m",
)


def import_command(
    files: list[Path] = typer.Argument(
        ...,
        help="Files to import: interchange CSV, Binance kline CSV or Bybit trade dump "
        "(plain, .gz or a one-file .zip; the format is detected).",
        show_default=False,
    ),
    db: Path = DB_WRITE,
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


def summary_table(summary: ImportSummary) -> Table:
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
            f"{_minute(item.first)}\n{_minute(item.last)}",
        )
        for tf, count in item.aggregated.items():
            table.add_row("", "", tf, "", _int(count.complete), _int(count.incomplete), "")
        table.add_section()
    return table


def _minute(value: object) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M}"


def _int(value: int) -> str:
    return f"{value:,}"


def check_command(
    db: Path = typer.Option(..., "--db", help="Candle database (SQLite) to check."),
    symbol: str | None = typer.Option(
        None, "--symbol", help="Check only this symbol (default: every symbol in the database)."
    ),
    config: Path | None = DATA_CONFIG,
    as_json: bool = typer.Option(
        False, "--json", help="Print a machine-readable JSON report instead of a table."
    ),
) -> None:
    """Report rows, first/last candle, gaps, incomplete candles and violations per series.

    Exits with code 1 when any violation is found (gaps alone are not violations); a closed
    candle from the future (closing after now + data.future_tolerance_s) is one.
    """
    import time

    from signals.config import load_settings
    from signals.data.check import check_database
    from signals.errors import DataError

    settings = load_settings(config)
    report = check_database(db, symbol=symbol, settings=settings, clock=time.time)
    if not report.series:
        where = f" for {symbol}" if symbol else ""
        raise DataError(f"{db}: no candle series{where} in this database")
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        _print_report(report)
    raise typer.Exit(0 if report.ok else 1)


def _print_report(report: DatabaseReport) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # piped or captured: do not squeeze the table into 80 columns
        console = Console(width=PIPE_WIDTH)
    table = Table(title=f"signals data check: {report.db}")
    for name in COLUMNS:
        left = name in ("symbol", "tf", "first", "last", "largest gap")
        table.add_column(name, justify="left" if left else "right", no_wrap=True)
    for s in report.series:
        table.add_row(*_row(s))
    console.print(table)
    for s in report.series:
        listed = [*s.violations, *s.disagreements]
        for violation in listed[:SHOWN_VIOLATIONS]:
            console.print(str(violation), soft_wrap=True, markup=False, highlight=False)
        if len(listed) > SHOWN_VIOLATIONS:
            more = len(listed) - SHOWN_VIOLATIONS
            console.print(f"... and {more} more for {s.symbol} {s.timeframe}", markup=False)
    verdict = "OK: no violations" if report.ok else "FAILED: violations found"
    console.print(verdict, markup=False, highlight=False)


def _row(s: SeriesReport) -> list[str]:
    from signals.data.validate import iso

    largest = f"{s.gaps.largest} at {iso(s.gaps.largest_at)}" if s.gaps.count else "-"
    vs_base = "-"
    if s.consistency is not None:
        vs_base = f"{len(s.disagreements)} bad of {s.consistency.compared}"
    return [
        s.symbol,
        s.timeframe,
        str(s.rows),
        iso(s.first),
        iso(s.last),
        str(s.incomplete),
        str(s.gaps.count),
        str(s.gaps.missing_candles),
        largest,
        str(len(s.violations)),
        vs_base,
    ]


def export_command(
    db: Path = typer.Option(..., "--db", help="Candle database (SQLite) to read."),
    timeframe: str = typer.Option(..., "--timeframe", help="Timeframe to export: 1m, 5m, ... 1d."),
    out: Path = typer.Option(..., "--out", help="Output CSV file; gzip-compressed if it ends .gz."),
    symbol: str | None = typer.Option(
        None, "--symbol", help="Symbol to export (default: data.symbol of the config, BTCUSDT)."
    ),
    start: str | None = typer.Option(
        None, "--from", help="First candle open time: ISO date/datetime (UTC) or epoch seconds."
    ),
    end: str | None = typer.Option(
        None, "--to", help="Last candle open time (inclusive): ISO (UTC) or epoch seconds."
    ),
    config: Path | None = DATA_CONFIG,
) -> None:
    """Export closed candles as interchange CSV (timestamp,open,...,buy_volume,trades)."""
    from signals.config import load_settings
    from signals.data.export import write_interchange
    from signals.data.load import no_rows_message
    from signals.data.store import CandleStore
    from signals.data.timeparse import parse_when
    from signals.data.validate import iso
    from signals.errors import DataError
    from signals.timeframes import timeframe_seconds

    timeframe_seconds(timeframe)  # fail early, with a suggestion, on an unknown timeframe
    settings = load_settings(config)
    symbol = symbol or settings.data.symbol
    first = parse_when(start) if start is not None else None
    last = parse_when(end) if end is not None else None
    store = CandleStore(
        db, source=settings.data.source, busy_timeout_ms=settings.data.busy_timeout_ms
    )
    with store:
        frame = store.history(symbol, timeframe, start=first, end=last)
        if frame.empty:
            raise DataError(no_rows_message(store, db, symbol, timeframe, start, end))
    rows = write_interchange(frame, out)
    span = f"{iso(int(frame.index[0].timestamp()))} .. {iso(int(frame.index[-1].timestamp()))}"
    typer.echo(f"wrote {rows} {symbol} {timeframe} candles ({span}) to {out}")


def register(app: typer.Typer) -> None:
    """Add ``import``, ``check`` and ``export`` to the ``signals data`` app."""
    app.command("import")(import_command)
    app.command("check")(check_command)
    app.command("export")(export_command)
