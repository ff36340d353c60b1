"""The MLflow run of one trial of an app that does not track its own (``App.makes_trial_runs``):
made by the worker before the task starts, RUNNING, with the trial's params, as a child of the
study's parent run; closed after it with the trial's state and value(s). vae-train makes and
closes its own runs (``vae_sweep.track``), with much more in them.

The run is the trial's, so the sweep's reconciliation applies to it as to vae-train's: a
worker that dies leaves a RUNNING run that ``parent_run.close_stale_runs`` closes once the
trial is failed.
"""

from __future__ import annotations

import time
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from optuna.trial import FrozenTrial, TrialState

from vae_sweep.names import FAILURE_REASON_ATTR, INTERRUPTED, STUDY_NAME_TAG, TRIAL_NUMBER_TAG, TRIAL_STATE_TAG
from vae_sweep.sweep.plan import SweepPlan
from vae_sweep.track.run import PARAMS_PER_BATCH


def start_trial_run(client: MlflowClient, plan: SweepPlan, number: int, values: dict[str, Any]) -> str:
    """The trial's run id: named ``trial-N``, its params the sampled values and the fixed ones."""
    experiment = client.get_run(plan.parent_run_id).info.experiment_id
    tags = {
        STUDY_NAME_TAG: plan.study_name,
        TRIAL_NUMBER_TAG: str(number),
        TRIAL_STATE_TAG: "RUNNING",
        "mlflow.parentRunId": plan.parent_run_id,
    }
    run_id = client.create_run(experiment, run_name=f"trial-{number}", tags=tags).info.run_id
    params = [Param(key, str(value)) for key, value in {**plan.space.fixed, **values}.items()]
    for start in range(0, len(params), PARAMS_PER_BATCH):
        client.log_batch(run_id, params=params[start : start + PARAMS_PER_BATCH])
    return run_id


def finish_trial_run(client: MlflowClient, run_id: str, trial: FrozenTrial, reason: str | None) -> None:
    """State tag, value(s) as ``trial_value`` metrics, failure reason; closed as the trial ended."""
    tags = [RunTag(TRIAL_STATE_TAG, trial.state.name)]
    if reason:
        tags.append(RunTag(FAILURE_REASON_ATTR, reason[:5000]))
    client.log_batch(run_id, metrics=trial_value_metrics(trial), tags=tags)
    client.set_terminated(run_id, closing_status(trial, reason))


def trial_value_metrics(trial: FrozenTrial) -> list[Metric]:
    """The trial's value(s) from Optuna: ``trial_value``, or ``trial_value_i`` for several objectives."""
    values = trial.values or []
    names = ["trial_value"] if len(values) == 1 else [f"trial_value_{i}" for i in range(len(values))]
    now = int(time.time() * 1000)
    return [Metric(name, float(value), now, 0) for name, value in zip(names, values, strict=True)]


def closing_status(trial: FrozenTrial, reason: str | None) -> str:
    """FINISHED for a complete or pruned trial, KILLED when interrupted, else FAILED."""
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return "FINISHED"
    return "KILLED" if reason == INTERRUPTED else "FAILED"
