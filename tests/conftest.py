"""Shared fixtures: real SQLite files in tmp_path, the shared real-candle folder.

Property tests draw their examples from a fixed seed per test (hypothesis ``derandomize``), so
`make test` and CI check the same examples on every run. ``HYPOTHESIS_PROFILE=explore make test``
draws fresh random examples (and more of them) to look for new counterexamples; pin any it finds
as a plain test.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False, max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


@pytest.fixture
def shared_data() -> Path:
    """Path of ../shared/data with the real BTCUSDT candles; skips when absent."""
    if not (SHARED_DATA / "BTCUSDT-1m-2023-04.csv.gz").exists():
        pytest.skip(f"real candles not found at {SHARED_DATA} (see ../shared/data/README.md)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def real_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite store of every real BTCUSDT file in ../shared/data, imported once a session."""
    from signals.data.importers import import_files

    files = sorted(SHARED_DATA.glob("BTCUSDT-*.csv.gz"))
    if len(files) < 4:
        pytest.skip(f"real candles not found at {SHARED_DATA} (see ../shared/data/README.md)")
    db = tmp_path_factory.mktemp("real") / "btc.db"
    import_files(files, db=db, symbol="BTCUSDT", progress=False)
    return db
