"""`signals paper report --html`: the paper bot against its backtest, trade by trade, on one page.

A real paper bot trades scripted signals from a fake runner into a SQLite ledger (as in
tests/test_paper.py). The paper equity the page draws, rebuilt from the ledger's trades, equals
vectorbt's equity of the backtest at every close; a trade edited in the ledger is marked on the
page. Headless Chromium draws it with no script error; a screenshot is kept at
reports/screenshots/paper.png.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from research.backtest.versus_paper import compare_with_backtest
from research.render.paper_report import build_paper_report, paper_equity
from signals.costs import CostModel
from tests import test_report_render as browser
from tests.test_backtest_report import embedded_traces
from tests.test_paper import paper_trade, run_cli, scripted
from tests.test_paper import synth as synth  # the module's 4-day synthetic database

SCREENSHOT = browser.ROOT / "reports" / "screenshots" / "paper.png"
chromium = browser.chromium


def embedded_summary(page: str) -> dict[str, Any]:
    found = re.search(r"<script type='application/json' id='paper-summary'>(.*?)</script>", page)
    assert found is not None
    return dict(json.loads(found.group(1)))


@pytest.mark.parametrize(("strategy", "direction"), [("scalping", "long"), ("ema_cross", "both")])
def test_paper_equity_equals_the_backtests_at_every_close(
    synth: Path, tmp_path: Path, strategy: str, direction: str
) -> None:
    db, frozen = synth / "candles.db", tmp_path / "frozen.json"
    records = scripted(db, strategy, frozen, direction)[5:]
    costs = CostModel(fee_bps=5.5, slippage_bps=1.0)
    ledger = paper_trade(tmp_path, db, records, direction=direction, costs=costs)
    comparison = compare_with_backtest(ledger, db, frozen)
    assert comparison.ok, comparison.verdict()
    paper = paper_equity(comparison)
    backtest = comparison.backtest_equity
    assert paper is not None and backtest is not None and len(paper) == len(backtest) > 1000
    assert (paper.index == backtest.index).all()
    np.testing.assert_allclose(paper.to_numpy(), backtest.to_numpy(), rtol=0, atol=1e-6)
    assert paper.iloc[-1] == pytest.approx(comparison.paper["final_equity"], abs=1e-6)
    assert paper.nunique() > len(comparison.rows)  # it moves with the open trades, not in steps


@pytest.fixture(scope="module")
def cli_pages(synth: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("paperhtml")
    db, frozen = synth / "candles.db", base / "frozen.json"
    ledger = paper_trade(base, db, scripted(db, "scalping", frozen))
    args = ["paper", "report", "--ledger", str(ledger), "--db", str(db), "--params", str(frozen)]
    good = run_cli(*args, "--html", str(base / "good.html"))
    with sqlite3.connect(ledger) as conn:
        conn.execute("UPDATE trades SET exit_time = exit_time + 60 WHERE id = 3")
    bad = run_cli(*args, "--html", str(base / "bad.html"))
    alone = run_cli("paper", "report", "--ledger", str(ledger), "--db", str(db), "--html", "x")
    return {"base": base, "good": good, "bad": bad, "alone": alone}


def test_cli_writes_the_page_agreeing_or_not(cli_pages: dict[str, Any]) -> None:
    base, good, bad = cli_pages["base"], cli_pages["good"], cli_pages["bad"]
    assert good.returncode == 0 and "AGREE:" in good.stdout, good.stderr[-2000:]
    page = (base / "good.html").read_text(encoding="utf-8")
    summary = embedded_summary(page)
    assert summary["ok"] and summary["mismatched"] == 0 and summary["trades"] > 10
    assert summary["paper_final_equity"] == pytest.approx(summary["backtest_final_equity"])
    assert summary["strategy"] == "scalping" and "AGREE:" in page
    traces = embedded_traces(page, re.findall(r'Plotly\.newPlot\(\s*"([^"]+)"', page)[0])
    assert [t["name"] for t in traces] == ["backtest", "paper bot", "paper - backtest"]
    assert page.count("<tr") == summary["trades"] + 1 + 6  # the trades, their header, totals
    assert not re.search(r"<script[^>]*\ssrc=", page)
    # a disagreeing ledger still gets its page, exit 1, the differing trade marked in red
    assert bad.returncode == 1
    page = (base / "bad.html").read_text(encoding="utf-8")
    assert embedded_summary(page)["mismatched"] >= 1 and "DISAGREE: " in page
    marked = re.findall(r"<tr class=bad><td>(\d+)</td>", page)
    assert marked[0] == "3" and "exit_time differs" in page
    assert cli_pages["alone"].returncode == 2 and "--html" in cli_pages["alone"].stderr


def test_without_the_backtests_curves_the_page_has_the_table(synth: Path, tmp_path: Path) -> None:
    db, frozen = synth / "candles.db", tmp_path / "frozen.json"
    ledger = paper_trade(tmp_path, db, scripted(db, "ema_cross", frozen))
    comparison = compare_with_backtest(ledger, db, frozen)
    bare = type(comparison)(**{**comparison.__dict__, "closes": None})
    _, body, figures, summary = build_paper_report(bare)
    assert figures == [] and summary["paper_final_equity"] is None and "<table>" in body


@pytest.mark.slow
def test_paper_report_draws_offline(
    chromium: str, cli_pages: dict[str, Any], tmp_path: Path
) -> None:
    page = cli_pages["base"] / "bad.html"
    dom = browser._render(chromium, page, tmp_path / "profile", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert browser._js_errors(dom.stderr) == [], browser._js_errors(dom.stderr)
    assert len(re.findall(r'<div class="[^"]*plot-container plotly', dom.stdout)) == 1
    assert dom.stdout.count('class="scatterlayer') >= 2  # both panels drew their lines
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    SCREENSHOT.unlink(missing_ok=True)
    shot = browser._render(chromium, page, tmp_path / "profile2", f"--screenshot={SCREENSHOT}",
                           "--window-size=1280,1800")  # fmt: skip
    assert shot.returncode == 0 and SCREENSHOT.stat().st_size > 20_000, shot.stderr[-2000:]
