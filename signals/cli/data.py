"""``signals data ...``: build, import, fetch, export and check candle databases.

The ``data`` sub-app gathers the commands of `signals.cli.data_io` (import, check, export) and
`signals.cli.data_generate` (synth, analysis, fetch), in the order ``signals data --help`` lists.
"""

from __future__ import annotations

import typer

from signals.cli import data_generate, data_io


def register(app: typer.Typer) -> None:
    """Add the ``data`` sub-app, with its commands, to the root app."""
    data_app = typer.Typer(
        help="Build, import, fetch, export and check candle databases.",
        no_args_is_help=True,
    )
    data_io.register(data_app)
    data_generate.register(data_app)
    app.add_typer(data_app, name="data")
