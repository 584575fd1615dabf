"""A strategy's identity: its own module's source plus a behavioural fingerprint.

The rule (identity version 2, written by ``signals freeze`` under ``identity``):

- ``module_sha256``: sha256 of the source of the module that defines the strategy's class;
- ``behaviour_sha256``: sha256 of the strategy's decisions, scores (rounded to 1e-9) and rule
  firings with the frozen parameters on a fixed, seeded synthetic market (`MARKET_CANDLES`
  candles of the frozen timeframe, aggregated from `signals.data.synth`'s 1m regimes).

A frozen file stays valid when its behaviour is unchanged: an edit of a comment, of a shared
helper the strategy does not use, or a refactoring that gives the same decisions. An edit that
changes a decision or a score on the synthetic market is refused, naming the strategy and what
changed. The limit: behaviour is compared on that market only, so an edit that changes decisions
solely in conditions the market never produces goes unnoticed; the module hash alone still shows
that the module changed (logged as a note). Fingerprints are cached by everything that decides
them (the strategy's and the shared modules' source, timeframe, parameters, library versions) in
``~/.cache/signals/fingerprints.json`` (``SIGNALS_CACHE_DIR`` overrides the folder).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from signals.errors import SignalsError
from strategies import Strategy
from strategies.registry import strategy_hash as _shipped_strategy_hash

IDENTITY_VERSION = 2
MARKET_CANDLES = 20_000
MARKET_SEED = 20_240_101
MARKET_VERSION = 1  # raise when synthetic_market changes: cached fingerprints are then stale
ROUND_DECIMALS = 9
log = logging.getLogger(__name__)


class NotSavedError(SignalsError):
    """The strategy is defined in a notebook cell or the interpreter: it has no module file."""


def is_saved(strategy: Strategy) -> bool:
    """Return whether `strategy`'s class is defined in a module with a source file."""
    module = inspect.getmodule(type(strategy))
    return module is not None and module.__name__ != "__main__" and _source(module) is not None


def require_saved(strategy: Strategy) -> None:
    """Raise `NotSavedError` (one line) when `strategy` cannot be frozen: it has no module file."""
    if not is_saved(strategy):
        raise NotSavedError(
            f"strategy {strategy.name!r} is defined in {type(strategy).__module__} (a notebook "
            "cell or the interpreter): save it in a module of a strategy folder "
            "(--strategy-path DIR) to freeze it; live needs a file"
        )


def _source(module: Any) -> str | None:
    try:
        return inspect.getsource(module)
    except (OSError, TypeError):
        return None


def strategy_hash(strategy: Strategy) -> str:
    """Return `strategies.strategy_hash`, or for an unsaved strategy a hash marked ``unsaved``."""
    if is_saved(strategy):
        return _shipped_strategy_hash(strategy)
    cls = type(strategy)
    text = f"{cls.__module__}.{cls.__qualname__}:{_class_source(cls)}"
    return "unsaved-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:48]


def _class_source(cls: type) -> str:
    try:
        return inspect.getsource(cls)
    except (OSError, TypeError):
        return ""


