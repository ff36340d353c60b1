"""Real `vae-train` processes for the crash and signal tests: start them, watch their stores while
they work, hit them with real signals at the moment a test wants, and check what they leave.

The stores are read the way a user (or optuna-dashboard, `mlflow ui`) reads them: Optuna's and
MLflow's public clients, and plain SQL on the SQLite files where a test must poll in a tight loop
to catch a moment of a few milliseconds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import optuna
from mlflow.tracking import MlflowClient
from optuna.trial import FrozenTrial, TrialState

from helpers.environment import clean_env
from helpers.run_if import VAE_TRAIN
from helpers.tiny import TINY_SWEEP
from vae_sweep.local_stores import process_exists

RUN_ID = "mlflow_run_id"
OWNER = "vae_sweep.worker"
TIMEOUT_S = 180


def sweep_command(*overrides: str, study: str = "s") -> list[str]:
    """A tiny `vae-train -m` sweep of study quick; no end-of-sweep plots (seconds of matplotlib)."""
    assert VAE_TRAIN is not None
    return [
        VAE_TRAIN, "-m", "study=quick", f"hydra.sweeper.study_name={study}", "hydra.sweeper.plots=[]",
        *TINY_SWEEP, *overrides,
    ]  # fmt: skip


def child_gone_after_its_sweep_is_killed(make_child: str, wait_s: float) -> bool:
    """Run ``make_child`` (Python that leaves the child's ``Popen`` in ``ahead.process``) in a
    process that then SIGKILLs itself, as a sweep killed while its child works; whether that
    child is gone within ``wait_s``."""
    sweep = (
        f"import os, signal\n{make_child}\nprint(ahead.process.pid, flush=True)\nos.kill(os.getpid(), signal.SIGKILL)\n"
    )
    killed = subprocess.run([sys.executable, "-c", sweep], capture_output=True, text=True, timeout=60)
    child = int(killed.stdout.split()[0])
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and process_exists(child):
        time.sleep(0.05)
    return not process_exists(child)


def start(command: Sequence[str], cwd: Path, *, session: bool = True) -> subprocess.Popen:
    """A process of its own session (so the test can signal its whole group, as a terminal does)."""
    return subprocess.Popen(
        list(command),
        cwd=cwd,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=session,
    )


def run(command: Sequence[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(list(command), cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=TIMEOUT_S)


def finish(process: subprocess.Popen, timeout: float = TIMEOUT_S) -> tuple[int, str, str]:
    stdout, stderr = process.communicate(timeout=timeout)
    return process.returncode, stdout, stderr


def kill_while_training(command: Sequence[str], cwd: Path, number: int) -> FrozenTrial:
    """Start the sweep and SIGKILL it (no clean-up of any kind) while trial ``number`` trains;
    returns that trial as it was just before."""
    process = start(command, cwd)
    try:
        trial = wait_for_training(process, cwd, number)
        process.send_signal(signal.SIGKILL)
        process.wait()
    finally:
        kill_group(process)
    return trial


def wait_for_training(process: subprocess.Popen, cwd: Path, number: int) -> FrozenTrial:
    """Trial ``number`` of the sweep ``process`` (run in ``cwd``) as soon as it trains; when it
    never does, the failure says whether the sweep ended or hung, and what it printed."""
    try:
        return wait_until(lambda: [t for t in training(cwd) if t.number == number], f"trial {number} to train")[0]
    except AssertionError:
        ended = process.poll() is not None
        if not ended:
            kill_group(process)
        _, stdout, stderr = finish(process)
        how = f"ended (exit {process.returncode})" if ended else "still ran, killed"
        raise AssertionError(
            f"the sweep {how} before trial {number} was seen training: {(stdout + stderr)[-3000:]}"
        ) from None


def kill_group(process: subprocess.Popen) -> None:
    """Make sure nothing of a test's process tree outlives the test."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        process.communicate(timeout=10)


def wait_until(condition: Callable[[], object], what: str, *, timeout: float = TIMEOUT_S, poll: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(sqlite3.Error, KeyError, optuna.exceptions.StorageInternalError):
            value = condition()
            if value:
                return value
        time.sleep(poll)
    raise AssertionError(f"timed out waiting for {what}")


def sql(path: Path, query: str, *args: object) -> list[tuple]:
    """One read of a SQLite store, as a second reader of a WAL database does (never blocks the writer)."""
    if not path.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as connection:
        return connection.execute(query, args).fetchall()


def scalar(path: Path, query: str) -> int:
    """The one number a query such as ``SELECT count(*) ...`` gives, on a store that may not
    exist yet or not have its tables yet (0 then)."""
    try:
        rows = sql(path, query)
    except sqlite3.OperationalError:
        return 0
    return (rows[0][0] or 0) if rows else 0


def trials(cwd: Path, study: str = "s") -> list[FrozenTrial]:
    return optuna.load_study(study_name=study, storage=f"sqlite:///{cwd}/optuna.db").get_trials(deepcopy=False)


def training(cwd: Path, study: str = "s") -> list[FrozenTrial]:
    """RUNNING trials that have opened their MLflow run (so they are training)."""
    if not (cwd / "optuna.db").exists():
        return []
    return [t for t in trials(cwd, study) if t.state is TrialState.RUNNING and RUN_ID in t.user_attrs]


def owner_pid(trial: FrozenTrial) -> int:
    return int(trial.user_attrs[OWNER]["pid"])


def session_pids(process: subprocess.Popen) -> list[int]:
    """Processes still alive in the test process's session (its workers among them), zombies aside."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == process.pid and fields[0] != "Z":  # field 6: the session id
                alive.append(int(entry.name))
    return alive


def mlflow_runs(cwd: Path) -> tuple[MlflowClient, list, list]:
    """The client, the study's parent runs and the trials' child runs of ``cwd/mlflow.db``."""
    client = MlflowClient(f"sqlite:///{cwd}/mlflow.db")
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, max_results=1000)
    parents = [r for r in runs if r.data.tags.get("vae_sweep.role") == "study"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


def assert_budget_done(cwd: Path, budget: int, study: str = "s") -> list[FrozenTrial]:
    """The study ran exactly ``budget`` series of trials (an original and its retries), each
    ended by its last attempt; nothing is RUNNING or WAITING; and MLflow agrees one to one: one
    FINISHED parent, one FINISHED child run per COMPLETE or PRUNED trial, the run of every failed
    attempt closed with the trial's state, no child run left RUNNING."""
    all_trials = trials(cwd, study)
    states = Counter(t.state for t in all_trials)
    assert not states[TrialState.RUNNING] and not states[TrialState.WAITING], states
    originals = [t for t in all_trials if "failed_trial" not in t.system_attrs]
    assert len(originals) == budget, [(t.number, t.state.name) for t in all_trials]
    last_attempts = {t.system_attrs.get("failed_trial", t.number): t for t in all_trials}  # numbers ascend
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in last_attempts.values()), [
        (t.number, t.state.name, t.user_attrs.get("failure_reason")) for t in all_trials
    ]
    ended = [t for t in all_trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    _, parents, children = mlflow_runs(cwd)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED", [p.info.status for p in parents]
    by_id = {r.info.run_id: r for r in children}
    assert {t.user_attrs[RUN_ID] for t in ended} == {r.info.run_id for r in children if r.info.status == "FINISHED"}
    for trial in all_trials:
        run_id = trial.user_attrs.get(RUN_ID)
        if run_id is None:
            continue
        run = by_id[run_id]
        owner = max((t for t in all_trials if t.user_attrs.get(RUN_ID) == run_id), key=lambda t: t.number)
        assert run.data.tags["optuna.trial_state"] == owner.state.name, (trial.number, run.data.tags)
        assert run.info.status != "RUNNING", trial.number
    return all_trials


def kill_when(process: subprocess.Popen, moment: Callable[[], bool], signum: int = signal.SIGKILL) -> bool:
    """Send ``signum`` the moment ``moment()`` holds, polling as fast as SQLite answers; False when
    the process ended first. For moments of milliseconds: ``moment`` should be plain SQL reads."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(sqlite3.Error):
            if moment():
                process.send_signal(signum)
                return True
    return False
