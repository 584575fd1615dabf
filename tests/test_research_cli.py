"""`signals scan`, `bias`, `strategies` and `demo` as a user runs them: real subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from signals.data.load import load_candles
from signals.data.synth import write_synth_db
from signals.scan import signal_records
from strategies import get_strategy


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "signals", *args], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def synth_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    write_synth_db(out, days=40, seed=3, symbol="BTCUSDT")
    return out / "candles.db"


def test_scan_jsonl_matches_the_library(synth_db: Path) -> None:
    result = run("scan", "--strategy", "scalping", "--db", str(synth_db), "-t", "5m", "-f", "jsonl")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    strategy = get_strategy("scalping")
    candles = load_candles(synth_db, symbol="BTCUSDT", timeframe="5m")
    expected = signal_records(
        candles, strategy, strategy.params(), symbol="BTCUSDT", timeframe="5m"
    )
    assert lines == json.loads(json.dumps(expected))
    assert {r["signal"] for r in lines} == {"BUY", "SELL"}
    keys = {"type", "signal", "symbol", "timeframe", "candle_ts", "price", "confidence", "reasons"}
    assert keys | {"strategy", "params_id"} == set(lines[0])


def test_scan_from_keeps_warmup_and_filters(synth_db: Path) -> None:
    full = run("scan", "-s", "scalping", "--db", str(synth_db), "-t", "5m", "-f", "jsonl")
    part = run(
        "scan",
        "-s",
        "scalping",
        "--db",
        str(synth_db),
        "-t",
        "5m",
        "-f",
        "jsonl",
        "--from",
        "2024-01-20",
    )
    assert part.returncode == 0, part.stderr
    cut = 1705708800  # 2024-01-20T00:00Z
    expected = [line for line in full.stdout.splitlines() if json.loads(line)["candle_ts"] >= cut]
    assert part.stdout.splitlines() == expected and expected


def test_scan_set_changes_signals_and_params_id(synth_db: Path) -> None:
    base = run("scan", "-s", "scalping", "--db", str(synth_db), "-t", "5m", "-f", "jsonl")
    tuned = run(
        "scan",
        "-s",
        "scalping",
        "--db",
        str(synth_db),
        "-t",
        "5m",
        "-f",
        "jsonl",
        "--set",
        "threshold=0.4",
        "--set",
        "cooldown=0",
    )
    a = [json.loads(x) for x in base.stdout.splitlines()]
    b = [json.loads(x) for x in tuned.stdout.splitlines()]
    assert a[0]["params_id"] != b[0]["params_id"]
    assert len(b) > len(a) and all(r["confidence"] >= 0.4 for r in b)


def test_scan_table_and_errors(synth_db: Path) -> None:
    table = run("scan", "-s", "swing", "--db", str(synth_db), "-t", "15m")
    assert table.returncode == 0 and "signals" in table.stdout
    bad = run("scan", "-s", "scalpin", "--db", str(synth_db), "-t", "1m")
    assert bad.returncode == 2 and "did you mean 'scalping'" in bad.stderr
    missing = run("scan", "-s", "scalping", "--db", str(synth_db.parent / "nope.db"), "-t", "1m")
    assert missing.returncode == 2 and "nope.db" in missing.stderr
    wrong = run("scan", "-s", "scalping", "--db", str(synth_db), "-t", "1m", "--set", "ema_fsat=3")
    assert wrong.returncode == 2 and "did you mean 'ema_fast'" in wrong.stderr
    absent = run("scan", "-s", "scalping", "--db", str(synth_db), "-t", "1m", "--symbol", "ETHUSDT")
    assert absent.returncode == 2 and "BTCUSDT 1m" in absent.stderr


def test_bias_command_passes_shipped_strategy(synth_db: Path) -> None:
    result = run("bias", "-s", "swing", "--db", str(synth_db), "-t", "15m", "--cuts", "4")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("PASS")


def test_demo_writes_report(synth_db: Path, tmp_path: Path) -> None:
    result = run("demo", "--db", str(synth_db), "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    report = (tmp_path / "signals.md").read_text()
    for heading in ("## scalping 1m", "## scalping 5m", "## swing 15m", "## swing 1h"):
        assert heading in report
    jsonl = (tmp_path / "signals.jsonl").read_text().splitlines()
    assert len(jsonl) > 0 and all(json.loads(x)["type"] == "signal" for x in jsonl)


def test_help_explains_every_command() -> None:
    for command in ("scan", "bias", "demo", "strategies"):
        result = run(command, "--help")
        assert result.returncode == 0 and "Usage" in result.stdout


REQUIRED_METRICS = {
    "total_return", "annual_return", "sharpe", "sortino", "calmar", "max_drawdown", "win_rate",
    "profit_factor", "expectancy", "sqn", "trades", "exposure", "fees_paid", "buy_hold_return",
    "cost_break_even_bps",
}  # fmt: skip


def test_backtest_json_and_trades_out(synth_db: Path, tmp_path: Path) -> None:
    trades = tmp_path / "trades.csv"
    result = run(
        "backtest", "-s", "swing", "--db", str(synth_db), "-t", "15m", "--json",
        "--direction", "both", "--trades-out", str(trades),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert set(metrics) >= REQUIRED_METRICS
    assert metrics["direction"] == "both" and metrics["trades"] > 0
    assert -1.0 <= metrics["max_drawdown"] <= 0.0 and 0.0 <= metrics["exposure"] <= 1.0
    rows = trades.read_text().splitlines()
    assert rows[0].startswith("direction,entry_time") and len(rows) == metrics["trades"] + 1


def test_backtest_costs_lower_the_return(synth_db: Path) -> None:
    def total(fee: str) -> float:
        result = run(
            "backtest", "-s", "scalping", "--db", str(synth_db), "-t", "5m", "--json",
            "--fee-bps", fee, "--slippage-bps", "0",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)["total_return"]

    assert total("0") > total("10") > total("30")


def test_backtest_table_and_bad_direction(synth_db: Path) -> None:
    table = run("backtest", "-s", "scalping", "--db", str(synth_db), "-t", "5m")
    assert (
        table.returncode == 0 and "sharpe" in table.stdout and "cost_break_even_bps" in table.stdout
    )
    bad = run("backtest", "-s", "scalping", "--db", str(synth_db), "-t", "5m", "--direction", "up")
    assert bad.returncode == 2 and "direction" in bad.stderr
    both = ("--direction", "both", "--size", "0.5")
    reversal = run("backtest", "-s", "ema_cross", "--db", str(synth_db), "-t", "5m", *both)
    assert reversal.returncode == 2 and "Traceback" not in reversal.stderr
    assert "fractional size cannot reverse" in reversal.stderr


def test_usage_errors_are_short_and_exit_2() -> None:
    result = run("scan")
    assert result.returncode == 2
    assert "Missing option '--strategy'" in result.stderr and "Traceback" not in result.stderr


def test_backtest_costs_preset_and_quality(synth_db: Path, tmp_path: Path) -> None:
    plot = tmp_path / "quality.html"
    result = run(
        "backtest", "-s", "scalping", "--db", str(synth_db), "-t", "5m", "--json",
        "--costs", "bybit-perp", "--quality-plot", str(plot),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["fee_bps"] == 5.5 and payload["funding_paid"] != 0
    buckets = {row["confidence"] for row in payload["quality"]}
    assert "all" in buckets and len(buckets) >= 2
    assert plot.stat().st_size > 1_000_000  # plotly.js inlined: opens offline
    typo = run(
        "backtest", "-s", "scalping", "--db", str(synth_db), "-t", "5m", "--costs", "bybit-prep"
    )
    assert typo.returncode == 2 and "did you mean 'bybit-perp'" in typo.stderr


def test_backtest_from_warms_up_like_scan(synth_db: Path, tmp_path: Path) -> None:
    # The first trade of `backtest --from X` fills at the open after scan's first BUY from X:
    # both warm the indicators up on the candles before X.
    args = ("-s", "ema_cross", "--db", str(synth_db), "-t", "5m", "--from", "2024-01-20")
    scan = run("scan", *args, "-f", "jsonl")
    assert scan.returncode == 0, scan.stderr
    first_buy = next(json.loads(x) for x in scan.stdout.splitlines() if '"BUY"' in x)
    trades = tmp_path / "trades.csv"
    result = run("backtest", *args, "--json", "--trades-out", str(trades))
    assert result.returncode == 0, result.stderr
    entry = pd.read_csv(trades)["entry_time"].iloc[0]
    assert pd.Timestamp(entry).timestamp() == first_buy["candle_ts"] + 300


def test_a_research_command_does_not_load_the_iri_format_checker(synth_db: Path) -> None:
    # jsonschema (under vectorbt -> plotly -> nbformat) would build rfc3987_syntax's parsers:
    # 2 s of every research command's start (signals.cli.app.skip_iri_format_checks)
    code = (
        "import sys\nfrom signals.cli.app import main\n"
        f"sys.argv = ['signals', 'backtest', '-s', 'ema_cross', '--db', {str(synth_db)!r}, "
        "'-t', '1h', '--json']\nmain()\n"
        "print(sorted(m for m in ('vectorbt', 'rfc3987_syntax.syntax_helpers', 'lark') "
        "if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[-1] == "['vectorbt']"
