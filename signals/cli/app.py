"""The ``signals`` command line: one entry point, a sub-command per job.

Heavy libraries (vectorbt, optuna, plotting) are imported inside the commands that need them, so
``signals live`` and ``--help`` start fast and stay thin.
"""

from __future__ import annotations

import logging
import sys

import typer

from signals import __version__
from signals.cli import (
    backtest,
    data,
    demo,
    live,
    paper,
    reoptimise,
    replay,
    scan,
    sweep,
    walkforward,
)
from signals.cli.options import OneValueGroup
from signals.errors import SignalsError

app = typer.Typer(
    name="signals",
    cls=OneValueGroup,  # a one-value option given twice is a usage error in every command
    help="Turn closed candles into BUY/SELL signals: research them honestly, stream them live.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"signals {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages."),
) -> None:
    """signals: strategies defined once, researched out of sample, streamed live."""
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for package in ("signals", "research", "live", "paper", "strategies"):
        logging.getLogger(package).setLevel(logging.DEBUG if verbose else logging.INFO)


# every command group, in the order `signals --help` lists them (sub-apps after commands)
for group in (scan, backtest, demo, sweep, walkforward, replay, reoptimise, live, data, paper):
    group.register(app)


def skip_iri_format_checks() -> None:
    """Keep jsonschema from loading its 2-second IRI format checker in this process."""
    # vectorbt imports plotly, plotly nbformat, nbformat jsonschema, and jsonschema imports
    # rfc3987_syntax when installed, which builds ~35 Earley parsers as it loads: 2 of the 6 s
    # every research command took to start, for the "iri" formats no schema here uses
    # (python-jsonschema/jsonschema#1428). Marked absent, jsonschema leaves those unchecked.
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]  # None: absent


def main() -> None:
    """Run the CLI, turning `SignalsError` into a one-line message and exit code 2."""
    skip_iri_format_checks()
    try:
        code = app(standalone_mode=False)
    except SignalsError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except typer.TyperException as exc:  # usage errors arrive here in non-standalone mode
        show = getattr(exc, "show", None)
        if show is None:
            raise
        show()
        sys.exit(getattr(exc, "exit_code", 2))
    # without standalone mode click *returns* the code of a `typer.Exit(code)` instead of exiting
    if isinstance(code, int) and not isinstance(code, bool) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()
