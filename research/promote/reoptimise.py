"""Quarterly re-optimisation: run ``notebooks/reoptimise.ipynb`` through papermill, report, reload.

`run_reoptimise` executes the notebook with a `ReoptimiseJob`'s parameters into
``<out_root>/<quarter>/`` (the executed notebook, its HTML export, the walk-forward outputs with
``report.html`` and ``frozen.json``, and ``outcome.json``) and returns the outcome the notebook
recorded: promoted or not, the gate's failures, the new and the previous ``params_id``.

The quarter names the run; by default the data end where the quarter begins, so re-running a
past quarter reproduces it. The notebook runs in a kernel started with this interpreter
(``python3``: jupyter_client substitutes ``sys.executable``; a virtualenv's own kernelspecs come
before user ones), and records that interpreter in the outcome.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from signals.errors import SignalsError
from signals.frozen import FrozenParams, load_frozen
from signals.warmup import from_since

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "reoptimise.ipynb"
KERNEL = "python3"
_QUARTER = re.compile(r"^(\d{4})Q([1-4])$")


class ReoptimiseError(SignalsError):
    """The re-optimisation notebook failed, or left no outcome behind."""


@dataclass(frozen=True, kw_only=True)
class ReoptimiseJob:
    """The notebook's parameters (see the ``parameters`` cell of notebooks/reoptimise.py)."""

    strategy: str | None = None  # None: the strategy of `current`
    database: str | None = None  # None: data.candles_db of the config
    timeframe: str | None = None  # None: the timeframe of `current`
    symbol: str | None = None
    period_from: str | None = None
    period_to: str | None = None
    last_days: int | None = 180
    folds: int = 6
    trials: int = 100
    train_min_trades: int = 5
    seed: int = 42
    costs: str | None = None
    fee_bps: float | None = None
    slippage_bps: float | None = None
    gate: dict[str, float | None] = field(default_factory=dict)
    current: str | None = None
    promote_to: str | None = None
    recent_days: int = 14
    config: str | None = None
    progress: bool = False  # walk-forward progress lines, forwarded to this process's stderr

    def parameters(self, output_dir: Path) -> dict[str, Any]:
        """Return the papermill parameters (gate thresholds flattened to ``gate_<name>``)."""
        values = {k: v for k, v in asdict(self).items() if k != "gate"}
        values.update({f"gate_{k}": v for k, v in self.gate.items()})
        values["output_dir"] = str(output_dir)
        return values


def parse_quarter(text: str) -> str:
    """Return `text` as a quarter label ``YYYYQn`` (case-insensitive), or raise."""
    label = text.strip().upper()
    if not _QUARTER.match(label):
        raise SignalsError(f"quarter {text!r}: expected YEARQn, e.g. 2026Q4")
    return label


def current_quarter(now: datetime) -> str:
    """Return the quarter label of `now` (an aware datetime, read in UTC)."""
    utc = now.astimezone(UTC)
    return f"{utc.year}Q{(utc.month - 1) // 3 + 1}"


def quarter_start(quarter: str) -> datetime:
    """Return the first instant (UTC) of `quarter`."""
    match = _QUARTER.match(parse_quarter(quarter))
    assert match is not None  # parse_quarter raised otherwise
    year, q = int(match[1]), int(match[2])
    return datetime(year, 3 * (q - 1) + 1, 1, tzinfo=UTC)


def data_end(quarter: str) -> str:
    """Return the last candle open time a quarter's run may read: one second before it starts."""
    return str(int(quarter_start(quarter).timestamp()) - 1)


def resolve_job(job: ReoptimiseJob, quarter: str) -> ReoptimiseJob:
    """Fill a job's defaults for `quarter`: what to tune, where the data end, absolute paths.

    `current` defaults to `promote_to`; a missing strategy, timeframe or symbol is taken from
    that file; the period ends just before the quarter starts unless `period_to` says otherwise;
    `last_days` is dropped when `period_from` is given.
    """
    current = job.current or job.promote_to
    strategy, timeframe, symbol = job.strategy, job.timeframe, job.symbol
    if (strategy is None or timeframe is None) and current and Path(current).exists():
        live = load_frozen(current, allow_hash_mismatch=True)
        strategy, timeframe = strategy or live.strategy, timeframe or live.timeframe
        symbol = symbol or live.symbol
    if strategy is None or timeframe is None:
        raise SignalsError("give --strategy and --timeframe (or --current with a frozen file)")
    return replace(
        job, strategy=strategy, timeframe=timeframe, symbol=symbol,
        period_to=job.period_to or data_end(quarter),
        last_days=None if job.period_from else job.last_days,
        database=_absolute(job.database), current=_absolute(current),
        promote_to=_absolute(job.promote_to), config=_absolute(job.config),
    )  # fmt: skip


