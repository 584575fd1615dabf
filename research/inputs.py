"""Resolve what research commands are asked to run on: settings, candles, strategy, parameters."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from signals.config import Settings, load_settings
from signals.costs import CostModel, costs_from_settings, load_costs
from signals.data.load import load_candles
from signals.data.timeparse import parse_when
from signals.errors import ConfigError, ParamsError, SignalsError
from signals.strategy_paths import get_strategy
from signals.timeframes import timeframe_seconds
from signals.warmup import from_since
from strategies import Strategy


@dataclass(frozen=True)
class RunInputs:
    """Candles (with warm-up history before `since`), strategy and validated parameters."""

    strategy: Strategy
    params: Any
    candles: pd.DataFrame
    symbol: str
    timeframe: str
    db: Path
    since: pd.Timestamp | None

    @property
    def period(self) -> pd.DataFrame:
        """The candles from ``--from`` on (all of them without it), the warm-up left out."""
        return from_since(self.candles, self.since)


def parse_assignments(items: list[str] | None) -> dict[str, str]:
    """Parse ``k=v`` strings (from ``--set``) into a dict, with a clear error on bad items."""
    values: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ParamsError(f"--set expects name=value, got {item!r}")
        values[key.strip()] = value.strip()
    return values


def read_params_file(path: Path, strategy: Strategy) -> dict[str, Any]:
    """Read the ``params`` of a frozen file (verified) or of any JSON with a ``params`` object."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SignalsError(f"{path}: parameter file not found") from None
    except json.JSONDecodeError as exc:
        raise SignalsError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("params"), dict):
        raise SignalsError(f"{path}: expected an object with a 'params' object")
    if "schema_version" in doc:  # a frozen file: verify it against the code
        from signals.frozen import load_frozen

        load_frozen(path)
    named = doc.get("strategy", strategy.name)
    if named != strategy.name:
        raise SignalsError(f"{path}: written for strategy {named!r}, not {strategy.name!r}")
    return dict(doc["params"])


def resolve_params(
    strategy: Strategy, params_file: Path | None, assignments: list[str] | None
) -> Any:
    """Return validated parameters: defaults, then the file's, then ``--set`` overrides."""
    values: dict[str, Any] = {}
    if params_file is not None:
        values.update(read_params_file(params_file, strategy))
    values.update(parse_assignments(assignments))
    return strategy.params(values)


def resolve_db(db: Path | None, settings: Settings) -> Path:
    """Return the candle database to read: `db`, else the config's ``data.candles_db``."""
    chosen = db or settings.data.candles_db
    if chosen is None:
        raise ConfigError(
            "no database given: pass --db PATH or set data.candles_db in signals.yaml"
        )
    return Path(chosen)


def prepare_run(
    *,
    strategy_name: str | Strategy,
    db: Path | None,
    timeframe: str,
    symbol: str | None = None,
    params_file: Path | None = None,
    assignments: list[str] | None = None,
    start: str | None = None,
    end: str | None = None,
    config: Path | None = None,
    warmup: int | None = None,
) -> RunInputs:
    """Load settings, strategy, parameters and candles (warm-up history included) for a run.

    With a start, `warmup` candles before it are loaded too (default: the parameters' lookback).
    """
    settings = load_settings(config)
    strategy = get_strategy(strategy_name)
    timeframe_seconds(timeframe)
    params = resolve_params(strategy, params_file, assignments)
    path = resolve_db(db, settings)
    symbol = symbol or settings.data.symbol
    since = pd.Timestamp(parse_when(start), unit="s", tz="UTC") if start else None
    warm_start = None
    if since is not None:
        candles_before = strategy.lookback(params, timeframe) if warmup is None else warmup
        warm_start = int(since.timestamp()) - candles_before * timeframe_seconds(timeframe)
    candles = load_candles(
        path, symbol=symbol, timeframe=timeframe, start=warm_start, end=end, settings=settings
    )
    return RunInputs(strategy, params, candles, symbol, timeframe, path, since)


def resolve_costs(
    config: Path | None,
    *,
    costs: str | None = None,
    fee_bps: float | None = None,
    slippage_bps: float | None = None,
) -> CostModel:
    """Return the cost model: ``--costs`` (preset or file) or the config's, then bps overrides."""
    if costs is not None:
        model = load_costs(costs)
    else:
        settings = load_settings(config)
        model = costs_from_settings(
            settings.costs, base_dir=Path(config).parent if config else None
        )
    return model.with_overrides(fee_bps=fee_bps, slippage_bps=slippage_bps)
