"""Render the benchmark figures gathered by run.py as benchmarks/RESULTS.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from results import replace_section

HEADING = "## Sweeps and backtests (issue 3)"
NOTES = """\
### Reading the figures

- *wall* is the scenario's process from start to exit: Python start, imports (vectorbt alone
  takes ~5 s), data load or generation, numba compilation, the work. *sweep* is `run_sweep`
  alone. Throughput is candles x combinations / sweep seconds.
- *peak RSS* sums the resident memory of the process and its workers, sampled every 50 ms from
  /proc; pages shared copy-on-write after the fork are counted in each process, so it errs high.
- `ema_cold` runs first with an empty `NUMBA_CACHE_DIR` (every cached kernel compiles); later
  runs reuse the cache. The sweep's kernels (`research.backtest.kernel`: the per-column call of
  vectorbt's `simulate_from_signals_nb`, the equity metrics) are cached on disk, and so is that
  kernel called directly (the stops and funding paths, `Portfolio.from_signals`): vectorbt
  declares it uncached and `research.backtest.kernel` turns numba's cache on (since 2026-12-02;
  runs before that compiled it once per process).
- vectorbt-naive is its README recipe (`MA.run_combs(..., r=2, ewm=True)`,
  `ma_crossed_above/below`, `Portfolio.from_signals` on the DataFrames, then `total_return`,
  `sharpe_ratio`, `max_drawdown`) on the same candles with the same fee and slippage. The 1,000
  combination run is capped (memory / time) and marked when the cap stopped it.
- backtesting.py runs one EMA(12)/EMA(26) cross, its documented idiom (`self.I(talib.EMA)`,
  `crossover`, `exclusive_orders`), with commission = fee and spread = 2 x slippage.

### Where the time goes

