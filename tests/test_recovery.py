"""Damaged stores, failing servers and bad input never cost a traceback, a trial or a run
(docs/reliability.md, "Stores, servers and input"): real `vae-train` processes, real stores."""

from __future__ import annotations

import re

import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from sweep_processes import VAE_TRAIN, assert_budget_done, mlflow_runs, run, sweep_command, trials

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(VAE_TRAIN is None, reason="vae-train is not installed (pip install -e .)"),
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
        assert {"val_loss", "test_loss", "test_iwae"} <= set(child.data.metrics)
        assert child.data.tags["optuna.trial_state"] == "COMPLETE"
    assert parents[0].info.status == "FINISHED"
