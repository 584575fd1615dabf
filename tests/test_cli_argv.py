"""A command's options given again to the processes it starts (signals/cli/argv.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from hypothesis import given
from hypothesis import strategies as st
from typer.main import get_command
from typer.testing import CliRunner

from signals.cli.app import app
from signals.cli.argv import given_arguments
from signals.data.synth import write_synth_db
from signals.strategy_paths import ENV
from tests.sharedrun import budget_met_once, narrow_folder

ROOT = get_command(app)


def _parse(args: list[str]) -> typer.Context:
    """Parse `args` (root options, a command, its options) as `signals` does; return its context."""
    root = ROOT.make_context("signals", list(args), resilient_parsing=False)
    name, *rest = [*getattr(root, "_protected_args", []), *root.args]  # click 8.2+: private
    command = ROOT.get_command(root, name)  # type: ignore[attr-defined]  # ROOT is a group
    return command.make_context(name, rest, parent=root)


def _given(ctx: typer.Context) -> dict[str, object]:
    return {
        k: v
        for k, v in ctx.params.items()
        if getattr(ctx.get_parameter_source(k), "name", None) == "COMMANDLINE"
    }


OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "--folds": st.integers(1, 9).map(str),
        "--from": st.sampled_from(["2024-01-01", "-3d", "2024-01-01T05:00"]),
        "--fee-bps": st.floats(0, 20, allow_nan=False).map(repr),
        "--fresh": st.sampled_from(["--fresh", "--no-fresh"]),
        "--report": st.sampled_from(["--report", "--no-report"]),
        "--symbol": st.lists(st.sampled_from(["BTCUSDT", "ETHUSDT", "SOL USDT"]), min_size=1),
        "--strategy-path": st.lists(st.sampled_from(["a", "b/c"]), min_size=1, max_size=2),
        "--verbose": st.sampled_from([["-v"], ["--verbose"], []]),
    },
)


@given(OPTIONS)
def test_the_given_options_parse_back_to_the_same_values(options: dict) -> None:
    args = ["-s", "ema_cross", "-t", "5m"]
    root = options.pop("--verbose", [])
    for name, value in options.items():
        if name in ("--fresh", "--report"):
            args.append(value)
        elif isinstance(value, list):
            args += [part for each in value for part in (name, each)]
        else:
            args += [name, value]
    ctx = _parse([*root, "walkforward", *args])
    again = _parse(given_arguments(ctx))
    assert _given(again) == _given(ctx) and _given(again.parent) == _given(ctx.parent)
    left = _parse(given_arguments(ctx, leave_out=("symbol", "fresh")))
    assert "symbol" not in _given(left) and "fresh" not in _given(left)
    assert {k: v for k, v in _given(ctx).items() if k not in ("symbol", "fresh")} == _given(left)


def test_defaults_stay_defaults() -> None:
    ctx = _parse(["walkforward", "-s", "ema_cross", "-t", "5m", "--folds", "6"])
    # --folds 6 equals the default but was given: written; --trials was not: left out
    assert given_arguments(ctx) == ["walkforward", "--strategy", "ema_cross", "--timeframe",
                                    "5m", "--folds", "6"]  # fmt: skip


def test_walkforward_workers_share_the_run_when_the_command_runs_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In process (a notebook, CliRunner), sys.argv is not this command's line: the helpers were
    # started with the host program's arguments and ended with code 2 before tuning anything.
    # Started in the working directory, a helper imported a package of that folder by our name.
    monkeypatch.setenv(ENV, os.environ.get(ENV, ""))  # --strategy-path records folders here
    monkeypatch.chdir(tmp_path)
    write_synth_db(tmp_path, days=30, seed=4, symbol="BTCUSDT")
    folder = narrow_folder(tmp_path / "strategies")  # every trial valid (tests/sharedrun.py)
    # a folder named like our packages: `strategies/` (a namespace package) and `research/` (a
    # regular one, which only `python -P` keeps out of the helper's imports)
    (tmp_path / "research").mkdir()
    (tmp_path / "research" / "__init__.py").write_text("raise ImportError('the wrong research')\n")
    journal = tmp_path / "run.log"
    done = CliRunner().invoke(app, [
        "walkforward", "-s", "narrow_ema_cross", "--db", "candles.db", "-t", "15m",
        "--folds", "2", "--trials", "6", "--min-trades", "2", "--seed", "9", "--out", "out",
        "--no-report", "--no-progress", "--storage", f"journal:///{journal}", "--workers", "2",
        "--heartbeat", "3", "--strategy-path", str(folder),
    ])  # fmt: skip
    assert done.exit_code == 0, (done.output, done.exception)
    assert "helper" not in done.output  # the helper ended with code 0
    budget_met_once(f"journal:///{journal}", "out", tmp_path / "out" / "trial_ledger.parquet", 6)


def test_a_folder_named_like_a_package_in_the_working_directory_does_not_hide_it(
    tmp_path: Path,
) -> None:
    # A user's strategy folder is often called `strategies`. Python puts the working directory
    # on the path of `python -m`/`-c` and of a notebook kernel (reoptimise runs its kernel there),
    # and with setuptools' editable finder alone such a folder became a namespace package that
    # hid ours: `from strategies import Strategy` failed (`make venv` writes signals-checkout.pth).
    import jupyter_client

    for name in ("strategies", "research", "paper"):
        (tmp_path / name).mkdir()
    probe = "import strategies, research, paper; print(strategies.Strategy.__module__)"
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip().startswith("strategies"), done.stderr
    done = subprocess.run([sys.executable, "-m", "signals", "strategies"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0 and "ema_cross" in done.stdout, done.stderr
    manager, client = jupyter_client.manager.start_new_kernel(kernel_name="python3", cwd=tmp_path)
    try:
        reply = client.execute_interactive(probe, timeout=60, output_hook=lambda m: None)
        assert reply["content"]["status"] == "ok", reply["content"]
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
