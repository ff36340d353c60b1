"""One experiment: validate the composed config, train, and record it in the tracker.

This is what the ``vae-train`` app and the sweeper call; the outcome of every run, failed
ones included, ends up in MLflow with its reason. Signals (``vae_sweep.interrupts``) raise
only while training; opening and closing the run are shielded, so an interrupted run is always
closed as KILLED with ``failure_reason=interrupted``, never left RUNNING.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from vae_sweep import interrupts
from vae_sweep.errors import ConfigError, TrainingDiverged, TrainingPruned
from vae_sweep.names import RESUMED_AT_TAG
from vae_sweep.track.urls import masked
from vae_sweep.train.checkpoint import Checkpoint, fingerprint, load_checkpoint
from vae_sweep.train.config import MlflowTracking, RunConfig, parse_run_config
from vae_sweep.train.loop import EpochCallback, TrainResult, train

log = logging.getLogger(__name__)
CHECKPOINT_ARTIFACT = "checkpoint/checkpoint.pt"


@dataclass(frozen=True)
class ResumePoint:
    """Where a retried sweep trial may go on from: the checkpoints of its earlier attempts
    (newest first) and their MLflow run, which holds the newest checkpoint as an artifact."""

    checkpoints: tuple[Path, ...] = ()
    run_id: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)


def train_and_track(
    cfg: DictConfig,
    *,
    callbacks: Sequence[EpochCallback] = (),
    tags: Mapping[str, str] | None = None,
    on_run_start: Callable[[str], None] | None = None,
    require_tracking: bool = True,
    checkpoint: Path | None = None,
    resume: ResumePoint | None = None,
    sweep_trial: bool = False,
) -> TrainResult:
    """Train the run ``cfg`` describes. Raises ``ConfigError`` before any work if it is invalid,
    ``TrainingDiverged`` if the loss becomes NaN/inf (the MLflow run is then FAILED) and
    ``TrainingPruned`` when a pruning callback stops it (FINISHED, tagged ``pruned_at_epoch``).
    ``on_run_start`` receives the MLflow run id as soon as the run exists.

    With ``trainer.checkpoint_every`` set, checkpoints are saved at ``checkpoint``; a usable one
    from ``resume`` makes training go on from it, in the same MLflow run.

    A store that cannot be reached is a ``ConfigError`` before training, unless
    ``require_tracking`` is false (a sweep trial, whose sweep checked the store when it started):
    then the run trains untracked with a warning, so its result still reaches the sweep.

    ``sweep_trial`` (a job of a multirun, whichever sweeper launched it) logs no MLflow model nor
    epoch pictures unless its tracking config asks for them: a sweep has many runs to pay for."""
    config = parse_run_config(cfg)
    config.data.check()  # missing or corrupt data files: refused before an MLflow run exists
    config.trainer.resolve_device()  # so is a CUDA run on a machine without one
    resolved: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    if not config.trainer.checkpoint_every:
        checkpoint = resume = None
    if not isinstance(config.tracking, MlflowTracking):
        state = find_checkpoint(config, resume, None)
        with interrupts.interruptible():
            return train(config, shielded(callbacks), checkpoint=checkpoint, resume=state)
    from vae_sweep.track.run import TRACKING_ERRORS, MlflowRun  # mlflow takes seconds to import

    state = None
    with interrupts.shielded():
        try:
            state = find_checkpoint(config, resume, config.tracking)
            if state is not None and resume is not None and resume.run_id:
                resume_tags = {**(tags or {}), **resume.tags, RESUMED_AT_TAG: str(state.epoch)}
                run = MlflowRun.resume(config.tracking, resume.run_id, tags=resume_tags, config=config)
                log.info("going on from the checkpoint of epoch %d, in MLflow run %s", state.epoch, run.run_id)
            else:
                run = MlflowRun.start(config.tracking, config, resolved, tags=tags, sweep_trial=sweep_trial)
        except (ConfigError, *TRACKING_ERRORS) as error:
            if isinstance(error, ConfigError):
                message = error.message
            else:
                message = f"cannot log to {masked(config.tracking.uri)}: {type(error).__name__}: {error}"
            if require_tracking:
                key = error.key if isinstance(error, ConfigError) and error.key else "tracking.uri"
                raise ConfigError(key, message) from None
            log.warning("MLflow is unavailable (%s): this trial trains without an MLflow run", message)
            run = None
    if run is None:
        with interrupts.interruptible():
            return train(config, shielded(callbacks), checkpoint=checkpoint, resume=state)
    try:
        if on_run_start is not None:
            on_run_start(run.run_id)
        with interrupts.interruptible():
            result = train(config, shielded([run, *callbacks]), checkpoint=checkpoint, resume=state)
    except BaseException as error:
        with interrupts.shielded():
            close_failed_run(run, error)
        if isinstance(error, KeyboardInterrupt):
            error.run_id = run.run_id  # type: ignore[attr-defined]  # for the one line the CLI prints
        raise
    with interrupts.shielded():
        run.finish(result)
    return result


def shielded(callbacks: Sequence[EpochCallback]) -> list[EpochCallback]:
    """Training may be interrupted anywhere but inside a callback's calls to a store."""
    return [interrupts.ShieldedCallback(callback) for callback in callbacks]  # type: ignore[misc]


def close_failed_run(run: Any, error: BaseException) -> None:
    """A run that did not finish: FINISHED with its epoch when pruned, KILLED when interrupted,
    otherwise FAILED with the error's ``reason`` (or its class name)."""
    if isinstance(error, TrainingPruned):
        run.prune(error.epoch)
    elif isinstance(error, TrainingDiverged):
        run.log_epoch(error.metrics, error.epoch)
        run.fail(error.reason, str(error))
    elif isinstance(error, KeyboardInterrupt):
        run.fail("interrupted", status="KILLED")
    else:
        run.fail(getattr(error, "reason", type(error).__name__), str(error))


def find_checkpoint(
    config: RunConfig, resume: ResumePoint | None, tracking: MlflowTracking | None
) -> Checkpoint | None:
    """The newest usable checkpoint of the attempts ``resume`` names: a file on this machine,
    else the artifact of their MLflow run. Unusable ones are named in a warning."""
    if resume is None:
        return None
    expected = fingerprint(config)
    for path in resume.checkpoints:
        if path.exists():
            state, problem = load_checkpoint(path, expected)
            if state is not None:
                return state
            log.warning("checkpoint not used: %s", problem)
    if tracking is None or not resume.run_id:
        return None
    from vae_sweep.track.run import TRACKING_ERRORS, client_for

    with tempfile.TemporaryDirectory() as folder:
        try:
            local = client_for(tracking.uri).download_artifacts(resume.run_id, CHECKPOINT_ARTIFACT, folder)
        except TRACKING_ERRORS:  # none was uploaded: the attempt died before its first checkpoint
            return None
        state, problem = load_checkpoint(Path(local), expected)
    if state is None:
        log.warning("checkpoint not used: %s", problem)
    return state
