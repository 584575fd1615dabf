"""Build a `RunnerConfig` from command-line options and the YAML config, and run it.

Precedence for runner settings: an option given on the command line, else the ``live`` /
``data`` section of the config, else the default. (Strategy parameters come only from the frozen
file; nothing here overrides them.)
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from live.logs import setup_logging
from live.runner import Runner, RunnerConfig
from signals.config import Settings, load_settings
from signals.errors import ConfigError
from signals.strategy_paths import apply_strategy_paths


def _pick(option: Any, setting: Any) -> Any:
    return setting if option is None else option


def build_config(settings: Settings, **options: Any) -> RunnerConfig:
    """Return the runner configuration of `options` (None = not given) over `settings`."""
    data, live = settings.data, settings.live
    db = _pick(options.get("db"), data.candles_db)
    if db is None:
        raise ConfigError("no candle database: pass --db or set data.candles_db in the config")
    given = options["params"]
    files = [given] if isinstance(given, str | Path) else list(given)
    if not files:
        raise ConfigError("no frozen parameter file: pass --params FILE (repeatable)")
    return RunnerConfig(
        params=tuple(Path(path) for path in files),
        db=Path(db),
        analysis_db=_pick(options.get("analysis_db"), data.analysis_db),
        source=data.source,
        busy_timeout_ms=data.busy_timeout_ms,
        socket=_pick(options.get("socket"), live.socket),
        socket_group=live.socket_group,
        tcp=_pick(options.get("tcp"), live.tcp),
        token=_pick(options.get("token"), live.token),
        journal=_pick(options.get("journal"), live.journal),
        durable_journal=live.durable_journal,
        heartbeat_s=_pick(options.get("heartbeat"), live.heartbeat_s),
        stale_after_s=_pick(options.get("stale_after"), live.stale_after_s),
        allow_hash_mismatch=bool(options.get("allow_hash_mismatch")),
        metrics_port=_pick(options.get("metrics_port"), live.metrics_port),
        client_buffer_bytes=live.client_buffer_bytes,
        watch=live.watch,
        poll_interval_s=live.poll_interval_s,
        drain_s=live.drain_s,
        settle_s=_pick(options.get("settle"), data.settle_s),
        future_tolerance_s=data.future_tolerance_s,
        stall_after_s=_pick(options.get("stall_after"), live.stall_after_s),
        max_clients=_pick(options.get("max_clients"), live.max_clients),
        client_idle_line_s=live.client_idle_line_s,
        deciders=_pick(options.get("deciders"), live.deciders),
        decider_timeout_s=live.decider_timeout_s,
    )


def run_from_options(**options: Any) -> int:
    """Load settings, build the runner (start-time errors raise `SignalsError`), run it."""
    setup_logging(logging.INFO)
    apply_strategy_paths(options.pop("strategy_path", None), options.get("config"))
    settings = load_settings(options.pop("config", None))
    config = build_config(settings, **options)
    if config.heartbeat_s <= 0:
        raise ConfigError("--heartbeat must be positive")
    if config.settle_s < 0:
        raise ConfigError("--settle must be zero or positive")
    if config.stall_after_s is not None and config.stall_after_s <= 0:
        raise ConfigError("--stall-after must be positive")
    runner = Runner(config)
    return asyncio.run(runner.run())
