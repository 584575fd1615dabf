"""The reference paper bot: a socket client of the live runner that trades its signals on paper.

Held to live/'s rule: no vectorbt, optuna, jupyter or plotting is imported here, and nothing
from research/ (the comparison with a backtest is `research.backtest.versus_paper`).

- `paper.bot`: `PaperConfig`, `PaperBot`, `run_paper`: record signals, fill them at the next open.
- `paper.connection`: the socket client: hello, resume, reconnect with backoff.
- `paper.ledger`: the SQLite ledger, and its read-only views (`read_table`, `paper_summary`).
- `paper.accounting`: the legs a signal triggers, their fills, fees and trade P&L (as vectorbt).
- `paper.errors`: `PaperError`.
"""
