"""Fast path for sweep metrics: equity-curve figures streamed from vectorbt's order records.

`research.backtest.portfolio_metrics` materialises the equity and position matrices (candles x
columns, float64) and reduces them with numpy: exact, but ~100 ms and several hundred MB per
thousand columns of a year of 1m candles. This kernel rebuilds each column's cash, position and
equity from the order records one candle at a time, with vectorbt's own arithmetic
(``add_nb``, as in ``asset_flow_nb``/``cash_flow_nb``/``cash_nb``/``value_nb``), and reduces
it on the fly. The reference is `research.metrics.metrics_table` on ``pf.value()``;
tests/test_sweep.py compares the two column by column.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from vectorbt.utils.math_ import add_nb

# Output columns of `equity_metrics_nb`, in order.
EQUITY_FIELDS = (
    "total_return",
    "mean",
    "std",
    "downside",
    "max_drawdown",
    "longest_underwater",
    "exposure",
    "fees_paid",
)


@njit(cache=True)
def _kahan_add(total: float, comp: float, x: float) -> tuple[float, float]:
    # Neumaier summation: the column sums stay exact to ~1 ulp over 10^6 candles, so they agree
    # with numpy's pairwise sums far below the 1e-9 the tests ask for.
    t = total + x
    if abs(total) >= abs(x):
        comp += (total - t) + x
    else:
        comp += (x - t) + total
    return t, comp


@njit(cache=True)
def _equity_column(
    close: np.ndarray,
    init_cash: float,
    idx: np.ndarray,
    size: np.ndarray,
    price: np.ndarray,
    fees: np.ndarray,
    side: np.ndarray,
    start: int,
    stop: int,
    returns: np.ndarray,
    out: np.ndarray,
) -> None:
    n = close.shape[0]
    cash = init_cash
    assets = 0.0
    prev = init_cash
    peak = -np.inf
    mdd = 0.0
    last_peak = 0
    longest = 0
    held = 0
    fee_sum = 0.0
    o = start
    total, comp = 0.0, 0.0
    for i in range(n):
        asset_flow = 0.0
        cash_flow = 0.0
        while o < stop and idx[o] == i:
            signed = size[o] if side[o] == 0 else -size[o]
            asset_flow = add_nb(asset_flow, signed)
            cash_flow = add_nb(cash_flow, -signed * price[o] - fees[o])
            fee_sum += fees[o]
            o += 1
        assets = add_nb(assets, asset_flow)
        cash = add_nb(cash, cash_flow)
        value = cash + close[i] * assets
        if assets != 0.0:
            held += 1
        r = value / prev - 1.0
        returns[i] = r
        total, comp = _kahan_add(total, comp, r)
        prev = value
        if value > peak or i == 0:
            peak = value
        dd = value / peak - 1.0
        if dd < mdd:
            mdd = dd
        if not dd < 0:
            last_peak = i
        if i - last_peak > longest:
            longest = i - last_peak
    mean = (total + comp) / n
    sq, sq_comp, down, down_comp = 0.0, 0.0, 0.0, 0.0
    for i in range(n):
        d = returns[i] - mean
        sq, sq_comp = _kahan_add(sq, sq_comp, d * d)
        m = min(returns[i], 0.0)
        down, down_comp = _kahan_add(down, down_comp, m * m)
    out[0] = prev / init_cash - 1.0
    out[1] = mean
    out[2] = np.sqrt((sq + sq_comp) / (n - 1)) if n > 1 else np.nan
    out[3] = np.sqrt((down + down_comp) / n)
    out[4] = mdd
    out[5] = longest
    out[6] = held / n
    out[7] = fee_sum


@njit(cache=True)
def equity_metrics_nb(
    close: np.ndarray,
    init_cash: float,
    col: np.ndarray,
    idx: np.ndarray,
    size: np.ndarray,
    price: np.ndarray,
    fees: np.ndarray,
    side: np.ndarray,
    n_cols: int,
) -> np.ndarray:
    """Return (n_cols, len(EQUITY_FIELDS)) figures from order records sorted by column, then idx."""
    out = np.empty((n_cols, 8), dtype=np.float64)
    returns = np.empty(close.shape[0], dtype=np.float64)
    bounds = np.searchsorted(col, np.arange(n_cols + 1))
    for c in range(n_cols):
        _equity_column(
            close,
            init_cash,
            idx,
            size,
            price,
            fees,
            side,
            bounds[c],
            bounds[c + 1],
            returns,
            out[c],
        )
    return out
