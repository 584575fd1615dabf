"""Trading cost models: fees per side, slippage per fill and funding of perpetual positions.

A `CostModel` is one frozen, validated object. It is built in code, from a preset name
(``bybit-spot``, ``bybit-perp``), from a YAML/JSON costs file (`load_costs`) or from the
``costs`` section of ``signals.yaml`` (`costs_from_settings`); unknown keys are errors that name
the key and suggest the closest valid one.

**Fees.** Every fill of the execution model is a market order (at the next open, or at the
close), so it pays the *taker* fee ``fee_bps`` per side, charged on top of the traded notional
(as vectorbt does). ``maker_fee_bps`` is part of the presets for completeness; no market fill
uses it.

**Slippage** is a fraction s of the fill price, per fill (a buy pays ``price x (1 + s)``, a sell
receives ``price x (1 - s)``). With b = ``slippage_bps`` x 1e-4 (a floor every model adds),
k = ``slippage_multiple`` and t the *decision* candle of the fill:

- ``fixed``:  s = b
- ``atr``:    s = b + k x ATR_n(t) / close_t, n = ``atr_period``
- ``range``:  s = b + k x (high_t - low_t) / close_t
- ``volume``: s = b + ``impact_bps`` x 1e-4 x (N / (volume_t x close_t)) ^ ``impact_exponent``

ATR_n is Wilder's average of the true range TR_t = max(high_t, close_{t-1}) - min(low_t,
close_{t-1}) (TR_0 = high_0 - low_0): the mean of the true ranges so far for the first n candles,
then ATR_t = ATR_{t-1} + (TR_t - ATR_{t-1}) / n. In the volume model N is the order notional,
approximated by the initial cash x the position size (all-in: the initial cash); the real order
value drifts with equity, which this model ignores. volume_t x close_t is the candle's volume in
quote currency. s is capped at `MAX_SLIPPAGE` (a zero-volume candle would make it infinite) and
an unknown (NaN) variable part counts as zero.

**No lookahead in costs.** `CostModel.slippage_fraction` returns one value per candle row, and
the simulation uses the row of the *fill* candle. For ``fill="next_open"`` a decision at candle
t fills on candle t + 1, so row t + 1 holds the value computed from candle t (the array is
shifted by one inside the model; row 0 is never a next-open fill and keeps its own value). For
``fill="close"`` the decision and fill candle are the same row. Stop-loss/take-profit fills use
the same row (for ``next_open`` the candle before the stop).

**Funding** (perpetuals): at every funding timestamp T, either every 8 h at 00:00, 08:00 and
16:00 UTC at ``funding_rate`` per interval, or the (timestamp, rate) rows of ``funding_file``,
the account pays F_T = position_value x rate_T, where position_value is the *signed* value of
the position (negative for a short) at the close of the last candle that closed at or before T.
Longs pay positive rates and shorts receive them (the reverse for negative rates). vectorbt has
no funding, so `apply_funding` adds the cash flows to the equity curve after the simulation:
they do not compound into position sizes (later orders are sized on the unfunded equity) and
per-trade figures (pnl, win rate, expectancy) exclude them; equity-based metrics include them.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from signals.errors import ConfigError, closest, validation_line

BPS = 1e-4
ATR_WARMUP_PER_PERIOD = 40  # Wilder's ATR forgets its start after ~37 x period candles
MAX_SLIPPAGE = 0.1
DEFAULT_NOTIONAL = 10_000.0
FUNDING_INTERVAL = pd.Timedelta(hours=8)

SlippageModel = Literal["fixed", "atr", "range", "volume"]
Fill = Literal["next_open", "close"]

PRESETS: dict[str, dict[str, Any]] = {
    # Bybit spot, non-VIP: 0.1% maker and taker.
    "bybit-spot": {"fee_bps": 10.0, "maker_fee_bps": 10.0, "slippage_bps": 1.0},
    # Bybit USDT perpetual, non-VIP: 0.02% maker, 0.055% taker; funding at the 0.01% per 8 h
    # baseline (the rate when the premium index is zero).
    "bybit-perp": {
        "fee_bps": 5.5,
        "maker_fee_bps": 2.0,
        "slippage_bps": 1.0,
        "funding_rate": 0.0001,
    },
}
ALIASES = {"taker_fee_bps": "fee_bps", "taker_bps": "fee_bps", "maker_bps": "maker_fee_bps"}


class CostModel(BaseModel):
    """Fees (taker per side), a slippage model per fill, and optional perpetual funding."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fee_bps: float = Field(default=5.5, ge=0, description="taker fee per side (market orders)")
    maker_fee_bps: float | None = Field(default=None, ge=0, description="unused by market fills")
    slippage_model: SlippageModel = "fixed"
    slippage_bps: float = Field(default=1.0, ge=0, description="fixed slippage, floor of all")
    slippage_multiple: float = Field(default=0.1, ge=0, description="k of the atr/range models")
    atr_period: int = Field(default=14, ge=1)
    impact_bps: float = Field(default=10.0, ge=0, description="volume model: impact at 100%")
    impact_exponent: float = Field(default=0.5, gt=0)
    funding_rate: float | None = Field(default=None, description="per 8 h interval, 0.0001=0.01%")
    funding_file: Path | None = Field(default=None, description="CSV of timestamp,rate")

    @model_validator(mode="after")
    def _one_funding_source(self) -> CostModel:
        if self.funding_rate is not None and self.funding_file is not None:
            raise ValueError("give funding_rate or funding_file, not both")
        return self

    @property
    def has_funding(self) -> bool:
        """Whether this model charges funding (a rate or a rate file is set)."""
        return self.funding_rate is not None or self.funding_file is not None

    def fee_fraction(self) -> float:
        """Return the (taker) fee charged per side as a fraction of notional."""
        return self.fee_bps * BPS

    def slippage_fraction(
        self, candles: pd.DataFrame, *, fill: Fill = "next_open", notional: float | None = None
    ) -> np.ndarray:
        """Return the slippage of a fill on each candle row (fraction of price), no lookahead."""
        base = self.slippage_bps * BPS
        if self.slippage_model == "fixed" or len(candles) == 0:
            return np.full(len(candles), base)
        variable = self._variable_slippage(candles, notional or DEFAULT_NOTIONAL)
        with np.errstate(invalid="ignore"):
            frac = np.clip(base + np.nan_to_num(variable, nan=0.0), 0.0, MAX_SLIPPAGE)
        if fill == "next_open":
            frac = np.concatenate([frac[:1], frac[:-1]])
        return frac

    def slippage_warmup(self) -> int:
        """Return how many candles before a fill its slippage reads (at least the decision's)."""
        if self.slippage_model == "atr":
            return ATR_WARMUP_PER_PERIOD * self.atr_period + 1
        return 2

    def warm_slippage(
        self,
        candles: pd.DataFrame,
        start: int,
        end: int | None = None,
        *,
        fill: Fill = "next_open",
        notional: float | None = None,
    ) -> np.ndarray:
        """Return the slippage of rows ``[start, end)`` as if history had run before `start`.

        The candles before `start` (up to `slippage_warmup` of them) feed the variable part, so
        a period cut out of a longer history pays what a live bot pays on its first fills.
        """
        end = len(candles) if end is None else end
        low = max(0, start - self.slippage_warmup())
        frac = self.slippage_fraction(candles.iloc[low:end], fill=fill, notional=notional)
        return frac[start - low :]

    def _variable_slippage(self, candles: pd.DataFrame, notional: float) -> np.ndarray:
        high, low, close, volume = (
            candles[name].to_numpy(dtype="float64") for name in ("high", "low", "close", "volume")
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.slippage_model == "atr":
                atr = average_true_range(high, low, close, self.atr_period)
                return self.slippage_multiple * atr / close
            if self.slippage_model == "range":
                return self.slippage_multiple * (high - low) / close
            participation = notional / (volume * close)
            return self.impact_bps * BPS * participation**self.impact_exponent

    def with_total_bps(self, total_bps: float) -> CostModel:
        """Return a copy with flat fee + fixed slippage adding up to `total_bps` (same split).

        Variable slippage models become ``fixed``; funding is kept. Used by the cost
        break-even search, which varies fee + slippage only.
        """
        current = self.fee_bps + self.slippage_bps
        share = self.fee_bps / current if current > 0 else 1.0
        return self.model_copy(
            update={
                "fee_bps": total_bps * share,
                "slippage_bps": total_bps * (1.0 - share),
                "slippage_model": "fixed",
            }
        )

    def with_overrides(
        self, fee_bps: float | None = None, slippage_bps: float | None = None
    ) -> CostModel:
        """Return a copy with the taker fee and/or a *fixed* slippage replaced (CLI overrides)."""
        update: dict[str, Any] = {}
        if fee_bps is not None:
            update["fee_bps"] = fee_bps
        if slippage_bps is not None:
            update.update(slippage_bps=slippage_bps, slippage_model="fixed")
        return CostModel.model_validate({**self.model_dump(), **update}) if update else self

    def funding_rates(self, start: pd.Timestamp, end: pd.Timestamp) -> pd.Series | None:
        """Return the funding rate at each funding timestamp in [start, end], or None."""
        if self.funding_rate is not None:
            stamps = pd.date_range(start.ceil(FUNDING_INTERVAL), end, freq=FUNDING_INTERVAL)
            return pd.Series(self.funding_rate, index=stamps, name="rate")
        if self.funding_file is not None:
            rates = read_funding_csv(self.funding_file)
            return rates[(rates.index >= start) & (rates.index <= end)]
        return None

    def describe(self) -> str:
        """Return a one-line human description, e.g. for a report title."""
        parts = [f"fee {self.fee_bps:g} bps"]
        if self.maker_fee_bps is not None:
            parts[0] += f" (maker {self.maker_fee_bps:g})"
        slip = f"slippage {self.slippage_bps:g} bps"
        if self.slippage_model == "atr":
            slip += f" + {self.slippage_multiple:g} x ATR({self.atr_period})/price"
        elif self.slippage_model == "range":
            slip += f" + {self.slippage_multiple:g} x range/price"
        elif self.slippage_model == "volume":
            slip += f" + {self.impact_bps:g} bps x participation^{self.impact_exponent:g}"
        parts.append(slip)
        if self.funding_rate is not None:
            parts.append(f"funding {self.funding_rate:.4%}/8h")
        elif self.funding_file is not None:
            parts.append(f"funding from {self.funding_file}")
        return ", ".join(parts)


def average_true_range(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int
) -> np.ndarray:
    """Return Wilder's ATR(period) on every candle (mean of the true ranges while warming up)."""
    prev_close = np.concatenate([[np.nan], close[:-1]])
    true_range = np.fmax(high, prev_close) - np.fmin(low, prev_close)
    out = np.empty(len(true_range))
    head = min(period, len(true_range))
    out[:head] = np.cumsum(true_range[:head]) / np.arange(1, head + 1)
    if len(true_range) > period:
        seeded = true_range[period - 1 :].copy()
        seeded[0] = out[period - 1]
        wilder = pd.Series(seeded).ewm(alpha=1.0 / period, adjust=False).mean()
        out[period - 1 :] = wilder.to_numpy()
    return out


def apply_funding(
    equity: np.ndarray | pd.Series,
    position_value: np.ndarray | pd.Series,
    index: pd.DatetimeIndex,
    funding: pd.Series,
) -> tuple[np.ndarray | pd.Series, np.ndarray | pd.Series]:
    """Charge funding to an equity curve; return (adjusted equity, funding paid per row).

    `index` holds the times at which `equity` and the signed `position_value` (rows, or rows x
    columns) are observed: candle *close* times. The funding of timestamp T is charged on the
    last row observed at or before T; funding after the last row is not charged. Paid amounts
    are positive, received ones negative; the adjusted equity is equity - cumulative paid.
    """
    values = np.asarray(equity, dtype="float64")
    positions = np.asarray(position_value, dtype="float64").reshape(values.shape)
    stamps = pd.DatetimeIndex(funding.index)
    rows = index.searchsorted(stamps, side="right") - 1
    keep = (rows >= 0) & (stamps <= index[-1]) if len(index) else np.zeros(len(rows), bool)
    rows, rates = rows[keep], funding.to_numpy(dtype="float64")[keep]
    paid = np.zeros_like(values)
    rate_shape = (-1,) + (1,) * (values.ndim - 1)
    np.add.at(paid, rows, positions[rows] * rates.reshape(rate_shape))
    adjusted = values - np.cumsum(paid, axis=0)
    if isinstance(equity, pd.Series):
        adjusted_series = pd.Series(adjusted, index=equity.index, name=equity.name)
        return adjusted_series, pd.Series(paid, index=equity.index, name="funding_paid")
    return adjusted, paid


def read_funding_csv(path: str | Path) -> pd.Series:
    """Read a funding-rate CSV with columns ``timestamp,rate`` into a UTC-indexed Series.

    Timestamps are epoch seconds (milliseconds when above 1e11, as Bybit's API gives them) or
    ISO-8601 strings; rates are fractions per funding interval (0.0001 = 0.01%).
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: funding-rate file not found")
    return _read_funding_cached(str(path), path.stat().st_mtime_ns).copy()


@functools.lru_cache(maxsize=8)
def _read_funding_cached(path: str, _mtime_ns: int) -> pd.Series:
    frame = pd.read_csv(path)
    missing = [c for c in ("timestamp", "rate") if c not in frame.columns]
    if missing:
        raise ConfigError(f"{path}: funding file needs columns timestamp,rate; missing {missing}")
    stamps = frame["timestamp"]
    if pd.api.types.is_numeric_dtype(stamps):
        unit: Literal["ms", "s"] = "ms" if len(stamps) and stamps.abs().max() > 1e11 else "s"
        index = pd.to_datetime(stamps, unit=unit, utc=True)
    else:
        index = pd.to_datetime(stamps, utc=True)
    rates = pd.Series(frame["rate"].to_numpy(dtype="float64"), index=pd.DatetimeIndex(index))
    return rates.rename("rate").sort_index()


def load_costs(spec: str | Path) -> CostModel:
    """Return the cost model named by a preset name, else read from a YAML/JSON costs file."""
    name = str(spec)
    if name in PRESETS:
        return CostModel(**PRESETS[name])
    path = Path(spec)
    if not path.is_file():
        close = closest(name, PRESETS)
        hint = f"; did you mean {close!r}?" if close else ""
        raise ConfigError(
            f"{name}: neither a cost preset ({', '.join(PRESETS)}) nor a costs file{hint}"
        )
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML/JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a costs file is a mapping of cost settings")
    return parse_costs(raw, origin=str(path), base_dir=path.parent)


def parse_costs(
    raw: dict[str, Any], *, origin: str = "<costs>", base_dir: Path | None = None
) -> CostModel:
    """Validate a mapping (optional ``preset`` + `CostModel` fields) into a `CostModel`.

    The preset (a name or a costs file) gives the starting values; the other keys override it.
    A relative ``funding_file`` is resolved against `base_dir` (the costs file's folder).
    """
    fields = {ALIASES.get(key, key): value for key, value in raw.items()}
    preset = fields.pop("preset", None)
    base = load_costs(preset) if preset is not None else CostModel()
    if fields.get("funding_file") is not None and base_dir is not None:
        fields["funding_file"] = base_dir / Path(fields["funding_file"])
    # One funding source wins: the one written here replaces the preset's.
    if fields.get("funding_file") is not None:
        base = base.model_copy(update={"funding_rate": None})
    if fields.get("funding_rate") is not None:
        base = base.model_copy(update={"funding_file": None})
    try:
        return CostModel.model_validate({**base.model_dump(), **fields})
    except ValidationError as exc:
        valid = ["preset", *CostModel.model_fields]
        lines = [validation_line(err, valid, whole="costs", listed="valid") for err in exc.errors()]
        raise ConfigError(f"{origin}: invalid costs\n  " + "\n  ".join(lines)) from None


def costs_from_settings(settings: Any, *, base_dir: Path | None = None) -> CostModel:
    """Return the cost model of a config's ``costs`` section (`signals.config.CostSettings`).

    Only the keys written in the config override the preset (or the `CostModel` defaults).
    """
    nullable = {"preset", "maker_fee_bps", "funding_rate", "funding_file"}
    given = {
        key: value
        for key, value in settings.model_dump(include=settings.model_fields_set).items()
        if value is not None or key in nullable
    }
    return parse_costs(given, origin="config costs", base_dir=base_dir)
