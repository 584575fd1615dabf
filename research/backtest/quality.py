"""Signal quality: was each signal right, and does a higher confidence mean right more often?

For a signal decided on candle t, the forward return over h candles is

    r_h = close_{t+h} / close_t - 1,   signed: +r_h for BUY, -r_h for SELL,

so a positive value means the signal pointed the right way. It is NaN when t + h runs past the
last candle. Per confidence bucket (the distinct confidence values when there are at most
`MAX_DISTINCT` of them, else equal-width bins over [0, 1]) the report gives the number of
signals, the hit rate (share of signals with a positive signed forward return, among those whose
horizon is inside the data) and the mean signed forward return, per horizon; a last row ``all``
covers every signal.

**Lookahead by construction.** Forward returns read candles after the signal: they are an
evaluation of decisions already made, never an input to one. Nothing in `strategies/`, the
execution model or the live runner imports this module.

Forward returns are measured from the signal candle's close, not from the next-open fill, and
carry no costs: they measure the signal, not the trade.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from strategies import SignalFrame

if TYPE_CHECKING:
    import plotly.graph_objects as go

MAX_DISTINCT = 10
DEFAULT_BINS = 5
ALL = "all"


@dataclass(frozen=True)
class QualityReport:
    """Forward returns of every signal and their summary per confidence bucket."""

    per_signal: pd.DataFrame
    by_confidence: pd.DataFrame
    horizons: tuple[int, ...]

    def to_records(self) -> list[dict[str, Any]]:
        """Return the per-bucket table as JSON-ready records (NaN as None)."""
        table = self.by_confidence.reset_index()
        return [
            {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
            for row in table.to_dict("records")
        ]


def forward_returns(close: pd.Series, horizons: Sequence[int]) -> pd.DataFrame:
    """Return close_{t+h} / close_t - 1 for every candle and horizon (NaN past the end)."""
    values = close.to_numpy(dtype="float64")
    out = {}
    for h in horizons:
        if h < 1:
            raise ValueError(f"horizons are positive candle counts, not {h}")
        ahead = np.full(len(values), np.nan)
        ahead[: max(len(values) - h, 0)] = values[h:]
        out[f"fwd_{h}"] = ahead / values - 1.0
    return pd.DataFrame(out, index=close.index)


def signal_quality(
    candles: pd.DataFrame,
    frame: SignalFrame,
    horizons: Sequence[int] = (1, 5, 15),
    *,
    bins: int | None = None,
) -> QualityReport:
    """Return every signal's signed forward returns and hit rate / mean per confidence bucket.

    `bins` forces equal-width confidence bins over [0, 1]; by default the distinct confidence
    values are the buckets when there are at most `MAX_DISTINCT` of them.
    """
    horizons = tuple(int(h) for h in horizons)
    rows = frame.signal_rows()[["signal", "confidence"]]
    forward = forward_returns(candles["close"], horizons).loc[rows.index]
    side = np.where(rows["signal"].to_numpy() == "BUY", 1.0, -1.0)
    per_signal = rows.assign(
        bucket=confidence_buckets(rows["confidence"], bins),
        **{col: forward[col].to_numpy() * side for col in forward.columns},
    )
    return QualityReport(per_signal, _summarise(per_signal, horizons), horizons)


def confidence_buckets(confidence: pd.Series, bins: int | None = None) -> pd.Series:
    """Label each confidence with its bucket: its own value, or an equal-width bin of [0, 1]."""
    values = confidence.astype("float64").round(4)
    if bins is None and values.nunique() <= MAX_DISTINCT:
        return values.map(lambda v: f"{v:.4g}").astype(object)
    edges = np.linspace(0.0, 1.0, (bins or DEFAULT_BINS) + 1)
    labels = [f"({lo:.2f}, {hi:.2f}]" for lo, hi in itertools.pairwise(edges)]
    labels[0] = "[" + labels[0][1:]
    cut = pd.cut(values.clip(0.0, 1.0), edges, labels=labels, include_lowest=True)
    return cut.astype(object)


def _summarise(per_signal: pd.DataFrame, horizons: tuple[int, ...]) -> pd.DataFrame:
    order = (
        per_signal.groupby("bucket", sort=False)["confidence"].min().sort_values().index.tolist()
    )
    groups = [(label, per_signal[per_signal["bucket"] == label]) for label in order]
    groups.append((ALL, per_signal))
    table = pd.DataFrame([_bucket_row(group, horizons) for _, group in groups])
    table.index = pd.Index([label for label, _ in groups], name="confidence")
    return table


def _bucket_row(group: pd.DataFrame, horizons: tuple[int, ...]) -> dict[str, float]:
    row: dict[str, float] = {"signals": len(group)}
    for h in horizons:
        fwd = group[f"fwd_{h}"].to_numpy()
        known = fwd[~np.isnan(fwd)]
        row[f"hit_rate_{h}"] = float((known > 0).mean()) if len(known) else float("nan")
        row[f"mean_return_{h}"] = float(known.mean()) if len(known) else float("nan")
    return row


def quality_figure(report: QualityReport) -> go.Figure:
    """Return a plotly figure: hit rate and mean forward return per confidence bucket."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    table = report.by_confidence.drop(index=ALL, errors="ignore")
    labels = [str(label) for label in table.index]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("hit rate", "mean signed forward return"))
    for h in report.horizons:
        name = f"{h} candle{'s' if h > 1 else ''}"
        fig.add_trace(
            go.Bar(x=labels, y=table[f"hit_rate_{h}"], name=name, legendgroup=name), row=1, col=1
        )
        fig.add_trace(
            go.Bar(
                x=labels,
                y=table[f"mean_return_{h}"],
                name=name,
                legendgroup=name,
                showlegend=False,
            ),
            row=1,
            col=2,
        )
    fig.add_hline(y=0.5, line_dash="dot", row=1, col=1)
    fig.update_yaxes(tickformat=".0%", row=1, col=1)
    fig.update_yaxes(tickformat=".2%", row=1, col=2)
    fig.update_xaxes(title_text="confidence")
    fig.update_layout(barmode="group", title="Signal quality by confidence")
    return fig
