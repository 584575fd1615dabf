"""Rank a sweep table for people: swept parameters only, enough trades, identical results merged.

A sweep table holds every field of the strategy's ``Params``; most are fixed at their defaults.
`swept_names` keeps the parameters that take more than one value. `rank_sweep` drops the rows
with fewer than `min_trades` trades, sorts by the metric (best first, NaN last) and merges the
rows whose results are identical (same trades, same return, same Sharpe...: typically a
threshold or cooldown that changes nothing on these candles) into the first of them, saying how
many rows it stands for and which other values gave the same result.

>>> ranked = rank_sweep(result.table, swept_names(result.table, result.param_names),
...                     "sharpe", min_trades=10)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from research.backtest.metrics import METRIC_KEYS

# Metrics where smaller is better (sorted ascending); research.optimise.sweep.LOWER_IS_BETTER
LOWER_IS_BETTER = frozenset({"max_drawdown_days", "fees_paid"})
# the figures two rows must share to be "the same result" (rounded to RESULT_DECIMALS)
RESULT_KEYS = ("trades", "total_return", "sharpe", "max_drawdown", "win_rate", "fees_paid")
RESULT_DECIMALS = 10
SAME = "same result"  # the column counting the rows a ranked row stands for
ALSO = "also"  # the column naming the other values that gave the same result


def swept_names(table: pd.DataFrame, param_names: Sequence[str]) -> tuple[str, ...]:
    """Return the parameters that take more than one value in `table` (the swept ones)."""
    return tuple(n for n in param_names if n in table and table[n].nunique(dropna=False) > 1)


def fixed_values(table: pd.DataFrame, param_names: Sequence[str]) -> dict[str, object]:
    """Return the parameters that take one value in `table`, with that value."""
    swept = set(swept_names(table, param_names))
    return {
        n: table[n].iloc[0] for n in param_names if n in table and n not in swept and len(table)
    }


def result_key(table: pd.DataFrame) -> pd.Series:
    """Return, per row, a hashable key of its results: equal keys are identical results."""
    keys = [k for k in RESULT_KEYS if k in table]
    rounded = table[keys].astype("float64").round(RESULT_DECIMALS).fillna(np.inf)
    return pd.Series(list(map(tuple, rounded.to_numpy())), index=table.index)


def _also(group: pd.DataFrame, swept: Sequence[str]) -> str:
    """Name the values of the merged rows that differ from the first row's."""
    first = group.iloc[0]
    parts = []
    for name in swept:
        others = sorted({v for v in group[name] if v != first[name]})
        if others:
            shown = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in others[:6])
            parts.append(f"{name} {shown}{', ...' if len(others) > 6 else ''}")
    return "; ".join(parts)


def rank_sweep(
    table: pd.DataFrame,
    swept: Sequence[str],
    metric: str,
    *,
    min_trades: int = 0,
    top: int | None = None,
) -> pd.DataFrame:
    """Return the swept parameters and metrics of the best rows, identical results merged.

    Rows with fewer than `min_trades` trades are left out. The result keeps `table`'s index (the
    row of the representative), with the columns `swept`, the metrics, ``same result`` (how many
    rows gave this result) and ``also`` (their other values).
    """
    if metric not in table.columns:
        raise KeyError(f"unknown metric {metric!r}; one of {', '.join(METRIC_KEYS)}")
    eligible = table[table["trades"].fillna(0) >= min_trades] if "trades" in table else table
    ordered = eligible.sort_values(
        metric, ascending=metric in LOWER_IS_BETTER, na_position="last", kind="stable"
    )
    metrics = [m for m in METRIC_KEYS if m in table]
    if ordered.empty:
        return ordered[[*swept, *metrics]].assign(**{SAME: pd.Series(dtype="int64"), ALSO: ""})
    keys = result_key(ordered)
    groups = ordered.groupby(keys, sort=False)
    first = groups.head(1)
    out = first[[*swept, *metrics]].copy()
    sizes = keys.map(keys.value_counts())
    out[SAME] = sizes.loc[first.index].astype("int64")
    also = {key: _also(group, swept) for key, group in groups}
    out[ALSO] = [also[k] for k in keys.loc[first.index]]
    return out if top is None else out.head(top)


def neighbourhood(table: pd.DataFrame, swept: Sequence[str], best: object) -> pd.DataFrame:
    """Return the rows one grid step or less from row `best` in every swept parameter (it too).

    A grid step is one position in the sorted values a parameter takes in `table`. The frame
    gains ``distance``: the number of parameters that differ from the best row's (0 for it).
    """
    centre = table.loc[best]
    near = pd.Series(True, index=table.index)
    distance = pd.Series(0, index=table.index)
    for name in swept:
        values = np.sort(table[name].unique())
        position = pd.Series(np.searchsorted(values, table[name]), index=table.index)
        step = position - int(np.searchsorted(values, centre[name]))
        near &= step.abs() <= 1
        distance += (step != 0).astype("int64")
    out = table[near].copy()
    out["distance"] = distance[near]
    return out.sort_values(["distance"], kind="stable")


def plateau_verdict(
    near: pd.DataFrame, metric: str, *, min_trades: int = 0, keep: float = 0.5
) -> tuple[str, str]:
    """Return ("plateau" | "mixed" | "spike" | "undecided", a sentence) for a `neighbourhood`.

    A neighbour *holds* when it has at least `min_trades` trades and keeps at least `keep` of
    the best row's metric (higher-is-better metrics with a positive best; for lower-is-better
    ones, at most 1 + `keep` times it). Plateau: at least 3 in 4 neighbours hold; spike: fewer
    than half; mixed in between.
    """
    best = float(near[metric].iloc[0])
    others = near.iloc[1:]
    if others.empty:
        return "undecided", "the best row has no neighbour in the grid"
    values = others[metric].astype("float64")
    lower = metric in LOWER_IS_BETTER
    if not lower and not best > 0:
        return "undecided", f"the best {metric} is {best:.3g}: nothing positive to hold"
    holds = values <= best * (1 + keep) if lower else values >= best * keep
    if "trades" in others:
        holds &= others["trades"].fillna(0) >= min_trades
    share = float(holds.mean())
    kind = "plateau" if share >= 0.75 else "spike" if share < 0.5 else "mixed"
    bound = f"at most {1 + keep:g}x" if lower else f"at least {keep:.0%} of"
    text = (
        f"{int(holds.sum())} of {len(others)} neighbours (one grid step away) keep {bound} the "
        f"best {metric} ({best:.3g}); median neighbour {values.median():.3g}"
    )
    return kind, text


def grid_edges(table: pd.DataFrame, swept: Sequence[str], row: object) -> list[str]:
    """Return the swept parameters at whose smallest or largest value row `row` sits."""
    centre = table.loc[row]
    return [n for n in swept if centre[n] in (table[n].min(), table[n].max())]
