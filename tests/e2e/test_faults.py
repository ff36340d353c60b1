"""Faults, for real: a worker killed mid-trial on PostgreSQL and an MLflow tracking server,
parallel jobs on the default SQLite files, and stores or output folders that cannot be written.

Every scenario runs real ``vae-train -m`` processes against real databases and servers, and
kills processes with real signals. The PostgreSQL server comes from ``tests/helpers/postgres.py``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from helpers.environment import clean_env
from helpers.in_process import run_here
from helpers.mlflow_server import mlflow_server as serve_mlflow
from helpers.run_if import VAE_TRAIN, needs_vae_train
from helpers.tiny import TINY_SWEEP
from mlflow.tracking import MlflowClient
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

pytest_plugins = ["helpers.postgres"]

MLFLOW = shutil.which("mlflow")
pytestmark = [
    pytest.mark.slow,
    needs_vae_train,
]
RUN_ID_ATTR = "mlflow_run_id"  # vae_sweep.sweep.trial_link.RUN_ID_ATTR, as a user would read it
RETRY_OF = "failed_trial"  # the system attr Optuna's RetryHeartbeatStaleTrialCallback puts on a retry
TIMEOUT_S = 300


def stop(process: subprocess.Popen) -> None:
    """End a process started with ``start_new_session=True`` and everything it started (the
    MLflow server's workers outlive its main process for a moment): SIGTERM, then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
        os.killpg(process.pid, signal.SIGCONT)  # a stopped (SIGSTOP) process acts on SIGTERM only once woken
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=15)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def trial_folders(sweep_cwd: Path) -> set[int]:
    """Trial numbers whose Hydra job folder (``multirun/DATE/TIME/<number>/``) is under ``sweep_cwd``."""
    return {int(path.name) for path in sweep_cwd.glob("multirun/*/*/*") if path.is_dir() and path.name.isdigit()}


def child_runs(client: MlflowClient) -> tuple[list, list]:
    """The study's parent runs and its trials' child runs, over every experiment of the store."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, max_results=1000)
    parents = [r for r in runs if r.data.tags.get("vae_sweep.role") == "study"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(runs) == len(parents) + len(children), [r.info.run_name for r in runs]
    return parents, children


def assert_trials_match_runs(trials: list[FrozenTrial], children: list) -> None:
    """COMPLETE trials and FINISHED child runs correspond one to one through the trial's run id."""
    complete = [t for t in trials if t.state is TrialState.COMPLETE]
    assert all(RUN_ID_ATTR in t.user_attrs for t in complete)
    finished = {r.info.run_id for r in children if r.info.status == "FINISHED"}
    assert len(finished) == len(complete)
    assert {t.user_attrs[RUN_ID_ATTR] for t in complete} == finished
    numbers = [int(r.data.tags["optuna.trial_number"]) for r in children]
    assert len(numbers) == len(set(numbers)), Counter(numbers)  # no trial logged twice
    by_id = {r.info.run_id: r for r in children}
    for trial in complete:
        run = by_id[trial.user_attrs[RUN_ID_ATTR]]
        assert run.data.tags["optuna.trial_number"] == str(trial.number)
        assert run.data.tags["optuna.trial_state"] == "COMPLETE"


# --- 1. A worker killed mid-trial, PostgreSQL storage, MLflow tracking server ----------------

N_WORKERS = 3
# The workers share this machine, so a survivor fails the killed trial as soon as it next looks
# (its owner's process is gone); the grace period is far longer than the test, so the heartbeat
# cannot be what finds it. Even after the last slot is claimed the survivors wait for the
# victim's trial, so no amount of work has to be left after the kill.
N_TRIALS = 8
HEARTBEAT_S, GRACE_S = 1, 600
STUDY = "faults"


