"""Shared fixtures: real SQLite files in tmp_path, the shared real-candle folder."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """Path of ../shared/data with the real BTCUSDT candles; skips when absent."""
    if not (SHARED_DATA / "BTCUSDT-1m-2023-04.csv.gz").exists():
        pytest.skip(f"real candles not found at {SHARED_DATA} (see ../shared/data/README.md)")
    return SHARED_DATA
