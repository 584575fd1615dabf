"""The shipped strategies' behaviour fingerprints at their defaults, pinned.

An edit that changes a decision, a score or a rule firing of a shipped strategy on the synthetic
market changes its fingerprint and refuses every file frozen with it: this test says so before a
user's runner does. Change a pinned value only with a change that means to change behaviour, and
say in the README that files frozen before it are refused (as below for the tolerant comparisons).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from signals.frozen import FrozenFileError, FrozenParams, freeze, load_frozen, write_frozen
from signals.identity import behaviour_sha256
from strategies import get_strategy

PINNED = {
    "ema_cross": "8fe65cf69a59b8b92ceffc609abb99a1886af7d3f78a599f1c97cbf1761a7b25",
    "scalping": "e3541af4f7a5cb3101ee68b794d7e7e1c64fb97da2d51fb3a5b2c6e06efd7d97",
    "swing": "33804410aa592a0a4ddce1deb692df6b6e26e89ed3462637e341f85b93034535",
}
# before the tolerant comparisons (float noise decided some rules): module and behaviour
BEFORE_TOLERANCE = {
    "scalping": (
        "40ee25edb9c6bca5861254e23988053754302539429dbcfd90be4af82beb500e",
        "d47452e221ecd4d3c170651f3da2247a35a9becce64b96ed3b5df324296f5a70",
    ),
    "swing": (
        "3acab13a1bfc78e26ac70f3357fd09bf5befa58e94ea54af8d12eaec43403029",
        "2bb7611902a27df6ff9da76511c9c351b2dfd5afab905290cd51d12b29bb4232",
    ),
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_behaviour_fingerprint_at_the_defaults(name: str) -> None:
    strategy = get_strategy(name)
    timeframe = strategy.timeframes[0]
    assert behaviour_sha256(strategy, timeframe, strategy.params()) == PINNED[name]


def frozen_before_tolerance(name: str, path: Path, **freeze_args: Any) -> Path:
    """Write, sealed, the file `freeze` gave for `name`'s defaults before the tolerant comparisons.

    Its identity is the one of that code (`BEFORE_TOLERANCE`); `freeze_args` (symbol, direction,
    metrics, ...) go to `freeze`, whose params must stay the defaults the pinned hashes are of.
    """
    timeframe = get_strategy(name).timeframes[0]
    frozen = freeze(strategy=name, timeframe=timeframe, params={}, **freeze_args)
    doc = json.loads(frozen.model_dump_json())
    module, behaviour = BEFORE_TOLERANCE[name]
    doc["identity"].update(module_sha256=module, behaviour_sha256=behaviour)
    return write_frozen(FrozenParams.model_validate(doc), path)


@pytest.mark.parametrize("name", sorted(BEFORE_TOLERANCE))
def test_a_file_frozen_before_the_tolerant_comparisons_is_refused(
    name: str, tmp_path: Path
) -> None:
    path = frozen_before_tolerance(name, tmp_path / "old.json")
    with pytest.raises(FrozenFileError, match=f"'{name}' changed .*its module and its behaviour"):
        load_frozen(path)