@pytest.fixture
def mlflow_server(postgres_url: str, tmp_path: Path) -> Iterator[str]:
    """``mlflow server`` on a database of its own on the session's PostgreSQL server, with
    proxied artifacts in a temporary folder, as docs/distributed.md sets one up."""
    from helpers.postgres import new_database  # imported by pytest_plugins first, so assertions are rewritten

    if MLFLOW is None:
        pytest.skip("the mlflow command is not installed")
    with serve_mlflow(new_database(postgres_url), tmp_path / "mlflow-server", workers=2) as server:
        yield server.url


def kill_a_worker_mid_trial(
    processes: list[subprocess.Popen], cwds: list[Path], storage_url: str, client: MlflowClient
) -> tuple[int, FrozenTrial]:
    """SIGKILL a worker while its trial trains: RUNNING in Optuna, its MLflow run RUNNING.

    The worker is first frozen (SIGSTOP) and both states are read while it cannot move on, so
    the kill cannot land between the end of training and the trial's report.
    """
    deadline = time.monotonic() + TIMEOUT_S
    storage = None
    try:
        while True:
            assert time.monotonic() < deadline, "no worker was seen training a trial"
            exited = [(i, p.returncode) for i, p in enumerate(processes) if p.poll() is not None]
            assert not exited, f"workers exited before any was killed: {exited}"
            if storage is None:
                if not any(trial_folders(cwd) for cwd in cwds):  # the study and its tables exist once one has
                    time.sleep(0.2)
                    continue
                storage = RDBStorage(storage_url)
                study_id = storage.get_study_id_from_name(STUDY)
            running = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
            training = sorted((t for t in running if RUN_ID_ATTR in t.user_attrs), key=lambda t: t.datetime_start)
            for trial in reversed(training):  # the latest started has the most training left
                owner = next((i for i, cwd in enumerate(cwds) if trial.number in trial_folders(cwd)), None)
                if owner is None:
                    continue
                os.killpg(processes[owner].pid, signal.SIGSTOP)
                now = storage.get_trial(storage.get_trial_id_from_study_id_trial_number(study_id, trial.number))
                run_status = client.get_run(trial.user_attrs[RUN_ID_ATTR]).info.status
                if now.state is TrialState.RUNNING and run_status == "RUNNING":
                    os.killpg(processes[owner].pid, signal.SIGKILL)
                    processes[owner].wait()
                    return owner, now
                os.killpg(processes[owner].pid, signal.SIGCONT)
            time.sleep(0.2)
    finally:
        if storage is not None:
            storage.engine.dispose()


