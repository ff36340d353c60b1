"""The Optuna study behind a sweep: storage, create-or-resume, the trial budget, claiming trials.

The budget is held in the storage as WAITING trials ("slots"). The budget itself is recorded
first, so a process killed while adding slots leaves a study that the next run completes, and
setting it up happens under ``study_lock`` so that processes starting together add each slot
once. Workers on any machine claim slots atomically through the storage and record themselves
as the owner (``owners.py``), so several processes sharing a study run exactly ``n_trials``
trials, without duplicates, and a trial whose worker died on this machine is retried at once.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import optuna
import sqlalchemy
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState, create_trial
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError, ProgrammingError

from vae_sweep.errors import ConfigError
from vae_sweep.local_stores import create_sqlite_atomically, sqlite_file
from vae_sweep.names import BUDGET_ATTR, FAILURE_REASON_ATTR, RETRY_OF_ATTR, WORKER_DIED
from vae_sweep.sweep.background import repeating
from vae_sweep.sweep.owners import OWNER_ATTR, Owner, is_gone
from vae_sweep.sweep.retry import RetryTrial
from vae_sweep.sweep.space import SearchSpace
from vae_sweep.track.urls import masked

SQLITE_BUSY_TIMEOUT_S = 60
SCHEMA_RACE_ATTEMPTS = 5


def enable_sqlite_wal(url: str) -> None:
    """Switch a SQLite file to write-ahead logging (persistent in the file): readers no longer
    block writers, so parallel workers don't hit "database is locked"."""
    try:
        parsed = make_url(url)
    except ArgumentError:  # not a database URL (a tracking server, a file store)
        return
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return
    with contextlib.closing(sqlite3.connect(parsed.database, timeout=SQLITE_BUSY_TIMEOUT_S)) as connection:
        connection.execute("PRAGMA journal_mode=WAL")


def storage_backend(url: str) -> str:
    """The database kind of an Optuna storage URL (``sqlite``, ``postgresql``, ...); refused when
    it is not a database URL, which the sweep checks before it writes anything."""
    try:
        return make_url(url).get_backend_name()
    except ArgumentError:
        raise ConfigError(
            "hydra.sweeper.storage",
            f"not a database URL: {url!r} (e.g. sqlite:///optuna.db, postgresql://user@host/db)",
        ) from None


def make_storage(
    url: str, *, heartbeat_interval: int | None = None, grace_period: int | None = None, max_retry: int = 0
) -> RDBStorage:
    """An RDB storage; with heartbeats, a trial whose worker died is failed, then retried."""
    key = "hydra.sweeper.storage"
    backend = storage_backend(url)
    engine_kwargs = {}
    if backend == "sqlite":
        # The driver's own transaction handling (isolation_level=None turns it off) defers BEGIN
        # until the first write, so "read WAITING, then set RUNNING" was not atomic and two
        # workers could claim one trial; serialize_sqlite_transactions puts the read inside.
        engine_kwargs = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S, "isolation_level": None}}

    def open_storage() -> RDBStorage:
        with warnings.catch_warnings():  # heartbeats are marked experimental, though years old
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry = RetryTrial(max_retry) if heartbeat_interval else None
            return RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_interval or None,  # 0 turns heartbeats off
                grace_period=grace_period if heartbeat_interval else None,
                heartbeat_stale_trial_callback=retry,
            )

    try:
        if backend == "sqlite":
            path = sqlite_file(url)
            if path is not None:  # a new file is made whole: a kill mid-way leaves no half-made schema
                create_sqlite_atomically(path, lambda temporary: RDBStorage(temporary).engine.dispose())
            enable_sqlite_wal(url)
        for attempt in range(1, SCHEMA_RACE_ATTEMPTS):
            try:
                return serialize_sqlite_transactions(open_storage())
            except (IntegrityError, OperationalError, ProgrammingError):
                # Workers started together on an empty database all create Optuna's tables (on
                # PostgreSQL also its enum types); the losers get "already exists" (an
                # OperationalError on SQLite). Once the winner is done, another try finds them.
                time.sleep(0.5 * attempt)
        return serialize_sqlite_transactions(open_storage())
    except Exception as error:  # SQLAlchemy and driver errors differ per database
        raise ConfigError(key, f"cannot open the Optuna storage {masked(url)}: {error}") from None


def serialize_sqlite_transactions(storage: RDBStorage) -> RDBStorage:
    """On SQLite, start every transaction with BEGIN IMMEDIATE: it takes the write lock first
    (waiting up to the busy timeout), so each read-then-write of Optuna's storage is atomic
    across processes, as row locks make it on PostgreSQL (SQLAlchemy's pysqlite recipe).

    Commits skip the fsync (``synchronous=NORMAL``, safe in WAL mode: a killed process loses
    nothing, only a power cut can lose the last commits); a pruned sweep commits every epoch."""
    if storage.engine.dialect.name == "sqlite":
        sqlalchemy.event.listen(
            storage.engine, "begin", lambda connection: connection.exec_driver_sql("BEGIN IMMEDIATE")
        )
        sqlalchemy.event.listen(
            storage.engine, "connect", lambda connection, _: connection.execute("PRAGMA synchronous=NORMAL")
        )
        storage.engine.dispose()  # connections opened while checking the schema predate the listener
    return storage


def open_study(
    name: str,
    storage: RDBStorage,
    directions: Sequence[str],
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
) -> tuple[optuna.Study, bool]:
    """Create the study, or load it when it exists; True when this call created it."""
    try:
        study = optuna.create_study(
            study_name=name, storage=storage, sampler=sampler, pruner=pruner, directions=list(directions)
        )
        return study, True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    existing = [d.name.lower() for d in study.directions]
    if existing != [d.lower() for d in directions]:
        raise ConfigError(
            "hydra.sweeper.direction",
            f"study {name!r} exists with direction {existing}, not {list(directions)}; "
            "use the same direction, another study_name, or hydra.sweeper.fresh=true",
        )
    return study, False