def _absolute(path: str | None) -> str | None:
    return None if path is None else str(Path(path).resolve())


def select_period(
    candles: pd.DataFrame, since: pd.Timestamp | None, last_days: int | None
) -> pd.DataFrame:
    """Return the candles from `since` on, then only the last `last_days` days of them."""
    chosen = from_since(candles, since)
    if last_days and len(chosen):
        chosen = chosen[chosen.index > chosen.index[-1] - pd.Timedelta(days=last_days)]
    return chosen


def write_outcome(
    path: Path | str,
    *,
    new: FrozenParams,
    current: FrozenParams | None,
    promoted: bool,
    failures: list[str],
    **extra: Any,
) -> dict[str, Any]:
    """Write what a run decided (promoted, gate failures, new and old params_id) as JSON."""
    outcome = {
        "promoted": promoted, "passed": not failures, "failures": list(failures),
        "new_params_id": new.params_id, "old_params_id": current.params_id if current else None,
        "strategy": new.strategy, "timeframe": new.timeframe, "python": sys.executable, **extra,
    }  # fmt: skip
    Path(path).write_text(json.dumps(outcome, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return outcome


def read_outcome(path: Path | str) -> dict[str, Any]:
    """Return the outcome a notebook run recorded; raise `ReoptimiseError` when there is none."""
    try:
        outcome = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReoptimiseError(f"{path}: the notebook recorded no outcome") from None
    if not isinstance(outcome, dict) or "promoted" not in outcome:
        raise ReoptimiseError(f"{path}: not an outcome file")
    return outcome


def export_html(notebook: Path) -> Path:
    """Write the HTML export of an executed notebook next to it and return its path."""
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nbformat.read(notebook, as_version=4))
    target = notebook.with_suffix(".html")
    target.write_text(body, encoding="utf-8")
    return target


def run_reoptimise(
    job: ReoptimiseJob, *, out_dir: Path, notebook: Path = NOTEBOOK, timeout_s: int = 6 * 3600
) -> dict[str, Any]:
    """Execute the notebook into `out_dir`, export it to HTML, and return its recorded outcome.

    Raises `ReoptimiseError` when a cell failed (the executed notebook and its HTML, showing the
    error, are still written) or when no outcome was recorded.
    """
    import papermill as pm

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "outcome.json").unlink(missing_ok=True)
    executed = out_dir / notebook.name
    error: Exception | None = None
    try:
        pm.execute_notebook(
            str(notebook), str(executed), parameters=job.parameters(out_dir.resolve()),
            kernel_name=KERNEL, cwd=os.getcwd(), progress_bar=False, execution_timeout=timeout_s,
            stderr_file=sys.stderr if job.progress else None,  # the kernel's stderr, as written
        )  # fmt: skip
    except pm.PapermillExecutionError as exc:
        error = exc
    if executed.exists():
        export_html(executed)
    if error is not None:
        raise ReoptimiseError(f"{executed}: a cell failed: {error.ename}: {error.evalue}")  # type: ignore[attr-defined]  # a PapermillExecutionError (untyped)
    return read_outcome(out_dir / "outcome.json")


def send_reload(*, pidfile: Path | None = None, unit: str | None = None) -> str:
    """Tell the live runner to reload its frozen file (SIGHUP); return what was done."""
    if pidfile is not None:
        try:
            pid = int(Path(pidfile).read_text(encoding="utf-8").split()[0])
        except (OSError, ValueError, IndexError) as exc:
            raise SignalsError(f"{pidfile}: no process id to signal ({exc})") from None
        try:
            os.kill(pid, signal.SIGHUP)
        except ProcessLookupError:
            raise SignalsError(f"{pidfile}: process {pid} is not running") from None
        return f"sent SIGHUP to pid {pid} ({pidfile})"
    if unit is not None:
        done = subprocess.run(["systemctl", "reload", unit], capture_output=True, text=True)
        if done.returncode != 0:
            raise SignalsError(f"systemctl reload {unit} failed: {done.stderr.strip()}")
        return f"systemctl reload {unit} (SIGHUP)"
    return "no reload requested"
