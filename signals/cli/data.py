"""``signals data ...``: build, import, fetch, export and check candle databases."""

from __future__ import annotations

import typer

from signals.cli import data_generate as cli_generate
from signals.cli import data_import as cli_import
from signals.cli import data_io as cli_io

data_app = typer.Typer(
    help="Build, import, fetch, export and check candle databases.",
    no_args_is_help=True,
)
cli_import.register(data_app)
cli_io.register(data_app)
cli_generate.register(data_app)
