"""The public handle a task function uses to reach its trial: ``vae_sweep.current_trial()``.

Any ``@hydra.main`` app swept with ``hydra/sweeper=vae_sweep`` can report intermediate values
and ask whether to stop (pruning), and attach the MLflow runs it logs itself to the study, in
whichever worker process its launcher runs it: the handle is found through the job's Hydra
config (storage, study, trial number), never through memory shared with the sweeper. Outside
such a sweep (a single run, another sweeper) the handle is inactive: reports are dropped and
nothing is ever pruned, so the app's code needs no branch for it::

    trial = current_trial()
    for epoch in range(cfg.epochs):
        loss = train_one_epoch()
        trial.report(loss, step=epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch}")
"""

from __future__ import annotations

from typing import Any

from vae_sweep.names import RUN_ID_ATTR, STUDY_NAME_TAG, TRIAL_NUMBER_TAG
from vae_sweep.sweep.trial_link import TrialLink, link_current_job


class SweepTrial:
    """The trial of the running job, or an inactive stand-in outside a vae-sweep sweep."""

    def __init__(self, link: TrialLink | None) -> None:
        self._link = link

    @property
    def active(self) -> bool:
        """Whether this job is a trial of a vae-sweep study."""
        return self._link is not None

    @property
    def number(self) -> int | None:
        return self._link.number if self._link else None

    @property
    def study_name(self) -> str | None:
        return self._link.study_name if self._link else None

    @property
    def params(self) -> dict[str, Any]:
        """The values the sampler chose for this trial."""
        return dict(self._link.trial.params) if self._link else {}

    def report(self, value: float, step: int) -> None:
        """An intermediate objective value at ``step`` (an epoch), for the study's pruner."""
        if self._link:
            self._link.report(float(value), step)

    def should_prune(self) -> bool:
        """Whether the pruner stops this trial now; raise ``optuna.TrialPruned`` if so."""
        return self._link.should_prune() if self._link else False

    @property
    def mlflow_run_id(self) -> str | None:
        """The trial's own MLflow run (``hydra.sweeper.tracking_uri`` set): log into it with
        ``mlflow.start_run(run_id=trial.mlflow_run_id)``."""
        return self._link.trial.user_attrs.get(RUN_ID_ATTR) if self._link else None

    @property
    def mlflow_tracking_uri(self) -> str | None:
        """The store the sweep records into (``hydra.sweeper.tracking_uri``, made absolute)."""
        return self._link.tracking_uri if self._link else None

    @property
    def mlflow_experiment_id(self) -> str | None:
        """The study's MLflow experiment, where runs the app starts itself belong (an MLflow
        child run is shown under its parent only within the parent's experiment)."""
        if self._link is None or not (self._link.tracking_uri and self._link.parent_run_id):
            return None
        from mlflow.tracking import MlflowClient

        return MlflowClient(self._link.tracking_uri).get_run(self._link.parent_run_id).info.experiment_id

    def mlflow_tags(self) -> dict[str, str]:
        """Tags that attach a run the app starts itself to this trial (``mlflow.start_run(
        experiment_id=trial.mlflow_experiment_id, tags=trial.mlflow_tags())``, or Lightning's
        ``MLFlowLogger(tags=...)``): a child of the trial's run when the sweep tracks one, else of
        the study's parent run; with the study and trial it belongs to."""
        if self._link is None:
            return {}
        tags = {STUDY_NAME_TAG: self._link.study_name, TRIAL_NUMBER_TAG: str(self._link.number)}
        parent = self.mlflow_run_id or self._link.parent_run_id
        if parent:
            tags["mlflow.parentRunId"] = parent
        return tags


def current_trial() -> SweepTrial:
    """The trial this job runs for (``SweepTrial.active``), or an inactive one outside a sweep."""
    return SweepTrial(link_current_job())
