"""Several symbols at once: `--symbol` repeated in sweep, walkforward and backtest, on a real
SQLite store holding two symbols; each symbol's result equals its own single-symbol run."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest

from research.backtest.execution import ExecutionModel
from research.optimise.grid import expand_grid
from research.optimise.storage import open_storage
from research.optimise.sweep import run_sweep
from research.optimise.symbols import prepare_runs, run_symbol_sweeps
from research.promote.gate import gate_failures
from signals.config import GateSettings
from signals.costs import CostModel
from signals.data.connection import connect_writable
from signals.data.write import write_candles
from signals.errors import SignalsError
from signals.frozen import load_frozen
from tests.candles import random_walk
from tests.livekit import ROOT
from tests.sharedrun import budget_met_once, narrow_folder

SYMBOLS = ("BTCUSDT", "ETHUSDT")
GRID = ["fast=3:9:3", "slow=5,10,20"]  # 9 pairs, 2 invalid (fast >= slow): 7 combinations
KWARGS = {"timeframe": "5m", "execution": ExecutionModel(), "costs": CostModel(fee_bps=2.0)}


def signals_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "signals", *args], cwd=ROOT, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A candle database with two symbols of different markets and lengths (5m candles)."""
    path = tmp_path_factory.mktemp("symbols") / "candles.db"
    conn = connect_writable(path)
    try:
        write_candles(
            conn, random_walk(4000, seed=1, freq="5min"), symbol="BTCUSDT", timeframe="5m"
        )
        eth = random_walk(3600, seed=2, freq="5min", start="2024-01-01 08:00")
        write_candles(conn, eth, symbol="ETHUSDT", timeframe="5m")
    finally:
        conn.close()
    return path


def single_sweep(store: Path, symbol: str, **extra: object) -> pd.DataFrame:
    [run] = prepare_runs([symbol], strategy_name="ema_cross", db=store, timeframe="5m").values()
    grid = expand_grid(run.strategy, GRID)
    return run_sweep(run.candles, run.strategy, grid, progress=False, **KWARGS, **extra).table


def test_prepare_runs_loads_each_symbol_in_order_and_refuses_a_repeat(store: Path) -> None:
    runs = prepare_runs(["ETHUSDT", "BTCUSDT"], strategy_name="ema_cross", db=store, timeframe="5m")
    assert list(runs) == ["ETHUSDT", "BTCUSDT"]
    assert len(runs["ETHUSDT"].candles) == 3600 and len(runs["BTCUSDT"].candles) == 4000
    assert list(prepare_runs(None, strategy_name="ema_cross", db=store, timeframe="5m")) == [
        "BTCUSDT"  # the config's default symbol
    ]
    with pytest.raises(SignalsError, match="'ETHUSDT' is given twice"):
        prepare_runs(["ETHUSDT", "ETHUSDT"], strategy_name="ema_cross", db=store, timeframe="5m")


