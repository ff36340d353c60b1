"""Every crash and signal, at any moment, then the same command again: the study ends with its
exact budget, and Optuna and MLflow agree one to one (docs/reliability.md, "Crashes and signals").

Real `vae-train` processes on the default SQLite stores, real signals. No test waits out a
heartbeat's grace period to pass: the grace period is set far longer than any test (600 s), so a
trial that is only found stale by its heartbeat would make the test time out, not pass.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import optuna
import pytest
from helpers.environment import clean_env
from helpers.in_process import vae_train
from helpers.run_if import needs_vae_train
from helpers.sweep_processes import (
    TIMEOUT_S,
    VAE_TRAIN,
    assert_budget_done,
    finish,
    kill_group,
    kill_when,
    kill_while_training,
    mlflow_runs,
    owner_pid,
    run,
    scalar,
    session_pids,
    sql,
    start,
    sweep_command,
    training,
    trials,
    wait_until,
)
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from vae_sweep.names import epoch_key
from vae_sweep.sweep.study import make_storage
from vae_sweep.track.store_template import CACHE_ENV

pytestmark = [
    pytest.mark.slow,
    needs_vae_train,
]
ATTEMPTS = 5
# Trials that a signal stops (or a kill ends) long before they could finish.
UNFINISHED_TRIALS = ("trainer.epochs=3000", "hydra.sweeper.pruner.name=none", "hydra.sweeper.grace_period=600")
# Trials of a second or two, long enough to be caught training; no weights or pictures to log.
LONG_TRIALS = (
    "trainer.epochs=100",
    "hydra.sweeper.pruner.name=none",
    "hydra.sweeper.grace_period=600",
    "tracking.log_model=false",
    "tracking.log_images=false",
)


def test_kill_9_then_the_same_command_at_once_completes_the_budget(workdir):
    # Trials of several seconds: under a loaded CI machine a 1-second trial 1 could start and end
    # between two polls of the study (each a new storage), and the sweep end unkilled.
    longer = [o for o in LONG_TRIALS if not o.startswith("trainer.epochs=")]
    command = sweep_command("hydra.sweeper.n_trials=4", "trainer.epochs=400", *longer)
    victim = kill_while_training(command, workdir, number=1)
    again = run(command, workdir)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Traceback" not in again.stderr
    assert "RUNNING" not in again.stdout and "Not done" not in again.stdout
    assert "Study 's': 5 trials (4 COMPLETE, 1 FAIL)" in again.stdout, again.stdout
    all_trials = assert_budget_done(workdir, budget=4)
    dead = all_trials[victim.number]
    assert dead.state is TrialState.FAIL and dead.user_attrs["failure_reason"] == "worker_died"
    retry = next(t for t in all_trials if t.system_attrs.get("failed_trial") == victim.number)
    assert retry.params == dead.params and retry.state is TrialState.COMPLETE
    client, _, _ = mlflow_runs(workdir)
    dead_run = client.get_run(dead.user_attrs["mlflow_run_id"])
    assert dead_run.info.status == "FAILED" and dead_run.data.tags["failure_reason"] == "worker_died"


def test_an_interrupt_queues_a_clean_retry_that_does_not_spend_max_retry(workdir):
    command = sweep_command("hydra.sweeper.n_trials=2", "hydra.sweeper.max_retry=1", *LONG_TRIALS)
    sweep = start([*command, *UNFINISHED_TRIALS], workdir)  # a fixed override: the same study
    try:
        wait_until(lambda: training(workdir), "trial 0 to train")
        sweep.send_signal(signal.SIGINT)
        code, _, stderr = finish(sweep)
    finally:
        kill_group(sweep)
    assert code == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    assert [line for line in stderr.splitlines() if "nterrupted" in line] == [
        "Interrupted (SIGINT): run the same command again to resume study 's'"
    ]
    first = trials(workdir)
    interrupted, retry = first[0], first[2]
    assert first[1].state is TrialState.WAITING  # no new trial started after the interrupt
    assert interrupted.state is TrialState.FAIL and interrupted.user_attrs["failure_reason"] == "interrupted"
    assert retry.state is TrialState.WAITING and retry.system_attrs["failed_trial"] == 0
    assert retry.user_attrs == {}  # no failure reason, no dead run id: clean bookkeeping
    _, parents, children = mlflow_runs(workdir)
    assert parents[0].info.status == "KILLED"
    (killed,) = children
    assert killed.info.status == "KILLED" and killed.data.tags["failure_reason"] == "interrupted"
    assert killed.data.tags["optuna.trial_state"] == "FAIL"

    # The retry's worker is then killed: the interrupt did not use up max_retry=1, so it is retried.
    # Longer trials here: on a loaded machine a trial of a second could end between two polls.
    kill_while_training([*command, "trainer.epochs=400"], workdir, number=2)
    again = run(command, workdir)
    assert again.returncode == 0, again.stderr[-3000:]
    all_trials = assert_budget_done(workdir, budget=2)
    assert [t.state.name for t in all_trials] == ["FAIL", "COMPLETE", "FAIL", "COMPLETE"]
    assert all_trials[3].system_attrs["failed_trial"] == 0 and all_trials[3].system_attrs["retry_history"] == [0, 2]
    assert all_trials[2].user_attrs["failure_reason"] == "worker_died"


@pytest.mark.parametrize(
    ("signum", "to_group"),
    [
        pytest.param(signal.SIGINT, True, id="ctrl-c"),  # a terminal sends it to every process of the job
        pytest.param(signal.SIGTERM, False, id="sigterm"),  # a scheduler's stop, to the sweep's process only
    ],  # SIGHUP (the terminal closed) reaches the job like Ctrl-C, and one handler takes both: see below
)
def test_a_signal_stops_every_worker_of_a_parallel_sweep_and_closes_each_trial(workdir, signum, to_group):
    command = sweep_command("hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2", *UNFINISHED_TRIALS)
    sweep = start(command, workdir)
    try:
        running = wait_until(lambda: len(training(workdir)) == 2 and training(workdir), "two trials to train")
        if to_group:
            os.killpg(sweep.pid, signum)
        else:
            sweep.send_signal(signum)
        code, _, stderr = finish(sweep)
        # No orphaned worker goes on with the study (joblib's resource tracker takes a moment to see its end).
        wait_until(lambda: not session_pids(sweep), "every process of the sweep to exit", timeout=15)
    finally:
        kill_group(sweep)
    assert code == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    name = signal.Signals(signum).name
    assert [line for line in stderr.splitlines() if "nterrupted" in line] == [
        f"Interrupted ({name}): run the same command again to resume study 's'"
    ]
    after = {t.number: t for t in trials(workdir)}
    for trial in running:
        stopped = after[trial.number]
        assert stopped.state is TrialState.FAIL and stopped.user_attrs["failure_reason"] == "interrupted"
        retry = next(t for t in after.values() if t.system_attrs.get("failed_trial") == trial.number)
        assert retry.state is TrialState.WAITING and retry.params == trial.params
    assert not [t for t in after.values() if t.state is TrialState.RUNNING]
    _, parents, children = mlflow_runs(workdir)
    assert parents[0].info.status == "KILLED"
    by_id = {r.info.run_id: r for r in children}
    for trial in running:
        killed = by_id[trial.user_attrs["mlflow_run_id"]]
        assert killed.info.status == "KILLED", killed.info.status
        assert killed.data.tags["optuna.trial_state"] == "FAIL"
        assert killed.data.tags["failure_reason"] == "interrupted"


def test_a_worker_killed_by_the_oom_killer_costs_only_trials_and_the_sweep_goes_on(workdir):
    command = sweep_command("hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2", *LONG_TRIALS)
    sweep = start(command, workdir)
    try:
        running = wait_until(lambda: len(training(workdir)) == 2 and training(workdir), "two trials to train")
        os.kill(owner_pid(running[0]), signal.SIGKILL)  # what the OOM killer does to one worker process
        code, stdout, stderr = finish(sweep)
    finally:
        kill_group(sweep)
    assert code == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    warnings = [line for line in (stdout + stderr).splitlines() if "a worker ended unexpectedly" in line]
    assert len(warnings) == 1 and "TerminatedWorkerError" in warnings[0], stderr[-3000:]
    assert "Results:" in stdout
    all_trials = assert_budget_done(workdir, budget=4)
    killed = {t.number: t for t in all_trials}[running[0].number]
    assert killed.state is TrialState.FAIL and killed.user_attrs["failure_reason"] == "worker_died"


def test_more_jobs_than_trials_start_only_the_workers_needed(tmp_path, capsys):
    # tests/sweep/test_study.py checks the numbers and the warning beyond the cores; this, the processes.
    # The sweep runs in this process (a process start saved); its workers are processes of their own.
    command = sweep_command(
        "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=8", "hydra.sweep.dir=sweep", "tracking=none",
        f"hydra.sweeper.storage=sqlite:///{tmp_path}/optuna.db",
    )  # fmt: skip
    out = vae_train(tmp_path, command[1:], capsys)
    assert out.code == 0, out.text[-3000:]
    assert "hydra.sweeper.n_jobs=8, but 2 trial(s) left: starting 2 worker(s)" in out.out
    assert sorted(p.name for p in (tmp_path / "sweep" / "workers").iterdir()) == ["0", "1"]  # one folder a worker
    assert [t.state for t in trials(tmp_path)] == [TrialState.COMPLETE] * 2


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_single_run_stopped_by_a_signal_ends_killed_with_one_line(workdir, signum):
    from helpers.tiny import TINY_SWEEP

    process = start([VAE_TRAIN, *TINY_SWEEP, "trainer.epochs=2000"], workdir)
    try:
        wait_until(lambda: sql(workdir / "mlflow.db", "SELECT status FROM runs") == [("RUNNING",)], "the run")
        process.send_signal(signum)
        code, _, stderr = finish(process)
    finally:
        kill_group(process)
    assert code == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    client = MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    (run_,) = client.search_runs([client.get_experiment_by_name("vae-sweep").experiment_id])
    name = signal.Signals(signum).name
    assert stderr.strip().splitlines()[-1] == (
        f"vae-train: interrupted ({name}): MLflow run {run_.info.run_id} is KILLED (failure_reason=interrupted)"
    )
    assert run_.info.status == "KILLED" and run_.data.tags["failure_reason"] == "interrupted"


def test_a_worker_paused_past_the_grace_period_drops_its_trial_quietly_when_it_wakes(workdir):
    command = sweep_command(
        "hydra.sweeper.n_trials=6", "hydra.sweeper.n_jobs=2", "trainer.epochs=150", "hydra.sweeper.pruner.name=none",
        "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=3",  # the pause must outlast it
    )  # fmt: skip
    sweep = start(command, workdir)
    try:
        paused = wait_until(lambda: len(training(workdir)) == 2 and training(workdir)[0], "two trials to train")
        os.kill(owner_pid(paused), signal.SIGSTOP)  # Ctrl-Z, a suspended laptop, a paused VM
        wait_until(lambda: retry_of(workdir, paused.number), "the other worker to fail and retry the trial")
        os.kill(owner_pid(paused), signal.SIGCONT)
        code, stdout, stderr = finish(sweep)
    finally:
        kill_group(sweep)
    assert code == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    assert f"trial {paused.number} was failed by another process while this worker was stopped" in stdout
    assert "Results:" in stdout
    all_trials = assert_budget_done(workdir, budget=6)
    assert {t.number: t for t in all_trials}[paused.number].state is TrialState.FAIL
    client, _, _ = mlflow_runs(workdir)
    woken = client.get_run(paused.user_attrs["mlflow_run_id"])
    assert woken.info.status == "FAILED" and woken.data.tags["failure_reason"] == "worker_died"


def retry_of(cwd, number):
    return [t for t in trials(cwd) if t.system_attrs.get("failed_trial") == number]


def test_a_kill_while_mlflow_creates_its_store_leaves_nothing_half_made(tmp_path, monkeypatch):
    # No migrated store cached yet, as on a machine's first sweep: a copy of one takes milliseconds.
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "empty-cache"))
    command = sweep_command("hydra.sweeper.n_trials=2", "hydra.sweeper.pruner.name=none")
    sweep = start(command, tmp_path)
    try:  # MLflow's migrations take seconds: the kill lands while they run in the temporary file
        assert kill_when(sweep, lambda: any(tmp_path.glob(".mlflow.db.*.new"))), "the store was never being made"
        sweep.wait()
    finally:
        kill_group(sweep)
    assert not (tmp_path / "mlflow.db").exists()  # never half made under its real name
    again = run(command, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Traceback" not in again.stderr
    assert not list(tmp_path.glob(".mlflow.db.*"))  # the killed build's leftovers are removed
    assert_budget_done(tmp_path, budget=2)


def test_a_kill_while_the_budget_is_added_is_completed_by_the_same_command(workdir):
    budget = 24  # about 0.1 s of inserts: the kill lands among them
    command = sweep_command(
        f"hydra.sweeper.n_trials={budget}", "trainer.epochs=1", "hydra.sweeper.pruner.name=none",
        "tracking.log_model=false", "tracking.log_images=false",
    )  # fmt: skip
    sweep = start(command, workdir)
    try:
        slots_query = "SELECT count(*) FROM trials"
        landed = kill_when(sweep, lambda: 0 < scalar(workdir / "optuna.db", slots_query) < budget)
        sweep.wait()
    finally:
        kill_group(sweep)
    slots = scalar(workdir / "optuna.db", slots_query)
    assert landed and 0 < slots < budget, slots
    again = run(command, workdir)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"Added {budget - slots} trials to the budget" in again.stdout
    assert_budget_done(workdir, budget=budget)


def test_a_kill_right_after_the_parent_run_was_made_leaves_one_parent(tmp_path, mlflow_template):
    command = sweep_command("hydra.sweeper.n_trials=2", "hydra.sweeper.pruner.name=none")
    parents = "SELECT count(*) FROM tags WHERE key = 'vae_sweep.role'"
    recorded = "SELECT count(*) FROM study_user_attributes WHERE key = 'mlflow_parent_run_id'"
    for attempt in range(ATTEMPTS):  # the moment lasts milliseconds: frozen at once, killed if it was caught
        workdir = tmp_path / f"attempt{attempt}"
        workdir.mkdir()
        shutil.copy(mlflow_template, workdir / "mlflow.db")
        sweep = start(command, workdir)
        try:
            assert kill_when(sweep, lambda: scalar(workdir / "mlflow.db", parents) > 0, signal.SIGSTOP)  # noqa: B023
            caught = not scalar(workdir / "optuna.db", recorded)
            sweep.send_signal(signal.SIGKILL)
            sweep.wait()
        finally:
            kill_group(sweep)
        if caught:
            break
    assert caught, f"in {ATTEMPTS} attempts the study always recorded its parent run before the kill"
    again = run(command, workdir)
    assert again.returncode == 0, again.stderr[-3000:]
    assert_budget_done(workdir, budget=2)  # one parent run, FINISHED, with both trials under it


@pytest.mark.parametrize("moment", ["claimed_not_started", "trained_not_told", "ctrl_c_twice"])
def test_a_signal_at_a_trial_boundary_never_leaves_it_running(workdir, moment):
    command = sweep_command("hydra.sweeper.n_trials=2", *LONG_TRIALS)
    if moment == "ctrl_c_twice":  # a trial that runs on: the clean-up is of the interrupt, not of its end
        command += UNFINISHED_TRIALS
    sweep = start(command, workdir)
    optuna_db, mlflow_db = workdir / "optuna.db", workdir / "mlflow.db"
    try:
        if moment == "claimed_not_started":  # RUNNING, owner recorded, no MLflow run yet
            assert kill_when(sweep, lambda: claimed_without_run(optuna_db), signal.SIGTERM)
        elif moment == "trained_not_told":  # its final metrics are logged, Optuna not told yet
            final = "SELECT count(*) FROM latest_metrics WHERE key = 'test_loss'"
            assert kill_when(sweep, lambda: scalar(mlflow_db, final) > 0, signal.SIGTERM)
        else:
            wait_until(lambda: training(workdir), "trial 0 to train")
            sweep.send_signal(signal.SIGINT)
            time.sleep(0.05)  # the second lands in the clean-up of the first
            sweep.send_signal(signal.SIGINT)
        code, _, stderr = finish(sweep)
    finally:
        kill_group(sweep)
    assert code == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    first = trials(workdir)[0]
    client, _, children = mlflow_runs(workdir)
    assert not [t for t in trials(workdir) if t.state is TrialState.RUNNING]
    assert not [r for r in children if r.info.status == "RUNNING"]
    if moment == "trained_not_told":  # the result is kept
        assert first.state is TrialState.COMPLETE
        assert client.get_run(first.user_attrs["mlflow_run_id"]).info.status == "FINISHED"
        return
    assert first.state is TrialState.FAIL and first.user_attrs["failure_reason"] == "interrupted"
    assert retry_of(workdir, 0)[0].state is TrialState.WAITING
    if "mlflow_run_id" in first.user_attrs:  # the signal may land after its run started
        run_ = client.get_run(first.user_attrs["mlflow_run_id"])
        assert run_.info.status == "KILLED" and run_.data.tags["optuna.trial_state"] == "FAIL"


def claimed_without_run(optuna_db) -> bool:
    rows = sql(
        optuna_db,
        "SELECT t.trial_id, group_concat(a.key) FROM trials t LEFT JOIN trial_user_attributes a "
        "ON a.trial_id = t.trial_id WHERE t.state = 'RUNNING' GROUP BY t.trial_id",
    )
    return any("vae_sweep.worker" in (keys or "") and "mlflow_run_id" not in (keys or "") for _, keys in rows)


def test_a_killed_trial_resumes_from_its_checkpoint_in_the_same_run_and_ends_as_if_never_killed(workdir):
    epochs, every = 300, 25
    command = sweep_command(
        "hydra.sweeper.n_trials=1", f"trainer.epochs={epochs}", f"trainer.checkpoint_every={every}",
        "hydra.sweeper.pruner.name=none", "hydra.sweeper.grace_period=600",
    )  # fmt: skip
    sweep = start(command, workdir)
    logged = f"SELECT max(step) FROM metrics WHERE key = '{epoch_key('train_loss')}'"
    try:  # killed after two checkpoints at least, well before the end
        wait_until(lambda: scalar(workdir / "mlflow.db", logged) >= 2 * every, "two checkpoints")
        sweep.send_signal(signal.SIGKILL)
        sweep.wait()
    finally:
        kill_group(sweep)
    killed_at = scalar(workdir / "mlflow.db", logged)
    assert killed_at < epochs
    again = run(command, workdir)
    assert again.returncode == 0, again.stderr[-3000:]
    first, retry = assert_budget_done(workdir, budget=1)
    assert first.state is TrialState.FAIL and retry.system_attrs["failed_trial"] == 0
    run_id = first.user_attrs["mlflow_run_id"]
    assert retry.user_attrs["mlflow_run_id"] == run_id  # the same MLflow child run goes on
    client, _, children = mlflow_runs(workdir)
    assert [r.info.run_id for r in children] == [run_id]
    resumed = client.get_run(run_id)
    resumed_at = int(resumed.data.tags["vae_sweep.resumed_at_epoch"])
    assert every <= resumed_at <= killed_at and resumed_at % every == 0
    assert resumed.data.tags["optuna.trial_number"] == "1" and "failure_reason" not in resumed.data.tags
    steps = [m.step for m in client.get_metric_history(run_id, epoch_key("val_loss"))]
    assert steps == list(range(1, epochs + 1))  # every epoch once: no duplicate, no gap
    assert [a.path for a in client.list_artifacts(run_id, "checkpoint")] == ["checkpoint/checkpoint.pt"]

    # Trained again from scratch, never killed: the same final metrics and weights, bit for bit.
    check = subprocess.run(
        [shutil.which("vae-reproduce"), run_id, "--tracking-uri", f"sqlite:///{workdir}/mlflow.db"],
        cwd=workdir, env=clean_env(), capture_output=True, text=True, timeout=TIMEOUT_S,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    assert "Weights: bitwise equal" in check.stdout and "Verdict: identical" in check.stdout, check.stdout


def test_with_heartbeats_off_a_trial_on_another_machine_is_named_and_the_study_not_called_done(tmp_path):
    storage = make_storage(f"sqlite:///{tmp_path}/optuna.db")
    study = optuna.create_study(study_name="s", storage=storage)
    study.add_trial(optuna.trial.create_trial(state=TrialState.WAITING))
    trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name("s"), 0)
    storage.set_trial_state_values(trial_id, TrialState.RUNNING)  # claimed by a worker elsewhere
    elsewhere = {"host": "gpu-node-7/another-boot/1", "pid": 4242, "started": 1, "launch": "theirs"}
    storage.set_trial_user_attr(trial_id, "vae_sweep.worker", elsewhere)
    out = run(
        sweep_command("hydra.sweeper.n_trials=1", "hydra.sweeper.heartbeat_interval=0", "tracking=none"), tmp_path
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Not done: trial(s) 0 (gpu-node-7, pid 4242) still run in other processes" in out.stdout, out.stdout
    assert [t.state for t in trials(tmp_path)] == [TrialState.RUNNING]  # not ours to fail without a heartbeat
