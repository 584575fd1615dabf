"""`signals backtest --report`: the page draws what `run_backtest` computed, and opens offline.

The figures are read back from the HTML itself (the embedded summary and plotly's own data), so
a report that drew other trades or markers than the backtest made would fail here. Headless
Chromium (as for the walk-forward report) draws it with no script error and no empty chart; a
screenshot is kept at reports/screenshots/backtest.png for a human look.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from research.backtest.run import BacktestResult, run_backtest
from research.render import format as fmt
from research.render.backtest_report import build_report, write_backtest_report
from research.render.backtest_stats import longest_run, monthly_returns, trade_stats
from signals.data.load import load_candles
from signals.data.synth import write_synth_db
from strategies import get_strategy
from tests import test_report_render as browser
from tests.candles import random_walk

SCREENSHOT = browser.ROOT / "reports" / "screenshots" / "backtest.png"
chromium = browser.chromium  # the same fixture: Debian's chromium, or a skip saying why

CANDLES = random_walk(4000, seed=4, freq="5min")


def _backtest(name: str, candles: pd.DataFrame = CANDLES) -> BacktestResult:
    return run_backtest(candles, get_strategy(name), timeframe="5m")


def embedded_summary(page: str) -> dict[str, Any]:
    """The JSON summary the report embeds (what it says it drew)."""
    found = re.search(r"<script type='application/json' id='backtest-summary'>(.*?)</script>", page)
    assert found is not None
    return dict(json.loads(found.group(1)))


def embedded_traces(page: str, element_id: str = "backtest-chart") -> list[dict[str, Any]]:
    """The traces plotly draws in the figure `element_id`, as written in the page."""
    start = re.search(rf'Plotly\.newPlot\(\s*"{element_id}",', page)
    assert start is not None
    data_at = page.index("[", start.end())
    traces, _ = json.JSONDecoder().raw_decode(page, data_at)
    return list(traces)


def points(values: Any) -> int:
    """Number of values of a plotly array (a list or a base64 typed array)."""
    if isinstance(values, dict):
        size = int(re.sub(r"\D", "", values["dtype"]))  # f8: 8 bytes a value
        return len(base64.b64decode(values["bdata"])) // size
    return len(values)


@pytest.mark.parametrize("name", ["ema_cross", "scalping"])
def test_report_draws_the_backtests_trades_equity_and_markers(name: str, tmp_path: Path) -> None:
    result = _backtest(name)
    path = tmp_path / "bt.html"
    report = write_backtest_report(
        result, CANDLES, path, strategy=get_strategy(name), symbol="BTCUSDT", timeframe="5m"
    )
    page = path.read_text(encoding="utf-8")
    summary = embedded_summary(page)
    assert summary == json.loads(json.dumps(report.summary))
    trades, rows = result.trades, result.signals.signal_rows()
    closed = int((trades["status"] == "closed").sum())
    assert summary["trades"] == len(trades) == result.metrics["trades"] > 0
    assert summary["final_equity"] == pytest.approx(float(result.equity.iloc[-1]), rel=1e-12)
    assert summary["final_equity"] == pytest.approx(10_000 * (1 + result.metrics["total_return"]))
    expected = {
        "BUY": int((rows["signal"] == "BUY").sum()),
        "SELL": int((rows["signal"] == "SELL").sum()),
        "entries": len(trades),
        "exits": closed,
    }
    assert summary["markers"] == expected and expected["BUY"] > 0
    drawn = {t["meta"]: points(t["x"]) for t in embedded_traces(page) if "meta" in t}
    assert drawn == expected
    assert not summary["resampled"] and summary["drawn_candles"] == len(CANDLES)
    # plotly.js is inlined once, nothing is fetched
    assert page.count("Plotly.newPlot(") == 2 and not re.search(r"<script[^>]*\ssrc=", page)


def test_fills_hover_shows_each_trades_pnl() -> None:
    result = _backtest("ema_cross")
    report = build_report(
        result, CANDLES, strategy=get_strategy("ema_cross"), symbol="BTCUSDT", timeframe="5m"
    )
    entries = next(t for t in report.figures[0].data if t.meta == "entries")
    trades = result.trades
    assert list(pd.to_datetime(entries.x, unit="ms", utc=True)) == list(trades["entry_time"])
    for text, pnl in zip(entries.hovertext, trades["pnl"], strict=True):
        assert fmt.money(pnl, "USDT", signed=True) in text
    buys = next(t for t in report.figures[0].data if t.meta == "BUY")
    rows = result.signals.signal_rows()
    first = rows[rows["signal"] == "BUY"].iloc[0]
    assert all(reason in buys.hovertext[0] for reason in first["reasons"])
    assert f"confidence {first['confidence']:.2f}" in buys.hovertext[0]


def test_long_history_is_resampled_and_says_so() -> None:
    result = _backtest("ema_cross")
    report = build_report(result, CANDLES, strategy=get_strategy("ema_cross"), symbol="BTCUSDT",
                          timeframe="5m", max_candles=1000, max_markers=10)  # fmt: skip
    s = report.summary
    assert s["resampled"] and s["drawn_timeframe"] == "30m" and s["drawn_candles"] <= 1000
    candles = next(t for t in report.figures[0].data if t.type == "candlestick")
    hourly = CANDLES.resample("30min").agg({"high": "max", "low": "min", "close": "last"})
    assert np.allclose(candles.high, hourly["high"]) and np.allclose(candles.low, hourly["low"])
    assert np.allclose(candles.close, hourly["close"])
    # too many markers: none drawn, and the page says how many and why
    assert s["markers"] == {"BUY": 0, "SELL": 0, "entries": 0, "exits": 0}
    assert s["signals"]["BUY"] > 10 and "Not marked: the " in report.body
    assert "resampled to" in report.body and "--from/--to" in report.body
    # the legend's totals are the backtest's, not the resampled curves' first and last values
    names = {trace.name for trace in report.figures[0].data}
    for label, key in (("strategy", "total_return"), ("buy and hold", "buy_hold_return")):
        assert f"{label} ({fmt.percent(result.metrics[key], signed=True)})" in names


def test_trade_statistics_and_monthly_returns_agree_with_the_backtest() -> None:
    result = _backtest("scalping")
    trades = result.trades
    stats = trade_stats(trades, result.metrics["exposure"])
    assert stats.trades == len(trades) and stats.wins + stats.losses <= len(trades)
    assert stats.best_pnl == trades["pnl"].max() and stats.worst_return == trades["return"].min()
    assert stats.average_return == pytest.approx(result.metrics["expectancy"])
    held = (trades["exit_time"] - trades["entry_time"]).dt.total_seconds().mean()
    assert stats.average_seconds / 3600 == pytest.approx(result.metrics["avg_holding_hours"])
    assert stats.average_seconds == pytest.approx(held)
    assert stats.wins / stats.trades == pytest.approx(result.metrics["win_rate"])
    months = monthly_returns(result.equity, 10_000.0)
    compounded = float(np.nanprod(1 + months.to_numpy())) - 1
    assert compounded == pytest.approx(result.metrics["total_return"], abs=1e-9)
    assert longest_run(np.array([1, 1, 0, 1, 1, 1, 0], dtype=bool)) == 3


def test_formatting_for_people() -> None:
    assert fmt.percent(0.0523, signed=True) == "+5.23%" and fmt.percent(None) == "n/a"
    assert fmt.money(-1234.5, "USDT", signed=True) == "-1,234.50 USDT"
    assert fmt.duration(3 * 86400 + 4 * 3600 + 5) == "3 d 4 h" and fmt.duration(59) == "59 s"
    assert fmt.hours(0.75) == "45 min" and fmt.days(float("nan")) == "n/a"
    assert fmt.metric("max_drawdown_days", 84.25) == "84 d 6 h"
    assert fmt.metric("profit_factor", float("inf")) == "inf"
    assert fmt.metric("fees_paid", 642.127, "USDT") == "642.13 USDT"
    assert fmt.price(42123.456) == "42,123.46" and fmt.price(0.000123) == "0.000123"
    assert fmt.quote_currency("BTCUSDT") == "USDT" and fmt.quote_currency("XYZ") == ""


@pytest.fixture(scope="module")
def cli_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], Path]:
    """`signals backtest --report` on a synthetic database, with --from (warm-up before it)."""
    base = tmp_path_factory.mktemp("btreport")
    write_synth_db(base, days=20, seed=8, symbol="BTCUSDT")
    page = base / "backtest.html"
    args = ["-s", "scalping", "--db", str(base / "candles.db"), "-t", "5m", "--from",
            "2024-01-03", "--costs", "bybit-perp"]  # fmt: skip
    command = [sys.executable, "-m", "signals", "backtest", *args, "--json", "--report", str(page)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return page, json.loads(done.stdout), base / "candles.db"


def test_cli_report_matches_its_own_metrics(cli_report: tuple[Path, dict[str, Any], Path]) -> None:
    page, metrics, db = cli_report
    summary = embedded_summary(page.read_text(encoding="utf-8"))
    assert summary["trades"] == metrics["trades"] > 0
    assert summary["final_equity"] == pytest.approx(10_000 * (1 + metrics["total_return"]))
    assert summary["candles"] == metrics["candles"] and summary["params_id"] == metrics["params_id"]
    candles = load_candles(db, symbol="BTCUSDT", timeframe="5m")
    first = candles.index.searchsorted(pd.Timestamp("2024-01-03", tz="UTC"))
    assert summary["candles"] == len(candles) - first  # the warm-up is not drawn


@pytest.mark.slow
def test_backtest_report_draws_every_chart_offline(
    chromium: str, cli_report: tuple[Path, dict[str, Any], Path], tmp_path: Path
) -> None:
    page = cli_report[0]
    source = page.read_text(encoding="utf-8")
    figures = source.count("Plotly.newPlot(")
    dom = browser._render(chromium, page, tmp_path / "profile", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert browser._js_errors(dom.stderr) == [], browser._js_errors(dom.stderr)
    drawn = re.findall(r'<div class="[^"]*plot-container plotly', dom.stdout)
    assert figures == 2 and len(drawn) == figures, f"{len(drawn)} of {figures} charts drew"
    assert dom.stdout.count('class="main-svg"') >= 2 * figures
    assert 'class="scatterlayer' in dom.stdout and 'class="heatmaplayer' in dom.stdout
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    SCREENSHOT.unlink(missing_ok=True)
    shot = browser._render(chromium, page, tmp_path / "profile2", f"--screenshot={SCREENSHOT}",
                           "--window-size=1280,2200")  # fmt: skip
    assert shot.returncode == 0 and SCREENSHOT.stat().st_size > 20_000, shot.stderr[-2000:]


ZOOM_PROBE = """<script>window.addEventListener('load', function () {
  var gd = document.getElementById('backtest-chart'), before = gd._fullLayout.yaxis.range.slice();
  Plotly.relayout(gd, {'xaxis5.range': [%s, %s]}).then(function () { setTimeout(function () {
    var out = document.createElement('pre'); out.id = 'probe';
    out.textContent = 'PROBE ' + JSON.stringify([before, gd._fullLayout.yaxis.range]);
    document.body.appendChild(out); }, 300); });
});</script>"""


@pytest.mark.slow
def test_zooming_rescales_the_price_panel_to_what_is_visible(
    chromium: str, cli_report: tuple[Path, dict[str, Any], Path], tmp_path: Path
) -> None:
    page, _, db = cli_report
    candles = load_candles(db, symbol="BTCUSDT", timeframe="5m")
    day = candles.loc["2024-01-10"]
    lo, hi = (int(t.timestamp() * 1000) for t in (day.index[0], day.index[-1]))
    probe = tmp_path / "zoom.html"
    source = page.read_text(encoding="utf-8")
    probe.write_text(source.replace("</body>", ZOOM_PROBE % (lo, hi) + "</body>"))
    dom = browser._render(chromium, probe, tmp_path / "profile", "--dump-dom")
    assert browser._js_errors(dom.stderr) == [], browser._js_errors(dom.stderr)
    found = re.search(r"PROBE (\[.*?\]\])", dom.stdout)
    assert found is not None, dom.stdout[-2000:]
    before, after = json.loads(found.group(1))
    low, high = float(day["low"].min()), float(day["high"].max())
    assert before[0] < after[0] <= low and high <= after[1] < before[1]
    assert after[1] - after[0] < 1.2 * (high - low) + 1e-9
