"""Damaged stores, failing servers and bad input never cost a traceback, a trial or a run
(docs/reliability.md, "Stores, servers and input"): real `vae-train` processes, real stores."""

from __future__ import annotations

import contextlib
import random
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from helpers.environment import clean_env
from helpers.mlflow_server import mlflow_server
from helpers.run_if import needs_vae_train
from helpers.sweep_processes import (
    TIMEOUT_S,
    assert_budget_done,
    finish,
    kill_group,
    mlflow_runs,
    run,
    start,
    sweep_command,
    trials,
    wait_for_training,
    wait_until,
)
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from vae_sweep import cli
from vae_sweep.names import epoch_key

pytestmark = [
    pytest.mark.slow,
    needs_vae_train,
]


def test_a_resumed_study_whose_choice_changed_is_refused_before_any_trial(tmp_path):
    first = run(sweep_command("hydra.sweeper.n_trials=1", "optimizer=choice(adam,rmsprop)", "tracking=none"), tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    changed = run(sweep_command("hydra.sweeper.n_trials=3", "optimizer=choice(adam,sgd)", "tracking=none"), tmp_path)
    assert changed.returncode == 2, changed.stderr[-3000:]
    assert "Traceback" not in changed.stderr
    (line,) = [line for line in changed.stderr.splitlines() if "error" in line.lower()]
    assert line.startswith(
        "vae-train: error: hydra.sweeper.params.optimizer: study 's' searched it as choice(adam, rmsprop), "
        "now choice(adam, sgd); "
    ), line
    assert "hydra.sweeper.fresh=true" in line
    assert [t.state for t in trials(tmp_path)] == [TrialState.COMPLETE]  # nothing added, nothing run


def test_with_hydra_job_chdir_every_process_uses_the_stores_of_the_launch_folder(workdir):
    out = run(sweep_command("hydra.sweeper.n_trials=2", "hydra.job.chdir=true"), workdir)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    assert sorted(p.relative_to(workdir).as_posix() for p in workdir.rglob("*.db")) == ["mlflow.db", "optuna.db"]
    assert_budget_done(workdir, budget=2)


def test_an_artifact_store_that_cannot_be_written_costs_the_files_not_the_metrics_or_the_runs(workdir):
    (workdir / "blocked.txt").write_text("a file where the artifact folder should be\n")
    client = MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    client.create_experiment("vae-sweep", artifact_location=str(workdir / "blocked.txt" / "artifacts"))
    out = run(sweep_command("hydra.sweeper.n_trials=2"), workdir)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stdout + out.stderr
    logs = out.stdout + out.stderr
    assert "MLflow artifact store of sqlite:///mlflow.db failed while logging config.yaml" in logs
    assert re.search(r"could not log to MLflow store \S+ for run \w+: config\.yaml, model/state_dict\.pt", logs)
    _, parents, children = mlflow_runs(workdir)
    assert [t.state for t in trials(workdir)] == [TrialState.COMPLETE] * 2
    assert sorted(r.info.status for r in children) == ["FINISHED", "FINISHED"]
    for child in children:  # metrics, tags and the final status all reached the database
        assert {epoch_key("val_loss"), "test_loss", "test_iwae"} <= set(child.data.metrics)
        assert child.data.tags["optuna.trial_state"] == "COMPLETE"
    assert parents[0].info.status == "FINISHED"


def test_a_run_whose_server_died_before_its_end_is_closed_later_and_its_recovery_works(tmp_path, monkeypatch, capsys):
    with mlflow_server(f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "server") as server:
        command = sweep_command(
            "hydra.sweeper.n_trials=1", "trainer.epochs=80", "hydra.sweeper.pruner.name=none",
            "tracking.flush_seconds=0", f"tracking.uri={server.url}",
        )  # fmt: skip
        env = {**clean_env(), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "2"}
        log = (tmp_path / "sweep.log").open("w")
        sweep = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            client = MlflowClient(server.url)
            wait_until(lambda: logged_epochs(client) >= 5, "the trial's run to log epochs")
            server.stop()  # gone before the trial ends: its end, final metrics and weights never arrive
            assert sweep.wait(timeout=TIMEOUT_S) == 0, (tmp_path / "sweep.log").read_text()[-3000:]
        finally:
            kill_group(sweep)
            log.close()
        server.start()
        (stale,) = client.search_runs([experiment(client)], "tags.`optuna.trial_number` = '0'")
        assert stale.info.status == "RUNNING" and [t.state for t in trials(tmp_path)] == [TrialState.COMPLETE]

        again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
        assert again.returncode == 0, again.stderr[-3000:]
        closed = client.get_run(stale.info.run_id)  # closed from what Optuna recorded, not left RUNNING
        assert closed.info.status == "FINISHED" and closed.data.tags["optuna.trial_state"] == "COMPLETE"
        assert closed.data.metrics["trial_value"] == trials(tmp_path)[0].value
        assert "vae-reproduce --study S --trial N" in closed.data.tags["vae_sweep.incomplete"]

        monkeypatch.chdir(tmp_path)  # vae-reproduce in this process: a process start saved
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
        for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
            monkeypatch.setenv(name, env[name])
        capsys.readouterr()
        code = cli.reproduce(["--study", "s", "--trial", "0", "--tracking-uri", server.url])
        recovery = capsys.readouterr()
        assert code == 0, recovery.out + recovery.err
        assert "Verdict: recovered" in recovery.out
        (new,) = client.search_runs([experiment(client)], f"tags.reproduced_from = '{stale.info.run_id}'")
        assert new.info.status == "FINISHED" and "test_loss" in new.data.metrics


def experiment(client: MlflowClient) -> str:
    return client.get_experiment_by_name("vae-sweep").experiment_id


def logged_epochs(client: MlflowClient) -> int:
    found = client.get_experiment_by_name("vae-sweep")
    runs = client.search_runs([found.experiment_id], "tags.`optuna.trial_number` = '0'") if found else []
    return len(client.get_metric_history(runs[0].info.run_id, epoch_key("train_loss"))) if runs else 0


def test_plots_are_only_those_asked_for(tmp_path):
    out = run(sweep_command("hydra.sweeper.n_trials=1", "tracking=none", "hydra.sweep.dir=sweep"), tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert not (tmp_path / "sweep" / "plots").exists()  # plots=[] (the helper's) draws none
    one = run(
        sweep_command(
            "hydra.sweeper.n_trials=1",
            "tracking=none",
            "hydra.sweep.dir=one",
            "hydra.sweeper.plots=[optimization_history]",
        ),
        tmp_path,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    assert [p.name for p in (tmp_path / "one" / "plots").iterdir()] == ["optimization_history.png"]
    bad = run(sweep_command("hydra.sweeper.plots=[contour]", "tracking=none"), tmp_path)
    assert bad.returncode == 2
    assert "vae-train: error: hydra.sweeper.plots: unknown plot 'contour'; choose from pareto_front," in bad.stderr


def copy_store(source: Path, target: Path) -> Path:
    """A consistent copy of a finished sweep's SQLite store (its write-ahead log included)."""
    with contextlib.closing(sqlite3.connect(source)) as src, contextlib.closing(sqlite3.connect(target)) as dst:
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")  # one file, nothing beside it
    return target


def overwrite_pages(path: Path, pages: range) -> None:
    """What a failing disk or a stray write does: whole pages in the middle of the file turned to noise."""
    size = path.stat().st_size
    with path.open("r+b") as file:
        for page in pages:
            assert (page + 1) * 4096 <= size, "the store is too small to damage these pages"
            file.seek(page * 4096)
            file.write(random.Random(page).randbytes(4096))


def deleted_experiment(finished, cwd: Path) -> list[str]:
    store = copy_store(finished.folder / "mlflow.db", cwd / "mlflow.db")
    with contextlib.closing(sqlite3.connect(store)) as connection:  # what the UI's "Delete" writes
        connection.execute("UPDATE experiments SET lifecycle_stage = 'deleted' WHERE name = 'vae-sweep'")
        connection.commit()
    return []


def optuna_storage_as_mlflow_store(finished, cwd: Path) -> list[str]:
    copy_store(finished.folder / "optuna.db", cwd / "study.db")
    return ["tracking.uri=sqlite:///study.db"]


def damaged_mlflow_store(finished, cwd: Path) -> list[str]:
    overwrite_pages(copy_store(finished.folder / "mlflow.db", cwd / "mlflow.db"), range(3, 6))
    return []


def damaged_optuna_storage(finished, cwd: Path) -> list[str]:
    overwrite_pages(copy_store(finished.folder / "optuna.db", cwd / "optuna.db"), range(3, 6))
    return [f"hydra.sweeper.study_name={finished.study_name}"]


def another_applications_file(finished, cwd: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(cwd / "mlflow.db")) as connection:
        connection.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
        connection.execute("INSERT INTO notes (text) VALUES ('my notes')")
        connection.commit()
    return []


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            deleted_experiment,
            "tracking.experiment: experiment 'vae-sweep' was deleted in MLflow; restore it "
            "(MLFLOW_TRACKING_URI=sqlite:///mlflow.db mlflow experiments restore --experiment-id 1)",
        ),
        (optuna_storage_as_mlflow_store, "tracking.uri: {cwd}/study.db is not an MLflow store (it holds another"),
        (damaged_mlflow_store, "tracking.uri: the MLflow store {cwd}/mlflow.db is damaged (SQLite: "),
        (damaged_optuna_storage, "hydra.sweeper.storage: the Optuna storage {cwd}/optuna.db is damaged (SQLite: "),
        (another_applications_file, "tracking.uri: {cwd}/mlflow.db is not an MLflow store (it holds another "),
    ],
    ids=["deleted-experiment", "optuna-storage-as-mlflow-store", "damaged-mlflow", "damaged-optuna", "foreign-file"],
)
def test_a_damaged_or_foreign_store_stops_the_sweep_in_one_line_before_the_study_is_touched(
    tmp_path, finished_study, damage, message
):
    overrides = damage(finished_study, tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    out = run(sweep_command("hydra.sweeper.n_trials=2", *overrides), tmp_path)
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-3000:]
    assert "Traceback" not in out.stdout + out.stderr
    errors = [line for line in out.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, out.stderr
    assert errors[0].startswith("vae-train: error: " + message.format(cwd=tmp_path)), errors[0]
    # Nothing written: no new study or slots, no stores made, the damaged ones as they were.
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name in before} == before
    assert not (tmp_path / "optuna.db").exists() or "optuna.db" in before
    assert not list(tmp_path.glob("multirun"))


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 48 MB file system of the test's own (tmpfs), to fill up; needs root's mount."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = shutil.which("mount")
    if mount is None or subprocess.run([mount, "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(disk)]).returncode:
        pytest.skip("cannot mount a tmpfs here (it needs root)")
    try:
        yield disk
    finally:
        subprocess.run([shutil.which("umount") or "umount", "-l", str(disk)], check=False)


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    with filler.open("wb") as file, contextlib.suppress(OSError):
        while True:
            file.write(b"\0" * 2**20)
            file.flush()
    return filler


def test_a_full_disk_mid_sweep_stops_in_one_line_and_the_same_command_resumes_once_there_is_space(
    small_disk, mlflow_template
):
    shutil.copy(mlflow_template, small_disk / "mlflow.db")
    command = sweep_command("hydra.sweeper.n_trials=4", "trainer.epochs=100", "hydra.sweeper.pruner.name=none")
    sweep = start(command, small_disk)
    try:
        wait_for_training(sweep, small_disk, 1)
        filler = fill(small_disk)
        code, stdout, stderr = finish(sweep)
    finally:
        kill_group(sweep)
    assert code == 1, stdout[-2000:] + stderr[-3000:]
    assert "Traceback" not in stdout + stderr and "Logging error" not in stderr
    errors = [line for line in stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, stderr[-3000:]
    assert errors[0].startswith(f"vae-train: error: no space left on the disk holding {small_disk}"), errors[0]
    assert "run the same command again" in errors[0]
    filler.unlink()
    again = run(command, small_disk)
    assert again.returncode == 0, again.stderr[-3000:]
    assert_budget_done(small_disk, budget=4)  # the stores were whole, and what was cut off is retried
