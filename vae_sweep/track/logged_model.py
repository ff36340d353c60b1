"""The trained VAE as an MLflow model (an MLflow 3 LoggedModel): the runs table's Models column,
the experiment's Models tab and the model registry show it, beside the run's plain
``model/state_dict.pt`` that vae-reproduce reads.

``mlflow.pytorch.log_model`` logs to the process's active run and tracking URI, which a sweep
worker's runs are not, and copies the run's params and metrics to the model with a query per
metric. So the model is logged here with the run's client and id, through MLflow's public
LoggedModel calls, in steps a failing store can put off and take up again where they stopped.

Loading it: ``mlflow.pytorch.load_model("models:/<model_id>")`` with vae-sweep installed and
``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=true`` (MLflow asks for it before unpickling any PyTorch
model; the pt2 format that needs no pickle would trace the model with ``torch.export``, a few
seconds the first time in a process and 150 ms each time after, and keep only its forward pass).
"""

from __future__ import annotations

import copy
import functools
import importlib.metadata
import logging
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from mlflow.entities import LoggedModelOutput, LoggedModelStatus, Metric
from mlflow.models import Model, ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import Schema, TensorSpec
from torch import nn

from vae_sweep.train.extensions import loaded_extensions
from vae_sweep.train.models import VAEModule

MODEL_TYPE = "vae"
# The packages that unpickling the model needs, pinned to this process's versions; given
# explicitly, MLflow infers none (inference loads the model again in a subprocess: seconds).
REQUIRED_PACKAGES = ("vae-sweep", "torch", "cloudpickle")


class ReconstructionModel(nn.Module):
    """What the MLflow model computes: images ``(n, *sample_shape)`` in [0, 1] -> their
    reconstructions from the posterior means, as pixel means; so its pyfunc flavor and a served
    model answer with pictures. ``vae`` is the trained VAE itself: ``vae.encode(x)`` gives the
    posterior, ``vae.mean_image(vae.decode(torch.randn(n, vae.latent_dim)))`` prior samples."""

    def __init__(self, vae: VAEModule) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu, _ = self.vae.encode(x)
        return self.vae.mean_image(self.vae.decode(mu))


@functools.lru_cache(maxsize=1)
def pip_requirements() -> tuple[str, ...]:
    """``vae-sweep==X``, ``torch==Y`` (without a local ``+cu121``), ``cloudpickle`` and the
    packages of the extensions this process loaded (a model of one's own); MLflow adds itself."""
    pinned = []
    for package in REQUIRED_PACKAGES:
        try:
            pinned.append(f"{package}=={importlib.metadata.version(package).split('+')[0]}")
        except importlib.metadata.PackageNotFoundError:
            continue
    pinned += [f"{e.package}=={e.version}" for e in loaded_extensions() if e.package]
    return tuple(pinned)


def signature(sample_shape: tuple[int, ...]) -> ModelSignature:
    """Images in, reconstructions of the same shape out; given, so MLflow runs no example."""
    spec = Schema([TensorSpec(np.dtype(np.float32), (-1, *sample_shape))])
    return ModelSignature(inputs=spec, outputs=spec)


class QuietPickleWarning(logging.Filter):
    """Drops MLflow's warning, on every save, that a pickled model must come from a trusted
    source: the format is chosen here on purpose (see the module's docstring)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Pickle" not in record.getMessage()


@dataclass
class ModelUpload:
    """One run's MLflow model, logged by calling this object until it returns: each step that
    worked (the LoggedModel made, its files saved and uploaded, the run linked) is not repeated
    when a failing store made an earlier call raise and the call is tried again."""

    client: MlflowClient
    run_id: str
    model: VAEModule
    sample_shape: tuple[int, ...]
    folder: Path  # where the model's files are saved; must outlive a put-off upload
    name: str
    step: int  # the run's last epoch
    tags: Mapping[str, str] = field(default_factory=dict)
    metrics: Sequence[Metric] = ()  # the run's final metrics, shown with the model too
    dataset: tuple[str, str] | None = None  # (name, digest) of the data set they were measured on
    experiment_id: str | None = None
    model_id: str | None = None
    artifact_location: str = ""
    done: set[str] = field(default_factory=set)

    def __call__(self) -> None:
        if self.model_id is None:
            if self.experiment_id is None:
                self.experiment_id = self.client.get_run(self.run_id).info.experiment_id
            logged = self.client.create_logged_model(
                self.experiment_id,
                name=self.name,
                source_run_id=self.run_id,
                tags=dict(self.tags),
                model_type=MODEL_TYPE,
            )
            self.model_id, self.artifact_location = logged.model_id, logged.artifact_location
        path = self.folder / "mlflow_model"
        if "saved" not in self.done:
            self.save(path)
            self.done.add("saved")
        if "uploaded" not in self.done:
            self.client.log_model_artifacts(self.model_id, str(path))
            self.done.add("uploaded")
        if "linked" not in self.done:
            self.client.log_outputs(self.run_id, [LoggedModelOutput(self.model_id, step=self.step)])
            self.done.add("linked")
        if self.metrics and "metrics" not in self.done:  # the same values and times: the run's curves are unchanged
            name, digest = self.dataset or (None, None)
            linked = [Metric(m.key, m.value, m.timestamp, m.step, self.model_id, name, digest) for m in self.metrics]
            self.client.log_batch(self.run_id, metrics=linked)
            self.done.add("metrics")
        self.client.finalize_logged_model(self.model_id, LoggedModelStatus.READY)

    def save(self, path: Path) -> None:
        """The model's MLflow files in ``path``: a CPU copy (one trained on a GPU loads anywhere),
        pickled, in eval mode, with its signature and pinned requirements."""
        shutil.rmtree(path, ignore_errors=True)  # what a save cut short left
        vae = self.model
        if any(p.device.type != "cpu" for p in vae.parameters()):
            vae = copy.deepcopy(vae).cpu()
        mlflow_model = Model(
            artifact_path=self.artifact_location,
            run_id=self.run_id,
            model_id=self.model_id,
            model_uuid=self.model_id,
        )
        quiet = QuietPickleWarning()
        import mlflow.pytorch  # 1.2 s of imports: only in a process that logs a model

        logger = logging.getLogger(mlflow.pytorch.__name__)
        logger.addFilter(quiet)
        try:
            mlflow.pytorch.save_model(
                ReconstructionModel(vae).eval(),
                str(path),
                mlflow_model=mlflow_model,
                signature=signature(self.sample_shape),
                pip_requirements=list(pip_requirements()),
                serialization_format="pickle",
            )
        finally:
            logger.removeFilter(quiet)
