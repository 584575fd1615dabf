"""Allow ``python -m signals``."""

from signals.cli import main

main()
