"""`make test` runs the longest test files first (tests/conftest.py), so it does not end with one
process in a long file while the other has nothing left."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from tests import conftest

TESTS = Path(__file__).resolve().parent


def test_the_longest_files_are_collected_first_each_file_together_in_order() -> None:
    names = ["test_a.py", "test_a.py", "test_b.py", "test_symbols.py", "test_symbols.py",
             "test_walkforward_shared.py", "test_walkforward_shared.py"]  # fmt: skip
    items = [SimpleNamespace(path=TESTS / name, n=k) for k, name in enumerate(names)]
    conftest.pytest_collection_modifyitems(items)  # type: ignore[arg-type]  # stand-ins: .path only
    assert [item.n for item in items] == [3, 4, 5, 6, 0, 1, 2]  # the longer listed file first


def test_every_listed_file_exists_and_make_test_keeps_the_order() -> None:
    assert conftest.SLOWEST_FILES and all((TESTS / n).exists() for n in conftest.SLOWEST_FILES)
    makefile = (TESTS.parent / "Makefile").read_text()
    line = next(x for x in makefile.splitlines() if "pytest -n" in x)
    assert "--dist loadfile" in line and "--no-loadscope-reorder" in line  # else xdist reorders
