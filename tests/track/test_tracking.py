"""A run against a real temporary MLflow SQLite store logs the promised names and artifacts."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_module
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from vae_sweep.errors import ConfigError, TrainingDiverged
from vae_sweep.hydra_version import VERSION_BASE
from vae_sweep.names import EPOCH_METRICS, FINAL_METRICS, LATENT_METRICS, POSTERIOR_COLLAPSE_TAG, epoch_key
from vae_sweep.track.run import flatten, without_passwords
from vae_sweep.track.training import train_and_track
from vae_sweep.track.urls import masked

TECHNIQUE_TAGS = {
    "technique.optimizer",
    "technique.scheduler",
    "technique.activation",
    "technique.normalization",
    "technique.dropout",
    "technique.regularization",
}


def compose_run(uri: str, *overrides: str) -> DictConfig:
    with initialize_config_module("vae_sweep.conf", **VERSION_BASE):
        return compose("config", overrides=[f"tracking.uri={uri}", "trainer.epochs=2", *overrides])


def only_run(uri: str):
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("vae-sweep")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    return client, runs[0]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"
    cfg = compose_run(uri, "optimizer=adagrad", "model.activation=prelu", "scheduler=exponential")
    result = train_and_track(cfg)
    client, run = only_run(uri)
    return cfg, result, client, run


def test_digits_run_logs_every_contract_metric_per_epoch_and_at_the_end(digits_run):
    _, result, client, run = digits_run
    assert run.info.status == "FINISHED"
    # Per-epoch metrics under epoch/ (a section of their own in the MLflow UI), final ones bare.
    per_epoch = (*EPOCH_METRICS, *LATENT_METRICS)
    assert {epoch_key(name) for name in per_epoch} | set(FINAL_METRICS) == set(run.data.metrics)
    for name in per_epoch:
        history = client.get_metric_history(run.info.run_id, epoch_key(name))
        assert [m.step for m in history] == [1, 2], name
        assert history[-1].value == pytest.approx(result.history[-1][name])
    for name in FINAL_METRICS:
        assert run.data.metrics[name] == pytest.approx(result.metrics[name])
    assert run.data.metrics["test_iwae"] <= run.data.metrics["test_loss"]


def test_a_run_whose_latent_space_is_unused_is_tagged_as_collapsed(digits_run, tmp_path):
    _, result, _, run = digits_run  # 2 epochs: digits VAEs use no latent unit for their first ~10
    assert result.metrics["active_units"] == 0 and run.data.tags[POSTERIOR_COLLAPSE_TAG] == "true"
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    used = train_and_track(compose_run(uri, "trainer.epochs=3", "regularization=free_bits"))  # KL kept per unit
    _, longer = only_run(uri)
    assert used.metrics["active_units"] > 0 and longer.data.tags[POSTERIOR_COLLAPSE_TAG] == "false"
    assert used.history[0]["val_active_units"] == 0 < used.history[-1]["val_active_units"]


def test_the_experiment_opens_in_mlflows_model_training_view(digits_run, tmp_path):
    _, _, client, run = digits_run
    assert client.get_experiment(run.info.experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
    # An experiment made before (by an older vae-sweep, or by hand) gets the tag at its next run.
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    MlflowClient(uri).create_experiment("vae-sweep", str(tmp_path / "artifacts"))
    train_and_track(compose_run(uri, "debug=tiny", "trainer.epochs=1"))
    _, later = only_run(uri)
    assert MlflowClient(uri).get_experiment(later.info.experiment_id).tags["mlflow.experimentKind"] == (
        "custom_model_development"
    )


def test_digits_run_logs_flattened_params_and_technique_tags(digits_run):
    _, _, _, run = digits_run
    params = run.data.params
    assert params["optimizer.name"] == "adagrad"
    assert params["model.activation"] == "prelu"
    assert params["scheduler._target_"] == "vae_sweep.train.schedules.Exponential"
    assert float(params["optimizer.lr"]) == pytest.approx(0.01)
    tags = run.data.tags
    assert set(tags) >= TECHNIQUE_TAGS
    assert tags["technique.optimizer"] == "adagrad"
    assert tags["technique.activation"] == "prelu"
    assert tags["technique.scheduler"] == "exponential"
    assert tags["version.torch"].startswith("2.")
    assert tags["runtime.device"] == "cpu"  # the device it trained on (cuda:1 for a sweep's second GPU)


def test_digits_run_logs_its_resolved_config_model_and_pictures(digits_run, tmp_path):
    cfg, _, client, run = digits_run
    run_id = run.info.run_id
    top = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.yaml", "reconstructions.png", "prior_samples.png", "model"} <= top
    assert [a.path for a in client.list_artifacts(run_id, "model")] == ["model/state_dict.pt"]
    logged = yaml.safe_load(Path(client.download_artifacts(run_id, "config.yaml", str(tmp_path))).read_text())
    assert logged["optimizer"]["name"] == "adagrad"
    assert logged["tracking"]["uri"] == cfg.tracking.uri  # resolved, no ${oc.env:...} left
    png = Path(client.download_artifacts(run_id, "reconstructions.png", str(tmp_path))).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_diverged_run_is_failed_with_its_reason(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    with pytest.raises(TrainingDiverged):
        train_and_track(compose_run(uri, "optimizer=sgd", "optimizer.lr=1e6"))
    _, run = only_run(uri)
    assert run.info.status == "FAILED"
    assert run.data.tags["failure_reason"] == "nan_loss"
    assert run.data.metrics  # the curve up to the failure is kept


def test_unreachable_tracking_server_is_a_clear_error_before_training():
    with pytest.raises(ConfigError, match=r"^tracking.uri: cannot reach the MLflow tracking server"):
        train_and_track(compose_run("http://127.0.0.1:9"))


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://vae:secret@db:5432/optuna", "postgresql://vae:***@db:5432/optuna"),
        ("postgresql+psycopg2://vae:s%40cret@db/optuna", "postgresql+psycopg2://vae:***@db/optuna"),
        ("http://me:pw@mlflow:5000", "http://me:***@mlflow:5000"),
        ("postgresql://vae@db/optuna", "postgresql://vae@db/optuna"),
        ("sqlite:///mlflow.db", "sqlite:///mlflow.db"),
    ],
)
def test_passwords_in_urls_are_masked(url, shown):
    assert masked(url) == shown


def test_a_tracking_password_never_reaches_params_or_config_yaml():
    resolved = {"optimizer": {"lr": 0.1}, "tracking": {"uri": "http://me:pw@mlflow:5000", "experiment": "x"}}
    logged = without_passwords(resolved)
    assert "pw" not in str(flatten(logged)) and "pw" not in yaml.safe_dump(logged)
    assert logged["optimizer"] == resolved["optimizer"]
    assert resolved["tracking"]["uri"] == "http://me:pw@mlflow:5000"  # the run itself still uses it
