"""Re-freeze a frozen file under the current code (``signals freeze --from``), with its trail.

A frozen file whose strategy's behaviour changed is refused (`signals.identity`). Re-freezing
writes a new file of the same strategy, timeframe, symbol, direction, costs and parameters with
the current code's identity, and records the old file under ``refrozen_from``: its path, the
sha256 of its bytes, its params_id, strategy_hash and identity, and whether its behaviour
matched the current code. The old file is read without its identity having to match, but it
must be intact: its checksum and params_id are verified as everywhere else, so a hand-edited
file is refused.

The old file's evidence is not carried over: its ``data``, ``walkforward``, ``metrics`` and
``promotion`` describe a walk-forward of the old code's decisions. The new file has no metrics,
like any file of ``signals freeze``, so ``signals promote`` refuses it on the gate until a walk
forward writes new ones (``--force`` records the failures in the promoted file).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from signals.errors import SignalsError
from signals.frozen import FrozenParams, RefrozenFrom, freeze, read_frozen
from signals.identity import behaviour_sha256
from signals.strategy_paths import get_strategy

EVIDENCE = ("data", "walkforward", "metrics", "promotion")  # what a re-frozen file drops


class RefreezeError(SignalsError):
    """``--from`` was given with an option that contradicts the file."""


def refreeze(
    source: Path | str,
    *,
    overrides: dict[str, Any] | None = None,
    direction: str | None = None,
    expect: dict[str, str | None] | None = None,
    created_at: str | None = None,
) -> FrozenParams:
    """Return `source`'s parameters frozen again under the current code, naming `source`.

    `overrides` replace single parameters (``--set``), `direction` the file's direction;
    `expect` maps ``strategy``, ``timeframe`` and ``symbol`` to what the command line said
    (None: not given), and a value that differs from the file's is an error.
    """
    path = Path(source)
    old, data = read_frozen(path, allow_hash_mismatch=True)  # intact, whatever its identity
    for field, wanted in (expect or {}).items():
        have = getattr(old, field)
        if wanted is not None and wanted != have:
            raise RefreezeError(
                f"{path} is a frozen file of {field} {have!r}, not {wanted!r}: --from re-freezes "
                f"the file's own {field} (leave the option out, or freeze without --from)"
            )
    trail = RefrozenFrom(
        path=str(path.resolve()),
        sha256=hashlib.sha256(data).hexdigest(),
        params_id=old.params_id,
        strategy_hash=old.strategy_hash,
        identity=old.identity,
        behaviour_matched=_behaviour_matched(old),
        sealed=old.checksum is not None,
        created_at=old.created_at,
        dropped=[name for name in EVIDENCE if getattr(old, name) is not None],
    )
    return freeze(
        strategy=old.strategy,
        timeframe=old.timeframe,
        params={**old.params, **(overrides or {})},
        symbol=old.symbol,
        direction=direction or old.direction,
        costs=old.costs,
        created_at=created_at,
        refrozen_from=trail,
    )


def _behaviour_matched(old: FrozenParams) -> bool | None:
    """Whether the old file's behaviour fingerprint is the current code's (None: it has none)."""
    if old.identity is None:
        return None
    impl = get_strategy(old.strategy)
    current = behaviour_sha256(impl, old.timeframe, impl.params(old.params))
    return old.identity.behaviour_sha256 == current


def default_out(source: Path) -> Path:
    """Return where ``freeze --from OLD.json`` writes without ``--out``: OLD.refrozen.json."""
    return source.with_name(f"{source.stem}.refrozen{source.suffix or '.json'}")
