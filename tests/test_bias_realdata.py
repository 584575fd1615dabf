"""`signals bias` passes for every shipped strategy on every timeframe it declares, on the real
BTCUSDT candles of ../shared/data (skipped with a reason when absent), and on the synthetic
market of the behaviour fingerprint, whose dead-flat stretches are the float-noise case.

Before the tolerant comparisons (strategies/indicators.py) scalping failed on 1m: %K equal to %D
up to TA-Lib's running-sum noise (3e-14) crossed or not depending on the first candle of history.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from research.backtest.bias import check_bias
from signals.cli.app import app
from signals.identity import synthetic_market
from strategies import get_strategy
from strategies.registry import PACKAGE, strategy_modules

# one (from, to) window of real candles per timeframe: a few weeks of 1m, months to years above
# (1m to 15m come from the 1m files of 2023 Q2, 1h and above from the 1h file of 2017-2023)
WINDOWS = {
    "1m": ("2023-04-22", "2023-06-01"),  # the cases: 04-30 05:40, a start on 05-17
    "5m": ("2023-04-01", "2023-07-01"),
    "15m": ("2023-04-01", "2023-07-01"),
    "1h": ("2021-01-01", "2023-07-01"),
    "4h": ("2019-01-01", "2023-07-01"),
    "1d": ("2017-08-17", "2023-07-01"),
}


def shipped() -> list[tuple[str, str]]:
    """Every (strategy, timeframe) the package ships, read from the registry's modules."""
    import importlib

    cases = []
    for module in strategy_modules():
        strategy = importlib.import_module(f"{PACKAGE}.{module}").STRATEGY
        cases += [(strategy.name, timeframe) for timeframe in strategy.timeframes]
    return sorted(cases)


CASES = shipped()


def test_every_declared_timeframe_has_a_window() -> None:
    assert {timeframe for _, timeframe in CASES} <= set(WINDOWS)
    assert ("scalping", "1m") in CASES and ("swing", "1h") in CASES


@pytest.mark.realdata
@pytest.mark.parametrize(("name", "timeframe"), CASES)
def test_bias_passes_on_real_candles(real_db: Path, name: str, timeframe: str) -> None:
    start, end = WINDOWS[timeframe]
    for seed in (0, 1):
        args = ["bias", "-s", name, "-t", timeframe, "--db", str(real_db), "--from", start,
                "--to", end, "--cuts", "6", "--starts", "6", "--seed", str(seed)]  # fmt: skip
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        assert result.output.startswith(f"PASS  {name} {timeframe}: "), result.output


@pytest.mark.parametrize(("name", "timeframe"), CASES)
def test_bias_passes_on_the_synthetic_market(name: str, timeframe: str) -> None:
    # trends, ranges, quiet, wild and dead-flat stretches: a later start inside a flat stretch
    # sees exact ties where full history sees decaying float remnants
    strategy = get_strategy(name)
    report = check_bias(
        strategy, synthetic_market(timeframe), cuts=4, starts=16, seed=0, timeframe=timeframe
    )
    assert report.ok, report.verdict()