def check_space_fits(study: optuna.Study, space: SearchSpace, key: str = "hydra.sweeper.params") -> None:
    """A resumed study's space may move the bounds of an interval, not change a parameter's kind
    or the options of a choice: Optuna refuses those once trials used them, and every trial would
    then fail in its sampler. One message now, before anything is added to the study."""
    used: dict[str, optuna.distributions.BaseDistribution] = {}
    for trial in study.get_trials(deepcopy=False):
        used.update(trial.distributions)
    for name, distributions in space.distributions().items():
        if name not in used:
            continue
        for distribution in distributions:
            try:
                optuna.distributions.check_distribution_compatibility(used[name], distribution)
            except ValueError:
                raise ConfigError(
                    f"{key}.{name}",
                    f"study {study.study_name!r} searched it as {describe(used[name])}, now {describe(distribution)}; "
                    "Optuna cannot change a choice's options or a parameter's kind within a study: put it back, "
                    "or start a new study (hydra.sweeper.fresh=true or another hydra.sweeper.study_name)",
                ) from None


def describe(distribution: optuna.distributions.BaseDistribution) -> str:
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return f"choice({', '.join(map(str, distribution.choices))})"
    return repr(distribution)


def is_retry(trial: optuna.trial.FrozenTrial) -> bool:
    """A copy of a failed trial enqueued by ``RetryTrial``: it does not use up budget."""
    return RETRY_OF_ATTR in trial.system_attrs


def ensure_budget(study: optuna.Study, n_trials: int) -> int:
    """Add WAITING slots so the study holds its budget of original trials; returns how many.

    The budget is the largest ``n_trials`` any run asked for. It is recorded before the slots
    are added, so a run killed half-way is completed by the next one. Call it under
    ``study_lock``: two processes counting the same missing slots would both add them.
    """
    recorded = study.user_attrs.get(BUDGET_ATTR)
    budget = max(n_trials, recorded or 0)
    if budget != recorded:
        study.set_user_attr(BUDGET_ATTR, budget)
    originals = sum(1 for trial in study.get_trials(deepcopy=False) if not is_retry(trial))
    missing = max(0, budget - originals)
    for _ in range(missing):
        study.add_trial(create_trial(state=TrialState.WAITING))
    return missing


class Claim(NamedTuple):
    """A trial ``claim_trial`` took: the trial, its storage id, and the study's trials as read
    right after it was taken (it among them, RUNNING)."""

    trial: optuna.Trial
    trial_id: int
    trials: list[FrozenTrial]


def claim_trial(
    storage: RDBStorage, study_name: str, study_for: Callable[[int], optuna.Study], owner: Owner | None
) -> Claim | None:
    """Atomically take one WAITING trial (a slot or a retry); None when none is left.

    Unlike ``study.ask()``, this never creates a trial beyond the budget. ``study_for(number)``
    gives the study with the sampler for that trial number; it is read before the trial starts,
    so the sampler sees every trial finished so far. The heartbeat is recorded before the claim
    and the owner right after it, so a worker killed at any moment leaves a trial that is found
    stale: by its dead owner at once, or by its heartbeat after the grace period.
    """
    study_id = storage.get_study_id_from_name(study_name)
    heartbeats = storage.get_heartbeat_interval() is not None
    for waiting in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, waiting.number)
        try:
            if heartbeats:
                storage.record_heartbeat(trial_id)
            if storage.set_trial_state_values(trial_id, TrialState.RUNNING):
                if owner is not None:
                    storage.set_trial_user_attr(trial_id, OWNER_ATTR, owner.as_attr())
                study = study_for(waiting.number)
                # Optuna wraps an RDB storage in a cache that can only write to trials it has
                # read: read them all (every sampler wants them anyway) before the trial starts.
                trials = study.get_trials(deepcopy=False)
                return Claim(optuna.Trial(study, trial_id), trial_id, trials)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


def owner_of(trial: FrozenTrial) -> Owner | None:
    return Owner.from_attr(trial.user_attrs.get(OWNER_ATTR))


def fail_dead_trials(study: optuna.Study, storage: RDBStorage, retry: RetryTrial) -> list[int]:
    """FAIL (``worker_died``) every RUNNING trial whose owner on this machine no longer exists,
    and queue its retry; returns their numbers. Another process may fail the same trial at the
    same moment: only the one whose update wins queues the retry."""
    study_id = storage.get_study_id_from_name(study.study_name)
    failed = []
    for trial in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
        owner = owner_of(trial)
        if owner is None or not is_gone(owner):
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        try:
            storage.set_trial_user_attr(trial_id, FAILURE_REASON_ATTR, WORKER_DIED)
            if not storage.set_trial_state_values(trial_id, TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        retry(study, storage.get_trial(trial_id))
        failed.append(trial.number)
    return failed


def fail_stale_trials(study: optuna.Study) -> None:
    """Mark RUNNING trials with a silent heartbeat FAIL; the storage's callback enqueues retries
    (``RetryTrial``). Optuna gives them no failure reason: their MLflow runs get ``worker_died``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


@contextlib.contextmanager
def heartbeat(storage: RDBStorage, trial_id: int) -> Iterator[None]:
    """Record the trial's heartbeat in the background while it runs; the first, ``claim_trial``
    recorded as it took the trial."""
    interval = storage.get_heartbeat_interval()
    if interval is None:
        yield
        return
    with repeating(interval, lambda: storage.record_heartbeat(trial_id), f"heartbeat-{trial_id}"):
        yield
