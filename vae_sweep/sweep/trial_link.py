"""The link from a training job back to its Optuna trial, found through the study's storage.

A trial job may run in another process than the sweeper (joblib, submitit), so nothing is
handed over in memory: the job's Hydra config names the storage and study, and its job
number is the trial number.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from vae_sweep.errors import TrainingPruned, TrialTakenOver
from vae_sweep.names import (
    CHECKPOINT_ATTR,
    EPOCH_METRICS,
    FAILURE_REASON_ATTR,
    PARENT_RUN_ATTR,
    POSTERIOR_COLLAPSE_TAG,
    PRUNED_FOR_ATTR,
    RUN_ID_ATTR,
    STUDY_NAME_TAG,
    TRIAL_NUMBER_TAG,
    TRIAL_STATE_TAG,
)
from vae_sweep.sweep.replicates import replicate_tags
from vae_sweep.sweep.retry import previous_attempts
from vae_sweep.sweep.samplers_and_pruners import make_pruner, pruner_choice
from vae_sweep.sweep.settings import SWEEPER_TARGET
from vae_sweep.sweep.study import make_storage

if TYPE_CHECKING:
    from vae_sweep.track.training import ResumePoint

__all__ = ["FAILURE_REASON_ATTR", "PARENT_RUN_ATTR", "RUN_ID_ATTR", "TrialLink", "link_current_job"]


ACTIVE_UNITS_CONSTRAINT = "active_units"


def taken_over(number: int) -> TrialTakenOver:
    return TrialTakenOver(f"trial {number} was failed by another process while this one was stopped")


class PruningCallback:
    """Reports the monitored metric each epoch and stops the run when the pruner says so."""

    def __init__(self, link: TrialLink, metric: str) -> None:
        self.link = link
        self.metric = metric

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        if self.metric not in metrics:  # an epoch without validation
            return
        self.link.report(metrics[self.metric], epoch)
        if self.link.should_prune():
            raise TrainingPruned(epoch)

    def on_resume(self, epoch: int, history: list[dict[str, float]]) -> None:
        """A retry going on from a checkpoint reports its earlier epochs, so the pruner compares
        it at the same steps as every other trial."""
        for step, metrics in enumerate(history, start=1):
            if self.metric in metrics:
                self.link.report(metrics[self.metric], step)


class CollapseWatch:
    """``hydra.sweeper.collapse_patience``: prune a trial whose validation set has had no active
    latent unit for ``patience`` validated epochs in a row once its KL weight reached its
    highest so far (the warm-up is over: ``beta`` stopped rising). A collapsed posterior rarely
    recovers under full KL weight, and every epoch after is spent on a model that ignores z."""

    def __init__(self, link: TrialLink, patience: int) -> None:
        self.link = link
        self.patience = patience
        self.top_beta = -math.inf
        self.collapsed = 0

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        if "val_active_units" not in metrics:  # an epoch without validation
            return
        beta = metrics.get("beta", 1.0)
        warmed_up = beta >= self.top_beta
        self.top_beta = max(self.top_beta, beta)
        self.collapsed = self.collapsed + 1 if warmed_up and metrics["val_active_units"] == 0 else 0
        if self.collapsed >= self.patience:
            self.link.set_attr(PRUNED_FOR_ATTR, POSTERIOR_COLLAPSE_TAG)
            raise TrainingPruned(epoch)


class OwnershipCheck:
    """Once per heartbeat interval, whether the trial is still this worker's. A worker paused past
    the grace period (Ctrl-Z, a suspended laptop) wakes up to find its trial failed and retried
    by another process: it stops at the next epoch instead of training on for nothing."""

    def __init__(self, storage: RDBStorage, trial_id: int, number: int, interval: float) -> None:
        self.storage = storage
        self.trial_id = trial_id
        self.number = number
        self.interval = interval
        self.checked = time.time()  # wall time: it goes on while a machine sleeps

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        if time.time() - self.checked < self.interval:
            return
        self.checked = time.time()
        if self.storage.get_trial(self.trial_id).state is not TrialState.RUNNING:
            raise taken_over(self.number)


@dataclass
class TrialLink:
    trial: optuna.Trial
    trial_id: int
    frozen: FrozenTrial  # as the job found it: what it was enqueued with (retry links, replicate) is fixed
    storage: RDBStorage
    study_name: str
    parent_run_id: str | None
    pruning: bool
    heartbeat_interval: float | None
    tracking_uri: str | None = None  # hydra.sweeper.tracking_uri: an app other than vae-train
    min_active_units: int | None = None  # hydra.sweeper.min_active_units
    collapse_patience: int | None = None  # hydra.sweeper.collapse_patience

    def record_constraints(self, metrics: dict[str, float]) -> None:
        """``active_units >= min_active_units`` as Optuna's constraint (feasible when <= 0), set
        before the trial is told, so the sampler sees it with the trial's value."""
        if self.min_active_units is not None:
            self.trial.set_constraint(ACTIVE_UNITS_CONSTRAINT, self.min_active_units - metrics["active_units"])

    @property
    def number(self) -> int:
        return self.trial.number

    def callbacks(self, objective: str) -> list:
        """Pruning watches the objective when it is a per-epoch metric, else ``val_loss``."""
        callbacks: list = []
        if self.heartbeat_interval:
            callbacks.append(OwnershipCheck(self.storage, self.trial_id, self.number, self.heartbeat_interval))
        if self.pruning:
            callbacks.append(PruningCallback(self, objective if objective in EPOCH_METRICS else "val_loss"))
        if self.collapse_patience:
            callbacks.append(CollapseWatch(self, self.collapse_patience))
        return callbacks

    def report(self, value: float, step: int) -> None:
        try:
            self.trial.report(value, step=step)
        except optuna.exceptions.UpdateFinishedTrialError:
            raise taken_over(self.number) from None

    def should_prune(self) -> bool:
        try:
            return self.pruning and self.trial.should_prune()
        except optuna.exceptions.UpdateFinishedTrialError:
            raise taken_over(self.number) from None

    def tags(self) -> dict[str, str]:
        tags = {
            STUDY_NAME_TAG: self.study_name,
            TRIAL_NUMBER_TAG: str(self.trial.number),
            TRIAL_STATE_TAG: "RUNNING",
            **replicate_tags(self.frozen),
        }
        if self.parent_run_id:
            tags["mlflow.parentRunId"] = self.parent_run_id
        return tags

    def record_run(self, run_id: str) -> None:
        """Best trial -> MLflow run is then one lookup of the trial's user attributes."""
        self.set_attr(RUN_ID_ATTR, run_id)

    def record_checkpoint(self, path: Path) -> None:
        """Where a retry of this trial finds its checkpoint, on this machine."""
        self.set_attr(CHECKPOINT_ATTR, str(path.resolve()))

    def set_attr(self, key: str, value: str) -> None:
        try:
            self.trial.set_user_attr(key, value)
        except optuna.exceptions.UpdateFinishedTrialError:
            raise taken_over(self.number) from None

    def resume_point(self) -> ResumePoint | None:
        """For a retry: the checkpoints and MLflow run of the attempts before it, newest first."""
        from vae_sweep.track.training import ResumePoint  # torch and the trainer: vae-train's tasks only

        study_id = self.storage.get_study_id_from_name(self.study_name)
        earlier: list[FrozenTrial] = [
            self.storage.get_trial(self.storage.get_trial_id_from_study_id_trial_number(study_id, number))
            for number in previous_attempts(self.frozen)
        ]
        if not earlier:
            return None
        checkpoints = tuple(Path(t.user_attrs[CHECKPOINT_ATTR]) for t in earlier if CHECKPOINT_ATTR in t.user_attrs)
        run_id = next((t.user_attrs[RUN_ID_ATTR] for t in earlier if RUN_ID_ATTR in t.user_attrs), None)
        return ResumePoint(checkpoints, run_id, {"vae_sweep.resumed_from_trial": str(earlier[0].number)})


