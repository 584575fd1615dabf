"""Progress of a long command: a bar on a terminal, plain periodic lines in a log, or nothing.

A tqdm bar redraws itself with carriage returns; written to a file or a journal that is a
flood of partial lines. So `progress` draws the bar only when its stream is a terminal; on any
other stream it writes one plain line every `every_percent` of the total or `every_seconds`,
whichever comes first, and one when done:

    walk-forward trials: 30/120 (25%), 41 s elapsed, about 2 min 3 s left
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import IO, Any, Protocol

EVERY_PERCENT = 10.0
EVERY_SECONDS = 30.0


class Progress(Protocol):
    """What the long commands call on a progress display."""

    def update(self, n: int = 1, /) -> Any:
        """Count `n` more units done."""

    def close(self) -> None:
        """Finish the display."""

    def __enter__(self) -> Any: ...

    def __exit__(self, kind: Any, value: Any, tb: Any, /) -> Any: ...


class Silent:
    """No progress shown (``--no-progress``)."""

    def update(self, n: int = 1) -> None:
        """Count nothing."""

    def close(self) -> None:
        """Do nothing."""

    def __enter__(self) -> Silent:
        return self

    def __exit__(self, kind: Any, value: Any, tb: Any, /) -> None:
        self.close()


def _seconds(value: float) -> str:
    value = max(0, round(value))
    minutes, seconds = divmod(value, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


class PlainLines:
    """Progress as one plain line per `every_percent` of the total or `every_seconds`."""

    def __init__(self, total: int, desc: str, unit: str, stream: IO[str], *,
                 every_percent: float = EVERY_PERCENT, every_seconds: float = EVERY_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.total, self.desc, self.unit, self.stream = max(0, total), desc, unit, stream
        self.every_percent, self.every_seconds, self.clock = every_percent, every_seconds, clock
        self.done = 0
        self.started = self.last_time = clock()
        self.last_step = 0
        self.closed = False

    def _line(self) -> str:
        elapsed = self.clock() - self.started
        share = self.done / self.total if self.total else 1.0
        text = f"{self.desc}: {self.done}/{self.total} {self.unit}s ({share:.0%})"
        text += f", {_seconds(elapsed)} elapsed"
        if 0 < self.done < self.total:
            text += f", about {_seconds(elapsed * (self.total - self.done) / self.done)} left"
        return text

    def update(self, n: int = 1) -> None:
        """Count `n` more units; write a line when a step or the time interval is crossed."""
        self.done += n
        step = int(100.0 * self.done / self.total // self.every_percent) if self.total else 0
        now = self.clock()
        if self.done >= self.total:
            return  # the closing line says it
        if step > self.last_step or now - self.last_time >= self.every_seconds:
            self.last_step, self.last_time = step, now
            self._write(self._line())

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Write the final line (once)."""
        if not self.closed:
            self.closed = True
            self._write(self._line() + (" done" if self.done >= self.total else " stopped"))

    def __enter__(self) -> PlainLines:
        return self

    def __exit__(self, kind: Any, value: Any, tb: Any, /) -> None:
        self.close()


def progress(total: int, *, desc: str, unit: str, enabled: bool = True,
             stream: IO[str] | None = None, **tqdm_options: Any) -> Progress:  # fmt: skip
    """Return a tqdm bar on a terminal, `PlainLines` on any other stream, `Silent` if disabled."""
    out = stream if stream is not None else sys.stderr
    if not enabled:
        return Silent()
    if out.isatty():
        from tqdm import tqdm

        bar: Progress = tqdm(total=total, desc=desc, unit=unit, file=out, **tqdm_options)
        return bar
    return PlainLines(total, desc, unit, out)
