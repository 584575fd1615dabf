"""Soak: a month of 1m candles through the runner with three clients and a kill -9 (tests/soak.py).

The figures (time, signals, memory) are recorded by benchmarks/live_soak.py in RESULTS.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.soak import run_soak


@pytest.mark.slow
def test_a_month_of_candles_three_clients_and_a_kill(tmp_path: Path) -> None:
    result = run_soak(tmp_path, days=30, clients=3)
    print(result)
    assert result.exit_code == 0
    assert result.expected >= 1000  # enough signals to mean something
    assert result.equal_to_scan, "a client's stream differs from scan of the stored candles"
    assert result.duplicates == 0
    assert result.growth_mb < 25, f"RSS grew {result.growth_mb} MB after warm-up"
