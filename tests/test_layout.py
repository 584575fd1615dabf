"""The layout rules of issue 11: each folder is one arrow of the data flow, and it stays so.

* no import cycle between the project's modules (every import statement counts, those inside
  functions and under ``TYPE_CHECKING`` too);
* only the CLI package (signals/cli/) imports both research/ and live/;
* the kernel rule: signals/ outside signals/cli/ imports nothing from research/, live/, paper/;
* live/ and paper/ never load vectorbt, optuna, jupyter, ipykernel, papermill or plotting;
* modules at most 500 lines, functions at most 80 (numba kernels aside);
* every ``# type: ignore`` names its error code and says why on the same line (mypy itself
  runs in `make test`, after ruff, and reports the ones no longer needed).

The static rules read the source with `ast`, so they hold for code no test happens to run.
"""

from __future__ import annotations

import ast
import itertools
import json
import re
import subprocess
import sys
import tokenize
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("signals", "research", "live", "paper", "strategies")
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
HEAVY = ("vectorbt", "optuna", "jupyter", "ipykernel", "papermill", "plotly", "matplotlib", "numba")
NUMBA_DECORATORS = {"njit", "jit"}

# Today's offenders, split in parallel by other parts of issue 11. The lead empties these at
# merge; an entry that no longer offends fails `test_size_allowlists_name_only_offenders`, so
# the lists cannot go stale. Key: "path" for a module, "path::qualified.name" for a function.
MODULE_ALLOWLIST: dict[str, str] = {}  # part B split live/runner.py, live/server.py, paper/bot.py
FUNCTION_ALLOWLIST: dict[str, str] = {}  # part C: walkforward_command is 73 lines
# Today's import cycles (the modules of each strongly connected component), same rules.
CYCLE_ALLOWLIST: dict[frozenset[str], str] = {}  # part C: run_settings moved to walkforward.py


# -- reading the source --------------------------------------------------------------------------


def module_files() -> dict[str, Path]:
    """Return every module of the project's packages by dotted name (a package by its own)."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = module_files()


def relative(path: Path) -> str:
    """Return `path` relative to the repository, with forward slashes."""
    return path.relative_to(ROOT).as_posix()


def _package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _resolve(node: ast.ImportFrom, name: str, path: Path) -> str:
    if not node.level:
        return node.module or ""
    base = _package_of(name, path).split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _nearest_module(dotted: str) -> str | None:
    while dotted and dotted not in MODULES:
        dotted = dotted.rpartition(".")[0]
    return dotted or None


def imports_of(name: str, path: Path) -> dict[str, int]:
    """Return the project modules `name` imports (every import statement), with a line each."""
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = _resolve(node, name, path)
            targets = [f"{module}.{alias.name}" for alias in node.names] or [module]
        for target in targets:
            hit = _nearest_module(target)
            if hit is not None and hit != name:
                found.setdefault(hit, node.lineno)
    return found


GRAPH = {name: imports_of(name, path) for name, path in MODULES.items()}


def top(name: str) -> str:
    """Return the top-level package of a dotted module name."""
    return name.partition(".")[0]


def in_cli(name: str) -> bool:
    """Return whether `name` is the CLI package or one of its modules."""
    return name == "signals.cli" or name.startswith("signals.cli.")


# -- import rules --------------------------------------------------------------------------------


def components(graph: dict[str, dict[str, int]]) -> list[set[str]]:
    """Return the strongly connected components of more than one module: each holds a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm; the graph is a few hundred modules
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                found.append(set(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def closed_path(graph: dict[str, dict[str, int]], component: set[str]) -> list[str]:
    """Return a shortest cycle through the first module of `component`, back to it."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:  # breadth first inside the component: the shortest way back to `start`
        node = frontier.pop(0)
        for nxt in sorted(graph[node]):
            if nxt == start:
                return [*paths[node], start]
            if nxt in component and nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                frontier.append(nxt)
    raise AssertionError(f"no cycle through {start}")  # a component always has one


def describe(path: list[str], graph: dict[str, dict[str, int]]) -> str:
    """Return a cycle as ``a (line n) -> b (line m) -> ... -> a`` with each import's line."""
    steps = [f"{a} (line {graph[a][b]})" for a, b in itertools.pairwise(path)]
    return " -> ".join([*steps, path[-1]])


COMPONENTS = components(GRAPH)


def test_no_import_cycle() -> None:
    found = [c for c in COMPONENTS if frozenset(c) not in CYCLE_ALLOWLIST]
    shown = [f"{sorted(c)}, e.g. {describe(closed_path(GRAPH, c), GRAPH)}" for c in found]
    assert not found, "import cycles (module (line of its import) -> ...):\n" + "\n".join(shown)


def test_cycle_allowlist_names_only_cycles() -> None:
    stale = [sorted(c) for c in CYCLE_ALLOWLIST if set(c) not in COMPONENTS]
    assert not stale, f"no longer a cycle: remove from CYCLE_ALLOWLIST: {stale}"


def test_only_the_cli_imports_research_and_live() -> None:
    both = []  # a module of research/ or live/ counts as its own side: it may not import the other
    for name, imported in sorted(GRAPH.items()):
        tops = {top(name): name} | {top(m): m for m in imported}
        if not in_cli(name) and "research" in tops and "live" in tops:
            sides = [tops[side] for side in ("research", "live") if tops[side] != name]
            both.append(f"{name} imports {' and '.join(sides)}")
    assert not both, "only signals/cli/ may import both research/ and live/:\n" + "\n".join(both)


def test_the_kernel_imports_no_side() -> None:
    wrong = [
        f"{relative(MODULES[name])}:{line} imports {target}"
        for name, imported in sorted(GRAPH.items())
        if top(name) == "signals" and not in_cli(name)
        for target, line in imported.items()
        if top(target) in ("research", "live", "paper")
    ]
    assert not wrong, "signals/ (the kernel, outside cli/) imports a side:\n" + "\n".join(wrong)


HEAVY_PROBE = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted({m.partition(".")[0] for m in sys.modules})))
"""


def test_live_and_paper_load_no_heavy_library() -> None:
    names = [n for n in MODULES if top(n) in ("live", "paper") and not n.endswith("__main__")]
    done = subprocess.run(
        [sys.executable, "-c", HEAVY_PROBE, *names],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    heavy = [m for m in loaded if m.startswith(HEAVY)]
    assert not heavy, f"importing every module of live/ and paper/ loads {heavy}"


# -- sizes ---------------------------------------------------------------------------------------


def _is_numba_kernel(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
        if name in NUMBA_DECORATORS:
            return True
    return False


def functions(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, int]]:
    """Yield (qualified name, lines from ``def`` to its end) of every function, nested too."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            name = f"{prefix}{node.name}"
            if not _is_numba_kernel(node):
                yield name, (node.end_lineno or node.lineno) - node.lineno + 1
            yield from functions(node, f"{name}.")
        elif isinstance(node, ast.ClassDef):
            yield from functions(node, f"{prefix}{node.name}.")
        else:
            yield from functions(node, prefix)


