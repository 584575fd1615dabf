"""`signals sweep --report`: the ranking, neighbourhood and heatmaps a page draws are the sweep's.

The figures are read back from the HTML (the embedded summary and plotly's own data) and compared
with the sweep table; the ranking's rules (swept parameters only, a minimum of trades, identical
results merged) hold for any table (hypothesis). Headless Chromium draws the page from the CLI
with no script error and no empty chart; a screenshot is kept at reports/screenshots/sweep.png.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from research.backtest.execution import ExecutionModel
from research.optimise.grid import expand_grid
from research.optimise.ranking import (
    ALSO,
    SAME,
    grid_edges,
    neighbourhood,
    plateau_verdict,
    rank_sweep,
    result_key,
    swept_names,
)
from research.optimise.sweep import run_sweep
from research.render.sweep_report import build_sweep_report, write_sweep_report
from signals.costs import CostModel
from signals.data.synth import write_synth_db
from strategies import get_strategy
from tests import test_report_render as browser
from tests.candles import random_walk
from tests.test_backtest_report import embedded_traces

SCREENSHOT = browser.ROOT / "reports" / "screenshots" / "sweep.png"
chromium = browser.chromium
CANDLES = random_walk(3000, seed=11)
RUN = {"timeframe": "1m", "execution": ExecutionModel(), "costs": CostModel(fee_bps=5.5),
       "progress": False}  # fmt: skip


@pytest.fixture(scope="module")
def ema_sweep():
    strategy = get_strategy("ema_cross")
    return run_sweep(CANDLES, strategy, expand_grid(strategy, ["fast=3:15:4", "slow=5:45:8"]),
                     **RUN)  # fmt: skip


@pytest.fixture(scope="module")
def swing_sweep():
    """Swing's score moves in steps of 0.25: thresholds 0.3..0.5 give identical results."""
    strategy = get_strategy("swing")
    grid = expand_grid(strategy, ["threshold=0.3:0.5:0.05", "cooldown=0,20"])
    candles = CANDLES.set_axis(pd.date_range("2024-01-01", periods=len(CANDLES), freq="15min",
                                             tz="UTC"))  # fmt: skip
    return run_sweep(candles, strategy, grid, **{**RUN, "timeframe": "15m"})


def embedded_summary(page: str) -> dict[str, Any]:
    found = re.search(r"<script type='application/json' id='sweep-summary'>(.*?)</script>", page)
    assert found is not None
    return dict(json.loads(found.group(1)))


def test_ranking_shows_swept_parameters_merges_identical_results(swing_sweep) -> None:
    table = swing_sweep.table
    swept = swept_names(table, swing_sweep.param_names)
    assert swept == ("threshold", "cooldown")
    ranked = rank_sweep(table, swept, "sharpe", min_trades=1)
    assert list(ranked.columns[:2]) == ["threshold", "cooldown"]
    assert "regime_fast" not in ranked.columns and "bb_period" not in ranked.columns
    # thresholds 0.3 .. 0.5 are all reached by the same steps of the score (0.25, 0.5): the five
    # thresholds of each cooldown collapse to at most two distinct results
    assert ranked[SAME].sum() == int((table["trades"] >= 1).sum()) == 10
    assert len(ranked) <= 4 and ranked[SAME].max() >= 2
    merged = ranked[ranked[SAME] > 1].iloc[0]
    assert merged[ALSO].startswith("threshold ")


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 3),
            st.integers(0, 3),
            st.integers(0, 6),
            st.sampled_from([-1.0, 0.0, 0.5, 1.0, float("nan")]),
        ),
        min_size=1,
        max_size=30,
    ),
    st.integers(0, 4),
)
def test_ranking_rules_hold_for_any_table(rows: list, min_trades: int) -> None:
    table = pd.DataFrame(rows, columns=["a", "b", "trades", "sharpe"])
    table["total_return"] = table["sharpe"] / 10
    table["fixed"] = 7
    swept = swept_names(table, ["a", "b", "fixed"])
    assert "fixed" not in swept
    ranked = rank_sweep(table, swept, "sharpe", min_trades=min_trades)
    eligible = table[table["trades"] >= min_trades]
    assert (ranked["trades"] >= min_trades).all()
    assert ranked[SAME].sum() == len(eligible)  # every eligible row is represented once
    assert result_key(ranked).is_unique  # no two rows show the same result
    values = ranked["sharpe"].to_numpy()
    finite = values[~np.isnan(values)]
    assert (np.diff(finite) <= 0).all() and not np.isnan(values[: len(finite)]).any()


