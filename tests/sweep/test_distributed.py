"""Several ``vae-train -m`` processes sharing one study in PostgreSQL, as distributed workers do.

The server comes from ``tests/helpers/postgres.py``, loaded as a plugin below (``tests/`` is on
``sys.path``, as for ``conftest.py``).
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from helpers.environment import clean_env
from helpers.run_if import VAE_TRAIN, needs_vae_train
from helpers.tiny import TINY_SWEEP
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

pytest_plugins = ["helpers.postgres"]

N_PROCESSES = 3
N_TRIALS = 9
TIMEOUT_S = 240


def test_the_fixture_serves_postgresql(postgres_url: str) -> None:
    engine = sqlalchemy.create_engine(postgres_url)
    try:
        with engine.connect() as connection:
            version = connection.execute(sqlalchemy.text("SELECT version()")).scalar_one()
    finally:
        engine.dispose()
    assert engine.dialect.name == "postgresql"
    assert version.startswith("PostgreSQL")

    study = optuna.create_study(study_name="fixture-check", storage=postgres_url)
    study.optimize(lambda trial: trial.suggest_float("x", -1, 1) ** 2, n_trials=2)
    reloaded = optuna.load_study(study_name="fixture-check", storage=postgres_url)
    assert [t.state for t in reloaded.trials] == [TrialState.COMPLETE] * 2


def trial_folders(sweep_cwd: Path) -> list[int]:
    """Trial numbers whose Hydra job folder (``multirun/DATE/TIME/<number>/``) is under ``sweep_cwd``."""
    return [int(path.name) for path in sweep_cwd.glob("multirun/*/*/*") if path.is_dir() and path.name.isdigit()]


@pytest.mark.slow
@needs_vae_train
def test_three_processes_run_one_budget_of_trials_together(fresh_postgres_url: str, tmp_path: Path) -> None:
    storage = fresh_postgres_url  # no Optuna tables yet: the processes also race to create them
    mlflow_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"  # new as well: they race to create the MLflow tables
    command = [
        VAE_TRAIN,
        "-m",
        "study=quick",
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.study_name=dist",
        f"hydra.sweeper.n_trials={N_TRIALS}",
        f"tracking.uri={mlflow_uri}",
        *TINY_SWEEP,
        "hydra.sweeper.plots=[]",
        "trainer.epochs=20",  # trials of a second or so: work left for the processes that set up last
        "hydra.sweeper.pruner.name=none",
    ]
    env = clean_env()
    cwds = [tmp_path / f"worker{i}" for i in range(N_PROCESSES)]
    processes = []
    for cwd in cwds:  # all at once: they race to create the study, its budget and the parent run
        cwd.mkdir()
        log = (cwd / "output.log").open("w")
        processes.append(subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT))
        log.close()
    deadline = time.monotonic() + TIMEOUT_S
    try:
        codes = [process.wait(timeout=max(1.0, deadline - time.monotonic())) for process in processes]
    except subprocess.TimeoutExpired:
        codes = None
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    logs = "\n".join(f"--- worker{i} ---\n{(cwd / 'output.log').read_text()[-4000:]}" for i, cwd in enumerate(cwds))
    assert codes is not None, f"the sweep was not done after {TIMEOUT_S} s\n{logs}"
    assert codes == [0] * N_PROCESSES, logs
    # Each process waited for the trials the others ran, so each reports the whole study as done.
    for cwd in cwds:
        assert f"Study 'dist': {N_TRIALS} trials ({N_TRIALS} COMPLETE)" in (cwd / "output.log").read_text(), logs

    # Optuna: exactly the budget, each trial once, all finished.
    study = optuna.load_study(study_name="dist", storage=storage)
    trials = study.get_trials(deepcopy=False)
    assert sorted(t.number for t in trials) == list(range(N_TRIALS)), logs
    assert Counter(t.state for t in trials) == {TrialState.COMPLETE: N_TRIALS}, logs

    # Hydra: each trial ran in exactly one process, and the work was shared.
    ran = {i: trial_folders(cwd) for i, cwd in enumerate(cwds)}
    assert sorted(n for numbers in ran.values() for n in numbers) == list(range(N_TRIALS)), ran
    assert sum(1 for numbers in ran.values() if numbers) >= 2, ran

    # MLflow: one parent run for the study, one child run per trial, linked both ways.
    client = MlflowClient(mlflow_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, max_results=1000)
    parents = [r for r in runs if r.data.tags.get("vae_sweep.role") == "study"]
    assert len(parents) == 1, [(r.info.run_id, r.info.run_name) for r in parents]
    parent = parents[0].info.run_id
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(runs) == 1 + N_TRIALS
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent}
    by_number = {int(r.data.tags["optuna.trial_number"]): r for r in children}
    assert len(children) == N_TRIALS
    assert sorted(by_number) == list(range(N_TRIALS))
    assert {r.info.status for r in children} == {"FINISHED"}
    for trial in trials:
        assert trial.user_attrs.get("mlflow_run_id") == by_number[trial.number].info.run_id, trial.number