def test_a_worker_killed_mid_trial_is_failed_at_once_retried_and_closed_in_mlflow(
    fresh_postgres_url: str, mlflow_server: str, tmp_path: Path
) -> None:
    storage_url = fresh_postgres_url
    command = [
        VAE_TRAIN, "-m", "study=quick", f"hydra.sweeper.storage={storage_url}", f"hydra.sweeper.study_name={STUDY}",
        f"hydra.sweeper.n_trials={N_TRIALS}", f"tracking.uri={mlflow_server}", *TINY_SWEEP, "hydra.sweeper.plots=[]",
        "hydra.sweeper.pruner.name=none",
        # A dead worker's trial is retried once.
        f"hydra.sweeper.heartbeat_interval={HEARTBEAT_S}", f"hydra.sweeper.grace_period={GRACE_S}",
        "hydra.sweeper.max_retry=1",
    ]  # fmt: skip
    cwds = [tmp_path / f"worker{i}" for i in range(N_WORKERS)]
    processes = []
    client = MlflowClient(mlflow_server)
    try:
        for cwd in cwds:
            cwd.mkdir()
            with (cwd / "output.log").open("w") as log:
                processes.append(
                    subprocess.Popen(
                        command, cwd=cwd, env=clean_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                    )
                )
        victim, killed = kill_a_worker_mid_trial(processes, cwds, storage_url, client)
        deadline = time.monotonic() + TIMEOUT_S
        codes = [process.wait(timeout=max(1.0, deadline - time.monotonic())) for process in processes]
    finally:
        for process in processes:
            stop(process)
    logs = "\n".join(f"--- worker{i} ---\n{(cwd / 'output.log').read_text()[-3000:]}" for i, cwd in enumerate(cwds))
    assert codes[victim] == -signal.SIGKILL
    assert [code for i, code in enumerate(codes) if i != victim] == [0] * (N_WORKERS - 1), logs

    # Optuna: the killed trial failed by a survivor as worker_died (its process gone), and the
    # budget's N_TRIALS trials plus one retry of the killed trial under a new number.
    trials = optuna.load_study(study_name=STUDY, storage=storage_url).get_trials(deepcopy=False)
    by_number = {t.number: t for t in trials}
    dead = by_number[killed.number]
    assert dead.state is TrialState.FAIL, logs
    assert dead.user_attrs["failure_reason"] == "worker_died"
    assert sorted(by_number) == list(range(N_TRIALS + 1)), logs
    retries = [t for t in trials if RETRY_OF in t.system_attrs]
    assert [t.system_attrs[RETRY_OF] for t in retries] == [killed.number], logs
    retry = retries[0]
    assert retry.number > killed.number and retry.params == dead.params
    assert Counter(t.state for t in trials) == {TrialState.COMPLETE: N_TRIALS, TrialState.FAIL: 1}, logs

    # Hydra: the killed trial ran in the victim's folder, its retry in a survivor's.
    assert killed.number in trial_folders(cwds[victim])
    assert any(retry.number in trial_folders(cwd) for i, cwd in enumerate(cwds) if i != victim)
    ran = sorted(n for cwd in cwds for n in trial_folders(cwd))
    assert ran == list(range(N_TRIALS + 1)), ran  # each trial ran once, in one process

    # MLflow: one child run per trial; FINISHED ones are exactly the COMPLETE trials; the killed
    # trial's run was closed as FAILED by the survivors instead of staying RUNNING forever.
    parents, children = child_runs(client)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert len(children) == N_TRIALS + 1
    assert_trials_match_runs(trials, children)
    dead_run = client.get_run(dead.user_attrs[RUN_ID_ATTR])
    assert dead_run.info.status in ("FAILED", "KILLED")
    assert dead_run.data.tags["failure_reason"] == "worker_died"
    assert dead_run.data.tags["optuna.trial_state"] == "FAIL"
    assert Counter(r.info.status for r in children) == {"FINISHED": N_TRIALS, dead_run.info.status: 1}


# --- 2. Parallel jobs on the default local SQLite stores ------------------------------------

N_LOCAL_TRIALS = 24


def test_two_parallel_jobs_on_the_default_sqlite_stores_never_find_the_database_locked(tmp_path: Path) -> None:
    command = [
        VAE_TRAIN, "-m", "study=quick", "hydra.sweeper.study_name=local", f"hydra.sweeper.n_trials={N_LOCAL_TRIALS}",
        "hydra.sweeper.n_jobs=2", "hydra.sweeper.pruner.name=none", *TINY_SWEEP, "trainer.epochs=1",
        "hydra.sweeper.plots=[]",
        # No weights or pictures: shorter trials write to both databases more often.
        "tracking.log_model=false", "tracking.log_images=false", "hydra.sweep.dir=sweep",
    ]  # fmt: skip
    out = subprocess.run(command, cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=TIMEOUT_S)
    logs = [out.stdout, out.stderr, *(path.read_text(errors="replace") for path in tmp_path.rglob("*.log"))]
    assert not [text for text in logs if "database is locked" in text.lower()]
    assert out.returncode == 0, out.stderr[-5000:]
    assert f"{N_LOCAL_TRIALS} trials, 2 at a time" in out.stdout + out.stderr  # the joblib launcher's workers

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"  # the defaults: optuna.db and mlflow.db in the cwd
    trials = optuna.load_study(study_name="local", storage=storage).get_trials(deepcopy=False)
    assert len(trials) == N_LOCAL_TRIALS
    assert Counter(t.state for t in trials) == {TrialState.COMPLETE: N_LOCAL_TRIALS}
    assert not [t.user_attrs["failure_reason"] for t in trials if "failure_reason" in t.user_attrs]
    spans = sorted((t.datetime_start, t.datetime_complete) for t in trials)
    assert any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))  # two at a time

    parents, children = child_runs(MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}"))
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == N_LOCAL_TRIALS
    assert {r.info.status for r in children} == {"FINISHED"}
    assert not [r.data.tags["failure_reason"] for r in children if "failure_reason" in r.data.tags]
    assert_trials_match_runs(trials, children)
    for name in ("optuna.db", "mlflow.db"):  # write-ahead logging is what keeps the locks short
        with contextlib.closing(sqlite3.connect(tmp_path / name)) as connection:
            assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal", name


