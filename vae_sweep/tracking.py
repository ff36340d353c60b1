"""MLflow: one run per training, with params, technique tags, per-epoch metrics and artifacts.

Everything goes through ``MlflowClient`` with explicit run ids and ``log_batch`` (one call
per epoch), so runs can be created in any process and linked to a parent run by the
``mlflow.parentRunId`` tag.
"""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from vae_sweep.config import MlflowTracking, RunConfig
from vae_sweep.images import image_grid
from vae_sweep.metrics import FINAL_METRICS
from vae_sweep.mlflow_store import check_reachable
from vae_sweep.train import TrainResult
from vae_sweep.urls import masked

PARAMS_PER_BATCH = 100  # MLflow's limit for params in one log_batch call
VERSIONED_PACKAGES = ("vae-sweep", "torch", "numpy", "scikit-learn", "hydra-core", "omegaconf", "mlflow", "optuna")
# Intra-op threads change float summation order: reproduce re-runs with the same count.
THREADS_TAG = "runtime.torch_threads"


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"optimizer": {"lr": 0.1}}`` -> ``{"optimizer.lr": "0.1"}``; lists stay one value."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat


def without_passwords(resolved: Mapping[str, Any]) -> dict[str, Any]:
    """The config as logged: a password in ``tracking.uri`` never reaches params or config.yaml
    (vae-reproduce replaces the URI with the store it reads from anyway)."""
    tracking = resolved.get("tracking")
    if not isinstance(tracking, Mapping) or "uri" not in tracking:
        return dict(resolved)
    return {**resolved, "tracking": {**tracking, "uri": masked(str(tracking["uri"]))}}


def technique_tags(config: RunConfig) -> dict[str, str]:
    """One tag per technique choice: what comparison reports group runs by."""
    model, regularization = config.model, config.regularization

    def pair(encoder: str, decoder: str) -> str:
        return encoder if encoder == decoder else f"{encoder}/{decoder}"

    return {
        "technique.optimizer": config.optimizer.name,
        "technique.scheduler": config.scheduler.name + ("+warmup" if config.scheduler.warmup_epochs > 0 else ""),
        "technique.activation": model.activation.value,
        "technique.normalization": pair(model.encoder_norm.value, model.decoder_norm.value),
        "technique.dropout": "none" if model.encoder_dropout == model.decoder_dropout == 0 else "dropout",
        "technique.regularization": regularization.name,
    }


def environment_tags() -> dict[str, str]:
    tags = {"version.python": platform.python_version()}
    for package in VERSIONED_PACKAGES:
        try:
            tags[f"version.{package}"] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    commit = git_commit(Path(__file__).resolve().parent)
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags


def git_commit(folder: Path) -> str | None:
    """The commit of the checkout holding ``folder`` (None for an installed wheel)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def experiment_id(client: MlflowClient, name: str) -> str:
    """Get or create the experiment; another process may create it at the same moment."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


class MlflowRun:
    """An open MLflow run that receives epoch metrics as a training callback."""

    def __init__(self, client: MlflowClient, run_id: str, spec: MlflowTracking) -> None:
        self.client = client
        self.run_id = run_id
        self.spec = spec

    @classmethod
    def start(
        cls,
        spec: MlflowTracking,
        config: RunConfig,
        resolved: Mapping[str, Any],
        *,
        tags: Mapping[str, str] | None = None,
    ) -> MlflowRun:
        """Create the run with the full resolved config as params; ``tags`` may hold ``mlflow.parentRunId``."""
        check_reachable(spec.uri)
        client = MlflowClient(tracking_uri=spec.uri)
        threads = config.trainer.num_threads or torch.get_num_threads()
        all_tags = {**environment_tags(), **technique_tags(config), THREADS_TAG: str(threads), **(tags or {})}
        run_name = spec.run_name or f"{config.optimizer.name}-{config.model.activation.value}-{config.scheduler.name}"
        if "optuna.trial_number" in all_tags:  # sweeps: names stay unique and sort by trial in the UI
            run_name = f"trial-{int(all_tags['optuna.trial_number']):03d}-{run_name}"
        run = client.create_run(
            experiment_id(client, spec.experiment),
            run_name=run_name,
            tags=all_tags,
        )
        resolved = without_passwords(resolved)
        params = [Param(key, value) for key, value in flatten(resolved).items()]
        for start in range(0, len(params), PARAMS_PER_BATCH):
            client.log_batch(run.info.run_id, params=params[start : start + PARAMS_PER_BATCH])
        this = cls(client, run.info.run_id, spec)
        this.client.log_text(this.run_id, yaml.safe_dump(dict(resolved), sort_keys=False), "config.yaml")
        return this

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        self.log_metrics(metrics, step=epoch)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])

    def finish(self, result: TrainResult) -> None:
        """Final metrics, the model's state_dict and pictures; then the run is FINISHED."""
        self.log_metrics({name: result.metrics[name] for name in FINAL_METRICS}, step=len(result.history))
        if self.spec.log_model:
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "state_dict.pt"
                torch.save(result.model.state_dict(), path)
                self.client.log_artifact(self.run_id, str(path), "model")
        if self.spec.log_images:
            pairs = image_grid([result.test_inputs, result.reconstructions], result.image_shape)
            self.client.log_image(self.run_id, pairs, artifact_file="reconstructions.png")
            samples = image_grid([result.prior_samples], result.image_shape)
            self.client.log_image(self.run_id, samples, artifact_file="prior_samples.png")
        self.client.set_terminated(self.run_id, "FINISHED")

    def prune(self, epoch: int) -> None:
        """A pruned run ends normally, its curves kept, marked with the epoch it stopped at."""
        self.client.set_tag(self.run_id, "pruned_at_epoch", str(epoch))
        self.client.set_terminated(self.run_id, "FINISHED")

    def fail(self, reason: str, detail: str = "", status: str = "FAILED") -> None:
        tags = [RunTag("failure_reason", reason)] + ([RunTag("failure_detail", detail[:5000])] if detail else [])
        self.client.log_batch(self.run_id, tags=tags)
        self.client.set_terminated(self.run_id, status)
