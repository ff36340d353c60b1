"""The `vae-train` console script as users run it, in a temporary working folder."""

from __future__ import annotations

import subprocess

import pytest
from helpers.environment import clean_env
from helpers.run_if import VAE_TRAIN, needs_vae_train
from mlflow.tracking import MlflowClient

from vae_sweep.names import epoch_key
from vae_sweep.track.urls import LOCAL_UI, run_page

pytestmark = needs_vae_train
TINY = ["trainer.epochs=2", "trainer.iwae_samples=4"]


def vae_train(cwd, *args: str) -> subprocess.CompletedProcess:
    env = clean_env()
    return subprocess.run([VAE_TRAIN, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_cfg_job_prints_the_composed_config(tmp_path):
    out = vae_train(tmp_path, "optimizer=momentum", "--cfg", "job")
    assert out.returncode == 0, out.stderr
    assert "_target_: vae_sweep.train.optimizers.SGD" in out.stdout
    assert "name: momentum" in out.stdout
    assert "objective: val_loss" in out.stdout
    assert not (tmp_path / "mlflow.db").exists()  # printing trains nothing


def test_help_says_what_it_does_lists_each_group_with_its_options_and_where_results_go(tmp_path):
    out = vae_train(tmp_path, "--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("vae-train: train a variational autoencoder")
    assert "optimizer: adadelta, adagrad, adam, adamw, momentum" in out.stdout  # Hydra lists the options found
    assert "study: conv, mnist, modern, pareto, quick, techniques" in out.stdout
    assert "vae-train -m study=techniques" in out.stdout and "optimization_results.yaml" in out.stdout
    assert "mlflow ui --backend-store-uri sqlite:///mlflow.db" in out.stdout
    assert "_target_" not in out.stdout  # no config dump: --cfg job prints that
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.slow
def test_multirun_of_two_jobs_creates_two_mlflow_runs_in_the_default_store(tmp_path):
    out = vae_train(tmp_path, "-m", "model.activation=relu,tanh", *TINY)
    assert out.returncode == 0, out.stderr
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")  # the default store, relative to cwd
    runs = client.search_runs([client.get_experiment_by_name("vae-sweep").experiment_id])
    assert sorted(r.data.tags["technique.activation"] for r in runs) == ["relu", "tanh"]
    assert all(r.info.status == "FINISHED" for r in runs)


@pytest.mark.slow
def test_a_diverging_job_does_not_take_down_the_multirun(tmp_path):
    out = vae_train(tmp_path, "-m", "optimizer=sgd", "optimizer.lr=1e6,0.01", *TINY)
    assert out.returncode == 0, out.stderr
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("vae-sweep").experiment_id])
    statuses = {r.data.params["optimizer.lr"]: r.info.status for r in runs}
    assert statuses == {"1000000.0": "FAILED", "0.01": "FINISHED"}


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("optimizer.lr=-1", "optimizer.lr: must be > 0, got -1.0"),
        ("model.encoder_dropout=1.0", "model.encoder_dropout: must be in [0, 1), got 1.0"),
        ("trainer.batch_size=abc", "trainer.batch_size: Value 'abc' of type 'str' could not be converted to Integer"),
        ("trainer.progress=loud", "trainer.progress: must be one of auto, bar, lines, off, got 'loud'"),
    ],
)
def test_bad_values_exit_2_with_one_clear_message_and_no_run(tmp_path, override, expected):
    out = vae_train(tmp_path, override)
    assert out.returncode == 2
    assert f"vae-train: error: {expected}" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_unknown_option_lists_the_available_ones(tmp_path):
    out = vae_train(tmp_path, "optimizer=adamax")
    assert out.returncode == 2
    assert "vae-train: error: optimizer=adamax: no such option; did you mean optimizer=adam?" in out.stderr
    assert "adagrad" in out.stderr and "nesterov" in out.stderr


@pytest.mark.slow
def test_a_single_run_shows_each_epoch_and_ends_saying_what_it_got_and_where_to_look(tmp_path):
    out = vae_train(tmp_path, "trainer.epochs=3", "trainer.iwae_samples=4")  # not a terminal: a line per epoch
    assert out.returncode == 0, out.stderr
    text = out.stdout + out.stderr
    for epoch in (1, 2, 3):
        line = next(line for line in text.splitlines() if f"epoch {epoch}/3 | train " in line)
        assert "| val " in line and "(recon " in line and ", KL " in line and "| lr " in line and "s/epoch" in line
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("vae-sweep").experiment_id])
    summary = f"Run {run.info.run_id} FINISHED after "
    assert summary in out.stdout and f"val_loss = {run.data.metrics[epoch_key('val_loss')]:.4f}" in out.stdout
    assert f"loss {run.data.metrics['test_loss']:.2f} (recon " in out.stdout
    page = run_page(LOCAL_UI, run.info.experiment_id, run.info.run_id)
    assert f"MLflow:    mlflow ui --backend-store-uri sqlite:///mlflow.db, then open {page}" in out.stdout
    quiet = vae_train(tmp_path, "trainer.epochs=2", "trainer.iwae_samples=4", "trainer.progress=off")
    assert quiet.returncode == 0 and "epoch 1/2" not in quiet.stdout + quiet.stderr
    assert "FINISHED after" in quiet.stdout  # the end still says what happened
