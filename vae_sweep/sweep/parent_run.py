"""The study's MLflow parent run: settings, best-so-far as trials finish, plots at the end.

Child runs point to it with the ``mlflow.parentRunId`` tag, which works across processes and
machines (unlike ``nested=True``). Its id is stored on the study, so a resumed sweep and
every distributed worker find the same parent; the run is also tagged with the study's uid, so
a process killed between creating it and recording its id leaves a run the next one finds.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from pathlib import Path

import optuna
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from vae_sweep.names import (
    BEST_RUN_TAG,
    BEST_TRIAL_TAG,
    FAILURE_REASON_ATTR,
    INCOMPLETE_NOTE,
    INCOMPLETE_TAG,
    PARENT_RUN_ATTR,
    RUN_ID_ATTR,
    STUDY_NAME_TAG,
    STUDY_ROLE_TAG,
    STUDY_UID_ATTR,
    TRIAL_STATE_TAG,
    WORKER_DIED,
)
from vae_sweep.sweep.plan import SweepPlan
from vae_sweep.sweep.progress import StudyProgress
from vae_sweep.sweep.replicates import replication_tags
from vae_sweep.sweep.trial_runs import closing_status, trial_value_metrics
from vae_sweep.track.run import PARAMS_PER_BATCH, TRACKING_ERRORS, client_for, experiment_id
from vae_sweep.track.stores import check_reachable
from vae_sweep.track.urls import masked


def open_parent_run(tracking_uri: str, experiment: str, study: optuna.Study, plan: SweepPlan) -> str:
    """The study's parent run id: reopened when the study has one, else created and recorded.

    Call it under ``study_lock``: then exactly one process creates the parent of a study.
    """
    client = tracking_client(tracking_uri)
    run_id = study.user_attrs.get(PARENT_RUN_ATTR)
    if run_id:
        client.update_run(run_id, status="RUNNING")
        return run_id
    uid = study.user_attrs.get(STUDY_UID_ATTR)
    if uid is None:
        uid = uuid.uuid4().hex
        study.set_user_attr(STUDY_UID_ATTR, uid)
    experiment_ids = [experiment_id(client, experiment)]
    found = client.search_runs(experiment_ids, f"tags.`{STUDY_UID_ATTR}` = '{uid}'", max_results=1)
    if found:  # made by a process killed before it recorded the id
        run_id = found[0].info.run_id
        client.update_run(run_id, status="RUNNING")
    else:
        tags = {STUDY_ROLE_TAG: "study", STUDY_NAME_TAG: study.study_name, STUDY_UID_ATTR: uid}
        tags.update(replication_tags(study.user_attrs))
        run_id = client.create_run(experiment_ids[0], run_name=study.study_name, tags=tags).info.run_id
    params = [Param(key, str(value)) for key, value in study_settings(plan).items()]
    for start in range(0, len(params), PARAMS_PER_BATCH):
        try:
            client.log_batch(run_id, params=params[start : start + PARAMS_PER_BATCH])
        except MlflowException:  # a found run may hold them already, from another command line
            if not found:
                raise
    study.set_user_attr(PARENT_RUN_ATTR, run_id)
    return run_id


def study_settings(plan: SweepPlan) -> dict[str, object]:
    settings: dict[str, object] = {
        "study_name": plan.study_name,
        "storage": masked(plan.storage_url),
        "direction": ",".join(plan.directions),
        "sampler": plan.sampler_name,
        "sampler.seed": plan.sampler_seed,
        "pruner": plan.pruner_name,
        "n_jobs": plan.n_jobs,
        "fixed_overrides": " ".join(plan.base_overrides) or "-",
    }
    settings.update({f"sampler.{k}": v for k, v in plan.sampler_options.items()})
    settings.update({f"pruner.{k}": v for k, v in plan.pruner_options.items()})
    for name, param in plan.space.params.items():
        settings[f"space.{name}"] = (
            repr(param.distribution)
            if param.parent is None
            else f"by {param.parent}: {param.branches}, default {param.default}"
        )
    settings.update({f"fixed.{name}": value for name, value in plan.space.fixed.items()})
    return settings


def tracking_client(uri: str) -> MlflowClient:
    check_reachable(uri)
    return client_for(uri)


def record_progress(client: MlflowClient, parent_run_id: str, progress: StudyProgress) -> None:
    """After each finished trial: best value so far and the best trial's ids. The step is the
    number of finished trials (trials finish out of order when several run at once)."""
    metrics, tags = [], []
    counts = progress.counts()
    step = sum(counts.values())
    now = int(time.time() * 1000)
    if best := progress.best():
        metrics.append(Metric("best_value", float(best.value), now, step))
        tags += [RunTag(BEST_TRIAL_TAG, str(best.number))]
        tags += [RunTag(f"best.params.{k}", str(v)) for k, v in best.params.items()]
        if RUN_ID_ATTR in best.user_attrs:
            tags.append(RunTag(BEST_RUN_TAG, best.user_attrs[RUN_ID_ATTR]))
    metrics += [Metric(f"trials_{state.lower()}", float(n), now, step) for state, n in counts.items()]
    client.log_batch(parent_run_id, metrics=metrics, tags=tags)


def finish_parent_run(
    client: MlflowClient, parent_run_id: str, study: optuna.Study, plots: Iterable[Path], results: Path
) -> None:
    """Plots and results onto the parent run; FINISHED only once no trial is left to run, since
    other processes sharing the study may still be working. An artifact store that fails costs
    the files (the error is raised once the run is closed), not the run's end."""
    failed: BaseException | None = None
    try:
        for path in plots:
            client.log_artifact(parent_run_id, str(path), "plots")
        client.log_artifact(parent_run_id, str(results))
    except TRACKING_ERRORS as error:
        failed = error
    pending = (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)
    if not study.get_trials(deepcopy=False, states=pending):
        client.set_terminated(parent_run_id, "FINISHED")
    if failed is not None:
        raise failed


