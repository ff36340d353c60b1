"""Console entry points. Thin: everything they do is a function elsewhere that tests can call."""

from __future__ import annotations

import logging
import math
import sys

import hydra
from omegaconf import DictConfig

from vae_sweep.errors import ConfigError, DataError, TrainingDiverged
from vae_sweep.experiment import run_experiment

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path="pkg://vae_sweep.conf", config_name="config")
def train_app(cfg: DictConfig) -> float:
    """Train one VAE and return the objective metric, so any Hydra sweeper can minimise it.

    A diverged run returns NaN (its MLflow run is FAILED with a reason) instead of raising,
    so one bad combination never takes down a multirun. Bad config or missing data stop
    the process with one clear message and exit code 2.
    """
    try:
        result = run_experiment(cfg)
    except (ConfigError, DataError) as error:
        print(f"vae-train: error: {error}", file=sys.stderr)
        sys.exit(2)
    except TrainingDiverged as error:
        log.error("%s; the run is recorded as failed", error)
        return math.nan
    value = result.metrics[cfg.objective]
    log.info("%s = %.4f", cfg.objective, value)
    return value
