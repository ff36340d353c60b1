"""One experiment: validate the composed config, train, and record it in the tracker.

This is what the ``vae-train`` app and the sweeper call; the outcome of every run, failed
ones included, ends up in MLflow with its reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

from vae_sweep.config import MlflowTracking, parse_run_config
from vae_sweep.errors import ConfigError, TrainingDiverged, TrainingPruned
from vae_sweep.train import EpochCallback, TrainResult, train
from vae_sweep.urls import masked

log = logging.getLogger(__name__)


def run_experiment(
    cfg: DictConfig,
    *,
    callbacks: Sequence[EpochCallback] = (),
    tags: Mapping[str, str] | None = None,
    on_run_start: Callable[[str], None] | None = None,
    require_tracking: bool = True,
) -> TrainResult:
    """Train the run ``cfg`` describes. Raises ``ConfigError`` before any work if it is invalid,
    ``TrainingDiverged`` if the loss becomes NaN/inf (the MLflow run is then FAILED) and
    ``TrainingPruned`` when a pruning callback stops it (FINISHED, tagged ``pruned_at_epoch``).
    ``on_run_start`` receives the MLflow run id as soon as the run exists.

    A store that cannot be reached is a ``ConfigError`` before training, unless
    ``require_tracking`` is false (a sweep trial, whose sweep checked the store when it started):
    then the run trains untracked with a warning, so its result still reaches the sweep."""
    config = parse_run_config(cfg)
    config.data.check()  # missing or corrupt data files: refused before an MLflow run exists
    resolved: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    if not isinstance(config.tracking, MlflowTracking):
        return train(config, callbacks)
    from vae_sweep.tracking import TRACKING_ERRORS, MlflowRun  # mlflow takes seconds to import

    try:
        run = MlflowRun.start(config.tracking, config, resolved, tags=tags)
    except (ConfigError, *TRACKING_ERRORS) as error:
        if isinstance(error, ConfigError):
            message = error.message
        else:
            message = f"cannot log to {masked(config.tracking.uri)}: {type(error).__name__}: {error}"
        if require_tracking:
            raise ConfigError("tracking.uri", message) from None
        log.warning("MLflow is unavailable (%s): this trial trains without an MLflow run", message)
        return train(config, callbacks)
    if on_run_start is not None:
        on_run_start(run.run_id)
    try:
        result = train(config, [run, *callbacks])
    except TrainingPruned as error:
        run.prune(error.epoch)
        raise
    except TrainingDiverged as error:
        run.log_metrics(error.metrics, step=error.epoch)
        run.fail(error.reason, str(error))
        raise
    except KeyboardInterrupt:
        run.fail("interrupted", status="KILLED")
        raise
    except Exception as error:
        run.fail(type(error).__name__, str(error))
        raise
    run.finish(result)
    return result