def test_neighbourhood_and_verdict() -> None:
    a, b = np.meshgrid(range(5), range(5))
    table = pd.DataFrame({"a": a.ravel(), "b": b.ravel(), "trades": 10})
    table["sharpe"] = 1.0
    spike = table.assign(sharpe=np.where((table["a"] == 2) & (table["b"] == 2), 3.0, 0.1))
    near = neighbourhood(spike, ("a", "b"), spike["sharpe"].idxmax())
    assert len(near) == 9 and near["distance"].iloc[0] == 0 and near["distance"].max() == 2
    assert plateau_verdict(near, "sharpe")[0] == "spike"
    flat = table.assign(sharpe=np.where((table["a"] == 2) & (table["b"] == 2), 1.1, 1.0))
    assert plateau_verdict(neighbourhood(flat, ("a", "b"), 12), "sharpe")[0] == "plateau"
    # a neighbour with too few trades does not hold
    thin = flat.assign(trades=np.where(flat["a"] == 2, 10, 1))
    kind, text = plateau_verdict(neighbourhood(thin, ("a", "b"), 12), "sharpe", min_trades=5)
    assert kind == "spike" and text.startswith("2 of 8 neighbours")
    corner = neighbourhood(flat, ("a", "b"), 0)  # at the grid's edge: 3 neighbours
    assert len(corner) == 4
    assert grid_edges(flat, ("a", "b"), 0) == ["a", "b"] and grid_edges(flat, ("a", "b"), 12) == []
    assert grid_edges(flat, ("a", "b"), 2) == ["b"]  # a=2, b=0


def test_page_draws_the_sweeps_figures(ema_sweep, tmp_path: Path) -> None:
    path = tmp_path / "sweep.html"
    report = write_sweep_report(ema_sweep, path, metric="sharpe", symbol="BTCUSDT", min_trades=33)
    page = path.read_text(encoding="utf-8")
    summary = embedded_summary(page)
    assert summary == json.loads(json.dumps(report.summary))
    table = ema_sweep.table
    eligible = table[table["trades"] >= 33]
    assert summary["rows"] == len(table) and summary["eligible"] == len(eligible) < len(table)
    best = eligible.sort_values("sharpe", ascending=False).iloc[0]
    assert best["sharpe"] < table["sharpe"].max()  # the filter changed the winner
    assert summary["best"] == {"fast": int(best["fast"]), "slow": int(best["slow"])}
    assert summary["swept"] == ["fast", "slow"] and summary["heatmaps"] == [["fast", "slow"]]
    assert summary["fixed"] == {"threshold": 1.0, "cooldown": 0}
    assert summary["edges"] == [n for n in ("fast", "slow")
                                if best[n] in (table[n].min(), table[n].max())]  # fmt: skip
    # the heatmap: each cell the best Sharpe of the cell's combinations with 33+ trades
    heat = report.figures[0].data[0]
    want = eligible.pivot_table(index="slow", columns="fast", values="sharpe", aggfunc="max")
    want = want.reindex(
        index=sorted(table["slow"].unique()), columns=sorted(table["fast"].unique())
    )
    np.testing.assert_allclose(np.asarray(heat.z, dtype="float64"), want.to_numpy(),
                               equal_nan=True)  # fmt: skip
    # hover names the trade count of each cell's best combination
    for (slow, fast), row in (
        eligible.sort_values("sharpe", ascending=False)
        .groupby(["slow", "fast"])
        .head(1)
        .set_index(["slow", "fast"])
        .iterrows()
    ):
        i, j = list(heat.y).index(str(slow)), list(heat.x).index(str(fast))
        assert f"trades: {int(row['trades'])}," in heat.hovertext[i][j]
    assert "with 33+ trades" in "".join(h for r in heat.hovertext for h in r)
    # plotly.js inline once, no remote script; every figure is in the page
    assert not re.search(r"<script[^>]*\ssrc=", page)
    assert page.count("Plotly.newPlot(") == len(report.figures) == 2
    assert "threshold" not in page.split("<h2>Ranking")[1].split("</table>")[0]
    heat_traces = embedded_traces(page, report_id(page, 0))
    assert heat_traces[0]["type"] == "heatmap" and heat_traces[1]["meta"] == "best"


