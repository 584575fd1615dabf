"""Fast path for sweep metrics: equity-curve figures streamed from vectorbt's order records.

`research.backtest.run.portfolio_metrics` materialises the equity and position matrices (candles x
columns, float64) and reduces them with numpy: exact, but ~100 ms and several hundred MB per
thousand columns of a year of 1m candles. This kernel rebuilds each column's cash, position and
equity from the order records one candle at a time, with vectorbt's own arithmetic
(``add_nb``, as in ``asset_flow_nb``/``cash_flow_nb``/``cash_nb``/``value_nb``), and reduces
it on the fly. The reference is `research.backtest.metrics.metrics_table` on ``pf.value()``;
tests/test_sweep.py compares the two column by column.
"""

from __future__ import annotations

import contextlib

import numpy as np
from numba import njit
from vectorbt.portfolio.enums import order_dt
from vectorbt.portfolio.nb import simulate_from_signals_nb
from vectorbt.utils.math_ import add_nb

# vectorbt declares its simulation kernel without numba's disk cache, so every process that
# simulated compiled it again: about 5 s for `Portfolio.from_signals` and 3.5 s for the stops
# path, in every `signals backtest`, walk-forward, paper report and notebook. Cached on disk like
# this module's kernels (numba's default location, or NUMBA_CACHE_DIR), a later process loads it.
with contextlib.suppress(RuntimeError):  # no writable cache location: compiled per process
    simulate_from_signals_nb.enable_caching()

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
def _spread(returns: np.ndarray, mean: float) -> tuple[float, float]:
    # Standard deviation (ddof 1) and downside deviation of the per-candle returns.
    n = returns.shape[0]
    sq, sq_comp, down, down_comp = 0.0, 0.0, 0.0, 0.0
    zeros = 0  # flat candles: each adds mean^2 to the squares and nothing to the downside
    for i in range(n):
        r = returns[i]
        if r == 0.0:
            zeros += 1
            continue
        d = r - mean
        sq, sq_comp = _kahan_add(sq, sq_comp, d * d)
        m = min(r, 0.0)
        down, down_comp = _kahan_add(down, down_comp, m * m)
    sq, sq_comp = _kahan_add(sq, sq_comp, zeros * mean * mean)
    std = np.sqrt((sq + sq_comp) / (n - 1)) if n > 1 else np.nan
    return std, np.sqrt((down + down_comp) / n)


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
    i = 0
    while i < n:
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
        if assets == 0.0:
            # Flat until the next order: the value stays `cash`, so every return is exactly 0,
            # and peak and drawdown stay as they are. Skip those candles.
            upto = idx[o] if o < stop else n
            if upto > i + 1:
                returns[i + 1 : upto] = 0.0
                if not dd < 0:
                    last_peak = upto - 1
                if upto - 1 - last_peak > longest:
                    longest = upto - 1 - last_peak
                i = upto
                continue
        i += 1
    mean = (total + comp) / n
    out[0] = prev / init_cash - 1.0
    out[1] = mean
    out[2], out[3] = _spread(returns, mean)
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


# Direction codes of `orders_by_column_nb` (research.backtest.execution.Direction, in that order).
DIRECTION_CODES = {"long": 0, "short": 1, "both": 2}


