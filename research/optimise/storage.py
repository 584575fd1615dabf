"""Where walk-forward studies live, and how several processes share one run there.

`open_storage` turns a ``--storage`` value into an optuna storage:

- an optuna RDB URL (``postgresql://``, ``mysql://``, ``sqlite:///``): `RDBStorage` with optuna's
  heartbeat, so a trial whose process died is failed after the grace period; a database that
  does not answer (connection refused, dropped, timed out) is retried with backoff and logged;
- ``journal:///path/to/run.log`` (or any path ending in ``.log``): optuna's `JournalStorage` on a
  file, for several processes on one host, with a heartbeat kept in the trials' system attrs;
- None: in memory (tests, one process).

A run in a storage is a settings study ``<run>:settings`` (what decides its results,
`research.optimise.walkforward.run_settings`, compared with every process that joins:
`join_run`), one study per fold
``<run>-fold<i>`` and, once a fold is complete, ``<run>-fold<i>:closed@<trials>`` holding the
trial numbers the fold's result is made of (`publish_once`: whoever creates the study writes
the value, everyone else reads it).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import optuna
from optuna.storages import BaseStorage, InMemoryStorage, RDBStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from signals.errors import SignalsError

log = logging.getLogger(__name__)

HEARTBEAT = 10  # seconds between a running trial's heartbeats
PATIENCE = 600.0  # seconds a storage may stay unreachable before the run gives up
_SETTLE = 30.0  # seconds to wait for the creator of a published value to write it


class RunMismatchError(SignalsError):
    """The run in the storage was started with other settings or data than this process's."""


