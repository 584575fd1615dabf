"""Strategies by name: the shipped ones plus those in the user's strategy folders.

A strategy folder holds Python modules; each module that defines ``STRATEGY`` (a `Strategy`
instance), or `Strategy` subclasses of its own (instantiated without arguments), adds them by
their ``name``. Modules without one (helpers) are skipped. A name defined twice (two folders, or
a folder and the shipped strategies) is an error naming both files.

A folder is loaded as a package of its own, ``signals_strategy_<tag>`` (the tag is a hash of the
folder's path), so its modules import each other relatively, ``from .helpers import x``, and
two folders may both have a ``helpers.py``. An edit of any module of a folder reloads the whole
folder. No bytecode is written into the folder.

The folders come from ``--strategy-path DIR`` (repeatable) or ``strategy_paths`` in
signals.yaml; `use_strategy_paths` records them for this process and, through the environment
variable ``SIGNALS_STRATEGY_PATH``, for the processes it starts (sweep workers, the runner).
Every function here also accepts a `Strategy` object where it accepts a name.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import inspect
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from signals.errors import SignalsError
from strategies import Strategy
from strategies import strategy_names as shipped_names
from strategies.registry import UnknownStrategyError
from strategies.registry import get_strategy as shipped_strategy

ENV = "SIGNALS_STRATEGY_PATH"
StrategyRef = str | Strategy


class StrategyFolderError(SignalsError):
    """A strategy folder is missing, a module in it fails to import, or a name is defined twice."""


def use_strategy_paths(paths: Iterable[Path | str] | None) -> tuple[Path, ...]:
    """Record the strategy folders of this process (and of the processes it starts)."""
    resolved = tuple(dict.fromkeys(Path(p).expanduser().resolve() for p in paths or ()))
    if resolved:
        os.environ[ENV] = os.pathsep.join(str(p) for p in resolved)
    else:
        os.environ.pop(ENV, None)
    return resolved


def apply_strategy_paths(
    given: Iterable[Path | str] | None, config: Path | str | None = None
) -> tuple[Path, ...]:
    """Record ``--strategy-path`` folders plus the config's ``strategy_paths`` for this process."""
    from signals.config import load_settings

    folders = [*(given or ()), *load_settings(config).strategy_paths]
    for folder in folders:
        if not Path(folder).expanduser().is_dir():
            raise StrategyFolderError(f"{folder}: strategy folder not found")
    if folders:
        use_strategy_paths([*strategy_paths(), *folders])
    return strategy_paths()


def strategy_paths() -> tuple[Path, ...]:
    """Return the strategy folders recorded for this process."""
    raw = os.environ.get(ENV, "")
    return tuple(Path(p) for p in raw.split(os.pathsep) if p)


def _folders(paths: Iterable[Path | str] | None) -> tuple[Path, ...]:
    if paths is None:
        return strategy_paths()
    return tuple(dict.fromkeys(Path(p).expanduser().resolve() for p in paths))


def strategy_file(strategy: Strategy) -> Path | None:
    """Return the file that defines `strategy`'s class (None for a notebook cell)."""
    try:
        return Path(inspect.getfile(type(strategy))).resolve()
    except (TypeError, OSError):
        return None


def find_strategies(paths: Iterable[Path | str] | None = None) -> dict[str, Strategy]:
    """Return every strategy by name: the shipped ones, then those of the folders `paths`."""
    found: dict[str, Strategy] = {name: shipped_strategy(name) for name in shipped_names()}
    for folder in _folders(paths):
        for strategy in _folder_strategies(folder):
            if strategy.name in found:
                raise StrategyFolderError(
                    f"strategy {strategy.name!r} is defined twice: in "
                    f"{_where(found[strategy.name])} and in {_where(strategy)}"
                )
            found[strategy.name] = strategy
    return found


def _where(strategy: Strategy) -> str:
    path = strategy_file(strategy)
    return str(path) if path else f"module {type(strategy).__module__}"


def strategy_names(paths: Iterable[Path | str] | None = None) -> list[str]:
    """Return the names of all strategies (shipped and in the folders)."""
    return sorted(find_strategies(paths))