def report_id(page: str, k: int) -> str:
    """The element id plotly gave the k-th figure of a page."""
    return re.findall(r'Plotly\.newPlot\(\s*"([^"]+)"', page)[k]


def test_no_combination_with_enough_trades_says_so(ema_sweep) -> None:
    report = build_sweep_report(ema_sweep, metric="sharpe", min_trades=10**6)
    assert report.summary["best"] is None and report.summary["eligible"] == 0
    assert "No combination has 1000000 or more trades" in report.body


@pytest.fixture(scope="module")
def cli_page(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    base = tmp_path_factory.mktemp("sweepreport")
    write_synth_db(base, days=20, seed=8, symbol="BTCUSDT")
    page = base / "sweep.html"
    command = [sys.executable, "-m", "signals", "sweep", "-s", "scalping", "--db",
               str(base / "candles.db"), "-t", "5m", "--grid", "threshold=0.4:0.8:0.2", "--grid",
               "ema_fast=5,9,13", "--grid", "cooldown=0,20", "--grid", "rsi_period=14",
               "--min-trades", "3", "--top", "4", "--no-progress", "--jobs", "1",
               "--report", str(page)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return page, done


def test_cli_writes_the_report(cli_page: tuple[Path, subprocess.CompletedProcess]) -> None:
    page, done = cli_page
    summary = embedded_summary(page.read_text(encoding="utf-8"))
    assert summary["min_trades"] == 3 and summary["swept"] == ["threshold", "cooldown", "ema_fast"]
    assert summary["fixed"]["rsi_period"] == 14  # one value: fixed, not ranked
    assert len(summary["heatmaps"]) == 3 and summary["verdict"] in {
        "plateau",
        "mixed",
        "spike",
        "undecided",
    }
    assert "3+ trades, identical results merged" in done.stdout and f"wrote {page}" in done.stderr


@pytest.mark.slow
def test_sweep_report_draws_every_chart_offline(
    chromium: str, cli_page: tuple[Path, subprocess.CompletedProcess], tmp_path: Path
) -> None:
    page = cli_page[0]
    figures = page.read_text(encoding="utf-8").count("Plotly.newPlot(")
    dom = browser._render(chromium, page, tmp_path / "profile", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert browser._js_errors(dom.stderr) == [], browser._js_errors(dom.stderr)
    drawn = re.findall(r'<div class="[^"]*plot-container plotly', dom.stdout)
    assert figures == 4 and len(drawn) == figures, f"{len(drawn)} of {figures} charts drew"
    assert dom.stdout.count('class="heatmaplayer') >= 3 and 'class="scatterlayer' in dom.stdout
    assert dom.stdout.count('class="hm"') >= 3  # the heatmaps' images were painted
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    SCREENSHOT.unlink(missing_ok=True)
    shot = browser._render(chromium, page, tmp_path / "profile2", f"--screenshot={SCREENSHOT}",
                           "--window-size=1280,2400")  # fmt: skip
    assert shot.returncode == 0 and SCREENSHOT.stat().st_size > 20_000, shot.stderr[-2000:]
