"""Sweeps through the launchers users scale out with: submitit's local executor (the code path of
``submitit_slurm``: pickled jobs, processes of their own, results read back from files) and Ray
against a local head this test starts (``ray start --head`` on 127.0.0.1, stopped after).

Real `vae-train` processes on the default SQLite stores, as on one machine of a cluster. Skipped
where the launcher plugin is not installed (``pip install -e ".[submitit]"`` / ``".[ray]"``),
failed under ``CI=true``, whose ``.ci/run`` installs both.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.environment import clean_env
from helpers.postgres import in_ci
from helpers.run_if import needs_vae_train
from helpers.sweep_processes import (
    assert_budget_done,
    finish,
    kill_group,
    mlflow_runs,
    owner_pid,
    run,
    start,
    sweep_command,
    training,
    wait_until,
)
from optuna.trial import TrialState

pytestmark = [pytest.mark.slow, needs_vae_train]
# Trials of a second or two, all run to the end (no pruning): every one must be COMPLETE.
WHOLE_TRIALS = ("hydra.sweeper.pruner.name=none", "tracking.log_model=false", "tracking.log_images=false")


def require_plugin(module: str, extra: str) -> None:
    if importlib.util.find_spec(module) is None:
        if in_ci():
            pytest.fail(f"{module} must be installed in CI (.ci/run installs .[{extra}])")
        pytest.skip(f'needs pip install -e ".[{extra}]"')


def test_a_two_worker_sweep_through_submitit_local_completes_every_trial_under_one_parent(workdir: Path) -> None:
    require_plugin("hydra_plugins.hydra_submitit_launcher", "submitit")
    command = sweep_command(
        "hydra/launcher=submitit_local", "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2", *WHOLE_TRIALS
    )
    done = run(command, workdir)
    assert done.returncode == 0, done.stderr[-3000:]
    all_trials = assert_budget_done(workdir, budget=4)
    assert [t.state for t in all_trials] == [TrialState.COMPLETE] * 4
    assert len({owner_pid(t) for t in all_trials}) == 2  # two submitit job processes shared the study
    assert all(owner_pid(t) != os.getpid() for t in all_trials)
    _, parents, children = mlflow_runs(workdir)
    assert len(parents) == 1 and {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    logs = list(workdir.glob("multirun/*/*/.submitit/*/*_log.out"))
    assert len(logs) == 2  # each job's own log, where submitit keeps it


@pytest.fixture
def ray_head() -> Iterator[str]:
    """A Ray head on 127.0.0.1 with two CPUs and its own temporary folder; its address."""
    require_plugin("hydra_plugins.hydra_ray_launcher", "ray")
    ray = shutil.which("ray")
    assert ray is not None
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # its socket paths must stay under 108 bytes
    env = clean_env()
    head = [ray, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2"]
    head += ["--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"]
    started = subprocess.run(head, capture_output=True, text=True, timeout=120, env=env)
    assert started.returncode == 0, started.stderr[-3000:]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray, "stop", "--force"], capture_output=True, timeout=120, env=env)
        shutil.rmtree(temp, ignore_errors=True)


def ray_sweep(address: str, *overrides: str) -> list[str]:
    # hydra-ray-launcher always passes object_store_memory to ray.init, which Ray refuses when
    # connecting to a running cluster; null leaves it to the cluster (docs/distributed.md).
    launcher = ["hydra/launcher=ray", f"+hydra.launcher.ray.init.address={address}"]
    launcher += ["+hydra.launcher.ray.init.object_store_memory=null"]
    return sweep_command(*launcher, "hydra.sweeper.n_jobs=2", *WHOLE_TRIALS, *overrides)


def test_ray_workers_complete_a_sweep_and_a_killed_one_is_failed_and_retried(tmp_path: Path, ray_head: str) -> None:
    whole, killed_in = tmp_path / "whole", tmp_path / "killed"
    whole.mkdir()
    killed_in.mkdir()
    done = run(ray_sweep(ray_head, "hydra.sweeper.n_trials=4"), whole)
    assert done.returncode == 0, done.stderr[-3000:]
    all_trials = assert_budget_done(whole, budget=4)
    assert [t.state for t in all_trials] == [TrialState.COMPLETE] * 4
    assert len({owner_pid(t) for t in all_trials}) == 2  # two Ray worker processes

    # A Ray worker process killed while it trains (an OOM kill, a lost node).
    long = ("trainer.epochs=100", "hydra.sweeper.n_trials=3", "hydra.sweeper.heartbeat_interval=1")
    sweep = start(ray_sweep(ray_head, *long, "hydra.sweeper.grace_period=3"), killed_in)
    try:
        running = wait_until(lambda: training(killed_in), "a trial to train on a Ray worker")
        os.kill(owner_pid(running[0]), signal.SIGKILL)
        code, stdout, stderr = finish(sweep)
    finally:
        kill_group(sweep)
    assert code == 0, stderr[-3000:]
    assert "Results:" in stdout
    all_trials = assert_budget_done(killed_in, budget=3)
    killed = next(t for t in all_trials if t.number == running[0].number)
    assert killed.state is TrialState.FAIL
    # Failed by its heartbeat (Optuna gives no reason) or, first, by its owner's pid being gone.
    assert killed.user_attrs.get("failure_reason") in (None, "worker_died")
    retries = [t for t in all_trials if t.system_attrs.get("failed_trial") == killed.number]
    assert [t.state for t in retries] == [TrialState.COMPLETE]
