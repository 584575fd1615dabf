"""``signals live``: parse options, load settings, start the runner. No logic lives here.

Only typer (and the shared options) is imported at module level, so ``signals --help`` and
``signals live --help`` stay thin; the runner (pandas, strategies; never vectorbt, optuna,
jupyter or plotting) is imported when the command runs.
"""

from __future__ import annotations

from pathlib import Path

import typer

from signals.cli.options import CONFIG, STRATEGY_PATH

PARAMS_FILES = typer.Option(
    ...,
    "--params",
    help="Frozen parameter file (JSON) to run; repeatable: one runner, one socket and one "
    "journal serve every file given (each a stream: its symbol, timeframe and strategy).",
)
JOURNAL = typer.Option(
    None,
    "--journal",
    help="Signal journal (SQLite; default: <params>.journal.db beside the first --params).",
)


DECIDERS = typer.Option(
    None,
    "--deciders",
    min=0,
    help="With several --params: decide a share of the streams in N other processes, so "
    "the streams of one commit are decided on several CPUs (pinned one each when the "
    "machine has enough; default: live.deciders, 0). A decider that dies or hangs is "
    "replaced; its streams are decided by the runner meanwhile.",
)


def live_command(
    params: list[Path] = PARAMS_FILES,
    db: Path = typer.Option(
        None, "--db", help="Candle database to follow (default: data.candles_db in the config)."
    ),
    analysis_db: Path = typer.Option(
        None, "--analysis-db", help="analysis.db to ATTACH (default: data.analysis_db)."
    ),
    socket: Path = typer.Option(
        None, "--socket", help="Unix socket path, created 0660 (default: live.socket)."
    ),
    tcp: str = typer.Option(
        None, "--tcp", help="Also listen on TCP HOST:PORT (127.0.0.1 unless a host is given)."
    ),
    token: str = typer.Option(
        None,
        "--token",
        envvar="SIGNALS_LIVE_TOKEN",
        help="Shared token TCP clients send in a first `auth` line; required off loopback. "
        "Prefer the SIGNALS_LIVE_TOKEN environment variable (not visible in `ps`).",
    ),
    journal: Path = JOURNAL,
    heartbeat: float = typer.Option(
        None, "--heartbeat", help="Seconds between heartbeats (default: live.heartbeat_s, 5)."
    ),
    stale_after: float = typer.Option(
        None,
        "--stale-after",
        help="Flag signals of candles that closed more than this many seconds ago as stale "
        "(default: live.stale_after_s, 300).",
    ),
    settle: float = typer.Option(
        None,
        "--settle",
        help="Tables without a `closed` column: decide a candle SECONDS after the next candle "
        "first appears (and after its own close), so late final values are read "
        "(default: data.settle_s, 2). Ignored when the table has a `closed` column.",
    ),
    stall_after: float = typer.Option(
        None,
        "--stall-after",
        help="Warn, and report stalled in status/heartbeats/metrics, when no new closed candle "
        "arrived for SECONDS (default: live.stall_after_s, else three timeframes + 30 s).",
    ),
    config: Path = CONFIG,
    allow_hash_mismatch: bool = typer.Option(
        False,
        "--allow-hash-mismatch",
        help="Run a frozen file whose strategy_hash does not match the code (not recommended).",
    ),
    metrics_port: int = typer.Option(
        None, "--metrics-port", help="Serve Prometheus text at http://127.0.0.1:PORT/metrics."
    ),
    max_clients: int = typer.Option(
        None,
        "--max-clients",
        min=1,
        help="Refuse connections beyond this many, with a too_many_clients error line "
        "(default: live.max_clients, 256).",
    ),
    deciders: int = DECIDERS,
    strategy_path: list[Path] = STRATEGY_PATH,
) -> None:
    """Stream BUY/SELL signals of frozen parameter sets as closed candles arrive (JSON lines).

    Clients connect to the Unix socket (or TCP), receive `hello` (listing the streams), and may
    send `{"type":"resume","since_seq":N}` and `{"type":"status"}`. SIGHUP reloads each frozen
    file (a bad one keeps its old set); SIGTERM drains and exits.
    """
    from live.start import run_from_options

    code = run_from_options(
        params=params, db=db, analysis_db=analysis_db, socket=socket, tcp=tcp, token=token,
        journal=journal, heartbeat=heartbeat, stale_after=stale_after, settle=settle,
        stall_after=stall_after, config=config, allow_hash_mismatch=allow_hash_mismatch,
        metrics_port=metrics_port, max_clients=max_clients, strategy_path=strategy_path,
        deciders=deciders,
    )  # fmt: skip
    if code:
        raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add the ``live`` command to the ``signals`` app."""
    app.command("live")(live_command)