@contextmanager
def quiet() -> Iterator[None]:
    """Silence optuna's ExperimentalWarning (heartbeat, journal) around storage calls."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


# -- connection faults: retried with backoff, said once per outage -----------------------------


def _is_connection_fault(exc: BaseException) -> bool:
    import sqlalchemy.exc as sa

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, sa.OperationalError | sa.InterfaceError | sa.DisconnectionError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def retrying(call: Callable[..., Any], patience: float = PATIENCE) -> Callable[..., Any]:
    """Return `call` retried with backoff (1, 2, 4 .. 30 s) while the database is unreachable."""

    @functools.wraps(call)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        delay, waited = 1.0, 0.0
        while True:
            try:
                result = call(*args, **kwargs)
            except Exception as exc:
                if not _is_connection_fault(exc):
                    raise
                if waited >= patience:
                    raise SignalsError(
                        f"optuna storage unreachable for {waited:.0f} s, giving up: "
                        f"{_one_line(exc)}"
                    ) from exc
                log.warning("optuna storage unreachable (%s); retrying in %.0f s",
                            _one_line(exc), delay)  # fmt: skip
                time.sleep(delay)
                waited += delay
                delay = min(delay * 2, 30.0)
                continue
            if waited:
                log.warning("optuna storage reachable again after %.0f s", waited)
            return result

    return wrapper


def _one_line(exc: BaseException) -> str:
    root = exc
    while root.__cause__ is not None:
        root = root.__cause__
    text = str(root).strip().splitlines()
    return f"{type(root).__name__}: {text[0] if text else ''}"


class _RetryingRDBStorage(RDBStorage):
    """optuna's RDBStorage whose storage calls survive a database that is away for a while.

    A call the database committed but whose answer was lost is retried like any other: for
    ``create_new_trial`` that can leave one extra trial, which the heartbeat then fails.
    """


# every public storage call, including the heartbeat thread's, goes through `retrying`
_LOCAL = {"get_heartbeat_interval", "get_heartbeat_stale_trial_callback"}  # no database call
# the private ones optuna's _CachedStorage calls on the RDBStorage it wraps
_CACHED = {"_create_new_trial", "_get_best_trial_id", "_get_trials", "_set_trial_param"}
for _name in sorted((set(dir(BaseStorage)) | set(dir(BaseHeartbeat)) | _CACHED) - _LOCAL):
    if not _name.startswith("__") and callable(getattr(RDBStorage, _name, None)):
        setattr(_RetryingRDBStorage, _name, retrying(getattr(RDBStorage, _name)))


class _JournalHeartbeatStorage(JournalStorage, BaseHeartbeat):
    """optuna's JournalStorage with a heartbeat (optuna has it for RDB only).

    A running trial's heartbeat is a wall-clock time in its system attrs: fine for the processes
    of one host, which is what a journal file is for.
    """

    def __init__(self, path: str, heartbeat: int) -> None:
        super().__init__(JournalFileBackend(path))
        self._heartbeat = heartbeat

    def record_heartbeat(self, trial_id: int) -> None:
        # a trial failed as stale meanwhile has nothing left to beat for
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            self.set_trial_system_attr(trial_id, "heartbeat", time.time())

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        return [
            t._trial_id
            for t in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
            if now - t.system_attrs.get("heartbeat", now) > 3 * self._heartbeat
        ]

    def get_heartbeat_interval(self) -> int | None:
        return self._heartbeat

    def get_heartbeat_stale_trial_callback(self) -> Callable[..., None] | None:
        return _said_stale


def _said_stale(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    log.warning("%s: trial %d stopped beating (its process died?); failed, the fold's budget "
                "counts completed trials only", study.study_name, trial.number)  # fmt: skip


def journal_path(url: str) -> str | None:
    """Return the file of a journal storage value, None for anything else."""
    if url.startswith("journal:///"):
        return url.removeprefix("journal://")
    if "://" not in url and url.endswith(".log"):
        return url
    return None


def open_storage(url: str | None, *, heartbeat: int = HEARTBEAT) -> BaseStorage:
    """Return the optuna storage of `url` (None: in memory); grace period = 3 heartbeats."""
    if url is None:
        return InMemoryStorage()
    with quiet():
        path = journal_path(url)
        if path is not None:
            return _JournalHeartbeatStorage(path, heartbeat)
        if url.startswith(("postgresql://", "postgres://")):  # the drivers the project installs
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        elif url.startswith(("mysql://", "mariadb://")):
            url = "mysql+pymysql://" + url.split("://", 1)[1]
        storage = _rdb_storage(url, heartbeat)
        if url.startswith(("mysql", "mariadb")):
            retrying(_widen_mysql_texts)(storage)
        return storage


def _engine_options(url: str) -> dict[str, Any]:
    """PostgreSQL: commit without waiting for the WAL flush (``synchronous_commit=off``).

    optuna writes a dozen small transactions per trial; waiting for each flush costs more than
    the trial on a fast strategy. A server crash can then lose the last fraction of a second of
    writes, which the run survives like a killed process (trials failed or re-run); the
    database itself stays consistent.
    """
    if url.startswith("postgresql"):
        return {"connect_args": {"options": "-c synchronous_commit=off"}}
    return {}


_ATTRIBUTES = ("study_user_attributes", "study_system_attributes", "trial_user_attributes",
               "trial_system_attributes")  # fmt: skip


def _widen_mysql_texts(storage: RDBStorage) -> None:
    """MySQL/MariaDB: make optuna's attribute values MEDIUMTEXT (16 MB) instead of TEXT (64 KB).

    optuna declares them ``Text``, 64 KB on MySQL: a trial's daily train returns over some
    eight years or more do not fit, and the trial fails with a StorageInternalError.
    PostgreSQL's and SQLite's TEXT have no such limit. Idempotent; every process checks.
    """
    import sqlalchemy

    query = sqlalchemy.text(
        "SELECT TABLE_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
        "AND COLUMN_NAME = 'value_json' AND DATA_TYPE = 'text'"
    )
    with storage.engine.begin() as conn:
        narrow = [name for name in conn.execute(query).scalars() if name in _ATTRIBUTES]
        for table in narrow:
            conn.execute(sqlalchemy.text(f"ALTER TABLE {table} MODIFY value_json MEDIUMTEXT"))
    if narrow:
        log.info("optuna storage: %s.value_json widened to MEDIUMTEXT", ", ".join(narrow))


def _rdb_storage(url: str, heartbeat: int) -> RDBStorage:
    import sqlalchemy.exc as sa

    for attempt in range(5):
        try:
            return retrying(_RetryingRDBStorage)(
                url, heartbeat_interval=heartbeat, grace_period=3 * heartbeat,
                heartbeat_stale_trial_callback=_said_stale, engine_kwargs=_engine_options(url),
            )  # fmt: skip
        except ImportError as exc:
            raise SignalsError(f"optuna storage {_redacted(url)}: {exc}") from exc
        except (sa.IntegrityError, sa.ProgrammingError):
            # processes started together on an empty database race to create optuna's tables
            if attempt == 4:
                raise
            time.sleep(0.5 + attempt)
    raise AssertionError("unreachable")


def _redacted(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


# -- a run's identity and the values all its processes must agree on ---------------------------


def settings_study(run: str) -> str:
    """Return the name of the study holding run `run`'s settings."""
    return f"{run}:settings"


