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

# no deadline: a property is about values, and a loaded CI machine (two test processes on two
# vCPUs) must not fail one because an example took longer than hypothesis' default 200 ms
settings.register_profile("repeatable", derandomize=True, deadline=None)
settings.register_profile("explore", derandomize=False, max_examples=500, deadline=None)
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


# The longest test files, in seconds each took alone on the 2-core machine (2026-12-02; to refresh:
# `pytest tests/FILE --durations=0`). `make test` sends whole files to its two processes
# (--dist loadfile, --no-loadscope-reorder) in collection order; this hook puts these first,
# longest first, so the run does not end with one process in a long file and the other idle
# (xdist's own order, most tests first, left these few-test long files for the end). A file not
# listed keeps its place after them; only the order changes, never what runs.
SLOWEST_FILES: dict[str, float] = {
    "test_symbols.py": 131,
    "test_walkforward_shared.py": 124,  # PostgreSQL server, processes killed, outages
    "test_notebooks.py": 83,
    "test_research_cli.py": 82,
    "test_strategy_paths.py": 56,
    "test_walkforward_mysql.py": 54,
    "test_paper.py": 53,
    "test_execution_orders.py": 45,  # 17 once numba's cache holds vectorbt's kernel
    "test_paper_report.py": 42,
    "test_progress_costs.py": 39,
    "test_wf_storage.py": 24,
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the longest test files first (a stable sort: a file's tests stay together, in order)."""
    items.sort(key=lambda item: -SLOWEST_FILES.get(item.path.name, 0.0))