def params_id(strategy: Strategy, timeframe: str, params: Any, *, hash_: str | None = None) -> str:
    """Return the params_id of `strategies.params_id` (any strategy; `hash_` as its hash)."""
    payload = {
        "strategy": strategy.name,
        "strategy_hash": hash_ or strategy_hash(strategy),
        "timeframe": timeframe,
        "params": dataclasses.asdict(params),
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def module_sha256(strategy: Strategy) -> str:
    """Return the sha256 of the source of the module that defines `strategy`'s class."""
    require_saved(strategy)
    source = _source(inspect.getmodule(type(strategy))) or ""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


@functools.cache
def synthetic_market(timeframe: str) -> pd.DataFrame:
    """Return the fixed, seeded synthetic market of `MARKET_CANDLES` candles of `timeframe`.

    Up to 1h the candles are aggregated from the generator's 1m candles; longer timeframes take
    the 1h market with log moves scaled by the square root of the length ratio (the generator
    would need decades of 1m candles).
    """
    from signals.data.aggregate import aggregate
    from signals.data.synth import synth_market
    from signals.timeframes import timeframe_seconds

    minutes = timeframe_seconds(timeframe) // 60
    if minutes > 60:
        return _stretched(synthetic_market("1h"), minutes // 60, timeframe)
    days = -(-MARKET_CANDLES * minutes // 1440) + 1
    frame = synth_market(days=days, seed=MARKET_SEED)
    if minutes > 1:
        frame = aggregate(frame, base="1m", target=timeframe)
        frame = frame[frame.pop("complete").astype(bool)]
    return frame.iloc[:MARKET_CANDLES]


def _stretched(hourly: pd.DataFrame, ratio: int, timeframe: str) -> pd.DataFrame:
    out = hourly.copy()
    anchor = float(out["open"].iloc[0])
    for column in ("open", "high", "low", "close"):
        out[column] = anchor * np.exp(np.sqrt(ratio) * np.log(out[column] / anchor))
    for column in ("volume", "buy_volume", "trades"):
        if column in out:
            out[column] = out[column] * ratio
    out.index = pd.date_range(out.index[0], periods=len(out), freq=f"{ratio}h", name="time")
    del timeframe
    return out


def behaviour_sha256(strategy: Strategy, timeframe: str, params: Any) -> str:
    """Return the fingerprint of `strategy`'s decisions on the synthetic market (cached)."""
    key = _cache_key(strategy, timeframe, params)
    cached = _read_cache().get(key) if key else None
    if cached:
        return str(cached)
    frame = strategy.signals(synthetic_market(timeframe), params)
    digest = hashlib.sha256()
    for side, arrays in frame.sides.items():
        score = np.round(np.asarray(arrays.score, dtype="float64"), ROUND_DECIMALS)
        digest.update(side.encode())
        digest.update(np.nan_to_num(score, nan=-1.0).tobytes())
        digest.update(np.asarray(arrays.signal, dtype=bool).tobytes())
        digest.update(np.asarray(arrays.fired, dtype=bool).tobytes())
        digest.update(json.dumps(arrays.names).encode())
    result = digest.hexdigest()
    if key:
        _write_cache(key, result)
    return result


def identity(strategy: Strategy, timeframe: str, params: Any) -> dict[str, Any]:
    """Return the identity record a frozen file stores under ``identity``."""
    return {
        "version": IDENTITY_VERSION,
        "module_sha256": module_sha256(strategy),
        "behaviour_sha256": behaviour_sha256(strategy, timeframe, params),
    }


def check(recorded: dict[str, Any], strategy: Strategy, timeframe: str, params: Any) -> str | None:
    """Compare a recorded identity with the code: None if the same, else what changed.

    A changed module with the same behaviour is accepted with a logged note.
    """
    if recorded.get("version") != IDENTITY_VERSION:
        return f"identity version {recorded.get('version')!r} is not supported"
    module_changed = recorded.get("module_sha256") != module_sha256(strategy)
    behaviour_changed = recorded.get("behaviour_sha256") != behaviour_sha256(
        strategy, timeframe, params
    )
    if not behaviour_changed:
        if module_changed:
            log.warning(
                "strategy %r: its module changed since the file was frozen, its behaviour did "
                "not (same decisions and scores on the synthetic market): accepted",
                strategy.name,
            )
        return None
    what = "its module and its behaviour" if module_changed else "its behaviour (not its module)"
    return (
        f"strategy {strategy.name!r} changed since this file was frozen: {what} "
        "(different decisions or scores on the synthetic market)"
    )


def _cache_key(strategy: Strategy, timeframe: str, params: Any) -> str | None:
    if not is_saved(strategy):
        return None
    payload = {
        "sources": strategy_hash(strategy),
        "module": module_sha256(strategy),
        "timeframe": timeframe,
        "params": repr(params),
        "market": [MARKET_VERSION, MARKET_CANDLES, MARKET_SEED, ROUND_DECIMALS],
        "versions": [np.__version__, pd.__version__],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _cache_path() -> Path:
    root = os.environ.get("SIGNALS_CACHE_DIR") or Path.home() / ".cache" / "signals"
    return Path(root) / "fingerprints.json"


def _read_cache() -> dict[str, Any]:
    try:
        data = json.loads(_cache_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(key: str, value: str) -> None:
    path = _cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = _read_cache()
        data[key] = value
        fd, tmp = tempfile.mkstemp(prefix=".fingerprints.", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
        os.replace(tmp, path)
    except OSError:  # a read-only home: the fingerprint is recomputed next time
        pass
