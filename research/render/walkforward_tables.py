"""The walk-forward report's tables, formatted for people (research/render/format.py).

Windows shorter than `SHORT_DAYS` (a quarter) are never annualised here: their returns read as
the total and the average daily return, and their (annualised) Sharpe ratios carry a dagger.
"""

from __future__ import annotations

import html
import math
from collections import Counter
from typing import Any

import pandas as pd

from research.optimise.efficiency import Efficiency, daily_rate
from research.optimise.outputs import OUTCOMES, trial_outcomes
from research.optimise.walkforward import WalkForwardRun, window_days
from research.render import format as fmt
from research.render.frames import trades_frame
from research.render.page import pairs_table
from research.render.page import table as html_table
from signals.config import GateSettings
from signals.frozen import FrozenParams
from signals.timeframes import timeframe_seconds

SHORT_DAYS = 90.0
DAGGER = "†"
SHORT_NOTE = (
    f"{DAGGER} annualised from a window shorter than {SHORT_DAYS:.0f} days: read with care. "
    "Returns of such windows are shown as totals and average daily returns, never annualised."
)


def _sharpe(value: float, days: float) -> str:
    return fmt.ratio(value) + (DAGGER if days < SHORT_DAYS else "")


def gate_checks(frozen: FrozenParams, gate: GateSettings) -> list[tuple[str, str, str, bool]]:
    """Return the promotion gate's checks: (check, value, threshold, passed)."""
    m = frozen.metrics or {}
    drawdown = m.get("max_drawdown")
    rows = [
        ("Out-of-sample Sharpe", m.get("sharpe"), gate.min_sharpe, "min", fmt.ratio),
        ("Deflated Sharpe ratio", m.get("dsr"), gate.min_dsr, "min", fmt.ratio),
        ("Probability of overfitting (PBO)", m.get("pbo"), gate.max_pbo, "max", fmt.ratio),
        ("Out-of-sample trades", m.get("trades"), float(gate.min_trades), "min", fmt.count),
        ("Max drawdown (depth)", None if drawdown is None else abs(drawdown), gate.max_drawdown,
         "max", lambda v: fmt.percent(v, 1)),
    ]  # fmt: skip
    checks = []
    for name, value, limit, kind, shown in rows:
        ok = value is not None and math.isfinite(value)
        ok = ok and (value >= limit if kind == "min" else value <= limit)  # type: ignore[operator]  # value is a finite float here
        sign = "≥" if kind == "min" else "≤"
        checks.append((name, shown(value), f"{sign} {shown(limit)}", bool(ok)))
    return checks


def gate_block(frozen: FrozenParams, gate: GateSettings, verdict: str) -> str:
    """Return the verdict box: does the frozen file pass the promotion gate, and why (not)."""
    checks = gate_checks(frozen, gate)
    failed = [c for c in checks if not c[3]]
    if failed:
        names = ", ".join(c[0] for c in failed)
        head = (f"Promotion gate: FAILS {len(failed)} of {len(checks)} checks ({names}): "
                "signals promote would refuse this file.")  # fmt: skip
    else:
        head = f"Promotion gate: PASSES all {len(checks)} checks: signals promote would take it."
    rows = "".join(
        f"<tr class='{'pass' if ok else 'fail'}'><td>{html.escape(name)}</td>"
        f"<td>{html.escape(value)}</td><td>{html.escape(limit)}</td>"
        f"<td>{'pass' if ok else 'FAIL'}</td></tr>"
        for name, value, limit, ok in checks
    )
    state = "fail" if failed else "pass"
    return (
        f"<div class='gate {state}' id='gate-verdict'><b>{html.escape(head)}</b>"
        f"<table><tr><th>check</th><th>value</th><th>threshold</th><th></th></tr>{rows}</table>"
        f"<p>{html.escape(verdict)}</p></div>"
    )


def efficiency_text(wfe: Efficiency) -> str:
    """Return the walk-forward efficiency as a sentence for people."""
    rates = (f"test windows {fmt.percent(wfe.test_daily, 3, signed=True)} a day against train "
             f"windows {fmt.percent(wfe.train_daily, 3, signed=True)} a day (average daily "
             "returns, means over folds, not annualised)")  # fmt: skip
    if wfe.value is None:
        return f"Walk-forward efficiency: undefined, {wfe.why}; {rates}."
    return f"Walk-forward efficiency: {fmt.ratio(wfe.value)}, {rates}."


_CARDS = (
    ("Returns", ("final_equity", "total_return", "annual_return", "buy_hold_return",
                 "max_drawdown", "max_drawdown_days")),
    ("Risk-adjusted", ("sharpe", "sortino", "calmar", "sqn", "dsr", "pbo")),
    ("Trades", ("trades", "win_rate", "profit_factor", "expectancy", "avg_holding_hours",
                "exposure", "fees_paid")),
)  # fmt: skip
_ANNUALISED = frozenset({"annual_return", "sharpe", "sortino", "calmar"})


def metric_cards(run: WalkForwardRun, metrics: dict[str, Any], unit: str) -> str:
    """Return the out-of-sample metrics as cards; annual figures of a short span are marked."""
    equity = run.oos_equity
    days = len(equity) * timeframe_seconds(run.timeframe) / 86400.0
    values = {**metrics, "final_equity": float(equity.iloc[-1])}
    labels = {"dsr": "Deflated Sharpe ratio", "pbo": "Probability of overfitting"}

    def shown(key: str) -> str:
        text = fmt.metric(key, values.get(key), unit)
        if key == "annual_return" and days < SHORT_DAYS:
            return f"n/a ({fmt.days(days)} span: not annualised)"
        return text + (DAGGER if key in _ANNUALISED and days < SHORT_DAYS else "")

    return "".join(
        pairs_table([(labels.get(k, fmt.label(k)), shown(k)) for k in keys if k in values],
                    heading)
        for heading, keys in _CARDS
    )  # fmt: skip


