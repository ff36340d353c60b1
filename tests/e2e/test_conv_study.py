"""studies/conv.yaml as a user runs it, on 28x28 synthetic images (debug=tiny_conv): conv VAEs
trained with the techniques the study picks, one MLflow child run per trial under the study's
parent, each with its technique tags, test bits per dimension and pictures. (`vae-train -m` runs
in the test's process, to save the seconds of a process start; parallel workers are tested with
the MLP studies and the example package.)"""

from __future__ import annotations

import optuna
import pytest
from helpers.in_process import vae_train
from mlflow import MlflowClient

pytestmark = pytest.mark.slow


def test_the_conv_study_sweeps_conv_techniques_on_28x28_images(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    stores = [f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", f"hydra.sweeper.storage=sqlite:///{tmp_path}/optuna.db"]
    argv = ["-m", "study=conv", "debug=tiny_conv", "hydra.sweeper.n_trials=4", "hydra.sweeper.plots=[]", *stores]
    swept = vae_train(tmp_path, argv, capsys)
    assert swept.code == 0, swept.text[-3000:]
    assert "Study 'conv': 4 trials" in swept.out
    study = optuna.load_study(study_name="conv", storage=f"sqlite:///{tmp_path}/optuna.db")
    # momentum's lr reaches 0.1, which a tiny net can diverge on: such a trial is a FAIL with its reason
    assert {trial.state.name for trial in study.trials} <= {"COMPLETE", "PRUNED", "FAIL"}
    assert any(trial.state.name == "COMPLETE" for trial in study.trials)
    assert len({trial.params["model.activation"] for trial in study.trials}) > 1  # techniques differ

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("vae-sweep").experiment_id])
    (parent,) = [run for run in runs if run.data.tags.get("vae_sweep.role") == "study"]
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 4
    by_trial = {trial.number: trial for trial in study.trials}
    for run in children:
        trial = by_trial[int(run.data.tags["optuna.trial_number"])]
        assert run.data.params["model._target_"] == "vae_sweep.train.conv.ConvVAESpec"
        assert run.data.params["data.side"] == "28"
        assert run.data.tags["technique.activation"] == trial.params["model.activation"]
        assert run.data.tags["technique.optimizer"] == trial.params["optimizer"]
        if trial.state.name == "FAIL":
            assert run.info.status == "FAILED"
            assert run.data.tags["failure_reason"] == trial.user_attrs["failure_reason"] == "nan_loss"
        if trial.state.name == "COMPLETE":
            assert run.data.metrics["test_bpd"] > 0
            artifacts = {artifact.path for artifact in client.list_artifacts(run.info.run_id)}
            assert {"reconstructions.png", "prior_samples.png"} <= artifacts