def oversized() -> tuple[dict[str, int], dict[str, int]]:
    """Return the modules over 500 lines and the functions over 80, with their lengths."""
    modules: dict[str, int] = {}
    funcs: dict[str, int] = {}
    for path in MODULES.values():
        text = path.read_text(encoding="utf-8")
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES:
            modules[relative(path)] = lines
        for name, length in functions(ast.parse(text, str(path))):
            if length > MAX_FUNCTION_LINES:
                funcs[f"{relative(path)}::{name}"] = length
    return modules, funcs


OVERSIZED_MODULES, OVERSIZED_FUNCTIONS = oversized()


def test_modules_are_at_most_500_lines() -> None:
    over = {k: v for k, v in OVERSIZED_MODULES.items() if k not in MODULE_ALLOWLIST}
    assert not over, f"modules over {MAX_MODULE_LINES} lines: {over}"


def test_functions_are_at_most_80_lines() -> None:
    over = {k: v for k, v in OVERSIZED_FUNCTIONS.items() if k not in FUNCTION_ALLOWLIST}
    assert not over, f"functions over {MAX_FUNCTION_LINES} lines (numba kernels aside): {over}"


@pytest.mark.parametrize(
    ("allowlist", "offenders"),
    [(MODULE_ALLOWLIST, OVERSIZED_MODULES), (FUNCTION_ALLOWLIST, OVERSIZED_FUNCTIONS)],
    ids=["modules", "functions"],
)
def test_size_allowlists_name_only_offenders(
    allowlist: dict[str, str], offenders: dict[str, int]
) -> None:
    stale = sorted(set(allowlist) - set(offenders))
    assert not stale, f"no longer oversized: remove from the allowlist: {stale}"


# -- type: ignore comments -----------------------------------------------------------------------

IGNORE = re.compile(r"#\s*type:\s*ignore")  # mypy reads it at the start of a comment only
# ``# type: ignore[code, ...]  # why``: the reason is prose, not another pragma
REASONED = re.compile(r"#\s*type:\s*ignore\[[a-z-]+(,\s*[a-z-]+)*\]  # (?!fmt:|noqa|type:)\w")
# strategies/ is hashed into every frozen file (strategies/registry.py): its comments stay as
# they are, or every user's frozen file stops verifying
IGNORE_EXEMPT = ("strategies/",)


def python_files() -> list[Path]:
    """Return every Python file of the repository, outside hidden and build folders."""
    skip = {"build", "dist", "node_modules", "__pycache__"}
    return [
        path
        for path in sorted(ROOT.rglob("*.py"))
        if not any(part.startswith(".") or part in skip for part in path.relative_to(ROOT).parts)
    ]


def bad_ignores(path: Path) -> list[str]:
    """Return ``path:line: comment`` for each type-ignore comment without a code and a reason."""
    with tokenize.open(path) as fh:
        comments = [t for t in tokenize.generate_tokens(fh.readline) if t.type == tokenize.COMMENT]
    return [
        f"{relative(path)}:{token.start[0]}: {token.string}"
        for token in comments
        if IGNORE.match(token.string) and not REASONED.match(token.string)
    ]


def test_every_type_ignore_has_a_code_and_a_reason() -> None:
    bad = [
        line
        for path in python_files()
        if not relative(path).startswith(IGNORE_EXEMPT)
        for line in bad_ignores(path)
    ]
    assert not bad, (
        "write `# type: ignore[code]  # why` (or fix the type and drop it):\n" + "\n".join(bad)
    )
