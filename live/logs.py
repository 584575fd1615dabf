"""Structured logs for the runner: one ``key=value`` line per event on stderr.

Runner messages are already ``event=... key=value`` text; any other message (from the engine or
a library) is wrapped as ``msg="..."``. Every line starts with ``ts`` (UTC, ISO 8601, ms),
``level`` and ``logger``.
"""

from __future__ import annotations

import logging
import sys
import time


class KeyValueFormatter(logging.Formatter):
    """Format a record as ``ts=... level=... logger=... event=... k=v`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as one key=value line."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        message = record.getMessage().replace("\n", " | ")
        if not message.startswith("event="):
            message = 'msg="' + message.replace("\\", "\\\\").replace('"', '\\"') + '"'
        line = (
            f"ts={stamp}.{int(record.msecs):03d}Z level={record.levelname.lower()} "
            f"logger={record.name} {message}"
        )
        if record.exc_info:
            line += ' exc="' + self.formatException(record.exc_info).replace("\n", " | ") + '"'
        return line


def setup_logging(level: int = logging.INFO) -> None:
    """Send every log record to stderr as key=value lines (replacing other formats)."""
    root = logging.getLogger()
    handlers = [h for h in root.handlers if isinstance(h, logging.StreamHandler)]
    if not handlers:
        handler = logging.StreamHandler(sys.stderr)
        root.addHandler(handler)
        handlers = [handler]
    for handler in handlers:
        handler.setFormatter(KeyValueFormatter())
    if root.level == logging.NOTSET or root.level > level:
        root.setLevel(level)
