"""Recognise a candle or trade file's format from its first line, and read its text.

Three formats are recognised (plain, gzip or a single-member zip as data.binance.vision ships
them; compression is found by the magic bytes, not the name):

* ``interchange``: the project's CSV (ARCHITECTURE.md), header
  ``timestamp,open,high,low,close,volume,buy_volume,trades``, open time in epoch seconds.
* ``binance``: data.binance.vision kline CSVs, 12 columns, with or without the newer header.
* ``bybit-trades``: public.bybit.com/trading dumps, one row per trade.

`signals.data.parse` turns each into validated base candles.
"""

from __future__ import annotations

import gzip
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

from signals.data.schema import CANDLE_COLUMNS
from signals.errors import DataError

INTERCHANGE_COLUMNS: tuple[str, ...] = ("timestamp", *CANDLE_COLUMNS)
BINANCE_COLUMNS: tuple[str, ...] = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "count",
    "taker_buy_volume",
    "taker_buy_quote_volume",
    "ignore",
)
BYBIT_REQUIRED: tuple[str, ...] = ("timestamp", "symbol", "side", "size", "price")

GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"


@dataclass(frozen=True)
class FileFormat:
    """A recognised file layout: its name, column names and whether line 1 is a header."""

    name: str
    columns: tuple[str, ...]
    header: bool

    @property
    def first_data_line(self) -> int:
        """Return the 1-based line number of the first data row."""
        return 2 if self.header else 1


def _open_text(path: Path) -> io.TextIOBase:
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc}") from None
    if magic[:2] == GZIP_MAGIC:
        return gzip.open(path, "rt", encoding="utf-8-sig")
    if magic == ZIP_MAGIC:  # data.binance.vision ships one CSV per .zip
        return _open_zip_member(path)
    return path.open("r", encoding="utf-8-sig")


def _open_zip_member(path: Path) -> io.TextIOBase:
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise DataError(f"{path}: corrupt zip archive: {exc}") from None
    members = [n for n in archive.namelist() if not n.endswith("/")]
    if len(members) != 1:
        archive.close()
        raise DataError(f"{path}: a zip archive must hold exactly one CSV, found {members}")
    return io.TextIOWrapper(archive.open(members[0]), encoding="utf-8-sig")


def read_text(path: Path | str) -> str:
    """Return the whole decoded text of a plain, gzip or zip file, or raise `DataError`."""
    path = Path(path)
    try:
        with _open_text(path) as fh:
            return fh.read()
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read as text (corrupt gzip or not CSV?): {exc}") from None


def first_line(path: Path | str) -> str:
    """Return the first line of a plain, gzip or zip file, without its line ending."""
    path = Path(path)
    try:
        with _open_text(path) as fh:
            return fh.readline().rstrip("\r\n")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read as text (corrupt gzip or not CSV?): {exc}") from None


def _is_integer_text(text: str) -> bool:
    return text.strip().isdigit()


def format_from_line(line: str, path: Path | str = "<file>") -> FileFormat:
    """Recognise the file format from its first line, or raise `DataError` quoting it."""
    fields = [f.strip() for f in line.split(",")]
    if tuple(fields) == INTERCHANGE_COLUMNS:
        return FileFormat("interchange", INTERCHANGE_COLUMNS, header=True)
    if len(fields) == len(BINANCE_COLUMNS):
        if fields[0] == "open_time":
            return FileFormat("binance", BINANCE_COLUMNS, header=True)
        if _is_integer_text(fields[0]):
            return FileFormat("binance", BINANCE_COLUMNS, header=False)
    if tuple(fields[: len(BYBIT_REQUIRED)]) == BYBIT_REQUIRED:
        return FileFormat("bybit-trades", tuple(fields), header=True)
    shown = line if len(line) <= 120 else line[:117] + "..."
    raise DataError(
        f"{path}: unrecognised format; first line was {shown!r}. Expected the interchange CSV "
        "header, a Binance kline CSV (12 columns) or a Bybit trade dump header"
    )


def detect_format(path: Path | str) -> FileFormat:
    """Recognise the format of a file (plain or gzip) from its first line."""
    return format_from_line(first_line(path), path)
