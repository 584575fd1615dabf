"""Several symbols in one research run: a sweep per symbol in one table, a walk-forward per symbol.

Each symbol's run is exactly its single-symbol run; what several symbols add is the loop and the
outputs that put them side by side:

- `prepare_runs` loads each symbol's candles as `research.inputs.prepare_run` does for one.
- `run_symbol_sweeps` runs `research.optimise.sweep.run_sweep` once per symbol on the same
  combinations, counting on one progress bar (and one Dask client with a cluster). Its `table`
  stacks the symbols' tables behind a leading ``symbol`` column; each symbol's rows are its own
  sweep's table, row for row.
- `run_symbol_pipelines` runs `research.optimise.pipeline.run_pipeline` once per symbol: its own
  sub-folder ``<out>/<SYMBOL>``, its own frozen file, its own run ``<run>-<SYMBOL>`` in one
  shared optuna storage, then compares them (`symbol_comparison`, `write_comparison`).
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from research.backtest.execution import ExecutionModel
from research.inputs import RunInputs, prepare_run
from research.optimise.grid import Grid
from research.optimise.sweep import SweepResult, run_sweep, sweep_heatmap, sweep_metadata
from signals.costs import CostModel
from signals.errors import SignalsError
from strategies import Strategy

if TYPE_CHECKING:
    from optuna.storages import BaseStorage

    from research.optimise.cluster import ClusterSpec
    from research.optimise.pipeline import PipelineResult
    from research.optimise.walkforward import WalkForwardConfig
    from signals.config import GateSettings


def distinct_symbols(symbols: Sequence[str] | None) -> list[str]:
    """Return `symbols` in order; a symbol given twice is an error (it would run twice)."""
    seen: list[str] = []
    for symbol in symbols or []:
        if symbol in seen:
            raise SignalsError(f"symbol {symbol!r} is given twice: give each symbol once")
        seen.append(symbol)
    return seen


def prepare_runs(symbols: Sequence[str] | None, **options: Any) -> dict[str, RunInputs]:
    """Return `prepare_run(symbol=s, **options)` for each symbol (none: the config's one)."""
    chosen = distinct_symbols(symbols) or [None]
    runs = [prepare_run(symbol=symbol, **options) for symbol in chosen]
    return {run.symbol: run for run in runs}


# -- sweeps


@dataclass(frozen=True)
class SymbolSweeps:
    """One sweep per symbol on the same combinations, in the order the symbols were given."""

    results: dict[str, SweepResult]
    elapsed: float

    @property
    def strategy(self) -> str:
        """The strategy swept (the same for every symbol)."""
        return next(iter(self.results.values())).strategy

    @property
    def timeframe(self) -> str:
        """The timeframe swept (the same for every symbol)."""
        return next(iter(self.results.values())).timeframe

    @property
    def table(self) -> pd.DataFrame:
        """Every symbol's sweep table behind a leading ``symbol`` column, symbol after symbol."""
        return pd.concat(
            [_with_symbol(r.table, s) for s, r in self.results.items()], ignore_index=True
        )

    def ranked(self, metric: str = "sharpe", top: int | None = None) -> pd.DataFrame:
        """Return each symbol's rows ranked by `metric` (its top N), symbol after symbol."""
        return pd.concat(
            [_with_symbol(r.ranked(metric, top), s) for s, r in self.results.items()],
            ignore_index=True,
        )


def _with_symbol(table: pd.DataFrame, symbol: str) -> pd.DataFrame:
    return pd.concat([pd.Series(symbol, index=table.index, name="symbol"), table], axis=1)


def run_symbol_sweeps(
    candles: Mapping[str, pd.DataFrame],
    strategy: Strategy,
    combos: Sequence[Any] | Grid,
    *,
    timeframe: str,
    execution: ExecutionModel,
    costs: CostModel,
    chunk_size: int | None = None,
    jobs: int = 1,
    progress: bool = True,
    since: pd.Timestamp | None = None,
    cluster: ClusterSpec | None = None,
) -> SymbolSweeps:
    """Sweep `combos` on each symbol's `candles` (as `run_sweep`), one progress bar for all."""
    from signals.progress import progress as progress_display

    if not candles:
        raise ValueError("no symbol to sweep")
    started = time.perf_counter()
    count = len(combos.combos) if isinstance(combos, Grid) else len(combos)
    results: dict[str, SweepResult] = {}
    with contextlib.ExitStack() as stack:
        client = None
        if cluster is not None:
            from research.optimise.cluster import connect

            client = stack.enter_context(connect(cluster))
        bar = stack.enter_context(
            progress_display(
                count * len(candles), desc="sweep", unit="combo", enabled=progress, smoothing=0.1
            )
        )
        for symbol, frame in candles.items():
            results[symbol] = run_sweep(
                frame, strategy, combos, timeframe=timeframe, execution=execution, costs=costs,
                chunk_size=chunk_size, jobs=jobs, since=since, cluster=cluster, bar=bar,
                client=client,
            )  # fmt: skip
    return SymbolSweeps(results, time.perf_counter() - started)


def write_symbol_sweeps(result: SymbolSweeps, out_dir: Path) -> dict[str, Path]:
    """Write the stacked table (``sweep.parquet``, ``sweep.csv``) and ``sweep.json`` into `out_dir`.

    ``sweep.json`` holds the symbols and, under ``per_symbol``, each sweep's own provenance.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / f"sweep.{name}" for name in ("parquet", "csv", "json")}
    table = result.table
    table.to_parquet(paths["parquet"], index=False)
    table.to_csv(paths["csv"], index=False)
    meta = {
        "strategy": result.strategy,
        "timeframe": result.timeframe,
        "symbols": list(result.results),
        "rows": len(table),
        "elapsed_seconds": round(result.elapsed, 3),
        "per_symbol": {s: sweep_metadata(r) for s, r in result.results.items()},
    }
    text = json.dumps(meta, indent=2, allow_nan=False, default=str)
    paths["json"].write_text(text + "\n", encoding="utf-8")
    return paths


def write_symbol_heatmaps(
    result: SymbolSweeps, x: str, y: str, metric: str, out_dir: Path
) -> list[Path]:
    """Write one `sweep_heatmap` per symbol to ``heatmap_<x>_<y>_<SYMBOL>.html`` in `out_dir`."""
    written = []
    for symbol, sweep in result.results.items():
        path = Path(out_dir) / f"heatmap_{x}_{y}_{_safe(symbol)}.html"
        path.parent.mkdir(parents=True, exist_ok=True)
        figure = sweep_heatmap(sweep, x, y, metric)
        figure.update_layout(title=f"{symbol} {figure.layout.title.text}")
        figure.write_html(path, include_plotlyjs=True, full_html=True)
        written.append(path)
    return written


def symbol_path(path: Path, symbol: str) -> Path:
    """Return `path` of one symbol's file: ``bt.html`` -> ``bt-ETHUSDT.html``."""
    return path.with_name(f"{path.stem}-{_safe(symbol)}{path.suffix}")


def _safe(symbol: str) -> str:
    """Return `symbol` usable in a file or run name (``BTC/USDT`` -> ``BTC_USDT``)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", symbol)


# -- walk-forward


def symbol_folder(out: Path, symbol: str) -> Path:
    """Return the run folder of `symbol` inside a several-symbol run folder `out`."""
    return Path(out) / _safe(symbol)


def symbol_run_name(run: str, symbol: str) -> str:
    """Return the storage run name of `symbol` inside the several-symbol run `run`."""
    return f"{run}-{_safe(symbol)}"


@dataclass(frozen=True)
class SymbolPipelines:
    """One finished walk-forward per symbol, their comparison and where it was written."""

    results: dict[str, PipelineResult]
    comparison: pd.DataFrame
    paths: dict[str, Path]


def run_symbol_pipelines(
    inputs: Mapping[str, RunInputs],
    *,
    config: WalkForwardConfig,
    out: Path,
    storage: str | BaseStorage | None,
    run: str,
    gate: GateSettings,
    heartbeat: int | None = None,
    progress: bool = True,
    report: bool = True,
    tune_only: bool = False,
    while_tuning: Callable[[str], contextlib.AbstractContextManager[Any]] | None = None,
) -> SymbolPipelines | None:
    """Walk `inputs` forward symbol by symbol (as `run_pipeline`), then compare them.

    Symbol S runs in ``<out>/<S>`` as run ``<run>-<S>`` of the one `storage`, labelled with its
    symbol, its candles before its ``since`` only warming up; ``while_tuning(S)`` is entered
    around its tuning. `gate` heads each report and judges each symbol in the comparison,
    ``symbols.md`` and ``symbols.html`` in `out` (one row per symbol). With `tune_only` nothing
    is written and None is returned.
    """
    from research.optimise.pipeline import run_pipeline
    from research.optimise.storage import HEARTBEAT, open_storage

    beat = HEARTBEAT if heartbeat is None else heartbeat
    store = storage
    if store is None or isinstance(store, str):
        store = open_storage(store, heartbeat=beat)
    done: dict[str, PipelineResult] = {}
    for symbol, run_inputs in inputs.items():
        result = run_pipeline(
            run_inputs, config=config, out=symbol_folder(out, symbol), storage=store,
            run=symbol_run_name(run, symbol), since=run_inputs.since, labels={"symbol": symbol},
            heartbeat=beat, progress=progress, report=report, tune_only=tune_only,
            while_tuning=None if while_tuning is None else while_tuning(symbol), gate=gate,
        )  # fmt: skip
        if result is not None:
            done[symbol] = result
    if tune_only:
        return None
    comparison = symbol_comparison(done, gate, out)
    return SymbolPipelines(done, comparison, write_comparison(comparison, out, run))


COMPARISON_COLUMNS = ("symbol", "oos_return", "sharpe", "trades", "dsr", "pbo", "gate", "frozen")


def symbol_comparison(
    results: Mapping[str, PipelineResult], gate: GateSettings, out: Path | None = None
) -> pd.DataFrame:
    """Return one row per symbol: out-of-sample return, Sharpe, trades, DSR, PBO, gate, file.

    The figures are the frozen file's out-of-sample metrics; ``gate`` is ``pass`` or ``fail:``
    and the checks that failed (`research.promote.gate.gate_failures`); ``frozen`` is the file's
    path, relative to `out` when inside it.
    """
    from research.promote.gate import gate_failures

    rows = []
    for symbol, done in results.items():
        metrics = done.frozen.metrics or {}
        failures = gate_failures(done.frozen, gate)
        path = done.paths["frozen"]
        if out is not None and path.is_relative_to(out):
            path = path.relative_to(out)
        rows.append({
            "symbol": symbol, "oos_return": metrics.get("total_return"),
            "sharpe": metrics.get("sharpe"), "trades": metrics.get("trades"),
            "dsr": metrics.get("dsr"), "pbo": metrics.get("pbo"),
            "gate": "fail: " + ", ".join(f.split()[0].rstrip(":") for f in failures)
            if failures else "pass",
            "frozen": str(path),
        })  # fmt: skip
    return pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))


def write_comparison(comparison: pd.DataFrame, out: Path, title: str) -> dict[str, Path]:
    """Write `comparison` as ``symbols.md`` (a Markdown table) and ``symbols.html`` into `out`."""
    from research.render.symbols import comparison_markdown, write_comparison_html

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "symbols.md", "html": out / "symbols.html"}
    paths["markdown"].write_text(comparison_markdown(comparison, title), encoding="utf-8")
    write_comparison_html(comparison, title, paths["html"])
    return paths
