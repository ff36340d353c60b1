"""The link from a training job back to its Optuna trial, found through the study's storage.

A trial job may run in another process than the sweeper (joblib, submitit), so nothing is
handed over in memory: the job's Hydra config names the storage and study, and its job
number is the trial number.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import optuna
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from optuna.storages import RDBStorage

from vae_sweep.errors import TrainingPruned
from vae_sweep.metrics import EPOCH_METRICS
from vae_sweep.sweep.samplers import make_pruner
from vae_sweep.sweep.settings import SWEEPER_TARGET
from vae_sweep.sweep.study import make_storage

PARENT_RUN_ATTR = "mlflow_parent_run_id"
RUN_ID_ATTR = "mlflow_run_id"
FAILURE_REASON_ATTR = "failure_reason"


class PruningCallback:
    """Reports the monitored metric each epoch and stops the run when the pruner says so."""

    def __init__(self, trial: optuna.Trial, metric: str) -> None:
        self.trial = trial
        self.metric = metric

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        if self.metric not in metrics:  # an epoch without validation
            return
        self.trial.report(metrics[self.metric], step=epoch)
        if self.trial.should_prune():
            raise TrainingPruned(epoch)


@dataclass
class TrialLink:
    trial: optuna.Trial
    study_name: str
    parent_run_id: str | None
    pruning: bool

    @property
    def number(self) -> int:
        return self.trial.number

    def callbacks(self, objective: str) -> list[PruningCallback]:
        """Pruning watches the objective when it is a per-epoch metric, else ``val_loss``."""
        if not self.pruning:
            return []
        return [PruningCallback(self.trial, objective if objective in EPOCH_METRICS else "val_loss")]

    def tags(self) -> dict[str, str]:
        tags = {
            "optuna.study_name": self.study_name,
            "optuna.trial_number": str(self.trial.number),
            "optuna.trial_state": "RUNNING",
        }
        if self.parent_run_id:
            tags["mlflow.parentRunId"] = self.parent_run_id
        return tags

    def record_run(self, run_id: str) -> None:
        """Best trial -> MLflow run is then one lookup of the trial's user attributes."""
        self.trial.set_user_attr(RUN_ID_ATTR, run_id)


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
    pruner = make_pruner(sweeper.pruner.name, sweeper.pruner.options, multi_objective=multi_objective)
    # The sampler is irrelevant here: this handle only reports and asks the pruner.
    study = optuna.load_study(
        study_name=sweeper.study_name, storage=storage, sampler=optuna.samplers.RandomSampler(), pruner=pruner
    )
    study_id = storage.get_study_id_from_name(sweeper.study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, int(hydra_cfg.job.num))
    return TrialLink(
        trial=optuna.Trial(study, trial_id),
        study_name=sweeper.study_name,
        parent_run_id=study.user_attrs.get(PARENT_RUN_ATTR),
        pruning=sweeper.pruner.name != "none",
    )