def get_strategy(ref: StrategyRef, paths: Iterable[Path | str] | None = None) -> Strategy:
    """Return the strategy `ref` (a name, or a `Strategy` returned as is), or raise."""
    if isinstance(ref, Strategy):
        return ref
    if not _folders(paths):
        return shipped_strategy(ref)  # the shipped registry's own error when unknown
    registry = find_strategies(paths)
    if ref in registry:
        return registry[ref]
    close = difflib.get_close_matches(ref, registry, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise UnknownStrategyError(f"unknown strategy {ref!r}{hint}; known: {', '.join(registry)}")


def _folder_strategies(folder: Path) -> list[Strategy]:
    if not folder.is_dir():
        raise StrategyFolderError(f"{folder}: strategy folder not found")
    strategies: list[Strategy] = []
    seen: dict[str, Path] = {}
    for path, module in _load_folder(folder.resolve(), _signature(folder)):
        for strategy in _module_strategies(module):
            if strategy.name in seen:
                raise StrategyFolderError(
                    f"strategy {strategy.name!r} is defined twice: in {seen[strategy.name]} "
                    f"and in {path}"
                )
            seen[strategy.name] = path
            strategies.append(strategy)
    return strategies


def _modules(folder: Path) -> list[Path]:
    return [p for p in sorted(folder.glob("*.py")) if not p.name.startswith("_")]


def _signature(folder: Path) -> tuple[tuple[str, int, int], ...]:
    # every module of the folder: an edit of a helper reloads the strategies that import it
    stats = [(p, p.stat()) for p in sorted(folder.glob("*.py"))]
    return tuple((p.name, st.st_mtime_ns, st.st_size) for p, st in stats)


def package_name(folder: Path) -> str:
    """Return the name of the package a strategy folder is loaded as (stable per path)."""
    return "signals_strategy_" + hashlib.sha1(str(folder).encode()).hexdigest()[:10]


@functools.cache
def _load_folder(folder: Path, _signature: tuple) -> list[tuple[Path, ModuleType]]:
    package = package_name(folder)
    for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
        del sys.modules[name]  # an older version of this folder: import it afresh
    _FOLDERS[package] = folder
    return [(path, _import(package, path)) for path in _modules(folder)]


def _import(package: str, path: Path) -> ModuleType:
    try:
        return importlib.import_module(f"{package}.{path.stem}")
    except Exception as exc:
        hint = ""
        missing = getattr(exc, "name", None)
        if (
            isinstance(exc, ModuleNotFoundError)
            and missing
            and (path.parent / f"{missing}.py").exists()
        ):
            hint = (
                f" (a module of the same folder is imported relatively: from .{missing} import ...)"
            )
        raise StrategyFolderError(
            f"{path}: import failed: {type(exc).__name__}: {exc}{hint}"
        ) from exc


_FOLDERS: dict[str, Path] = {}  # package name -> strategy folder, for the finder below


class _SourceOnlyLoader(importlib.machinery.SourceFileLoader):
    """Load a module of a strategy folder from its source, with no bytecode cache."""

    def path_stats(self, path: str) -> dict:  # raising here disables the .pyc read and write
        """Refuse to stat: the loader then neither reads nor writes __pycache__."""
        raise OSError("no bytecode cache for strategy folders")


class _FolderFinder(importlib.abc.MetaPathFinder):
    """Find a strategy folder's package (``signals_strategy_<tag>``) and its modules.

    The folders are those loaded in this process, or those of ``SIGNALS_STRATEGY_PATH`` (a new
    process that unpickles a folder strategy finds its module by name).
    """

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        """Return the spec of a strategy folder's package or top-level module, else None."""
        package, _, stem = fullname.rpartition(".")
        if not (package or stem).startswith("signals_strategy_"):
            return None
        if not package:
            folder = _folder_of(stem)
            if folder is None:
                return None
            spec = importlib.machinery.ModuleSpec(fullname, None, is_package=True)
            spec.submodule_search_locations = [str(folder)]
            return spec
        folder = _folder_of(package)
        file = folder / f"{stem}.py" if folder is not None else None
        if file is None or not file.is_file():
            return None  # a sub-package: the usual path finder reads the package's __path__
        loader = _SourceOnlyLoader(fullname, str(file))
        return importlib.util.spec_from_file_location(fullname, file, loader=loader)


def _folder_of(package: str) -> Path | None:
    if package not in _FOLDERS:
        for folder in strategy_paths():
            _FOLDERS.setdefault(package_name(folder.resolve()), folder.resolve())
    return _FOLDERS.get(package)


if not any(isinstance(f, _FolderFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _FolderFinder())


def _module_strategies(module: ModuleType) -> list[Strategy]:
    declared = getattr(module, "STRATEGY", None)
    if isinstance(declared, Strategy):
        return [declared]
    own = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, Strategy)
        and obj.__module__ == module.__name__
        and not inspect.isabstract(obj)
        and isinstance(getattr(obj, "name", None), str)
    ]
    return [cls() for cls in own]