@functools.lru_cache(maxsize=4)
def job_storage(url: str) -> RDBStorage:
    """One storage (engine, connection pool, schema check) per process and URL: a worker runs
    many trials, and opening a storage costs tens of milliseconds each time."""
    return make_storage(url)


def link_current_job() -> TrialLink | None:
    """The trial this Hydra job runs for, or None outside a sweep by our sweeper."""
    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    sweeper = hydra_cfg.sweeper
    if hydra_cfg.mode != RunMode.MULTIRUN or sweeper.get("_target_") != SWEEPER_TARGET:
        return None
    storage = job_storage(sweeper.storage)
    multi_objective = not isinstance(sweeper.direction, str)
    pruner_name, pruner_options = pruner_choice(sweeper.pruner)
    pruner = make_pruner(pruner_name, pruner_options, multi_objective=multi_objective)
    # The sampler is irrelevant here: this handle only reports and asks the pruner. (One handle
    # per job: a study made again under the same name, hydra.sweeper.fresh=true, reuses its ids.)
    study = optuna.load_study(
        study_name=sweeper.study_name, storage=storage, sampler=optuna.samplers.RandomSampler(), pruner=pruner
    )
    study_id = storage.get_study_id_from_name(sweeper.study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, int(hydra_cfg.job.num))
    return TrialLink(
        trial=optuna.Trial(study, trial_id),
        trial_id=trial_id,
        frozen=storage.get_trial(trial_id),
        storage=storage,
        study_name=sweeper.study_name,
        parent_run_id=study.user_attrs.get(PARENT_RUN_ATTR),
        pruning=pruner_name != "none",
        heartbeat_interval=sweeper.get("heartbeat_interval") or None,
        tracking_uri=sweeper.get("tracking_uri"),
        min_active_units=sweeper.get("min_active_units"),
        collapse_patience=sweeper.get("collapse_patience"),
    )
