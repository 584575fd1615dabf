"""Parse user-given points in time (``--from``/``--to``) into UTC epoch seconds."""

from __future__ import annotations

import re

import pandas as pd

from signals.errors import SignalsError

_EPOCH = re.compile(r"^\s*-?\d+(\.\d+)?\s*$")
_MS_THRESHOLD = 10**11  # larger integers are taken as epoch milliseconds (after year 5138 in s)


def parse_when(text: str) -> int:
    """Return epoch seconds for an ISO date/datetime (UTC unless it has an offset) or epoch s.

    >>> parse_when("2023-04-01")
    1680307200
    >>> parse_when("2023-04-01T00:05Z")
    1680307500
    >>> parse_when("1680307200")
    1680307200
    """
    raw = str(text).strip()
    if _EPOCH.match(raw):
        value = float(raw)
        if abs(value) >= _MS_THRESHOLD:
            value /= 1000
        return int(value)
    try:
        ts = pd.Timestamp(raw)
    except (ValueError, TypeError) as exc:
        raise SignalsError(
            f"cannot read {text!r} as a time: use an ISO date or datetime in UTC "
            f"(2023-04-01, 2023-04-01T12:30, 2023-04-01T12:30:00Z) or epoch seconds ({exc})"
        ) from None
    if ts is pd.NaT:
        raise SignalsError(f"cannot read {text!r} as a time: empty or NaT")
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return int(ts.timestamp())
