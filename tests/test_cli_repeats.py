"""A one-value option given twice is a usage error naming it, in every command of the CLI."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from signals.cli.app import app
from tests.livekit import ROOT


def commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Yield every command of the tree (the root and the groups too) with its path."""
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from commands(sub, (*path, name))


ROOT_COMMAND = typer.main.get_command(app)  # the click tree `signals` runs, built once


def one_value_options() -> list[tuple[tuple[str, ...], Any]]:
    """Return (command path, option) for every option that takes one value."""
    return [
        (path, param)
        for path, command in commands(ROOT_COMMAND)
        for param in command.params
        if param.param_type_name == "option"
        and param.expose_value
        and not param.multiple
        and not param.count
    ]


OPTIONS = one_value_options()


def given(param: Any) -> list[str]:
    """Return the option given once (with a placeholder value where it takes one)."""
    return [param.opts[0], *([] if param.is_flag else ["1"] * param.nargs)]


def test_the_walk_finds_every_command_and_their_options() -> None:
    paths = {" ".join(path) for path, _ in OPTIONS}
    assert {"", "sweep", "live", "promote", "paper", "paper report", "data import"} <= paths
    assert len(OPTIONS) > 100


@pytest.mark.parametrize(
    ("path", "param"), OPTIONS, ids=[" ".join((*p, o.opts[0])) for p, o in OPTIONS]
)
def test_every_one_value_option_given_twice_is_refused(path: tuple[str, ...], param: Any) -> None:
    with pytest.raises(Exception) as refused:  # click's UsageError (typer may vendor click)
        ROOT_COMMAND.make_context("signals", [*path, *given(param), *given(param)])
    assert getattr(refused.value, "exit_code", None) == 2, refused.value
    message = refused.value.format_message()  # type: ignore[attr-defined]  # a click exception
    assert message.startswith(f"Option '{param.opts[0]}") and "given 2 times" in message
    assert refused.value.ctx.command_path == " ".join(("signals", *path))  # type: ignore[attr-defined]  # its usage line names the command


def test_repeatable_options_and_single_ones_pass() -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["backtest", "--set", "a=1", "--set", "b=2", "--help"]).exit_code == 0
    assert runner.invoke(app, ["sweep", "--symbol", "A", "--help"]).exit_code == 0
    # the same name in two commands of one line is two options, each given once
    both = ["paper", "--ledger", "a", "report", "--ledger", "b", "--help"]
    assert runner.invoke(app, both).exit_code == 0


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["sweep", "-s", "ema_cross", "-t", "1m", "--symbol", "BTCUSDT", "--symbol", "ETHUSDT"],
         "--symbol"),
        (["live", "--params", "a.json", "--db", "a.db", "--db", "b.db"], "--db"),
    ],
)  # fmt: skip
def test_a_repeated_option_is_a_usage_error_in_a_process(args: list[str], option: str) -> None:
    cmd = [sys.executable, "-m", "signals", *args]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"Error: Option '{option}' is given 2 times" in done.stderr
    assert f"signals {args[0]} [OPTIONS]" in done.stderr and "Traceback" not in done.stderr
