"""A strategy's identity: its own module's source plus a behavioural fingerprint.

The rule (identity version 2, written by ``signals freeze`` under ``identity``):

- ``module_sha256``: sha256 of the source of the module that defines the strategy's class;
- ``behaviour_sha256``: sha256 of the strategy's decisions, scores (rounded to 1e-9) and rule
  firings with the frozen parameters on a fixed, seeded synthetic market (`MARKET_CANDLES`
  candles of the frozen timeframe: see `synthetic_market`).

A frozen file stays valid when its behaviour is unchanged: an edit of a comment, of a shared
helper the strategy does not use, or a refactoring that gives the same decisions. An edit that
changes a decision or a score on the synthetic market is refused, naming the strategy and what
changed. The limit: behaviour is compared on that market only, so an edit that changes decisions
solely in conditions the market never produces goes unnoticed; the module hash alone still shows
that the module changed (logged as a note). The market is rebuilt in milliseconds, bit-identical
on every machine; the fingerprint takes about 0.01-0.1 s a strategy (no cache).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
import logging
import shlex
from typing import Any

import numpy as np
import pandas as pd

from signals.errors import SignalsError
from strategies import Strategy
from strategies.registry import strategy_hash as _shipped_strategy_hash

IDENTITY_VERSION = 2
MARKET_CANDLES = 20_000
MARKET_SEED = 20_240_101
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

    Regimes of 300 to 2,500 candles: trends up and down, ranges, quiet and wild stretches, and
    dead flat ones (the float-noise case). Built from uniform draws with additions,
    multiplications and a cumulative product only, with no numba and no transcendental
    function, so it is bit-identical on every machine, fast (milliseconds), and the live runner
    can rebuild it under ``MemoryDenyWriteExecute`` (no JIT).
    """
    from signals.timeframes import timeframe_seconds

    rng = np.random.default_rng(MARKET_SEED)
    n = MARKET_CANDLES
    drift, vol = np.empty(n), np.empty(n)
    start = 0
    while start < n:
        stop = min(n, start + int(rng.integers(300, 2501)))
        kind = int(rng.integers(0, 6))  # 0 up, 1 down, 2 range, 3 quiet, 4 wild, 5 flat
        drift[start:stop] = (0.0006, -0.0006, 0.0, 0.0, 0.0, 0.0)[kind]
        vol[start:stop] = (0.004, 0.004, 0.003, 0.001, 0.012, 0.0)[kind]
        start = stop
    # a uniform draw on [-0.5, 0.5) times 2*sqrt(3) has unit variance
    step = drift + vol * (rng.random(n) - 0.5) * 3.4641016151377544
    close = np.round(30_000.0 * np.cumprod(1.0 + step), 2)
    open_ = np.concatenate(([30_000.0], close[:-1]))
    high = np.round(np.maximum(open_, close) * (1.0 + vol * rng.random(n)), 2)
    low = np.round(np.minimum(open_, close) * (1.0 - vol * rng.random(n)), 2)
    volume = np.round((20.0 + 180.0 * rng.random(n)) * (1.0 + 100.0 * vol), 4)
    buy_volume = np.round(volume * (0.3 + 0.4 * rng.random(n)), 4)
    seconds = timeframe_seconds(timeframe)
    index = pd.date_range("2024-01-01", periods=n, freq=f"{seconds}s", tz="UTC", name="time")
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume,
         "buy_volume": buy_volume, "trades": np.floor(volume * 20.0)},
        index=index.as_unit("us"),
    )  # fmt: skip


def behaviour_sha256(strategy: Strategy, timeframe: str, params: Any) -> str:
    """Return the fingerprint of `strategy`'s decisions on the synthetic market."""
    frame = strategy.signals(synthetic_market(timeframe), params)
    digest = hashlib.sha256()
    for side, arrays in frame.sides.items():
        score = np.round(np.asarray(arrays.score, dtype="float64"), ROUND_DECIMALS)
        digest.update(side.encode())
        digest.update(np.nan_to_num(score, nan=-1.0).tobytes())
        digest.update(np.asarray(arrays.signal, dtype=bool).tobytes())
        digest.update(np.asarray(arrays.fired, dtype=bool).tobytes())
        digest.update(json.dumps(arrays.names).encode())
    return digest.hexdigest()


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


def refusal_remedy(origin: str) -> str:
    """Return the sentence that ends a refusal of the frozen file `origin`: what to do instead."""
    return (
        "Walk forward again, run it anyway with `signals live --allow-hash-mismatch`, or "
        f"re-freeze its parameters with: signals freeze --from {shlex.quote(origin)}"
    )
