"""Walk-forward splits: rolling (fixed train length) or anchored (expanding), with a purge gap.

Positions are candle indexes into one candle frame; every window is half-open ``[start, end)``.
The test windows tile the end of the data back to back::

    rolling   |--train--|gap|-test-|
                     |--train--|gap|-test-|
    anchored  |--train--|gap|-test-|
              |-------train------|gap|-test-|

A fold's train window ends ``gap`` candles before its test window starts, so no candle of the
test window (or of the purge gap) is ever used to choose parameters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from signals.errors import SignalsError
from signals.timeframes import timeframe_seconds

Scheme = Literal["rolling", "anchored"]
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([mhdw])\s*$")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold: train and test windows as candle positions, half-open."""

    index: int
    train_start: int
    train_end: int
    test_start: int
    test_end: int

    @property
    def train(self) -> slice:
        """The train window as a slice."""
        return slice(self.train_start, self.train_end)

    @property
    def test(self) -> slice:
        """The test window as a slice."""
        return slice(self.test_start, self.test_end)


def duration_candles(text: str, timeframe: str) -> int:
    """Convert a duration like ``30d``, ``12h``, ``2w`` or a bare candle count into candles."""
    raw = str(text).strip()
    if raw.isdigit():
        return int(raw)
    match = _DURATION.match(raw)
    if not match:
        raise SignalsError(
            f"cannot read duration {text!r}: use e.g. 90d, 12h, 2w or a candle count"
        )
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    return max(1, int(seconds // timeframe_seconds(timeframe)))


def make_folds(
    n: int,
    *,
    folds: int,
    scheme: Scheme = "rolling",
    train: int | None = None,
    test: int | None = None,
    gap: int = 0,
    min_start: int = 0,
) -> list[Fold]:
    """Return `folds` folds over `n` candles; by default the train window is 3 test windows.

    `min_start` reserves the first candles (e.g. for indicator warm-up) so no train window
    starts before it.
    """
    if folds < 1:
        raise SignalsError("--folds must be at least 1")
    usable = n - min_start - gap
    if test is None:
        test = usable // (folds + 3) if train is None else (usable - train) // folds
    if train is None:
        train = 3 * test
    if test < 1 or train < 1 or train + gap + folds * test > n - min_start:
        raise SignalsError(
            f"{n} candles cannot hold {folds} folds of {test} test candles after {train} train "
            f"candles, a gap of {gap} and {min_start} warm-up candles: use fewer folds, shorter "
            "windows or more data"
        )
    first_test = n - folds * test
    anchor = first_test - gap - train
    out = []
    for i in range(folds):
        test_start = first_test + i * test
        train_end = test_start - gap
        train_start = anchor if scheme == "anchored" else train_end - train
        out.append(Fold(i, train_start, train_end, test_start, test_start + test))
    return out