def close_stale_runs(client: MlflowClient, study: optuna.Study, parent_run_id: str) -> int:
    """Close the MLflow runs still RUNNING for trials that are over.

    - A failed trial: its worker died (failed by the heartbeat, without a reason of its own, or
      as ``worker_died``), or an interrupt's clean-up was cut short: FAILED or KILLED.
    - A trial that ended (COMPLETE or PRUNED) while its tracking server was down: FINISHED, with
      the trial's state, its value(s) from Optuna as ``trial_value`` metrics, and an
      ``INCOMPLETE_TAG`` saying that what it could not send is missing (``vae-reproduce
      --study S --trial N`` trains it again into a complete run).

    A run that a retry went on with from a checkpoint belongs to that retry and is left alone;
    a trial still RUNNING keeps its run open."""
    parent = client.get_run(parent_run_id)
    running = client.search_runs(
        [parent.info.experiment_id],
        f"attributes.status = 'RUNNING' AND tags.`mlflow.parentRunId` = '{parent_run_id}'",
        max_results=10000,
    )
    if not running:
        return 0
    by_run: dict[str, optuna.trial.FrozenTrial] = {}
    for trial in study.get_trials(deepcopy=False):  # by number: a retry that went on with a run owns it
        if RUN_ID_ATTR in trial.user_attrs:
            by_run[trial.user_attrs[RUN_ID_ATTR]] = trial
    closed = 0
    for run in running:
        trial = by_run.get(run.info.run_id)
        if trial is None or trial.state in (TrialState.RUNNING, TrialState.WAITING):
            continue
        if trial.state is TrialState.FAIL:
            reason = trial.user_attrs.get(FAILURE_REASON_ATTR, WORKER_DIED)
            tags = [RunTag(FAILURE_REASON_ATTR, reason[:5000]), RunTag(TRIAL_STATE_TAG, "FAIL")]
            client.log_batch(run.info.run_id, tags=tags)
        else:
            reason = None
            tags = [RunTag(TRIAL_STATE_TAG, trial.state.name), RunTag(INCOMPLETE_TAG, INCOMPLETE_NOTE)]
            client.log_batch(run.info.run_id, metrics=trial_value_metrics(trial), tags=tags)
        client.set_terminated(run.info.run_id, closing_status(trial, reason))
        closed += 1
    return closed
