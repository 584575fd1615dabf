"""Typed settings loaded from one YAML file (``--config`` or ``./signals.yaml``).

Every setting has a default, so the reference schema of ARCHITECTURE.md needs no file at all.
Unknown keys are errors that name the key and suggest the closest valid one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from signals.errors import ConfigError, validation_line
from signals.timeframes import TIMEFRAMES

DEFAULT_CONFIG_NAME = "signals.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnMap(_Strict):
    """Column names of the candle table; ``None`` means the column does not exist."""

    symbol: str | None = "symbol"
    timeframe: str | None = "timeframe"
    timestamp: str = "timestamp"
    open: str = "open"
    high: str = "high"
    low: str = "low"
    close: str = "close"
    volume: str = "volume"
    buy_volume: str | None = "buy_volume"
    trades: str | None = "trades"
    closed: str | None = "closed"


class CandleSource(_Strict):
    """Where candles live and how the table is laid out."""

    table: str = "candles"
    columns: ColumnMap = ColumnMap()
    timestamp_unit: Literal["s", "ms"] = "s"
    symbol: str | None = Field(
        default=None, description="the one symbol of a table that has no symbol column"
    )
    timeframe: str | None = Field(
        default=None, description="the one timeframe of a table that has no timeframe column"
    )

    @field_validator("timeframe")
    @classmethod
    def _known_timeframe(cls, value: str | None) -> str | None:
        if value is not None and value not in TIMEFRAMES:
            raise ValueError(f"unknown timeframe {value!r}; valid: {', '.join(TIMEFRAMES)}")
        return value


class DataSettings(_Strict):
    """Databases read by default and the candle-table layout."""

    candles_db: Path | None = None
    analysis_db: Path | None = None
    symbol: str = "BTCUSDT"
    source: CandleSource = CandleSource()
    busy_timeout_ms: int = Field(default=5000, ge=0)
    settle_s: float = Field(
        default=2.0,
        ge=0,
        description="a table without a closed column: seconds a candle waits after the next "
        "one appears (and after its close) before it is final",
    )
    future_tolerance_s: float = Field(
        default=5.0,
        ge=0,
        description="a closed candle whose close time (open + timeframe) is later than the "
        "clock plus this many seconds is from the future: scan, data check and live refuse it",
    )


class CostSettings(_Strict):
    """Default trading costs (per side), used when a command is given none.

    ``preset`` names a cost preset (``bybit-spot``, ``bybit-perp``) or a costs file; the other
    keys written here override it. Their meaning and defaults are those of
    ``signals.costs.CostModel`` (None below means "not given here").
    """

    preset: str | None = None
    fee_bps: float = Field(default=5.5, ge=0, description="Bybit taker fee, 0.055%")
    maker_fee_bps: float | None = Field(default=None, ge=0)
    slippage_model: Literal["fixed", "atr", "range", "volume"] | None = None
    slippage_bps: float = Field(default=1.0, ge=0)
    slippage_multiple: float | None = Field(default=None, ge=0)
    atr_period: int | None = Field(default=None, ge=1)
    impact_bps: float | None = Field(default=None, ge=0)
    impact_exponent: float | None = Field(default=None, gt=0)
    funding_rate: float | None = None
    funding_file: Path | None = None


class LiveSettings(_Strict):
    """Live runner defaults (``signals live``; its options override these)."""

    socket: Path = Path("signals.sock")
    socket_group: str | None = Field(default=None, description="group of the 0660 socket")
    tcp: str | None = Field(default=None, description="HOST:PORT; 127.0.0.1 unless stated")
    token: str | None = Field(default=None, description="shared token; required off loopback")
    heartbeat_s: float = Field(default=5.0, gt=0)
    journal: Path | None = None
    durable_journal: bool = Field(default=False, description="fsync the journal per step")
    stale_after_s: float = Field(default=300.0, ge=0)
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    client_buffer_bytes: int = Field(default=1 << 20, ge=1024)
    watch: Literal["auto", "inotify", "poll"] = "auto"
    poll_interval_s: float = Field(default=0.05, gt=0)
    drain_s: float = Field(default=2.0, ge=0)
    stall_after_s: float | None = Field(
        default=None,
        gt=0,
        description="no new closed candle for this long is a stall (default: three timeframes "
        "plus 30 s, plus the settle)",
    )
    max_clients: int = Field(default=256, ge=1, description="connections beyond are refused")
    deciders: int = Field(
        default=0, ge=0, description="processes deciding a share of the streams (live.deciders)"
    )
    decider_timeout_s: float = Field(
        default=5.0, gt=0, description="a decider that has not answered a step by then is lost"
    )
    client_idle_line_s: float = Field(
        default=5.0, gt=0, description="a client's bytes without a newline for longer: closed"
    )


class GateSettings(_Strict):
    """Promotion gate: thresholds a frozen file's out-of-sample metrics must meet."""

    min_sharpe: float = Field(default=0.5, description="out-of-sample annualised Sharpe")
    min_dsr: float = Field(default=0.9, ge=0, le=1, description="deflated Sharpe ratio")
    max_pbo: float = Field(default=0.5, ge=0, le=1, description="probability of overfitting")
    min_trades: int = Field(default=20, ge=0, description="out-of-sample trades")
    max_drawdown: float = Field(default=0.35, ge=0, le=1, description="deepest drawdown (fraction)")


class Settings(_Strict):
    """All settings of one ``signals.yaml``."""

    data: DataSettings = DataSettings()
    costs: CostSettings = CostSettings()
    live: LiveSettings = LiveSettings()
    gate: GateSettings = GateSettings()
    strategy_paths: list[Path] = Field(
        default_factory=list, description="folders of the user's strategy modules"
    )


def load_settings(path: Path | str | None = None, *, cwd: Path | None = None) -> Settings:
    """Load settings from `path`, else ``./signals.yaml`` if present, else the defaults."""
    if path is None:
        candidate = (cwd or Path.cwd()) / DEFAULT_CONFIG_NAME
        if not candidate.exists():
            return Settings()
        path = candidate
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return parse_settings(raw, origin=str(path))


def parse_settings(raw: dict[str, Any], *, origin: str = "<config>") -> Settings:
    """Validate a mapping into `Settings`, with messages that name the key."""
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        lines = validation_messages(exc, Settings)
        raise ConfigError(f"{origin}: invalid configuration\n  " + "\n  ".join(lines)) from None


def validation_messages(exc: ValidationError, root: type[BaseModel]) -> list[str]:
    """Return one line per pydantic error: the dotted key, and "did you mean" for unknown keys."""
    return [
        validation_line(err, _valid_keys(root, [str(p) for p in err["loc"]][:-1]))
        for err in exc.errors()
    ]


def _valid_keys(root: type[BaseModel], parent: list[str]) -> list[str]:
    model: type[BaseModel] = root
    for part in parent:
        field = model.model_fields.get(part)
        candidates = [field.annotation, *get_args(field.annotation)] if field else []
        nested = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not nested:
            return []
        model = nested[0]
    return list(model.model_fields)
