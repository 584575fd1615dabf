"""Parameter declarations: a strategy's `Params` is a frozen dataclass whose fields carry ranges.

Declare each tunable parameter next to the code that uses it::

    @dataclass(frozen=True, kw_only=True)
    class Params(ScoringParams):
        fast: int = param(9, low=3, high=30)

The same declaration serves a grid sweep (`grid_values`), optuna (`suggest`) and validation of
frozen files and ``--set k=v`` overrides (`make_params`), with "did you mean" on unknown names.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from signals.errors import ParamsError

P = TypeVar("P")


@dataclass(frozen=True)
class Range:
    """The searchable range of one parameter: inclusive bounds and a grid step."""

    low: float
    high: float
    step: float
    kind: type

    def contains(self, value: float) -> bool:
        """Return True when `value` lies within the bounds."""
        return self.low <= value <= self.high

    def grid(self) -> list[float] | list[int]:
        """Return every grid value from low to high inclusive."""
        count = round((self.high - self.low) / self.step)
        values = [self.low + i * self.step for i in range(count + 1)]
        if self.kind is int:
            return [round(v) for v in values]
        return [round(v, 10) for v in values]


def param(default: float, *, low: float, high: float, step: float | None = None) -> Any:
    """Declare a tunable dataclass field with its default and inclusive range."""
    kind = int if isinstance(default, int) and not isinstance(default, bool) else float
    if step is None:
        step = 1 if kind is int else (high - low) / 10
    if not low <= default <= high:
        raise ValueError(f"default {default} outside [{low}, {high}]")
    return field(default=default, metadata={"range": Range(low, high, step, kind)})


def fixed(default: float) -> Any:
    """Declare a parameter that is settable (``--set``, frozen files) but never searched."""
    kind = int if isinstance(default, int) and not isinstance(default, bool) else float
    return field(default=default, metadata={"fixed": kind})


@dataclass(frozen=True, kw_only=True)
class ScoringParams:
    """Parameters every scored strategy has: the signal threshold and the debounce."""

    threshold: float = param(0.6, low=0.2, high=1.0, step=0.05)
    cooldown: int = param(5, low=0, high=60, step=5)


class Trial(Protocol):
    """The part of optuna's Trial that `suggest` uses (no optuna import here)."""

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1) -> int: ...

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None
    ) -> float: ...


def ranges(params_type: type) -> dict[str, Range]:
    """Return the declared range of every field of a `Params` dataclass."""
    return {
        f.name: f.metadata["range"]
        for f in dataclasses.fields(params_type)
        if "range" in f.metadata
    }


def defaults(params_type: type[P]) -> P:
    """Return the `Params` with every default."""
    return params_type()


def make_params(params_type: type[P], values: Mapping[str, Any]) -> P:
    """Build `Params` from a mapping, checking names, types and ranges with clear messages."""
    spaces = ranges(params_type)
    fields = {f.name: f for f in dataclasses.fields(params_type)}
    names = list(fields)
    clean: dict[str, Any] = {}
    for key, raw in values.items():
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ParamsError(f"unknown parameter {key!r}{hint} (valid: {', '.join(names)})")
        clean[key] = _coerce(key, raw, spaces.get(key), fields[key].metadata.get("fixed"))
    return params_type(**clean)


def _coerce(name: str, raw: Any, space: Range | None, kind: type | None = None) -> Any:
    if space is None:
        return _as_kind(name, raw, kind) if kind is not None else raw
    try:
        number = float(raw)
    except (TypeError, ValueError):
        raise ParamsError(f"parameter {name!r}: {raw!r} is not a number") from None
    if space.kind is int:
        if number != int(number):
            raise ParamsError(f"parameter {name!r}: {raw!r} is not a whole number")
        number = int(number)
    if not space.contains(number):
        raise ParamsError(f"parameter {name!r}: {raw!r} outside [{space.low}, {space.high}]")
    return number


def _as_kind(name: str, raw: Any, kind: type) -> Any:
    try:
        number = float(raw)
    except (TypeError, ValueError):
        raise ParamsError(f"parameter {name!r}: {raw!r} is not a number") from None
    if kind is int and number != int(number):
        raise ParamsError(f"parameter {name!r}: {raw!r} is not a whole number")
    return kind(number)


def as_dict(params: Any) -> dict[str, Any]:
    """Return the parameters as a plain dict (JSON-ready)."""
    return dataclasses.asdict(params)


def suggest(params_type: type[P], trial: Trial) -> dict[str, Any]:
    """Ask an optuna trial for a value of every declared parameter."""
    values: dict[str, Any] = {}
    for name, space in ranges(params_type).items():
        if space.kind is int:
            values[name] = trial.suggest_int(
                name, int(space.low), int(space.high), step=int(space.step)
            )
        else:
            values[name] = trial.suggest_float(name, space.low, space.high, step=space.step)
    return values


def require_less(params: Any, small: str, large: str) -> None:
    """Raise `ParamsError` unless ``params.small < params.large`` (e.g. fast < slow)."""
    a, b = getattr(params, small), getattr(params, large)
    if not a < b:
        raise ParamsError(f"parameter {small!r} ({a}) must be below {large!r} ({b})")