@njit(cache=True)
def orders_by_column_nb(
    buy: np.ndarray,
    sell: np.ndarray,
    price: np.ndarray,
    slippage: np.ndarray,
    close: np.ndarray,
    init_cash: float,
    size: float,
    size_type: int,
    fees: float,
    direction: int,
    upon_opposite_entry: int,
    stop_entry_price: int,
    stop_exit_price: int,
) -> np.ndarray:
    """Return vectorbt's order records of each column, simulated over its signal candles only.

    `buy`/`sell` are the (candles x columns) fill-time signals; `price`, `slippage` and `close`
    per candle. Each column runs through vectorbt's ``simulate_from_signals_nb`` on the
    candles where it has a signal (no stops: nothing can fill elsewhere), with the arguments
    `research.backtest.execution.simulate` gives ``Portfolio.from_signals``; ``idx`` is mapped back.
    """
    n, k = buy.shape
    counts = np.zeros(k, dtype=np.int64)
    for j in range(k):
        for i in range(n):
            if buy[i, j] or sell[i, j]:
                counts[j] += 1
    out = np.empty(counts.sum() + k, dtype=order_dt)
    no = np.zeros((1, 1), dtype=np.bool_)
    group_lens = np.ones(1, dtype=np.int64)
    cash = np.full(1, init_cash, dtype=np.float64)
    nan = np.full((1, 1), np.nan, dtype=np.float64)
    written = 0
    for j in range(k):
        m = counts[j]
        if m == 0:
            continue
        rows = np.empty(m, dtype=np.int64)
        b = np.empty((m, 1), dtype=np.bool_)
        s = np.empty((m, 1), dtype=np.bool_)
        p = np.empty((m, 1), dtype=np.float64)
        sl = np.empty((m, 1), dtype=np.float64)
        c = np.empty((m, 1), dtype=np.float64)
        r = 0
        for i in range(n):
            if buy[i, j] or sell[i, j]:
                rows[r] = i
                b[r, 0] = buy[i, j]
                s[r, 0] = sell[i, j]
                p[r, 0] = price[i]
                sl[r, 0] = slippage[i]
                c[r, 0] = close[i]
                r += 1
        long_entries, long_exits, short_entries, short_exits = no, no, no, no
        if direction == 0:
            long_entries, long_exits = b, s
        elif direction == 1:
            short_entries, short_exits = s, b
        else:
            long_entries, short_entries = b, s
        records, _ = simulate_from_signals_nb(
            target_shape=(m, 1),
            group_lens=group_lens,
            init_cash=cash,
            call_seq=np.zeros((m, 1), dtype=np.int64),
            entries=no,
            exits=no,
            direction=np.zeros((1, 1), dtype=np.int64),
            long_entries=long_entries,
            long_exits=long_exits,
            short_entries=short_entries,
            short_exits=short_exits,
            size=np.full((1, 1), size),
            price=p,
            size_type=np.full((1, 1), size_type),
            fees=np.full((1, 1), fees),
            fixed_fees=np.zeros((1, 1)),
            slippage=sl,
            min_size=np.zeros((1, 1)),
            max_size=np.full((1, 1), np.inf),
            size_granularity=nan,
            reject_prob=np.zeros((1, 1)),
            lock_cash=np.zeros((1, 1), dtype=np.bool_),
            allow_partial=np.ones((1, 1), dtype=np.bool_),
            raise_reject=np.zeros((1, 1), dtype=np.bool_),
            log=np.zeros((1, 1), dtype=np.bool_),
            accumulate=np.zeros((1, 1), dtype=np.int64),
            upon_long_conflict=np.zeros((1, 1), dtype=np.int64),
            upon_short_conflict=np.zeros((1, 1), dtype=np.int64),
            upon_dir_conflict=np.zeros((1, 1), dtype=np.int64),
            upon_opposite_entry=np.full((1, 1), upon_opposite_entry),
            val_price=np.full((1, 1), np.inf),
            open=nan,
            high=nan,
            low=nan,
            close=c,
            sl_stop=nan,
            sl_trail=np.zeros((1, 1), dtype=np.bool_),
            tp_stop=nan,
            stop_entry_price=np.full((1, 1), stop_entry_price),
            stop_exit_price=np.full((1, 1), stop_exit_price),
            upon_stop_exit=np.zeros((1, 1), dtype=np.int64),
            upon_stop_update=np.ones((1, 1), dtype=np.int64),
            use_stops=False,
            auto_call_seq=False,
            ffill_val_price=True,
            update_value=False,
            max_orders=m + 1,
            max_logs=0,
            init_temp_records=False,
            flex_2d=True,
        )
        for o in range(len(records)):
            record = out[written]
            record["id"] = records[o]["id"]
            record["col"] = j
            record["idx"] = rows[records[o]["idx"]]
            record["size"] = records[o]["size"]
            record["price"] = records[o]["price"]
            record["fees"] = records[o]["fees"]
            record["side"] = records[o]["side"]
            written += 1
    return out[:written]
