"""Notebooks: jupytext pairs in sync and committed bare; papermill runs both on synthetic candles.

``signals reoptimise`` runs in a subprocess twice on the same quarter: with a lenient gate (it
promotes, and a stand-in live runner gets SIGHUP through its pidfile), then with a strict gate
(it resumes the stored studies, refuses, exits 1 and leaves the live file byte for byte).
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import jupytext
import nbformat
import pandas as pd
import pytest

from research.promote.compare import gate_settings
from research.promote.gate import gate_failures
from research.promote.reoptimise import current_quarter, data_end, quarter_start, select_period
from signals.data.load import load_candles
from signals.data.synth import write_synth_db
from signals.frozen import freeze, load_frozen, write_frozen
from strategies import get_strategy

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
PAIRS = ("explore", "reoptimise")
PLOTLY = "application/vnd.plotly.v1+json"
LENIENT = ("--min-sharpe", "-100", "--min-dsr", "0", "--max-pbo", "1", "--min-trades", "0",
           "--max-drawdown", "1")  # fmt: skip


def _cells(nb: nbformat.NotebookNode) -> list[tuple[str, str, list[str]]]:
    return [(c.cell_type, c.source.strip(), list(c.metadata.get("tags", []))) for c in nb.cells]


@pytest.mark.parametrize("name", PAIRS)
def test_pair_in_sync_and_committed_without_outputs(name: str) -> None:
    committed = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    from_source = jupytext.read(NOTEBOOKS / f"{name}.py")
    assert _cells(committed) == _cells(from_source), (
        f"notebooks/{name}.ipynb differs from notebooks/{name}.py: run "
        f"`.venv/bin/jupytext --sync notebooks/{name}.py`"
    )
    for cell in committed.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "commit without outputs"
    code = [c for c in committed.cells if c.cell_type == "code"]
    assert code[0].metadata.get("tags") == ["parameters"]
    assert committed.metadata["kernelspec"]["name"] == "python3"


def test_papermill_reads_every_parameter_the_cli_passes() -> None:
    from papermill.translators import PythonTranslator

    from research.promote.reoptimise import ReoptimiseJob

    for name in PAIRS:
        nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
        declared = {p.name for p in PythonTranslator.inspect(nb.cells[1])}
        assert len(declared) == nb.cells[1].source.count("\n") + 1, "a line papermill can't read"
    job = ReoptimiseJob(
        strategy="ema_cross",
        database="x.db",
        timeframe="15m",
        gate={k: None for k in ("min_sharpe", "min_dsr", "max_pbo", "min_trades", "max_drawdown")},
    )
    assert set(job.parameters(Path("out"))) == declared


def test_quarters_from_an_injected_clock() -> None:
    from datetime import UTC, datetime

    assert current_quarter(datetime(2026, 12, 31, 23, 59, tzinfo=UTC)) == "2026Q4"
    assert current_quarter(datetime(2026, 4, 1, 3, 0, tzinfo=UTC)) == "2026Q2"
    assert quarter_start("2026q3") == datetime(2026, 7, 1, tzinfo=UTC)
    assert data_end("2024Q2") == str(int(datetime(2024, 4, 1, tzinfo=UTC).timestamp()) - 1)


def test_a_job_takes_what_is_live_and_ends_its_data_at_the_quarter(tmp_path: Path) -> None:
    from research.promote.reoptimise import ReoptimiseJob, resolve_job
    from signals.errors import SignalsError

    live = tmp_path / "live.json"
    write_frozen(freeze(strategy="swing", timeframe="1h", params={}, symbol="ETHUSDT"), live)
    job = resolve_job(ReoptimiseJob(promote_to=str(live), period_from=None), "2026Q3")
    assert (job.strategy, job.timeframe, job.symbol) == ("swing", "1h", "ETHUSDT")
    assert job.current == str(live.resolve()) and job.period_to == data_end("2026Q3")
    assert resolve_job(ReoptimiseJob(strategy="swing", timeframe="1h", period_from="2026-01-01"),
                       "2026Q3").last_days is None  # fmt: skip
    with pytest.raises(SignalsError, match="--strategy and --timeframe"):
        resolve_job(ReoptimiseJob(promote_to=str(tmp_path / "none.json")), "2026Q3")


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("nbdata")
    # 45 days ending 2024-03-31: quarter 2024Q2's data (the run reads up to its start)
    write_synth_db(base, days=45, seed=4, start="2024-02-16")
    return base / "candles.db"


def _plotly_outputs(nb: nbformat.NotebookNode) -> list[dict]:
    return [o["data"][PLOTLY] for c in nb.cells if c.cell_type == "code"
            for o in c.outputs if PLOTLY in o.get("data", {})]  # fmt: skip


def _text(nb: nbformat.NotebookNode) -> str:
    parts = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            parts.append(o.get("text", ""))
            parts.extend(str(o.get("data", {}).get(k, "")) for k in ("text/plain", "text/html"))
    return "\n".join(parts)


@pytest.mark.slow
def test_explore_notebook_draws_signals_backtest_and_sweep(synth: Path, tmp_path: Path) -> None:
    import papermill as pm

    executed = tmp_path / "explore.ipynb"
    pm.execute_notebook(
        str(NOTEBOOKS / "explore.ipynb"), str(executed), kernel_name="python3", cwd=str(tmp_path),
        progress_bar=False, parameters={
            "database": str(synth), "strategy": "ema_cross", "timeframe": "15m",
            "period_from": "2024-03-01", "params": {"fast": 8},
            "sweep_grid": {"fast": "4:12:4", "slow": "20,30"}, "heatmap": ["fast", "slow"],
            "min_trades": 0,
        },
    )  # fmt: skip
    nb = nbformat.read(executed, as_version=4)
    chart, heatmap = _plotly_outputs(nb)
    # the markers are the strategy's own decisions, with their reasons on hover
    strategy = get_strategy("ema_cross")
    candles = load_candles(synth, symbol="BTCUSDT", timeframe="15m")
    frame = strategy.signals(candles, strategy.params({"fast": 8}))
    # the chart starts at --from (the candles before only warm up): full history's signals
    buy, sell = (side[side.index >= "2024-03-01"] for side in (frame.buy, frame.sell))
    traces = {t.get("name"): t for t in chart["data"]}
    assert chart["data"][0]["type"] == "candlestick" and {"EMA8", "EMA26"} <= set(traces)
    buys = traces[f"BUY ({int(buy.sum())})"]
    assert buy.sum() > 0 and all("EMA8 crossed above EMA26" in h for h in buys["hovertext"])
    assert f"SELL ({int(sell.sum())})" in traces
    # the backtest report's chart: fills, equity against buy and hold, drawdown
    names = set(traces)
    assert {"drawdown"} <= names and any(n.startswith("strategy (") for n in names)
    assert any(n.startswith("buy and hold (") for n in names)
    assert any(t.get("meta") == "entries" for t in chart["data"])
    assert heatmap["data"][0]["type"] == "heatmap"
    assert heatmap["data"][0]["z"]["shape"] == "2, 3"  # slow x fast
    text = _text(nb)
    # tables for people: labels and formatted values, no raw floats
    assert "Total return" in text and "Sharpe ratio" in text and "Cost break-even" in text
    assert "6 combinations (0 invalid skipped)" in text
    assert not re.search(r"\d\.\d{6}", _html_tables(nb)), "a table shows a raw float"


def _html_tables(nb: nbformat.NotebookNode) -> str:
    html = [str(o.get("data", {}).get("text/html", "")) for c in nb.cells
            for o in c.get("outputs", [])]  # fmt: skip
    return "\n".join(h for h in html if 'class="dataframe"' in h)  # the tables, not the charts


@pytest.mark.slow
@pytest.mark.parametrize("where", ["root", "notebooks"])
def test_explore_runs_from_the_root_and_from_notebooks(where: str, tmp_path: Path) -> None:
    """A relative `database` reads from the working directory, else from the repository root;
    the default sweep grid of swing is its score levels, and its ranking lists swept parameters
    only, with enough trades, identical results merged."""
    import papermill as pm

    folder = ROOT / "reports" / f"test-notebook-{where}"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        write_synth_db(folder, days=40, seed=4, start="2024-02-16")
        relative = f"reports/test-notebook-{where}/candles.db"
        executed = tmp_path / "explore.ipynb"
        pm.execute_notebook(
            str(NOTEBOOKS / "explore.ipynb"), str(executed), kernel_name="python3",
            cwd=str(ROOT if where == "root" else NOTEBOOKS), progress_bar=False,
            parameters={"database": relative, "timeframe": "15m", "min_trades": 3},
        )  # fmt: skip
    finally:
        for path in sorted(folder.iterdir()):
            path.unlink()
        folder.rmdir()
    nb = nbformat.read(executed, as_version=4)
    text = _text(nb)
    assert "swing BTCUSDT 15m" in text
    found = re.search(r"(\d+) combinations \(0 invalid skipped\): (\{.*\})", text)
    assert found is not None, text[-3000:]
    grid = ast.literal_eval(found.group(2))  # the printed dict of the grid specs
    levels = [float(v) for v in grid["threshold"].split(",")]
    assert all(abs(v * 4 - round(v * 4)) < 1e-9 for v in levels)  # swing: steps of 0.25
    ranking = next(o["data"]["text/html"] for c in nb.cells for o in c.get("outputs", [])
                   if "same result" in str(o.get("data", {}).get("text/html", ""))
                   or "rank" in str(o.get("data", {}).get("text/html", ""))[:400])  # fmt: skip
    header = re.search(r"<thead>(.*?)</thead>", ranking, re.S)
    assert header is not None and "threshold" in header.group(1)
    assert "bb_period" not in header.group(1) and "regime_fast" not in header.group(1)


def _signals(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "signals", *args], capture_output=True,
                          text=True, timeout=600)  # fmt: skip


@pytest.mark.slow
def test_explore_notebook_with_a_period_equals_signals_backtest(
    synth: Path, tmp_path: Path
) -> None:
    import papermill as pm

    # the candles before --from warm the indicators up in both: the same trades, the same return
    period = ("2024-03-05", "2024-03-20T12:00")
    executed = tmp_path / "explore.ipynb"
    pm.execute_notebook(
        str(NOTEBOOKS / "explore.ipynb"), str(executed), kernel_name="python3", cwd=str(tmp_path),
        progress_bar=False, parameters={
            "database": str(synth), "strategy": "ema_cross", "timeframe": "15m",
            "period_from": period[0], "period_to": period[1],
            "sweep_grid": {"fast": "6,12", "slow": "26"}, "heatmap": ["fast", "slow"],
        },
    )  # fmt: skip
    shown = re.search(r"backtest: (\d+) trades, total return ([+-][\d.]+)%",
                      _text(nbformat.read(executed, as_version=4)))  # fmt: skip
    done = _signals("backtest", "-s", "ema_cross", "--db", str(synth), "-t", "15m",
                    "--from", period[0], "--to", period[1], "--json")  # fmt: skip
    assert shown is not None and done.returncode == 0, done.stderr[-3000:]
    cli = json.loads(done.stdout)
    assert cli["trades"] > 0 and int(shown[1]) == cli["trades"]
    assert float(shown[2]) / 100 == pytest.approx(cli["total_return"], abs=1e-6)


@pytest.fixture(scope="module")
def hup_recorder(tmp_path_factory: pytest.TempPathFactory):
    """A stand-in live runner: writes its pidfile, appends a line per SIGHUP to a log."""
    base = tmp_path_factory.mktemp("runner")
    pidfile, log = base / "runner.pid", base / "hups.log"
    code = (
        "import os, signal, sys, time\n"
        f"log = {str(log)!r}\n"
        "signal.signal(signal.SIGHUP, lambda *_: open(log, 'a').write('HUP\\n'))\n"
        f"open({str(pidfile)!r}, 'w').write(str(os.getpid()))\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 10
    while not pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    yield pidfile, log
    proc.kill()
    proc.wait()


@pytest.fixture(scope="module")
def reopt(synth: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("reopt")
    live = base / "live.json"  # what the live runner trades now: hand-frozen defaults
    write_frozen(freeze(strategy="ema_cross", timeframe="15m", params={}), live)
    common = ("reoptimise", "--quarter", "2024Q2", "--db", str(synth), "--promote-to", str(live),
              "--days", "30", "--folds", "3", "--trials", "6", "--train-min-trades", "2",
              "--seed", "9", "--out-root", str(base / "reports"))  # fmt: skip
    return {"base": base, "live": live, "common": common, "before": live.read_bytes(),
            "synth": synth}  # fmt: skip


@pytest.mark.slow
def test_reoptimise_promotes_what_the_gate_passes_and_reloads(reopt: dict, hup_recorder) -> None:
    pidfile, log = hup_recorder
    done = _signals(*reopt["common"], *LENIENT, "--reload-pidfile", str(pidfile))
    out = reopt["base"] / "reports" / "2024Q2"
    for name in ("reoptimise.ipynb", "reoptimise.html", "report.html", "frozen.json",
                 "outcome.json"):  # fmt: skip
        assert (out / name).exists(), (name, done.stderr[-3000:])
    outcome = json.loads((out / "outcome.json").read_text())
    new = load_frozen(out / "frozen.json")
    gate = gate_settings(None, min_sharpe=-100, min_dsr=0, max_pbo=1, min_trades=0,
                         max_drawdown=1)  # fmt: skip
    assert gate_failures(new, gate) == outcome["failures"] == []
    assert done.returncode == 0 and outcome["promoted"], done.stderr[-3000:]
    # the walk-forward's progress reaches this command's stderr (a pipe): plain lines, no bar
    assert "walk-forward trials: 18/18 trials (100%)" in done.stderr and "\r" not in done.stderr
    # the report heads with the verdict of the gate this run was given (the lenient one)
    assert "Promotion gate: PASSES all 5 checks" in (out / "report.html").read_text()
    # the last 30 days are tuned from their first candle on; the 15 days before only warm up
    candles = load_candles(reopt["synth"], symbol="BTCUSDT", timeframe="15m")
    first_train = pd.read_csv(out / "folds.csv")["train_from"].iloc[0]
    assert pd.Timestamp(first_train) == select_period(candles, None, 30).index[0]
    # the kernel ran this virtualenv's interpreter
    assert Path(outcome["python"]).resolve() == Path(sys.executable).resolve()
    promoted = load_frozen(reopt["live"])
    assert promoted.params_id == new.params_id == outcome["new_params_id"]
    assert promoted.promotion is not None and promoted.promotion.passed
    assert outcome["old_params_id"] == freeze(strategy="ema_cross", timeframe="15m",
                                              params={}).params_id  # fmt: skip
    deadline = time.monotonic() + 5
    while not log.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert log.read_text() == "HUP\n"
    assert f"sent SIGHUP to pid {pidfile.read_text()}" in done.stdout
    # the executed notebook shows the figures and the comparison; its HTML export has them too
    nb = nbformat.read(out / "reoptimise.ipynb", as_version=4)
    assert len(_plotly_outputs(nb)) >= 3
    text = _text(nb)
    assert "PROMOTED" in text and "every check passed" in text and "changed" in text
    html = (out / "reoptimise.html").read_text()
    assert "Plotly.newPlot" in html and new.params_id in html


@pytest.mark.slow
def test_reoptimise_refuses_what_the_gate_fails_and_touches_nothing(
    reopt: dict, hup_recorder
) -> None:
    pidfile, log = hup_recorder
    before = reopt["live"].read_bytes()
    done = _signals(*reopt["common"], "--min-trades", "100000", "--reload-pidfile", str(pidfile),
                    "--no-progress")  # fmt: skip
    out = reopt["base"] / "reports" / "2024Q2"
    outcome = json.loads((out / "outcome.json").read_text())
    failures = gate_failures(
        load_frozen(out / "frozen.json"), gate_settings(None, min_trades=100000)
    )
    assert failures and outcome["failures"] == failures and not outcome["promoted"]
    assert any("< minimum 100000" in f for f in failures)
    assert "walk-forward trials" not in done.stderr  # --no-progress
    page = (out / "report.html").read_text()
    assert "Promotion gate: FAILS" in page and "Out-of-sample trades" in page
    assert done.returncode == 1, done.stderr[-3000:]
    assert "refused" in done.stdout and "left unchanged" in done.stdout
    # the same quarter again resumed its stored studies: no trial was run twice
    assert len(pd.read_parquet(out / "trial_ledger.parquet")) == 3 * 6
    assert reopt["live"].read_bytes() == before
    assert log.read_text() == "HUP\n"  # no reload after a refusal


def test_send_reload_names_a_missing_process(tmp_path: Path) -> None:
    from research.promote.reoptimise import send_reload
    from signals.errors import SignalsError

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    pidfile = tmp_path / "gone.pid"
    pidfile.write_text(str(proc.pid))
    with pytest.raises(SignalsError, match="not running"):
        send_reload(pidfile=pidfile)


def test_select_period_keeps_the_last_days() -> None:
    index = pd.date_range("2024-01-01", periods=96, freq="1h", tz="UTC")
    candles = pd.DataFrame({"close": range(96)}, index=index)
    assert len(select_period(candles, None, 2)) == 48
    assert select_period(candles, index[90], 2).index[0] == index[90]
