"""Errors that the CLI reports as a clear message instead of a traceback."""

from __future__ import annotations


class SignalsError(Exception):
    """Base class for errors a user can act on; the CLI prints them without a traceback."""


class ConfigError(SignalsError):
    """The YAML configuration is invalid: names the key and suggests the closest valid one."""


class DataError(SignalsError):
    """A database or data file is missing, locked, malformed or inconsistent."""


class ParamsError(SignalsError, ValueError):
    """Strategy parameters are unknown, of the wrong type or out of range."""