def _run_studies(storage: BaseStorage, run: str) -> list[str]:
    pattern = re.compile(rf"^{re.escape(run)}(:settings|-fold\d+(:closed@\d+)?)$")
    with quiet():
        names = [s.study_name for s in storage.get_all_studies()]
    return [n for n in names if pattern.match(n)]


def forget_run(storage: BaseStorage, run: str) -> int:
    """Delete every study of run `run` (``--fresh``); return how many there were."""
    names = _run_studies(storage, run)
    with quiet():
        for name in names:
            optuna.delete_study(study_name=name, storage=storage)
    return len(names)


def publish_once(storage: BaseStorage, name: str, compute: Callable[[], Any]) -> tuple[Any, bool]:
    """Return the value published under `name` and whether this call published it.

    The first process to create the study ``name`` (the database's unique study name decides)
    writes ``compute()`` into it; everyone else reads that value, waiting for it if the creator
    has not written it yet (and writing its own if the creator died in between).
    """
    with quiet():
        try:
            study_id = storage.create_new_study([optuna.study.StudyDirection.MAXIMIZE], name)
        except optuna.exceptions.DuplicatedStudyError:
            study_id = storage.get_study_id_from_name(name)
        else:
            value = compute()
            storage.set_study_user_attr(study_id, "value", value)
            return value, True
        deadline = time.monotonic() + _SETTLE
        while "value" not in (attrs := storage.get_study_user_attrs(study_id)):
            if time.monotonic() > deadline:
                value = compute()
                storage.set_study_user_attr(study_id, "value", value)
                return value, True
            time.sleep(0.2)
        return attrs["value"], False


def join_run(storage: BaseStorage, run: str, settings: dict[str, Any]) -> None:
    """Record `settings` with run `run`, or check them against the recorded ones.

    Raises `RunMismatchError` naming the first differences when the run was started with other
    settings or data, or when its studies predate recorded settings. The trial budget may be
    raised (it extends the run: the processes still on the smaller one are refused at their
    next fold), never lowered.
    """
    existing = _run_studies(storage, run)
    if existing and settings_study(run) not in existing:
        raise RunMismatchError(
            f"run {run!r} in this storage has studies but no recorded settings (made by an older "
            "version); start it afresh with --fresh or use another --run/--out"
        )
    recorded, created = publish_once(storage, settings_study(run), lambda: settings)
    differences = [
        f"{key} {recorded.get(key)!r} there, {settings.get(key)!r} here"
        for key in sorted(set(recorded) | set(settings))
        if key != "trials" and recorded.get(key) != settings.get(key)
    ]
    if recorded.get("trials", 0) > settings["trials"]:  # a larger budget extends the run
        differences.append(f"trials {recorded['trials']} there, {settings['trials']} here")
    if differences:
        shown = "; ".join(differences[:3]) + ("; ..." if len(differences) > 3 else "")
        raise RunMismatchError(
            f"run {run!r} was started with other settings: {shown} "
            "(--fresh starts it afresh; another --run/--out keeps both)"
        )
    if not created and recorded.get("trials", 0) < settings["trials"]:
        log.info("run %r: trials per fold raised from %s to %s", run, recorded.get("trials"),
                 settings["trials"])  # fmt: skip
        with quiet():
            study_id = storage.get_study_id_from_name(settings_study(run))
            storage.set_study_user_attr(study_id, "value", settings)
