"""Command lines for the processes a command starts: `signals`, its options given again."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

import typer


def signals_command(*args: str) -> list[str]:
    """Return the command line that runs ``signals *args`` in this Python, whatever the folder.

    ``-P``: the working directory is not put first on the import path, so a user's folder named
    ``strategies`` (a strategy folder) cannot hide the package of that name from the new process.
    """
    return [sys.executable, "-P", "-m", "signals", *args]


GIVEN = {"COMMANDLINE", "ENVIRONMENT"}  # click's ParameterSource names (typer ships its own click)


def given_arguments(ctx: typer.Context, leave_out: Iterable[str] = ()) -> list[str]:
    """Return the arguments, root options first, that give the options set for `ctx` again.

    Only options the user gave (on the command line or in the environment) are written, each in
    its parsed form, so a default stays a default in the new process. `leave_out` names options
    (their Python names) the caller replaces. Unlike ``sys.argv``, this is right also when the
    command runs in process (a test's CliRunner, a notebook).
    """
    chain: list[typer.Context] = []
    while ctx is not None:
        chain.insert(0, ctx)
        ctx = ctx.parent  # type: ignore[assignment]  # the loop ends at the root's None
    skip = set(leave_out)
    args: list[str] = []
    for i, each in enumerate(chain):
        if i:  # the root's own name is the program, not an argument
            args.append(each.info_name or "")
        for param in each.command.params:
            if param.param_type_name == "option" and param.name and param.name not in skip:
                source = each.get_parameter_source(param.name)
                if source is not None and source.name in GIVEN:
                    args += _option(param, each.params[param.name])
    return args


def _option(param: Any, value: Any) -> list[str]:
    """Return `param` given `value`, in the form its parser reads."""
    name = max(param.opts, key=len)  # the long form
    if param.is_flag and param.secondary_opts:
        return [name if value else max(param.secondary_opts, key=len)]
    if param.is_flag:
        return [name] if value else []
    if param.count:
        return [name] * int(value)
    values = value if param.multiple else [value]
    out: list[str] = []
    for each in values or []:  # multiple: a tuple
        out += [name, *(str(v) for v in (each if param.nargs > 1 else [each]))]
    return out
