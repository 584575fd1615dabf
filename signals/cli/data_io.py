"""``signals data check`` and ``signals data export``: thin wrappers over importable functions."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from signals.config import load_settings
from signals.data.check import DatabaseReport, SeriesReport, check_database
from signals.data.export import write_interchange
from signals.data.load import no_rows_message
from signals.data.store import CandleStore
from signals.data.timeparse import parse_when
from signals.data.validate import iso
from signals.errors import DataError
from signals.timeframes import timeframe_seconds

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


def register(app: typer.Typer) -> None:
    """Add this module's commands to the ``signals data`` app."""
    app.command("check")(check)
    app.command("export")(export)


def check(
    db: Path = typer.Option(..., "--db", help="Candle database (SQLite) to check."),
    symbol: str | None = typer.Option(
        None, "--symbol", help="Check only this symbol (default: every symbol in the database)."
    ),
    config: Path | None = typer.Option(
        None, "--config", help="YAML config (table/column mapping); default ./signals.yaml."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print a machine-readable JSON report instead of a table."
    ),
) -> None:
    """Report rows, first/last candle, gaps, incomplete candles and violations per series.

    Exits with code 1 when any violation is found (gaps alone are not violations); a closed
    candle from the future (closing after now + data.future_tolerance_s) is one.
    """
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


def export(
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
    config: Path | None = typer.Option(
        None, "--config", help="YAML config (table/column mapping); default ./signals.yaml."
    ),
) -> None:
    """Export closed candles as interchange CSV (timestamp,open,...,buy_volume,trades)."""
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
