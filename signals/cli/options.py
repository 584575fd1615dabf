"""Typer options shared by several commands, declared once (a command's own options stay inline).

A command takes one as the default of its parameter, e.g. ``db: Path = DB``; the parameter's
name gives the Python name, the option gives the flags, the default and the help text.

`OneValueGroup`, the root command's class, makes a one-value option given twice a usage error
(exit 2) in every command: click would keep the last value and drop the others silently.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperGroup

if TYPE_CHECKING:
    from research.inputs import RunInputs

# -- a strategy on stored candles: scan, bias, backtest, freeze, sweep, walkforward, reoptimise

STRATEGY = typer.Option(..., "--strategy", "-s", help="Strategy name (see `signals strategies`).")
DB = typer.Option(None, "--db", help="Candle database (default: data.candles_db in the config).")
TIMEFRAME = typer.Option(..., "--timeframe", "-t", help="Candle timeframe: 1m 5m 15m 1h 4h 1d.")
SYMBOL = typer.Option(None, "--symbol", help="Symbol (default: data.symbol, BTCUSDT).")
PARAMS = typer.Option(None, "--params", help="Frozen parameter file (JSON) to take params from.")
SET = typer.Option(None, "--set", help="Override one parameter: name=value (repeatable).")
FROM = typer.Option(None, "--from", help="First candle (ISO UTC date/time or epoch s).")
TO = typer.Option(None, "--to", help="Last candle (ISO UTC date/time or epoch s).")
CONFIG = typer.Option(None, "--config", help="YAML config (default: ./signals.yaml if present).")
STRATEGY_PATH = typer.Option(
    None,
    "--strategy-path",
    help="Folder of your strategy modules (repeatable; adds to strategy_paths in the config).",
)

# -- execution and costs: backtest, sweep, freeze, paper

DIRECTION = typer.Option("long", "--direction", help="long (default), short, or both (reverses).")
COSTS = typer.Option(
    None, "--costs", help="Cost preset (bybit-spot, bybit-perp) or a YAML/JSON costs file."
)
FEE_BPS = typer.Option(None, "--fee-bps", help="Taker fee per side in bps (overrides --costs).")
SLIPPAGE_BPS = typer.Option(
    None, "--slippage-bps", help="Fixed slippage per fill in bps (overrides)."
)

# -- candle databases: signals data ...

DB_WRITE = typer.Option(..., "--db", help="Candle database to write (created if missing).")
DATA_CONFIG = typer.Option(
    None, "--config", help="YAML config (table/column mapping); default ./signals.yaml."
)
PROGRESS = typer.Option(True, "--progress/--no-progress", help="Show a progress bar.")
# -- the long research commands: sweep, walkforward, reoptimise (signals/progress.py)
LONG_PROGRESS = typer.Option(
    True,
    "--progress/--no-progress",
    help="Show progress on stderr: a bar on a terminal, else a plain line every 10% or 30 s.",
)


# -- a one-value option given twice is a usage error, in every command


class OneValueGroup(TyperGroup):
    """The root group: refuses a command line that gives a one-value option more than once."""

    # ctx is click's Context: typer vendors click in recent versions, so it is not named here
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """Check the whole line for repeated one-value options, then parse as click does."""
        if not ctx.resilient_parsing:  # shell completion parses partial lines
            refuse_repeated_options(self, ctx, args)
        return super().parse_args(ctx, args)


def refuse_repeated_options(command: Any, ctx: Any, args: list[str]) -> None:
    """Fail (a usage error naming the option) if `args` repeat a one-value option of any command.

    Walks from `command` (its context `ctx`) down the sub-commands the line names, parsing each
    level's options as click will; a line click cannot parse is left to click to report.
    """
    while True:
        try:
            _, rest, order = command.make_parser(ctx).parse_args(args=list(args))
        except Exception:  # a malformed line: the real parse says what is wrong with it
            return
        counts = Counter(param for param in order if _takes_one_value(param))
        for param, times in counts.items():
            if times > 1:
                names = " / ".join([*param.opts, *param.secondary_opts])
                ctx.fail(
                    f"Option '{names}' is given {times} times, but it takes one value (only "
                    "the last would count): give it once."
                )
        sub = command.get_command(ctx, rest[0]) if rest and hasattr(command, "commands") else None
        if sub is None:
            return
        ctx = sub.context_class(sub, info_name=rest[0], parent=ctx)
        command, args = sub, rest[1:]


def _takes_one_value(param: Any) -> bool:
    return (
        param.param_type_name == "option"
        and param.expose_value  # --help carries no value
        and not param.multiple
        and not param.count
    )


def strategy_run(
    strategy: str,
    db: Path | None,
    timeframe: str,
    symbol: str | None,
    params: Path | None,
    assignments: list[str] | None,
    start: str | None,
    end: str | None,
    config: Path | None,
    strategy_path: list[Path] | None,
) -> RunInputs:
    """Resolve a strategy-on-candles command's options (STRATEGY .. STRATEGY_PATH) into its run."""
    from research.inputs import prepare_run
    from signals.strategy_paths import apply_strategy_paths

    apply_strategy_paths(strategy_path, config)
    return prepare_run(strategy_name=strategy, db=db, timeframe=timeframe, symbol=symbol,
                       params_file=params, assignments=assignments, start=start, end=end,
                       config=config)  # fmt: skip