# --- 3. A store or output folder that cannot be written ------------------------------------


@pytest.fixture(params=["file_in_the_way", "read_only_folder"])
def unwritable(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """A folder in which nothing can be created, made in one of two ways.

    The tests run as root, which ignores permission bits, so a chmod'ed folder would not do:
    - ``file_in_the_way``: the folder's parent is a regular file (``blocked.txt/sub``); works
      for anyone, anywhere.
    - ``read_only_folder``: a real folder that refuses writes: immutable (``chattr +i``, which
      root obeys) as root, read-only permission bits (0o555) as anyone else. Skipped where the
      file system or the container does not allow it (e.g. no CAP_LINUX_IMMUTABLE).
    """
    if request.param == "file_in_the_way":
        (tmp_path / "blocked.txt").write_text("a file, not a folder\n")
        yield tmp_path / "blocked.txt" / "sub"
        return
    folder = tmp_path / "read-only"
    folder.mkdir()
    unlock = None
    if os.geteuid() == 0:
        chattr = shutil.which("chattr")
        if chattr is None:
            pytest.skip("running as root without chattr: cannot make a folder read-only")
        if subprocess.run([chattr, "+i", str(folder)], capture_output=True).returncode != 0:
            pytest.skip("chattr +i is not allowed on this file system or in this container")
        unlock = [chattr, "-i", str(folder)]  # else pytest could not delete tmp_path
    else:
        folder.chmod(0o555)
    try:
        with contextlib.suppress(OSError):
            (folder / "probe").touch()
            pytest.skip(f"{folder} is still writable")
        yield folder
    finally:
        if unlock:
            subprocess.run(unlock, check=True)
        folder.chmod(0o755)


UNWRITABLE_TARGETS = {
    "hydra.sweep.dir": ("{folder}/sweep", "{folder}/sweep"),
    "tracking.uri": ("sqlite:///{folder}/mlflow.db", "{folder}/mlflow.db"),
    "hydra.sweeper.storage": ("sqlite:///{folder}/optuna.db", "{folder}/optuna.db"),
}


@pytest.mark.parametrize("key", list(UNWRITABLE_TARGETS))
def test_an_unwritable_store_or_output_folder_stops_the_sweep_before_anything_is_written(
    tmp_path: Path, unwritable: Path, key: str
) -> None:
    value, path = (template.format(folder=unwritable) for template in UNWRITABLE_TARGETS[key])
    cwd = tmp_path / "work"  # the other stores and outputs are the defaults, in here
    cwd.mkdir()
    command = [
        VAE_TRAIN, "-m", "study=quick", "hydra.sweeper.study_name=s", "hydra.sweeper.n_trials=2", *TINY_SWEEP,
        f"{key}={value}",
    ]  # fmt: skip
    out = run_here(cwd, command[1:])
    assert out.returncode == 2, out.stderr[-5000:]
    assert "Traceback" not in out.stderr
    errors = [line for line in out.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, out.stderr  # one message: what cannot be written, and which key
    assert errors[0].startswith(f"vae-train: error: {key}: cannot write "), errors[0]
    assert path in errors[0], errors[0]
    # Nothing half-written: no study (so no trial of any state), no MLflow store, no output folder.
    assert sorted(p.name for p in cwd.iterdir()) == []
    assert not unwritable.exists() or not any(unwritable.iterdir())
