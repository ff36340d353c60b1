"""Every crash and signal, at any moment, then the same command again: the study ends with its
exact budget, and Optuna and MLflow agree one to one (docs/reliability.md, "Crashes and signals").

Real `vae-train` processes on the default SQLite stores, real signals. No test waits out a
heartbeat's grace period to pass: the grace period is set far longer than any test (600 s), so a
trial that is only found stale by its heartbeat would make the test time out, not pass.
"""

from __future__ import annotations

import signal

import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from sweep_processes import (
    VAE_TRAIN,
    assert_budget_done,
    finish,
    kill_group,
    mlflow_runs,
    run,
    sql,
    start,
    sweep_command,
    training,
    trials,
    wait_until,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(VAE_TRAIN is None, reason="vae-train is not installed (pip install -e .)"),
]
LONG_TRIALS = ("trainer.epochs=150", "hydra.sweeper.pruner.name=none", "hydra.sweeper.grace_period=600")


def test_kill_9_then_the_same_command_at_once_completes_the_budget(tmp_path):
    command = sweep_command("hydra.sweeper.n_trials=4", *LONG_TRIALS)
    sweep = start(command, tmp_path)
    try:
        victim = wait_until(lambda: [t for t in training(tmp_path) if t.number == 1], "trial 1 to train")[0]
        sweep.send_signal(signal.SIGKILL)
        sweep.wait()
    finally:
        kill_group(sweep)
    again = run(command, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Traceback" not in again.stderr
    assert "RUNNING" not in again.stdout and "Not done" not in again.stdout
    assert "Study 's': 5 trials (4 COMPLETE, 1 FAIL)" in again.stdout, again.stdout
    all_trials = assert_budget_done(tmp_path, budget=4)
    dead = all_trials[victim.number]
    assert dead.state is TrialState.FAIL and dead.user_attrs["failure_reason"] == "worker_died"
    retry = next(t for t in all_trials if t.system_attrs.get("failed_trial") == victim.number)
    assert retry.params == dead.params and retry.state is TrialState.COMPLETE
    client, _, _ = mlflow_runs(tmp_path)
    dead_run = client.get_run(dead.user_attrs["mlflow_run_id"])
    assert dead_run.info.status == "FAILED" and dead_run.data.tags["failure_reason"] == "worker_died"


def test_an_interrupt_queues_a_clean_retry_that_does_not_spend_max_retry(tmp_path):
    command = sweep_command("hydra.sweeper.n_trials=2", "hydra.sweeper.max_retry=1", *LONG_TRIALS)
    sweep = start(command, tmp_path)
    try:
        wait_until(lambda: training(tmp_path), "trial 0 to train")
        sweep.send_signal(signal.SIGINT)
        code, _, stderr = finish(sweep)
    finally:
        kill_group(sweep)
    assert code == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    assert [line for line in stderr.splitlines() if "nterrupted" in line] == [
        "Interrupted (SIGINT): run the same command again to resume study 's'"
    ]
    first = trials(tmp_path)
    interrupted, retry = first[0], first[2]
    assert interrupted.state is TrialState.FAIL and interrupted.user_attrs["failure_reason"] == "interrupted"
    assert retry.state is TrialState.WAITING and retry.system_attrs["failed_trial"] == 0
    assert retry.user_attrs == {}  # no failure reason, no dead run id: clean bookkeeping
    client, parents, children = mlflow_runs(tmp_path)
    assert parents[0].info.status == "KILLED"
    (killed,) = children
    assert killed.info.status == "KILLED" and killed.data.tags["failure_reason"] == "interrupted"
    assert killed.data.tags["optuna.trial_state"] == "FAIL"

    # The retry's worker is then killed: the interrupt did not use up max_retry=1, so it is retried.
    sweep = start(command, tmp_path)
    try:
        wait_until(lambda: [t for t in training(tmp_path) if t.number == 2], "the retry to train")
        sweep.send_signal(signal.SIGKILL)
        sweep.wait()
    finally:
        kill_group(sweep)
    again = run(command, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    all_trials = assert_budget_done(tmp_path, budget=2)
    assert [t.state.name for t in all_trials] == ["FAIL", "COMPLETE", "FAIL", "COMPLETE"]
    assert all_trials[3].system_attrs["failed_trial"] == 0 and all_trials[3].system_attrs["retry_history"] == [0, 2]
    assert all_trials[2].user_attrs["failure_reason"] == "worker_died"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_single_run_stopped_by_a_signal_ends_killed_with_one_line(tmp_path, signum):
    from tiny import TINY_SWEEP

    process = start([VAE_TRAIN, *TINY_SWEEP, "trainer.epochs=2000"], tmp_path)
    try:
        wait_until(lambda: sql(tmp_path / "mlflow.db", "SELECT status FROM runs") == [("RUNNING",)], "the run")
        process.send_signal(signum)
        code, _, stderr = finish(process)
    finally:
        kill_group(process)
    assert code == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    (run_,) = client.search_runs([client.get_experiment_by_name("vae-sweep").experiment_id])
    name = signal.Signals(signum).name
    assert stderr.strip().splitlines()[-1] == (
        f"vae-train: interrupted ({name}): MLflow run {run_.info.run_id} is KILLED (failure_reason=interrupted)"
    )
    assert run_.info.status == "KILLED" and run_.data.tags["failure_reason"] == "interrupted"
