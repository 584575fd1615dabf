"""Walk-forward on a shared optuna storage on MySQL: a real MariaDB server, real processes.

The scenarios of tests/sharedrun.py (the same as on PostgreSQL): one process gives the
in-memory result; two processes on one run end with the same frozen file, each fold's budget
met once; a process with other settings is refused; one killed mid-trial does not stall the
other and rejoins. And what MySQL needs of its own: a trial's
daily returns over many years fit in optuna's attribute column.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna
import pytest

from research.optimise.storage import open_storage, quiet
from signals.data.synth import write_synth_db
from tests.mysqlserver import MySqlServer, start_server
from tests.sharedrun import (
    both_ended_alike,
    killed_one_does_not_stall,
    one_process_equals_in_memory,
    other_settings_refused,
)
from tests.sharedrun import run_two as start_two


@pytest.fixture(scope="module")
def mysql(request: pytest.FixtureRequest) -> MySqlServer:
    server = start_server()
    request.addfinalizer(server.stop)
    return server


@pytest.fixture(scope="module")
def candles_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("candles")
    write_synth_db(base, days=30, seed=4, symbol="BTCUSDT")
    return base / "candles.db"


@pytest.fixture(scope="module")
def shared_run(mysql: MySqlServer, candles_db: Path, tmp_path_factory: pytest.TempPathFactory):
    """Two processes started together on one run (a ``mysql://`` URL, as the README gives it)."""
    base = tmp_path_factory.mktemp("two")
    url = mysql.url("two").replace("mysql+pymysql://", "mysql://")
    return url, [base / "a", base / "b"], start_two(url, candles_db, base)


def test_one_process_on_mysql_gives_the_in_memory_result(mysql: MySqlServer) -> None:
    one_process_equals_in_memory(mysql.url("single"))


def test_two_processes_on_mysql_end_with_the_same_frozen_file(shared_run) -> None:
    both_ended_alike(*shared_run)


def test_a_process_with_other_settings_is_refused_on_mysql(
    shared_run, candles_db: Path, tmp_path: Path
) -> None:
    other_settings_refused(shared_run[0], candles_db, tmp_path / "b")


def test_a_process_killed_mid_run_on_mysql_does_not_stall_the_other(
    mysql: MySqlServer, candles_db: Path, tmp_path: Path
) -> None:
    # optuna's heartbeat on MySQL: the server's NOW(), DATETIME to the second
    killed_one_does_not_stall(mysql.url("killed"), candles_db, tmp_path)


def test_a_trials_daily_returns_over_eleven_years_are_stored_whole(mysql: MySqlServer) -> None:
    # optuna declares attribute values TEXT: 64 KB on MySQL, about eight years of daily returns
    storage = open_storage(mysql.url("long"))
    days = [0.0012345678901234567] * 4000
    with quiet(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # heartbeat "used with Study.optimize"
        study = optuna.create_study(storage=storage, study_name="long", direction="maximize")
        trial = study.ask()
        trial.set_user_attr("evaluation", {"daily_returns": days})
        study.tell(trial, 1.0)
    assert study.trials[0].user_attrs["evaluation"]["daily_returns"] == days
