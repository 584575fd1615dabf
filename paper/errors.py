"""The paper bot's error."""

from __future__ import annotations

from signals.errors import SignalsError


class PaperError(SignalsError):
    """The paper bot cannot run (ledger/config mismatch, runner serving other parameters)."""