def fold_rows(run: WalkForwardRun) -> pd.DataFrame:
    """Return one formatted row per fold: windows, best score, train and test results."""
    index, tf = run.candles.index, run.timeframe
    rows = []
    for r in run.folds:
        f = r.fold
        train_days, test_days = window_days(r.train, tf), window_days(r.test, tf)
        tr, te = r.train.metrics, r.test.metrics
        rows.append({
            "fold": f.index,
            "train window": f"{index[f.train_start]:%Y-%m-%d} to {index[f.train_end - 1]:%m-%d}"
                            f" ({fmt.days(train_days)})",
            "test window": f"{index[f.test_start]:%Y-%m-%d} to {index[f.test_end - 1]:%m-%d}"
                           f" ({fmt.days(test_days)})",
            **({} if run.config.objective == "sharpe"
               else {f"best train {run.config.objective}": fmt.ratio(r.best_value)}),
            "train return": fmt.percent(tr["total_return"], signed=True),
            "train per day": fmt.percent(daily_rate(tr["total_return"], train_days), 3,
                                         signed=True),
            "train Sharpe": _sharpe(tr["sharpe"], train_days),
            "test return": fmt.percent(te["total_return"], signed=True),
            "test per day": fmt.percent(daily_rate(te["total_return"], test_days), 3,
                                        signed=True),
            "test Sharpe": _sharpe(te["sharpe"], test_days),
            "test max drawdown": fmt.percent(te["max_drawdown"], 1, signed=True),
            "test trades": fmt.count(te["trades"]),
        })  # fmt: skip
    return pd.DataFrame(rows)


def trial_rows(run: WalkForwardRun) -> pd.DataFrame:
    """Return per fold how many trials were valid and how many were rejected, by reason."""
    rows = []
    for r in run.folds:
        outcome = Counter(trial_outcomes(r.trials, run.config.min_trades))
        messages = Counter(m for m in r.trials.get("rejected", pd.Series()).dropna())
        example = messages.most_common(1)[0][0] if messages else ""
        row: dict[str, Any] = {"fold": r.fold.index, "trials": fmt.count(len(r.trials))}
        row.update({name: fmt.count(outcome.get(name, 0)) for name in OUTCOMES})
        row["valid share"] = fmt.percent(outcome.get("valid", 0) / max(1, len(r.trials)), 0)
        row["most frequent invalid-parameter message"] = example
        rows.append(row)
    return pd.DataFrame(rows)


def stability_rows(run: WalkForwardRun, table: pd.DataFrame) -> pd.DataFrame:
    """Return the parameter stability table (research.optimise.walkforward) formatted."""
    from strategies.params import ranges

    spaces = ranges(run.strategy.Params)
    rows = []
    for name, stats in table.iterrows():
        space = spaces[str(name)]
        row = {"parameter": name, "declared range": f"{space.low:g} to {space.high:g}"}
        row.update({c.replace("fold_", "fold "): f"{stats[c]:g}" for c in table.columns
                    if c.startswith("fold_")})  # fmt: skip
        row.update(mean=f"{stats['mean']:.4g}", std=f"{stats['std']:.3g}",
                   cv=fmt.percent(stats["cv"], 0))  # fmt: skip
        rows.append(row)
    return pd.DataFrame(rows)


def frozen_tables(frozen: FrozenParams, run: WalkForwardRun) -> str:
    """Return the frozen file as two tables: its parameters, and where they come from."""
    from strategies.params import ranges

    spaces = ranges(run.strategy.Params)
    params = pd.DataFrame([
        {"parameter": k, "value": f"{v:g}" if isinstance(v, float) else str(v),
         "declared range": (f"{spaces[k].low:g} to {spaces[k].high:g}" if k in spaces
                            else "fixed (not searched)")}
        for k, v in frozen.params.items()
    ])  # fmt: skip
    data, wf = frozen.data, frozen.walkforward
    provenance = [
        ("Strategy", f"{frozen.strategy} {frozen.timeframe} {frozen.symbol}, {frozen.direction}"),
        ("params_id", frozen.params_id),
        ("Strategy hash", frozen.strategy_hash[:16]),
        ("Costs", run.config.costs.describe()),
        ("Data", f"{_when(data.first_candle)} to {_when(data.last_candle)} UTC, "
                 f"{fmt.count(data.rows)} candles" if data else "n/a"),
        ("Walk-forward", f"{wf.scheme}, {wf.folds} folds, {wf.trials} trials per fold, "
                         f"objective {wf.objective}, seed {wf.seed}" if wf else "n/a"),
        ("Created", f"{_when(frozen.created_at)} UTC"),
        ("Code version", frozen.code_version),
        ("Checksum", (frozen.checksum or "none")[:16]),
    ]  # fmt: skip
    return (
        "<div class='cards'>"
        + html_table(params)
        + pairs_table([(k, str(v)) for k, v in provenance], "Provenance")
        + "</div>"
    )


def _when(stamp: str | None) -> str:
    return "n/a" if not stamp else f"{pd.Timestamp(stamp).tz_convert('UTC'):%Y-%m-%d %H:%M}"


def trade_rows(run: WalkForwardRun, unit: str, limit: int = 500) -> tuple[pd.DataFrame, int]:
    """Return the out-of-sample trades formatted (the last `limit`) and how many there are."""
    trades = pd.concat([f.test.trades.assign(fold=f.fold.index) for f in run.folds])
    shown = trades.tail(limit)
    rows = trades_frame(shown, unit)
    rows.insert(0, "fold", shown["fold"].to_numpy())
    return rows, len(trades)
