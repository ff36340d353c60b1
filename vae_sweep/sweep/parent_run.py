"""The study's MLflow parent run: settings, best-so-far as trials finish, plots at the end.

Child runs point to it with the ``mlflow.parentRunId`` tag, which works across processes and
machines (unlike ``nested=True``). Its id is stored on the study, so a resumed sweep and
every distributed worker find the same parent.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

import optuna
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from vae_sweep.mlflow_store import check_reachable
from vae_sweep.sweep.plan import SweepPlan
from vae_sweep.sweep.trial_link import FAILURE_REASON_ATTR, PARENT_RUN_ATTR, RUN_ID_ATTR
from vae_sweep.tracking import PARAMS_PER_BATCH, client_for, experiment_id
from vae_sweep.urls import masked

STUDY_ROLE_TAG = "vae_sweep.role"
WAIT_FOR_PARENT_S = 60


def open_parent_run(tracking_uri: str, experiment: str, study: optuna.Study, plan: SweepPlan, created: bool) -> str:
    """The study's parent run id: reopened when the study has one, else created.

    A worker that did not create the study waits for the creator to record the parent, so
    distributed workers never open a second one.
    """
    deadline = time.monotonic() + (0 if created else WAIT_FOR_PARENT_S)
    while True:
        run_id = optuna.load_study(study_name=study.study_name, storage=plan.storage()).user_attrs.get(PARENT_RUN_ATTR)
        if run_id or time.monotonic() >= deadline:
            break
        time.sleep(1)
    # Only now: a new store (SQLite file, empty database) is initialised by the creator alone;
    # MLflow's table creation and migrations are not safe to run from several processes at once.
    client = tracking_client(tracking_uri)
    if run_id:
        client.update_run(run_id, status="RUNNING")
        return run_id
    run = client.create_run(
        experiment_id(client, experiment),
        run_name=study.study_name,
        tags={STUDY_ROLE_TAG: "study", "optuna.study_name": study.study_name},
    )
    params = [Param(key, str(value)) for key, value in study_settings(plan).items()]
    for start in range(0, len(params), PARAMS_PER_BATCH):
        client.log_batch(run.info.run_id, params=params[start : start + PARAMS_PER_BATCH])
    study.set_user_attr(PARENT_RUN_ATTR, run.info.run_id)
    return run.info.run_id


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


def record_progress(client: MlflowClient, parent_run_id: str, study: optuna.Study) -> None:
    """After each finished trial: best value so far and the best trial's ids. The step is the
    number of finished trials (trials finish out of order when several run at once)."""
    metrics, tags = [], []
    counts = state_counts(study)
    step = sum(counts.values())
    now = int(time.time() * 1000)
    if counts["COMPLETE"] and len(study.directions) == 1:
        best = study.best_trial
        metrics.append(Metric("best_value", float(best.value), now, step))
        tags += [RunTag("best.trial_number", str(best.number))]
        tags += [RunTag(f"best.params.{k}", str(v)) for k, v in best.params.items()]
        if RUN_ID_ATTR in best.user_attrs:
            tags.append(RunTag("best.run_id", best.user_attrs[RUN_ID_ATTR]))
    metrics += [Metric(f"trials_{state.lower()}", float(n), now, step) for state, n in counts.items()]
    client.log_batch(parent_run_id, metrics=metrics, tags=tags)


def state_counts(study: optuna.Study) -> dict[str, int]:
    """Finished trials by state, zeros included."""
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
    counts = {state.name: 0 for state in states}
    for trial in study.get_trials(deepcopy=False, states=states):
        counts[trial.state.name] += 1
    return counts


def finish_parent_run(
    client: MlflowClient, parent_run_id: str, study: optuna.Study, plots: Iterable[Path], results: Path
) -> None:
    """Plots and results onto the parent run; FINISHED only once no trial is left to run, since
    other processes sharing the study may still be working."""
    for path in plots:
        client.log_artifact(parent_run_id, str(path), "plots")
    client.log_artifact(parent_run_id, str(results))
    pending = (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)
    if not study.get_trials(deepcopy=False, states=pending):
        client.set_terminated(parent_run_id, "FINISHED")


def close_stale_runs(client: MlflowClient, study: optuna.Study) -> int:
    """Close the MLflow runs of trials whose worker died: Optuna failed them for a silent
    heartbeat (they have no failure reason of their own), but their runs are still RUNNING."""
    closed = 0
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,)):
        run_id = trial.user_attrs.get(RUN_ID_ATTR)
        if not run_id or FAILURE_REASON_ATTR in trial.user_attrs:
            continue
        if client.get_run(run_id).info.status == "RUNNING":
            tags = [RunTag(FAILURE_REASON_ATTR, "worker_died"), RunTag("optuna.trial_state", "FAIL")]
            client.log_batch(run_id, tags=tags)
            client.set_terminated(run_id, "FAILED")
            closed += 1
    return closed
