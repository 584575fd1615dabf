"""Find strategies by name: every module of this package that defines ``STRATEGY``."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import importlib
import inspect
import json
import pkgutil
from functools import cache
from pathlib import Path

from signals.errors import SignalsError
from strategies.base import Strategy

PACKAGE = "strategies"
INFRASTRUCTURE = frozenset(
    {"base", "indicators", "informative", "params", "plots", "registry", "warmup"}
)
# Modules whose source decides every strategy's signals: part of each strategy_hash.
_SHARED_SOURCES = ("base", "indicators", "informative", "params", "warmup")


class UnknownStrategyError(SignalsError, KeyError):
    """No strategy has that name."""

    def __str__(self) -> str:
        return str(self.args[0])


def strategy_modules() -> list[str]:
    """Return the names of the strategy modules in this package (infrastructure excluded)."""
    here = Path(__file__).parent
    return sorted(
        m.name
        for m in pkgutil.iter_modules([str(here)])
        if m.name not in INFRASTRUCTURE and not m.name.startswith("_")
    )


@cache
def _registry() -> dict[str, Strategy]:
    found: dict[str, Strategy] = {}
    for module_name in strategy_modules():
        module = importlib.import_module(f"{PACKAGE}.{module_name}")
        strategy = getattr(module, "STRATEGY", None)
        if not isinstance(strategy, Strategy):
            raise TypeError(f"{PACKAGE}/{module_name}.py defines no STRATEGY (a Strategy instance)")
        if strategy.name in found:
            raise TypeError(f"two strategies are named {strategy.name!r}")
        found[strategy.name] = strategy
    return found


def strategy_names() -> list[str]:
    """Return the names of all registered strategies."""
    return sorted(_registry())


def get_strategy(name: str) -> Strategy:
    """Return the strategy called `name`, or raise with the closest names."""
    registry = _registry()
    if name in registry:
        return registry[name]
    close = difflib.get_close_matches(name, registry, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise UnknownStrategyError(f"unknown strategy {name!r}{hint}; known: {', '.join(registry)}")


def strategy_hash(strategy: Strategy) -> str:
    """Return the sha256 of the strategy's module source and the shared scoring code."""
    return _source_hash(type(strategy))


@functools.cache
def _source_hash(cls: type) -> str:
    # Once per class and process: the code that runs is the code loaded at import.
    digest = hashlib.sha256()
    modules = [inspect.getmodule(cls)]
    modules += [importlib.import_module(f"{PACKAGE}.{m}") for m in _SHARED_SOURCES]
    for module in modules:
        source = inspect.getsource(module) if module else ""
        digest.update(source.encode("utf-8"))
    return digest.hexdigest()


def params_id(strategy: Strategy, timeframe: str, params: object) -> str:
    """Return the content hash of what decides signals: strategy, its hash, timeframe, params."""
    try:  # the live runner asks for the same set on every signal: hash it once
        return _cached_params_id(strategy, timeframe, params, repr(params))
    except TypeError:  # unhashable parameter values
        return _params_id(strategy, timeframe, params)


@functools.lru_cache(maxsize=4096)
def _cached_params_id(strategy: Strategy, timeframe: str, params: object, _repr: str) -> str:
    # `_repr` keeps 1 and 1.0 apart: equal as keys, different in the canonical JSON.
    return _params_id(strategy, timeframe, params)


def _params_id(strategy: Strategy, timeframe: str, params: object) -> str:
    payload = {
        "strategy": strategy.name,
        "strategy_hash": strategy_hash(strategy),
        "timeframe": timeframe,
        "params": dataclasses.asdict(params),  # type: ignore[call-overload]
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]
