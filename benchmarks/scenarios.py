"""Benchmark scenarios. Each runs in its own process (see run.py) and returns a dict of figures.

Never imported by the package or the tests: benchmarks are measured, not asserted.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import resource
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
REAL_FILES = ("BTCUSDT-1m-2023-04.csv.gz", "BTCUSDT-1m-2023-05.csv.gz", "BTCUSDT-1m-2023-06.csv.gz")
FEE_BPS, SLIPPAGE_BPS = 5.5, 1.0


def load_candles(source: str, days: int):
    """Return a year (or `days`) of synthetic 1m candles, or the real 3 months concatenated."""
    import pandas as pd

    if source == "synth":
        from signals.data.synth import synth_market

        return synth_market(days=days, seed=1)
    frames = [pd.read_csv(SHARED / name) for name in REAL_FILES]
    frame = pd.concat(frames, ignore_index=True).drop_duplicates("timestamp")
    frame.index = pd.to_datetime(frame.pop("timestamp"), unit="s", utc=True).rename("time")
    frame = frame.sort_index().astype("float64")
    if days:
        frame = frame.iloc[: days * 1440]
    return frame


def ema_grid(combos: int) -> list[str]:
    """Return ema_cross grid specs of about `combos` combinations (fast 5..54 x slow 60..)."""
    fast = min(50, combos)
    slow = max(1, combos // fast)
    step = 10 if slow <= 20 else 1
    return [f"fast=5:{4 + fast}:1", f"slow=60:{60 + (slow - 1) * step}:{step}"]


def scalping_grid(combos: int) -> list[str]:
    """Return scalping grid specs of `combos` (10 x 10 x 10 for 1,000) combinations."""
    side = round(combos ** (1 / 3))
    return [
        f"ema_fast=5:{4 + side}:1",
        f"ema_slow=22:{22 + 2 * (side - 1)}:2",
        f"rsi_period=10:{9 + side}:1",
    ]


def _rss() -> dict[str, float]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    return {"self_max_rss_gib": round(own, 3), "worker_max_rss_gib": round(kids, 3)}


def ours_sweep(
    *, source: str, days: int, strategy: str, combos: int, jobs: int, profile: bool = False
) -> dict[str, Any]:
    """`signals sweep` end to end: load, indicators + signals, simulation, metrics."""
    started = time.perf_counter()
    from research.backtest.execution import ExecutionModel
    from research.optimise.grid import expand_grid
    from research.optimise.sweep import run_sweep
    from signals.costs import CostModel
    from strategies import get_strategy

    imported = time.perf_counter()
    candles = load_candles(source, days)
    loaded = time.perf_counter()
    chosen = get_strategy(strategy)
    specs = ema_grid(combos) if strategy == "ema_cross" else scalping_grid(combos)
    grid = expand_grid(chosen, specs)
    kwargs = {
        "timeframe": "1m",
        "execution": ExecutionModel(),
        "costs": CostModel(fee_bps=FEE_BPS, slippage_bps=SLIPPAGE_BPS),
        "jobs": jobs,
        "progress": False,
    }
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    result = run_sweep(candles, chosen, grid, **kwargs)
    if profiler:
        profiler.disable()
    done = time.perf_counter()
    out = {
        "candles": len(candles),
        "combos": len(grid.combos),
        "skipped": grid.skipped,
        "grid": specs,
        "jobs": result.jobs,
        "chunk_size": result.chunk_size,
        "import_s": imported - started,
        "load_s": loaded - imported,
        "sweep_s": done - loaded,
        "end_to_end_s": done - started,
        "best_sharpe": float(result.table["sharpe"].max()),
        **_rss(),
    }
    if profiler:
        out["profile"] = _top_functions(profiler)
    return out


def _top_functions(profiler: cProfile.Profile, count: int = 18) -> str:
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream)
    stats.strip_dirs().sort_stats("tottime").print_stats(count)
    lines = stream.getvalue().splitlines()
    start = next(i for i, line in enumerate(lines) if "ncalls" in line)
    return "\n".join(line.rstrip() for line in lines[start:] if line.strip())


def ours_single(*, source: str, days: int) -> dict[str, Any]:
    """One ema_cross backtest: the sweep's path, the Portfolio path, and the full run_backtest."""
    from research.backtest.execution import ExecutionModel, simulate, simulate_orders
    from research.backtest.run import portfolio_metrics, run_backtest
    from research.optimise.chunks import orders_table
    from signals.costs import CostModel
    from strategies import get_strategy

    candles = load_candles(source, days)
    strategy = get_strategy("ema_cross")
    params = strategy.params({"fast": 12, "slow": 26})
    costs, execution = CostModel(fee_bps=FEE_BPS, slippage_bps=SLIPPAGE_BPS), ExecutionModel()
    close = candles["close"].to_numpy()

    def core() -> float:  # what one column of a sweep costs
        frame = strategy.signals(candles, params)
        orders = simulate_orders(
            candles, frame.buy.to_numpy(), frame.sell.to_numpy(), execution=execution, costs=costs
        )
        table = orders_table(orders, close, "1m", 1, init_cash=execution.init_cash)
        return float(table["trades"].iloc[0])

    def portfolio() -> float:  # the same through a vectorbt Portfolio (backtest's reference)
        frame = strategy.signals(candles, params)
        pf = simulate(
            candles, frame.buy, frame.sell, execution=execution, costs=costs, timeframe="1m"
        )
        return float(portfolio_metrics(pf, candles, "1m")["trades"].iloc[0])

    first = time.perf_counter()
    core()  # includes loading the numba kernels from the cache (or compiling them)
    warm = time.perf_counter()
    trades = core()
    core_s = time.perf_counter() - warm
    portfolio()  # includes compiling vectorbt's simulation
    started = time.perf_counter()
    assert portfolio() == trades
    portfolio_s = time.perf_counter() - started
    full = time.perf_counter()
    run_backtest(candles, strategy, params, timeframe="1m", execution=execution, costs=costs)
    return {
        "candles": len(candles),
        "trades": trades,
        "first_core_s": warm - first,
        "core_s": core_s,
        "portfolio_s": portfolio_s,
        "run_backtest_s": time.perf_counter() - full,
        **_rss(),
    }


