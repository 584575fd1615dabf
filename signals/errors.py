"""Errors that the CLI reports as a clear message instead of a traceback, and their wording."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


class SignalsError(Exception):
    """Base class for errors a user can act on; the CLI prints them without a traceback."""


class ConfigError(SignalsError):
    """The YAML configuration is invalid: names the key and suggests the closest valid one."""


class DataError(SignalsError):
    """A database or data file is missing, locked, malformed or inconsistent."""


class ParamsError(SignalsError, ValueError):
    """Strategy parameters are unknown, of the wrong type or out of range."""


def closest(word: str, choices: Iterable[str], *, cutoff: float = 0.6) -> str | None:
    """Return the choice most like `word` (for a "did you mean"), or None if none is close."""
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=cutoff)
    return found[0] if found else None


def validation_line(
    err: Mapping[str, Any], valid: Sequence[str], *, whole: str = "", listed: str = "valid here"
) -> str:
    """Return one line for a pydantic error: the dotted key, and "did you mean" for unknown keys.

    `valid` are the keys allowed beside the error's last key; `whole` names the key of an error
    about the whole model (an empty location); `listed` introduces the list of valid keys.
    """
    loc = [str(part) for part in err["loc"]]
    key = ".".join(loc) or whole
    if err["type"] != "extra_forbidden":
        return f"{key}: {err['msg']}"
    close = closest(loc[-1], valid, cutoff=0.5)
    hint = f"; did you mean {'.'.join([*loc[:-1], close])!r}?" if close else ""
    return f"{key}: unknown key{hint} ({listed}: {', '.join(valid)})"