A combination costs three things (see the scalping profile below, one process): the strategy's
signal function (`Strategy.signals`: TA-Lib through the indicator memo, then numpy rule
scoring, edges and debounce), the simulation (`orders_by_column_nb`: vectorbt's
`simulate_from_signals_nb` run per column over the candles where that column has a fill
signal, which is exact without stops; tested against `Portfolio.from_signals`), and the metrics
(`equity_metrics_nb` streams the equity curve from the order records, skipping flat stretches;
trades from vectorbt's `get_exit_trades_nb`). No candles x columns float matrix is built; a
chunk holds only its BUY/SELL flags. Earlier versions went through `Portfolio.from_signals`,
whose wrapping of candles x columns arrays under pandas 3 cost ~30 ms per combination.
"""


def _f(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _throughput(r: dict[str, Any], seconds_key: str) -> str:
    seconds = r.get(seconds_key)
    if not seconds or "combos" not in r:
        return "-"
    return f"{r['candles'] * r['combos'] / seconds / 1e6:,.1f} M"


def _scenario_rows(results: dict[str, Any]) -> list[str]:
    rows = [
        "| run | candles | combos | jobs | chunk | wall s | sweep/compute s | peak RSS GiB "
        "| candle-combos/s | note |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for key, r in results.items():
        compute = r.get("sweep_s", r.get("compute_s", r.get("run_s", r.get("core_s"))))
        note = r.get("capped") or r.get("error") or ""
        rows.append(
            f"| {key} | {_f(r.get('candles'))} | {_f(r.get('combos', 1))} | {_f(r.get('jobs'))} "
            f"| {_f(r.get('chunk_size'))} | {_f(r.get('wall_s'), 1)} | {_f(compute, 1)} "
            f"| {_f(r.get('peak_rss_gib'))} "
            f"| {_throughput(r, 'sweep_s' if 'sweep_s' in r else 'compute_s')} | {note} |"
        )
    return rows


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:,.1f}x" if a and b else "-"


def _targets(res: dict[str, Any]) -> list[str]:
    ema, big, single = res.get("ema_1k_jobs2", {}), res.get("ema_10k", {}), res.get("single", {})
    vbt, vbt_big, btpy = res.get("vbt_100", {}), res.get("vbt_1k", {}), res.get("btpy", {})
    ours_per = ema["sweep_s"] / ema["combos"] if ema.get("sweep_s") else None
    one = res.get("ema_1k_jobs1", {})
    one_core_per = one["sweep_s"] / one["combos"] if one.get("sweep_s") else None
    ours_wall_per = (
        ema["wall_s"] / ema["combos"] if ema.get("wall_s") and ema.get("combos") else None
    )
    vbt_per = vbt["end_to_end_s"] / vbt["combos"] if vbt.get("end_to_end_s") else None
    vbt_big_per = (
        vbt_big["end_to_end_s"] / vbt_big["combos"] if vbt_big.get("end_to_end_s") else None
    )
    vbt_memory = vbt_big.get("peak_rss_gib") or vbt.get("peak_rss_gib")
    rows = [
        "| target | measured | verdict |",
        "|---|---|---|",
        "| ema_cross 1,000 combos, year of 1m, end to end < 30 s "
        f"| wall {_f(ema.get('wall_s'), 1)} s (sweep {_f(ema.get('sweep_s'), 1)} s) "
        f"| {_ok(ema.get('wall_s'), 30)} |",
        f"| ... and < 4 GiB peak | {_f(ema.get('peak_rss_gib'))} GiB "
        f"| {_ok(ema.get('peak_rss_gib'), 4)} |",
        f"| ema_cross 10,000 combos < 4 GiB | {_f(big.get('peak_rss_gib'))} GiB in "
        f"{_f(big.get('wall_s'), 0)} s | {_ok(big.get('peak_rss_gib'), 4)} |",
        f"| >= 5x faster than vectorbt-naive (per combination, end to end) | "
        f"{_ratio(vbt_per, ours_wall_per)} vs its 100-combo run; "
        f"{_ratio(vbt_big_per, ours_wall_per)} vs its 1,000 run "
        f"{'(' + vbt_big['capped'] + ')' if vbt_big.get('capped') else ''} "
        f"| {_ok_ratio(vbt_per, ours_wall_per, 5)} |",
        f"| <= 1/4 of vectorbt-naive's memory | ours {_f(ema.get('peak_rss_gib'))} GiB at 1,000 vs "
        f"{_f(vbt.get('peak_rss_gib'))} GiB at 100 and {_f(vbt_big.get('peak_rss_gib'))} GiB at "
        f"1,000 | {_ok_ratio(vbt_memory, ema.get('peak_rss_gib'), 4)} |",
        f"| >= 300x faster per backtest than backtesting.py (one core each) | backtesting.py "
        f"{_f(btpy.get('run_s'), 1)} s; ours {_f(one_core_per, 4)} s per combination in a "
        f"one-process sweep = {_ratio(btpy.get('run_s'), one_core_per)} "
        f"(two processes: {_f(ours_per, 4)} s = {_ratio(btpy.get('run_s'), ours_per)}); "
        f"a lone backtest on the sweep's path {_f(single.get('core_s'), 3)} s "
        f"= {_ratio(btpy.get('run_s'), single.get('core_s'))}, through a vectorbt Portfolio "
        f"{_f(single.get('portfolio_s'), 2)} s, `run_backtest` with cost break-even, trade list "
        f"and equity {_f(single.get('run_backtest_s'), 2)} s "
        f"| {_ok_ratio(btpy.get('run_s'), one_core_per, 300)} |",
    ]
    return rows


def _ok(value: float | None, limit: float) -> str:
    if value is None:
        return "not measured"
    return "met" if value < limit else "**missed**"


def _ok_ratio(theirs: float | None, ours: float | None, factor: float) -> str:
    if not theirs or not ours:
        return "not measured"
    return "met" if theirs / ours >= factor else "**missed**"


def write_results(raw: dict[str, Any], path: Path) -> None:
    """Write the Markdown report of one benchmark run."""
    res = raw["results"]
    versions = ", ".join(f"{k} {v}" for k, v in raw["versions"].items())
    lines = [
        HEADING,
        "",
        "Written by `make bench` (`benchmarks/run.py`); raw figures in `RESULTS.json`.",
        "",
        f"- date: {raw['date']}",
        f"- machine: {raw['machine']}",
        f"- versions: {versions}",
        "- data: a year of synthetic 1m candles (`synth_market(days=365, seed=1)`, 525,600 "
        "candles); `real_*`: the BTCUSDT 1m candles of 2023-04..06 in ../shared/data",
        "- costs: fee 5.5 bps per side, slippage 1 bp per fill; long only, next-open fills",
        "",
        "### Targets (issue 3)",
        "",
        *_targets(res),
        "",
        "### Every run",
        "",
        *_scenario_rows(res),
        "",
        NOTES,
    ]
    profile = res.get("scalping_profile", {}).get("profile")
    if profile:
        lines += [
            f"#### Profile: scalping, {res['scalping_profile'].get('combos')} combinations, "
            "one process (cProfile, by own time)",
            "",
            "```",
            profile,
            "```",
            "",
        ]
    replace_section(HEADING, "\n".join(lines) + "\n", path)
