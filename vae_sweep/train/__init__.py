"""The math of one run: data, models, losses, regularization, optimizers, schedules, the loop
and the typed config specs. Knows nothing of MLflow, Optuna or Hydra's sweeper: the loop takes
epoch callbacks (``EpochCallback``), through which tracking logs and a sweep reports and prunes."""

from vae_sweep.train.cifar10 import Cifar10
from vae_sweep.train.config import (
    CONFIG_VERSION,
    GROUPS,
    MlflowTracking,
    NoTracking,
    RunConfig,
    TrainerSpec,
    parse_objectives,
    parse_run_config,
)
from vae_sweep.train.conv import ConvVAESpec, ResNetVAESpec
from vae_sweep.train.data import Binarize, DataSpec, DataSplits
from vae_sweep.train.extensions import ENTRY_POINT_GROUP, load_extensions
from vae_sweep.train.image_folder import ImageFolder
from vae_sweep.train.loop import EpochCallback, TrainResult, train
from vae_sweep.train.models import Likelihood, ModelSpec, VAEModule
from vae_sweep.train.specs import allowed_targets, parse_spec, register

__all__ = [
    "CONFIG_VERSION",
    "ENTRY_POINT_GROUP",
    "GROUPS",
    "Binarize",
    "Cifar10",
    "ConvVAESpec",
    "DataSpec",
    "DataSplits",
    "EpochCallback",
    "ImageFolder",
    "Likelihood",
    "MlflowTracking",
    "ModelSpec",
    "NoTracking",
    "ResNetVAESpec",
    "RunConfig",
    "TrainResult",
    "TrainerSpec",
    "VAEModule",
    "allowed_targets",
    "load_extensions",
    "parse_objectives",
    "parse_run_config",
    "parse_spec",
    "register",
    "train",
]
