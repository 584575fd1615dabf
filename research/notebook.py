"""Helpers the notebooks share: paths that work from any folder, and a default sweep grid.

A notebook runs from notebooks/ in JupyterLab and from wherever papermill is started, so a
relative path parameter is taken from the working directory when it exists there, else from the
repository root (``reports/demo/candles.db`` works from both).

>>> database = project_path("reports/demo/candles.db")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from strategies import SignalFrame, Strategy
from strategies.params import ranges

ROOT = Path(__file__).resolve().parents[1]  # the repository: research/ sits at its top
COOLDOWNS = "0:30:10"


def project_path(value: str | Path | None) -> str | None:
    """Return `value` as an absolute path: as given if absolute or found from the working
    directory, else under the repository root; None stays None."""
    if value is None:
        return None
    path = Path(value).expanduser()
    if path.is_absolute() or path.exists():
        return str(path.resolve())
    return str(ROOT / path)


def score_levels(frame: SignalFrame) -> list[float]:
    """Return the distinct positive scores either side reaches (the thresholds that differ)."""
    scores = np.concatenate([side.score for side in frame.sides.values()])
    return sorted({round(float(s), 6) for s in scores if s > 0})


def default_sweep_grid(strategy: Strategy, frame: SignalFrame, most: int = 6) -> dict[str, str]:
    """Return a grid suited to `strategy`: the score levels it reaches as thresholds (a threshold
    between two levels repeats the one above) with a few cooldowns; without a searchable
    threshold, four values of each of its first two searchable parameters."""
    space = ranges(strategy.Params)
    if "threshold" in space and "cooldown" in space:
        levels = [v for v in score_levels(frame) if space["threshold"].low <= v]
        if len(levels) > most:  # many levels (weights): keep an even spread, the top one too
            levels = [levels[round(i)] for i in np.linspace(0, len(levels) - 1, most)]
        if levels:
            return {"threshold": ",".join(f"{v:g}" for v in levels), "cooldown": COOLDOWNS}
    grid = {}
    for name, r in list(space.items())[:2]:
        values = np.linspace(r.low, r.high, 4)
        shown = [round(float(v)) if r.kind is int else round(float(v), 4) for v in values]
        grid[name] = ",".join(str(v) for v in dict.fromkeys(shown))
    return grid
