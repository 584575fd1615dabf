"""The promotion gate: a frozen file goes live only if its out-of-sample evidence is good enough.

Checks (thresholds from the config's ``gate`` section or the command line): out-of-sample
Sharpe at least ``min_sharpe``; deflated Sharpe ratio at least ``min_dsr``; probability of
backtest overfitting at most ``max_pbo``; at least ``min_trades`` out-of-sample trades; maximum
drawdown no deeper than ``max_drawdown``. A missing figure fails its check. ``force`` promotes
anyway and records that it did, with the failures, in the promoted file. The source must be
intact (its checksum matches: a hand-raised metric is refused before the gate); the promoted file
is sealed again, with its promotion block, so promoting a file written before checksums re-seals it.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

from signals.config import GateSettings
from signals.frozen import FrozenParams, Promotion, load_frozen, seal, write_frozen


def gate_failures(frozen: FrozenParams, gate: GateSettings) -> list[str]:
    """Return one line per failed check, saying which threshold failed and by how much."""
    metrics = frozen.metrics or {}
    checks = [
        ("sharpe", metrics.get("sharpe"), gate.min_sharpe, "min"),
        ("dsr", metrics.get("dsr"), gate.min_dsr, "min"),
        ("pbo", metrics.get("pbo"), gate.max_pbo, "max"),
        ("trades", metrics.get("trades"), float(gate.min_trades), "min"),
        ("max_drawdown", _depth(metrics.get("max_drawdown")), gate.max_drawdown, "max"),
    ]
    return [line for line in (_check(*c) for c in checks) if line]


def _depth(drawdown: float | None) -> float | None:
    return None if drawdown is None else abs(drawdown)


def _check(name: str, value: float | None, limit: float, kind: str) -> str | None:
    if value is None or not math.isfinite(value):
        return f"{name}: missing from the file's out-of-sample metrics (needs {kind} {limit:g})"
    if kind == "min" and value < limit:
        return f"{name} {value:.4g} < minimum {limit:g} (short by {limit - value:.4g})"
    if kind == "max" and value > limit:
        return f"{name} {value:.4g} > maximum {limit:g} (over by {value - limit:.4g})"
    return None


def promote(
    source: Path, target: Path, *, gate: GateSettings, force: bool = False, now: str | None = None
) -> tuple[FrozenParams, list[str]]:
    """Verify `source`, check the gate, and if it passes (or `force`) write it to `target`.

    Returns the promoted file's content and the failures; raises nothing for a failed gate
    without `force` (the caller decides): in that case nothing is written.
    """
    frozen = load_frozen(source)
    failures = gate_failures(frozen, gate)
    if failures and not force:
        return frozen, failures
    stamp = now or datetime.now(UTC).isoformat(timespec="seconds")
    promotion = Promotion(passed=not failures, forced=bool(failures), failures=failures,
                          promoted_at=stamp)  # fmt: skip
    promoted = seal(frozen.model_copy(update={"promotion": promotion}))
    write_frozen(promoted, target)
    return promoted, failures