def vectorbt_naive(*, source: str, days: int, windows: int) -> dict[str, Any]:
    """vectorbt as its README shows: MA.run_combs -> crossed signals -> Portfolio.from_signals."""
    started = time.perf_counter()
    import numpy as np
    import vectorbt as vbt

    candles = load_candles(source, days)
    loaded = time.perf_counter()
    price = candles["close"]
    fast_ma, slow_ma = vbt.MA.run_combs(
        price, window=np.arange(5, 5 + windows), r=2, short_names=["fast", "slow"], ewm=True
    )
    entries = fast_ma.ma_crossed_above(slow_ma)
    exits = fast_ma.ma_crossed_below(slow_ma)
    pf = vbt.Portfolio.from_signals(
        price,
        entries,
        exits,
        fees=FEE_BPS * 1e-4,
        slippage=SLIPPAGE_BPS * 1e-4,
        init_cash=10_000.0,
        freq="1min",
    )
    total = pf.total_return()
    sharpe = pf.sharpe_ratio()
    drawdown = pf.max_drawdown()
    done = time.perf_counter()
    return {
        "candles": len(candles),
        "combos": int(entries.shape[1]),
        "load_s": loaded - started,
        "end_to_end_s": done - started,
        "compute_s": done - loaded,
        "best_sharpe": float(np.nanmax(sharpe.to_numpy())),
        "mean_total_return": float(total.mean()),
        "worst_drawdown": float(drawdown.min()),
        **_rss(),
    }


def backtesting_py(*, source: str, days: int) -> dict[str, Any]:
    """backtesting.py: one EMA(12)/EMA(26) cross backtest over the same candles."""
    import warnings

    import talib
    from backtesting import Backtest, Strategy
    from backtesting.lib import crossover

    candles = load_candles(source, days)
    data = candles.rename(columns=str.capitalize)[["Open", "High", "Low", "Close", "Volume"]]
    data.index = data.index.tz_localize(None)

    class EmaCross(Strategy):  # the backtesting.py idiom, kept as its docs write it
        fast, slow = 12, 26

        def init(self) -> None:
            self.ema_fast = self.I(talib.EMA, self.data.Close, self.fast)
            self.ema_slow = self.I(talib.EMA, self.data.Close, self.slow)

        def next(self) -> None:
            if crossover(self.ema_fast, self.ema_slow):
                self.buy()
            elif crossover(self.ema_slow, self.ema_fast) and self.position:
                self.position.close()

    bt = Backtest(
        data,
        EmaCross,
        cash=1e9,  # large enough that whole-unit sizing never binds at BTC prices
        commission=FEE_BPS * 1e-4,
        spread=2 * SLIPPAGE_BPS * 1e-4,
        exclusive_orders=True,
        finalize_trades=True,
    )
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = bt.run()
    return {
        "candles": len(candles),
        "run_s": time.perf_counter() - started,
        "trades": int(stats["# Trades"]),
        **_rss(),
    }


SCENARIOS = {
    "ours_sweep": ours_sweep,
    "ours_single": ours_single,
    "vectorbt_naive": vectorbt_naive,
    "backtesting_py": backtesting_py,
}

if __name__ == "__main__":  # pragma: no cover - invoked by run.py
    import json

    sys.path.insert(0, str(ROOT))
    name, kwargs = sys.argv[1], json.loads(sys.argv[2])
    print("RESULT " + json.dumps(SCENARIOS[name](**kwargs)), flush=True)
