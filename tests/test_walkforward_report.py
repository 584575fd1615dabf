"""The walk-forward report reads as a quant's page: the gate's verdict first, formatted numbers,
trials per fold valid and rejected, optuna's plots over valid trials only, short windows never
annualised, the frozen parameters as a table. Checked on the page's own HTML and JSON.
(tests/test_report_render.py draws the same page in headless Chromium.)
"""

from __future__ import annotations

import html as htmllib
import json
import re
from pathlib import Path
from typing import Any

import pandas as pd

from research.optimise.efficiency import Efficiency
from research.optimise.outputs import trial_outcomes
from research.optimise.walkforward import BAD_SCORE
from research.promote.gate import gate_failures
from research.render.walkforward_tables import efficiency_text
from signals.config import GateSettings
from tests import test_report_render as browser

wf, report = browser.wf, browser.report  # the same module fixtures: one real run


def _summary(page: str) -> dict[str, Any]:
    found = re.search(r"<script type='application/json' id='walkforward-summary'>(.*?)</script>",
                      page)  # fmt: skip
    assert found is not None
    return dict(json.loads(found.group(1)))


def _visible_text(page: str) -> str:
    text = re.sub(r"<script.*?</script>", " ", page, flags=re.S)
    text = re.sub(r"<style.*?</style>", " ", text, flags=re.S)
    return htmllib.unescape(re.sub(r"<[^>]+>", " ", text))


def _table(page: str, containing: str) -> pd.DataFrame:
    """The first HTML table of `page` whose text contains `containing`, as strings."""
    for found in re.findall(r"<table.*?</table>", page, flags=re.S):
        if containing not in found:
            continue
        rows = [[htmllib.unescape(re.sub(r"<[^>]+>", "", cell)).strip()
                 for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, flags=re.S)]
                for row in re.findall(r"<tr.*?</tr>", found, flags=re.S)]  # fmt: skip
        return pd.DataFrame(rows[1:], columns=rows[0])
    raise AssertionError(f"no table with {containing!r}")


def test_the_gate_verdict_comes_first_and_is_the_gates(wf: tuple, report: Path) -> None:
    _, _, frozen, _, _ = wf
    page = report.read_text(encoding="utf-8")
    assert page.index("id='gate-verdict'") < page.index("Plotly.newPlot(")
    summary = _summary(page)
    assert summary["gate_failures"] == gate_failures(frozen, GateSettings())
    verdict = "FAILS" if summary["gate_failures"] else "PASSES"
    assert f"Promotion gate: {verdict}" in page


def test_trials_per_fold_valid_and_rejected(wf: tuple, report: Path) -> None:
    run = wf[0]
    summary = _summary(report.read_text(encoding="utf-8"))
    rejected = 0
    for fold, shown in zip(run.folds, summary["trials"], strict=True):
        outcomes = trial_outcomes(fold.trials, run.config.min_trades)
        assert shown["trials"] == len(fold.trials) == 8
        assert shown.get("valid", 0) == int((outcomes == "valid").sum()) >= 1
        assert sum(v for k, v in shown.items() if k not in ("fold", "trials")) == 8
        valid = fold.trials[outcomes == "valid"]
        assert (valid["value"] > BAD_SCORE).all()
        assert (fold.trials[outcomes != "valid"]["value"] == BAD_SCORE).all()
        rejected += len(fold.trials) - len(valid)
    assert rejected > 0  # the fixture's min_trades rejects some: the table has something to say


def test_optuna_history_draws_valid_trials_only_at_their_numbers(wf: tuple, report: Path) -> None:
    run = wf[0]
    page = report.read_text(encoding="utf-8")
    last = run.folds[-1].trials
    valid = set(last.loc[trial_outcomes(last, run.config.min_trades) == "valid", "trial"])
    history = [traces for traces in browser.embedded_figures(page).values()
               if any(t.get("name") == "Objective Value" for t in traces)]  # fmt: skip
    assert len(history) == 1
    points = next(t for t in history[0] if t.get("name") == "Objective Value")
    assert set(points["x"]) == valid and min(points["y"]) > BAD_SCORE
    assert f"the {len(valid)} valid trials of {len(last)}" in page


def test_numbers_are_formatted_and_short_windows_not_annualised(wf: tuple, report: Path) -> None:
    frozen = wf[2]
    text = _visible_text(report.read_text(encoding="utf-8"))
    raw = re.findall(r"\d\.\d{5,}", text)
    assert raw == [], raw[:5]  # no 0.005786 or 28.170454545454547
    assert '"code_version"' not in text  # the frozen file is a table, not a JSON dump
    page = report.read_text(encoding="utf-8")
    folds = _table(page, "test per day")
    assert not any("annual" in c.lower() for c in folds.columns)
    assert all(v.endswith("†") for v in folds["test Sharpe"])  # 5-day test windows
    assert "annualised from a window shorter than 90 days" in text
    params = _table(page, "fixed (not searched)")
    for name, value in frozen.params.items():
        row = params[params["parameter"] == name]
        assert len(row) == 1 and row["value"].iloc[0] == f"{value:g}"
    assert "Monthly returns (out of sample)" in text and "Rolling" in text


def test_an_undefined_efficiency_says_why() -> None:
    wfe = Efficiency(None, 0.00002, -0.001, "the train windows earned +0.0020% a day, below")
    shown = efficiency_text(wfe)
    assert "undefined" in shown and "below" in shown and "-0.100% a day" in shown
