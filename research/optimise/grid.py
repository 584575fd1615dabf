"""Parameter grids for sweeps: parse ``name=start:stop:step`` / ``name=v1,v2`` / ``name=v`` specs.

Values are typed by the strategy's declared `Range` (int or float) and checked against its bounds.
`expand_grid` takes the cartesian product of the specs (every other parameter at its default) and
skips the combinations the `Params` constructor rejects (e.g. ``fast >= slow``), counting them:
they are never simulated.

>>> grid = expand_grid(get_strategy("ema_cross"), ["fast=5:10:5", "slow=8,20"])  # doctest: +SKIP
>>> [(p.fast, p.slow) for p in grid.combos], grid.skipped  # doctest: +SKIP
([(5, 8), (5, 20), (10, 20)], 1)
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
from dataclasses import dataclass
from typing import Any

from signals.errors import ParamsError
from strategies import Strategy
from strategies.params import Range, ranges

# A float range yields at most this many values; beyond it the step is surely a typo.
MAX_VALUES_PER_PARAM = 100_000


@dataclass(frozen=True)
class GridSpec:
    """One parsed ``--grid`` item: a parameter name and its values, in the order given."""

    name: str
    values: tuple[Any, ...]
    text: str


@dataclass(frozen=True)
class Grid:
    """The valid combinations of a grid, how many were skipped as invalid, and the specs."""

    combos: list[Any]
    skipped: int
    specs: tuple[GridSpec, ...]

    @property
    def total(self) -> int:
        """Return the size of the cartesian product, valid and skipped combinations together."""
        return len(self.combos) + self.skipped

    @property
    def names(self) -> tuple[str, ...]:
        """Return the swept parameter names, in spec order."""
        return tuple(s.name for s in self.specs)


def parse_spec(text: str, spaces: dict[str, Range]) -> GridSpec:
    """Parse one grid spec against the declared ranges of a strategy's parameters."""
    name, sep, body = text.partition("=")
    name, body = name.strip(), body.strip()
    if not sep or not name or not body:
        raise ParamsError(
            f"grid {text!r}: expected name=start:stop:step, name=v1,v2,... or name=value"
        )
    if name not in spaces:
        close = difflib.get_close_matches(name, list(spaces), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ParamsError(
            f"grid {text!r}: unknown parameter {name!r}{hint} (valid: {', '.join(spaces)})"
        )
    space = spaces[name]
    if ":" in body:
        values = _range_values(text, name, body, space)
    else:
        values = [_number(text, name, item, space) for item in body.split(",")]
    for value in values:
        if not space.contains(value):
            raise ParamsError(
                f"grid {text!r}: {name}={value} outside the declared range "
                f"[{space.low:g}, {space.high:g}]"
            )
    return GridSpec(name=name, values=tuple(dict.fromkeys(values)), text=text)


def _number(text: str, name: str, raw: str, space: Range) -> int | float:
    raw = raw.strip()
    try:
        number = float(raw)
    except ValueError:
        raise ParamsError(f"grid {text!r}: {raw!r} is not a number") from None
    if not math.isfinite(number):
        raise ParamsError(f"grid {text!r}: {raw!r} is not a finite number")
    if space.kind is int:
        if number != int(number):
            raise ParamsError(f"grid {text!r}: {name} takes whole numbers, not {raw!r}")
        return int(number)
    return number


def _range_values(text: str, name: str, body: str, space: Range) -> list[int] | list[float]:
    parts = body.split(":")
    if len(parts) != 3:
        raise ParamsError(f"grid {text!r}: a range is start:stop:step (stop included)")
    start, stop, step = (_number(text, name, p, space) for p in parts)
    if step <= 0:
        raise ParamsError(f"grid {text!r}: step must be positive, not {step}")
    if stop < start:
        raise ParamsError(f"grid {text!r}: stop {stop} is below start {start}")
    # The stop is included when it lies on the grid, up to float rounding (0.1 steps etc.).
    count = math.floor((stop - start) / step + 1e-9) + 1
    if count > MAX_VALUES_PER_PARAM:
        raise ParamsError(f"grid {text!r}: {count} values; is the step right?")
    if space.kind is int:
        return [int(start + i * step) for i in range(count)]
    return [round(start + i * step, 10) for i in range(count)]


def parse_grid(strategy: Strategy, specs: list[str]) -> tuple[GridSpec, ...]:
    """Parse every spec for `strategy`; a parameter may appear only once."""
    spaces = ranges(strategy.Params)
    parsed = tuple(parse_spec(text, spaces) for text in specs)
    seen: set[str] = set()
    for spec in parsed:
        if spec.name in seen:
            raise ParamsError(f"grid: parameter {spec.name!r} is given twice")
        seen.add(spec.name)
    return parsed


def expand_grid(strategy: Strategy, specs: list[str]) -> Grid:
    """Return the valid combinations of the grid's cartesian product and the number skipped.

    Parameters not in `specs` keep their defaults. A combination the strategy's `Params`
    rejects (its ``__post_init__`` raises `ParamsError`) is skipped and counted, not simulated.
    """
    parsed = parse_grid(strategy, specs)
    names = [s.name for s in parsed]
    base = dataclasses.asdict(strategy.params())
    combos: list[Any] = []
    skipped = 0
    for values in itertools.product(*(s.values for s in parsed)):
        try:
            combos.append(strategy.Params(**{**base, **dict(zip(names, values, strict=True))}))
        except ParamsError:
            skipped += 1
    return Grid(combos=combos, skipped=skipped, specs=parsed)


def grid_combinations(strategy: Strategy, specs: list[str]) -> list[Any]:
    """Return the valid `Params` of the grid (see `expand_grid` for the skipped count)."""
    return expand_grid(strategy, specs).combos