def test_a_sweep_of_two_symbols_is_each_symbols_own_sweep(
    store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = prepare_runs(list(SYMBOLS), strategy_name="ema_cross", db=store, timeframe="5m")
    strategy = runs["BTCUSDT"].strategy
    grid = expand_grid(strategy, GRID)
    both = run_symbol_sweeps(
        {s: r.candles for s, r in runs.items()}, strategy, grid, chunk_size=3, jobs=1, **KWARGS
    )
    table = both.table
    assert table.columns[0] == "symbol" and list(table["symbol"].unique()) == list(SYMBOLS)
    for symbol in SYMBOLS:
        own = single_sweep(store, symbol)
        rows = table[table["symbol"] == symbol].drop(columns="symbol").reset_index(drop=True)
        assert len(rows) == len(own) == 7
        for k in range(len(own)):  # combination by combination, to the last bit
            pd.testing.assert_series_equal(rows.iloc[k], own.iloc[k], check_exact=True)
    assert (
        not table[table["symbol"] == "BTCUSDT"]
        .drop(columns="symbol")
        .reset_index(drop=True)
        .equals(table[table["symbol"] == "ETHUSDT"].drop(columns="symbol").reset_index(drop=True))
    )
    # one progress bar counts every symbol's combinations
    bar = capsys.readouterr().err
    assert "14/14" in bar and "7/7" not in bar
    ranked = both.ranked("sharpe", 2)
    assert list(ranked["symbol"]) == ["BTCUSDT", "BTCUSDT", "ETHUSDT", "ETHUSDT"]
    for symbol in SYMBOLS:
        best = ranked[ranked["symbol"] == symbol]["sharpe"].tolist()
        assert best == both.results[symbol].ranked("sharpe", 2)["sharpe"].tolist()


# another process's Dask dashboard on 8787 is only a warning (the test config makes warnings errors)
@pytest.mark.filterwarnings("ignore:Port 8787 is already in use")
def test_a_two_symbol_sweep_on_a_dask_cluster_equals_the_local_one(store: Path) -> None:
    from research.optimise.cluster import parse_cluster

    runs = prepare_runs(list(SYMBOLS), strategy_name="ema_cross", db=store, timeframe="5m")
    strategy = runs["BTCUSDT"].strategy
    grid = expand_grid(strategy, GRID)
    candles = {s: r.candles for s, r in runs.items()}
    local = run_symbol_sweeps(candles, strategy, grid, chunk_size=3, progress=False, **KWARGS)
    spec = parse_cluster("local:1", timeout=60)
    remote = run_symbol_sweeps(
        candles, strategy, grid, chunk_size=3, progress=False, cluster=spec, **KWARGS
    )
    pd.testing.assert_frame_equal(remote.table, local.table, check_exact=True)
    assert all(r.cluster == "local:1" for r in remote.results.values())


def test_cli_sweep_writes_one_table_with_a_symbol_column(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    done = signals_cli(
        "sweep", "-s", "ema_cross", "--db", str(store), "-t", "5m", "--symbol", "BTCUSDT",
        "--symbol", "ETHUSDT", "--grid", GRID[0], "--grid", GRID[1], "--fee-bps", "2",
        "--top", "2", "--jobs", "2", "--heatmap", "fast,slow", "--out", str(out),
        "--report", str(tmp_path / "r.html"), "--min-trades", "0",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "14/14" in done.stderr  # the progress bar counts across the symbols
    assert "top 2 per symbol of 14" in done.stdout
    assert done.stdout.count("BTCUSDT") >= 1 and done.stdout.count("ETHUSDT") >= 1
    for name in ("sweep.parquet", "sweep.csv"):
        table = pd.read_parquet(out / name) if name.endswith("parquet") else pd.read_csv(out / name)
        assert table.columns[0] == "symbol" and len(table) == 14
        for symbol in SYMBOLS:
            own = single_sweep(store, symbol)
            rows = table[table["symbol"] == symbol].drop(columns="symbol").reset_index(drop=True)
            pd.testing.assert_frame_equal(rows, own, check_exact=name.endswith("parquet"))
    meta = json.loads((out / "sweep.json").read_text())
    assert meta["symbols"] == list(SYMBOLS) and meta["rows"] == 14
    assert meta["per_symbol"]["ETHUSDT"]["data"]["candles"] == 3600
    assert meta["per_symbol"]["BTCUSDT"]["data"]["candles"] == 4000
    for symbol in SYMBOLS:
        page = (out / f"heatmap_fast_slow_{symbol}.html").read_text()
        assert f"{symbol} ema_cross 5m" in page
    assert not (out / "heatmap_fast_slow.html").exists()
    for symbol in SYMBOLS:  # --report: one page per symbol
        assert symbol in (tmp_path / f"r-{symbol}.html").read_text()
    assert not (tmp_path / "r.html").exists()


def single_backtest_json(store: Path, symbol: str) -> dict[str, object]:
    """Return what `signals backtest --symbol SYMBOL --fee-bps 2 --json` prints, in process."""
    from research.backtest.run import run_backtest
    from research.render.tables import metrics_json

    [run] = prepare_runs([symbol], strategy_name="ema_cross", db=store, timeframe="5m").values()
    result = run_backtest(run.candles, run.strategy, run.params, **KWARGS)
    return json.loads(json.dumps(metrics_json(result, run)))


def test_cli_backtest_of_two_symbols_equals_each_single_backtest(
    store: Path, tmp_path: Path
) -> None:
    common = ["backtest", "-s", "ema_cross", "--db", str(store), "-t", "5m", "--fee-bps", "2"]
    common += ["--symbol", "BTCUSDT", "--symbol", "ETHUSDT"]
    trades, report = tmp_path / "trades.csv", tmp_path / "bt.html"
    plot = tmp_path / "quality.html"
    both = signals_cli(*common, "--json", "--trades-out", str(trades), "--report", str(report),
                       "--quality-plot", str(plot))  # fmt: skip
    assert both.returncode == 0, both.stderr[-3000:]
    payload = json.loads(both.stdout)
    assert list(payload) == list(SYMBOLS)
    for symbol in SYMBOLS:
        assert payload[symbol].pop("quality")  # --quality-plot implies --quality
        assert payload[symbol] == single_backtest_json(store, symbol)
        assert (tmp_path / f"quality-{symbol}.html").exists()
        assert payload[symbol]["symbol"] == symbol
        assert len(pd.read_csv(tmp_path / f"trades-{symbol}.csv")) == payload[symbol]["trades"]
        assert symbol in (tmp_path / f"bt-{symbol}.html").read_text()[:200_000]
    assert not trades.exists() and not report.exists() and not plot.exists()
    table = signals_cli(*common)
    assert table.returncode == 0, table.stderr[-3000:]
    assert "ema_cross 5m by symbol" in table.stdout
    for symbol in SYMBOLS:
        row = next(line for line in table.stdout.splitlines() if symbol in line and "%" in line)
        assert f"{payload[symbol]['total_return']:.2%}" in row
        assert f" {payload[symbol]['trades']} " in row


@pytest.fixture(scope="module")
def walked(store: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("wf") / "both"
    done = signals_cli(
        "walkforward", "-s", "ema_cross", "--db", str(store), "-t", "5m", "--symbol", "BTCUSDT",
        "--symbol", "ETHUSDT", "--folds", "2", "--trials", "4", "--min-trades", "1",
        "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done.stdout


WF_ARGS = ["-s", "ema_cross", "-t", "5m", "--folds", "2", "--trials", "4", "--min-trades", "1"]


def test_walkforward_runs_each_symbol_in_its_folder_and_run(walked: tuple[Path, str]) -> None:
    out, _ = walked
    storage = open_storage(f"sqlite:///{out / 'optuna.db'}")
    studies = {s.study_name for s in optuna.get_all_study_summaries(storage)}
    for symbol in SYMBOLS:
        folder = out / symbol
        for name in ("folds.csv", "trial_ledger.parquet", "summary.json", "frozen.json",
                     "report.html"):  # fmt: skip
            assert (folder / name).exists(), (symbol, name)
        assert not (folder / "optuna.db").exists()  # one storage for both, in the run folder
        frozen = load_frozen(folder / "frozen.json")
        assert frozen.symbol == symbol
        assert any(name.startswith(f"both-{symbol}") for name in studies), studies
        assert len(pd.read_parquet(folder / "trial_ledger.parquet")) == 8


def test_walkforward_comparison_names_each_symbols_figures_and_gate(
    walked: tuple[Path, str],
) -> None:
    out, stdout = walked
    markdown = (out / "symbols.md").read_text()
    page = (out / "symbols.html").read_text()
    raw = json.loads(re.search(r"id='symbols'>(.*?)</script>", page).group(1))
    assert [row["symbol"] for row in raw] == list(SYMBOLS)
    assert "walk-forward by symbol" in stdout
    for row in raw:
        frozen = load_frozen(out / row["frozen"])
        assert row["frozen"] == f"{row['symbol']}/frozen.json"
        m = frozen.metrics or {}
        assert row["oos_return"] == m["total_return"] and row["sharpe"] == m["sharpe"]
        assert row["trades"] == m["trades"] and row["dsr"] == m["dsr"] and row["pbo"] == m["pbo"]
        failures = gate_failures(frozen, GateSettings())
        assert row["gate"] == ("pass" if not failures else "fail: " + ", ".join(
            f.split()[0].rstrip(":") for f in failures))  # fmt: skip
        line = next(x for x in markdown.splitlines() if x.startswith(f"| {row['symbol']} |"))
        assert f"{m['total_return']:+.2%}" in line and f"{m['sharpe']:.2f}" in line
        assert row["gate"] in line and row["frozen"] in line


def test_each_symbols_walkforward_equals_its_own_single_run(
    walked: tuple[Path, str], store: Path, tmp_path: Path
) -> None:
    out, _ = walked
    alone = tmp_path / "ETHUSDT"
    done = signals_cli("walkforward", *WF_ARGS, "--db", str(store), "--symbol", "ETHUSDT",
                       "--out", str(alone), "--run", "both-ETHUSDT")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    mine, own = load_frozen(out / "ETHUSDT" / "frozen.json"), load_frozen(alone / "frozen.json")
    assert mine.params == own.params and mine.params_id == own.params_id
    assert mine.metrics == own.metrics
    pd.testing.assert_frame_equal(
        pd.read_csv(out / "ETHUSDT" / "folds.csv"), pd.read_csv(alone / "folds.csv")
    )


def test_walkforward_workers_tune_each_symbol_once_in_total(store: Path, tmp_path: Path) -> None:

    journal = tmp_path / "run.log"
    args = [*WF_ARGS[2:], "-s", "narrow_ema_cross"]  # every trial valid (tests/sharedrun.py)
    folder = narrow_folder(tmp_path / "strategies")
    done = signals_cli(
        "walkforward", *args, "--db", str(store), "--symbol", "BTCUSDT", "--symbol",
        "ETHUSDT", "--out", str(tmp_path / "out"), "--no-report", "--storage",
        f"journal:///{journal}", "--workers", "2", "--heartbeat", "3", "--run", "multi",
        "--strategy-path", str(folder),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "helper" not in done.stderr  # each symbol's helper process ended well too
    for symbol in SYMBOLS:
        ledger = tmp_path / "out" / symbol / "trial_ledger.parquet"
        budget_met_once(f"journal:///{journal}", f"multi-{symbol}", ledger, trials=4)
    storage = open_storage(f"journal:///{journal}")
    # the helpers worked on the symbols' runs, not on a run of their own
    names = {s.study_name for s in optuna.get_all_study_summaries(storage)}
    assert names and all(re.match(r"multi-(BTCUSDT|ETHUSDT)[:-]", name) for name in names), names
    assert (tmp_path / "out" / "symbols.md").exists()


def test_a_symbol_given_twice_is_refused_naming_it(store: Path) -> None:
    done = signals_cli("sweep", "-s", "ema_cross", "--db", str(store), "-t", "5m", "--grid",
                       "fast=3", "--symbol", "ETHUSDT", "--symbol", "ETHUSDT")  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "symbol 'ETHUSDT' is given twice" in done.stderr


def test_walkforward_fresh_starts_every_symbols_run_afresh(
    walked: tuple[Path, str], store: Path, tmp_path: Path
) -> None:
    # the module's two-symbol run, copied: its storage (out/optuna.db) holds both symbols' runs
    out = tmp_path / "both"  # the run is named after its folder: both-BTCUSDT, both-ETHUSDT
    shutil.copytree(walked[0], out)
    line = ["walkforward", *WF_ARGS, "--db", str(store), "--symbol", "BTCUSDT", "--symbol",
            "ETHUSDT", "--out", str(out), "--no-report"]  # fmt: skip

    def trials() -> dict[str, list[tuple[int, object]]]:
        """Each study's trials (number, start time): a resumed run keeps them, a fresh one not."""
        storage = open_storage(f"sqlite:///{out / 'optuna.db'}")
        return {s.study_name: [(t.number, t.datetime_start) for t in
                               optuna.load_study(study_name=s.study_name, storage=storage).trials]
                for s in optuna.get_all_study_summaries(storage)
                if re.match(r"both-(BTCUSDT|ETHUSDT)-fold\d+$", s.study_name)}  # fmt: skip

    before = trials()
    assert len(before) == 4 and all(len(t) == 4 for t in before.values())
    other = signals_cli(*line, "--seed", "43")  # other settings: refused without --fresh
    assert other.returncode == 2 and "seed 42 there, 43 here" in other.stderr
    assert trials() == before  # (a rerun resumes: tests/test_walkforward_cli.py)
    summaries = optuna.get_all_study_summaries(open_storage(f"sqlite:///{out / 'optuna.db'}"))
    kept = {s: sum(x.study_name.startswith(f"both-{s}") for x in summaries) for s in SYMBOLS}
    fresh = signals_cli(*line, "--seed", "43", "--fresh")
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    for symbol in SYMBOLS:  # refused if either symbol's run had been kept
        assert kept[symbol] >= 3  # its settings and two folds (and their closing marks)
        assert f"--fresh: deleted {kept[symbol]} studies of run 'both-{symbol}'" in fresh.stderr
        frozen = load_frozen(out / symbol / "frozen.json")
        assert frozen.walkforward is not None and frozen.walkforward.seed == 43
        assert len(pd.read_parquet(out / symbol / "trial_ledger.parquet")) == 8
    after = trials()
    assert after.keys() == before.keys() and all(len(t) == 4 for t in after.values())
    assert all(after[name][0][1] > before[name][-1][1] for name in before)  # new trials
