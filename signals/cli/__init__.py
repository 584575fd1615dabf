"""The ``signals`` command line: the app (``app.py``) and one module per command group.

This package is the only code that imports both research/ and live/; each command imports its
heavy libraries inside its function, so ``--help`` and ``signals live`` start fast.
"""

from __future__ import annotations


def main() -> None:
    """Run the ``signals`` command line."""
    from signals.cli.app import main as run

    run()
