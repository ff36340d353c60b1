"""What fills the MLflow UI's runs table and run page beyond metrics: the data set input (Dataset
column), the MLflow model (Models column, registry), the source, the dropout tag and the
per-epoch pictures (image slider). Real SQLite stores in temporary folders."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import mlflow
import pytest
import torch
from helpers.environment import clean_env
from hydra import compose, initialize_config_module
from mlflow.entities import LoggedModelStatus
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from vae_sweep.errors import ConfigError
from vae_sweep.hydra_version import VERSION_BASE
from vae_sweep.names import TRIAL_NUMBER_TAG
from vae_sweep.track.datasets import data_digest
from vae_sweep.track.run import ARTIFACTS, MlflowRun, client_for, technique_tags
from vae_sweep.track.training import train_and_track
from vae_sweep.train.config import MlflowTracking, parse_run_config
from vae_sweep.train.loop import reconstruct, train

EPOCHS = 5
IMAGE_EVERY = 2
TIMED = ("samples_per_sec", "train_seconds")  # wall-clock metrics: never equal twice


def compose_run(uri: str, *overrides: str) -> DictConfig:
    with initialize_config_module("vae_sweep.conf", **VERSION_BASE):
        return compose("config", overrides=[f"tracking.uri={uri}", f"trainer.epochs={EPOCHS}", *overrides])


def runs_of(uri: str) -> tuple[MlflowClient, dict[str, object]]:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("vae-sweep")
    return client, {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The same digits run (with dropout, so training draws random numbers) twice: once alone
    with pictures every IMAGE_EVERY epochs, once as a sweep's trial, which by default logs
    neither pictures nor an MLflow model."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"
    dropout = ("model.encoder_dropout=0.2", "model.decoder_dropout=0.0")
    pictured = train_and_track(
        compose_run(uri, *dropout, f"tracking.image_every={IMAGE_EVERY}", "tracking.run_name=pictured")
    )
    plain = train_and_track(
        compose_run(uri, *dropout, "tracking.run_name=plain"),
        tags={TRIAL_NUMBER_TAG: "7"},
        sweep_trial=True,
    )
    client, runs = runs_of(uri)
    return uri, client, runs["pictured"], pictured, runs["trial-007-plain"], plain


def test_the_data_set_is_the_runs_input_with_its_digest_shape_and_split_sizes(two_runs):
    _, client, run, _, other, _ = two_runs
    (given,) = client.get_run(run.info.run_id).inputs.dataset_inputs
    dataset = given.dataset
    assert dataset.name == "digits"
    assert re.fullmatch(r"[0-9a-f]{8}", dataset.digest)
    assert {tag.key: tag.value for tag in given.tags} == {"mlflow.data.context": "training"}
    profile = json.loads(dataset.profile)
    assert profile["train_rows"] + profile["val_rows"] + profile["test_rows"] == 1797  # scikit-learn's digits
    assert profile["sample_shape"] == [1, 8, 8] and profile["binarize"] == "none"
    features = json.loads(json.loads(dataset.schema)["mlflow_tensorspec"]["features"])
    assert features[0]["tensor-spec"] == {"dtype": "float32", "shape": [-1, 1, 8, 8]}
    assert dataset.source_type == "code"
    # The same data, the same dataset: one entry of the experiment that both runs point to.
    (again,) = client.get_run(other.info.run_id).inputs.dataset_inputs
    assert (again.dataset.name, again.dataset.digest) == (dataset.name, dataset.digest)


def test_the_digest_follows_the_data_not_the_spec(tiny_config):
    data = tiny_config().data.load()
    assert data_digest("synthetic", data) == data_digest("synthetic", tiny_config().data.load())
    assert data_digest("synthetic", data) != data_digest("synthetic", tiny_config("data.split_seed=1").data.load())
    assert data_digest("synthetic", data) != data_digest("other", data)


def test_a_single_run_logs_an_mlflow_model_that_loads_and_reconstructs(two_runs, monkeypatch):
    uri, client, run, result, _, _ = two_runs
    run = client.get_run(run.info.run_id)
    (output,) = run.outputs.model_outputs
    assert output.step == EPOCHS
    logged = client.get_logged_model(output.model_id)
    assert logged.status == LoggedModelStatus.READY and logged.source_run_id == run.info.run_id
    assert logged.name == "seed_mlp" and logged.model_type == "vae"
    assert logged.tags["technique.dropout"] == "0.2/none"
    assert {m.key: m.value for m in logged.metrics}["test_loss"] == pytest.approx(result.metrics["test_loss"])
    assert {m.dataset_name for m in logged.metrics} == {"digits"}
    assert "model/state_dict.pt" in {a.path for a in client.list_artifacts(run.info.run_id, "model")}  # still there

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")  # MLflow's gate for pickled models
    loaded = mlflow.pytorch.load_model(f"models:/{output.model_id}")
    images = result.test_inputs
    assert torch.allclose(loaded(images), reconstruct(result.model, images))
    for name, tensor in result.model.state_dict().items():
        assert torch.equal(loaded.vae.state_dict()[name], tensor), name
    requirements = mlflow.pyfunc.get_model_dependencies(f"models:/{output.model_id}")
    with open(requirements) as file:
        pinned = file.read()
    assert "vae-sweep==" in pinned and "torch==" in pinned


def test_a_sweep_trial_logs_no_mlflow_model_nor_pictures_unless_asked(two_runs):
    _, client, _, _, trial, _ = two_runs
    assert not client.get_run(trial.info.run_id).outputs.model_outputs
    assert not client.list_artifacts(trial.info.run_id, "images")

    def settings(sweep_trial: bool, **tracking) -> tuple[bool, int]:
        run = MlflowRun(client, "0" * 32, MlflowTracking(**tracking), sweep_trial=sweep_trial)
        return run.mlflow_model, run.image_every

    assert settings(False) == (True, 5) and settings(True) == (False, 0)
    assert settings(True, mlflow_model=True, image_every=2) == (True, 2)
    assert settings(False, mlflow_model=False, image_every=0) == (False, 0)


def test_a_multirun_job_of_hydras_own_sweeper_is_a_sweep_trial_too(tmp_path):
    command = [shutil.which("vae-train") or "vae-train", "-m", "debug=tiny", "optimizer=adam,sgd", "hydra.sweep.dir=m"]
    out = subprocess.run(command, cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    client, runs = runs_of(f"sqlite:///{tmp_path}/mlflow.db")
    assert len(runs) == 2
    for run in runs.values():
        assert not client.get_run(run.info.run_id).outputs.model_outputs
        assert not client.list_artifacts(run.info.run_id, "images")
        assert client.get_run(run.info.run_id).inputs.dataset_inputs  # the data set is cheap: every run has it


def test_image_every_is_checked(compose_config):
    with pytest.raises(ConfigError, match=r"^tracking.image_every: must be >= 0 \(0 logs none\) or null, got -1"):
        parse_run_config(compose_config("tracking.image_every=-1"))


def test_runs_name_their_source_program(two_runs):
    _, _, run, _, _, _ = two_runs
    assert run.data.tags["mlflow.source.type"] == "LOCAL"
    assert run.data.tags["mlflow.source.name"]  # the program: vae-train, vae-reproduce, pytest here


def test_epoch_pictures_are_stepped_images_every_n_epochs_and_after_the_last(two_runs, tmp_path):
    _, client, run, _, _, _ = two_runs
    files = [a.path for a in client.list_artifacts(run.info.run_id, "images")]
    steps = sorted({int(re.search(r"\+step\+(\d+)\+", path).group(1)) for path in files})
    assert steps == [2, 4, 5]
    assert all(path.startswith("images/reconstructions+step+") for path in files)
    assert len([p for p in files if p.endswith("+compressed.webp")]) == len([p for p in files if p.endswith(".png")])
    png = client.download_artifacts(run.info.run_id, next(p for p in files if p.endswith(".png")), str(tmp_path))
    with open(png, "rb") as file:
        assert file.read(8) == b"\x89PNG\r\n\x1a\n"
    top = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"reconstructions.png", "prior_samples.png"} <= top  # the final pictures stay


def test_pictures_change_no_metric(two_runs):
    _, _, _, pictured, _, plain = two_runs
    assert pictured.history == plain.history  # every epoch's numbers, bit for bit
    for name, value in pictured.metrics.items():
        if name not in TIMED:
            assert plain.metrics[name] == value, name


@pytest.mark.parametrize(
    ("encoder", "decoder", "tag"),
    [(0.0, 0.0, "none"), (0.2, 0.2, "0.2"), (0.2, 0.0, "0.2/none"), (0.0, 0.1, "none/0.1"), (0.25, 0.1, "0.25/0.1")],
)
def test_the_dropout_tag_carries_the_rates_encoder_first(tiny_config, encoder, decoder, tag):
    config = tiny_config(f"model.encoder_dropout={encoder}", f"model.decoder_dropout={decoder}")
    assert technique_tags(config)["technique.dropout"] == tag


def test_an_mlflow_model_put_off_by_a_failing_store_is_logged_once_at_the_end(tiny_config, tmp_path, monkeypatch):
    """Its upload fails once: the LoggedModel made before it is not made again."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = client_for(uri)
    experiment = client.create_experiment("outage", str(tmp_path / "artifacts"))
    run_id = client.create_run(experiment).info.run_id
    config = tiny_config()
    run = MlflowRun(client, run_id, MlflowTracking(uri=uri, flush_seconds=0), config=config)
    upload = client.log_model_artifacts
    calls = []

    def fails_once(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise OSError("the artifact folder was gone for a moment")
        return upload(*args, **kwargs)

    monkeypatch.setattr(client, "log_model_artifacts", fails_once)
    result = train(config, [run])
    run.finish(result)
    assert len(calls) == 2 and ARTIFACTS not in run.failures
    (logged,) = client.search_logged_models([experiment])
    assert logged.status == LoggedModelStatus.READY and logged.source_run_id == run_id
    assert [o.model_id for o in client.get_run(run_id).outputs.model_outputs] == [logged.model_id]
    assert client.list_logged_model_artifacts(logged.model_id)
