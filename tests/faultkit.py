"""Fault injection for the live fault tests: a strategy that fails on cue, and a runner launcher.

`FaultyCross` is `ema_cross` under another name that raises (``FAULT_RAISE_AT``) or hangs once
(``FAULT_HANG_AT``, ``FAULT_HANG_S``) when the newest candle it is given opened at that epoch
second. It is registered only by this module (tests and the launcher), never in ``strategies/``.

``python -m tests.faultkit live ...`` registers it, applies ``FAULT_PUBLISH_RAISE`` (the runner's
publish step raises once: an unexpected error in the follow path) and runs the ``signals`` CLI.
"""

from __future__ import annotations

import os
import sys
import time

import pandas as pd

from strategies.base import RuleSet
from strategies.ema_cross import EmaCross, EmaCrossParams
from strategies.registry import _registry

NAME = "faulty_cross"
_hung: set[int] = set()


class FaultyCross(EmaCross):
    """EMA cross that raises or hangs on one chosen candle."""

    name = NAME

    def rules(self, candles: pd.DataFrame, params: EmaCrossParams) -> RuleSet:
        """Fail on cue, else decide as `ema_cross`."""
        last = int(candles.index[-1].timestamp()) if len(candles) else None
        if last is not None and str(last) == os.environ.get("FAULT_RAISE_AT"):
            raise RuntimeError(f"planted failure on candle {last}")
        if last is not None and str(last) == os.environ.get("FAULT_HANG_AT") and last not in _hung:
            _hung.add(last)
            time.sleep(float(os.environ.get("FAULT_HANG_S", "5")))
        return super().rules(candles, params)


def register() -> None:
    """Add `FaultyCross` to the strategy registry of this process."""
    _registry().setdefault(NAME, FaultyCross())


def _patch_publish() -> None:
    from live.runner import Runner

    original = Runner._publish
    state = {"raised": False}

    def publish(self: Runner, step: object, noticed: float) -> None:
        if not state["raised"]:
            state["raised"] = True
            raise RuntimeError("planted failure in the follow path")
        original(self, step, noticed)  # type: ignore[arg-type]  # the Step the runner passed

    Runner._publish = publish  # type: ignore[method-assign]  # plants the fault


if __name__ == "__main__":
    # register the class of the importable module, not this __main__ copy: a frozen file's
    # identity reads the source of the module that defines the strategy
    from tests import faultkit

    faultkit.register()
    if os.environ.get("FAULT_PUBLISH_RAISE"):
        faultkit._patch_publish()
    from signals.cli import main

    sys.argv = ["signals", *sys.argv[1:]]
    main()
