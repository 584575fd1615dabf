"""One rich console for every command: terminal width on a TTY, a wide fixed width in pipes."""

from __future__ import annotations

import sys

from rich.console import Console

PIPE_WIDTH = 140


def console(*, stderr: bool = False) -> Console:
    """Return a console; when output is not a terminal, tables are drawn `PIPE_WIDTH` wide."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else PIPE_WIDTH
    return Console(file=stream, width=width)
