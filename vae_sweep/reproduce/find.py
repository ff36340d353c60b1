"""Finding the run ``vae-reproduce`` re-runs, in a store that must already exist.

A run is named by its MLflow id, or found through a study's parent run, the way the sweep
tagged it: ``--study NAME --best`` reads the parent's best run, ``--study NAME --trial N`` the
child run tagged with trial number ``N``. Every "not found" is a ``UsageError`` that says what
the store does hold (experiments, studies, trial numbers), so the next try can be right.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from vae_sweep.errors import ConfigError, UsageError
from vae_sweep.names import (
    BEST_RUN_TAG,
    BEST_TRIAL_TAG,
    DEFAULT_EXPERIMENT,
    PARENT_RUN_TAG,
    STUDY_NAME_TAG,
    STUDY_ROLE_TAG,
    TRIAL_NUMBER_TAG,
)
from vae_sweep.track.stores import check_existing_store

MAX_RESULTS = 1000  # runs per search_runs page


def open_store(uri: str) -> MlflowClient:
    """A client for an existing store: a mistyped SQLite path is an error, not a new empty store."""
    try:
        check_existing_store(uri)
    except ConfigError as error:
        raise UsageError(error.message) from None
    return MlflowClient(tracking_uri=uri)


@dataclass(frozen=True)
class Selection:
    run_id: str
    description: str  # how it was found, for the report


def select_run(
    client: MlflowClient,
    *,
    run_id: str | None = None,
    study: str | None = None,
    best: bool = False,
    trial: int | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
) -> Selection:
    """The run named by id, or a study's best run or trial ``N`` (found through its parent run)."""
    if run_id is not None:
        return Selection(run_id, f"run {run_id}")
    if study is None or best == (trial is not None):
        raise ValueError("give run_id, or study with exactly one of best and trial")
    parent = study_parent_run(client, experiment, study)
    if best:
        best_id = parent.data.tags.get(BEST_RUN_TAG)
        if not best_id:
            raise UsageError(
                f"study {study!r} has no best run yet (no trial completed, or several objectives: "
                f"a Pareto front has no single best); pick one with --study {study} --trial N"
            )
        number = parent.data.tags.get(BEST_TRIAL_TAG, "?")
        return Selection(best_id, f"run {best_id}, the best trial ({number}) of study {study!r}")
    children = search_all(client, parent.info.experiment_id, f"tags.`{PARENT_RUN_TAG}` = '{parent.info.run_id}'")
    numbered = [run for run in children if run.data.tags.get(TRIAL_NUMBER_TAG) == str(trial)]
    if not numbered:
        numbers = sorted({int(n) for run in children if (n := run.data.tags.get(TRIAL_NUMBER_TAG, "")).isdigit()})
        have = f"its trials are {number_ranges(numbers)}" if numbers else "it has no trial runs yet"
        raise UsageError(f"study {study!r} has no trial {trial}; {have}")
    chosen = max(numbered, key=lambda run: run.info.start_time or 0)  # a re-logged trial: the latest
    return Selection(chosen.info.run_id, f"run {chosen.info.run_id}, trial {trial} of study {study!r}")


def study_parent_run(client: MlflowClient, experiment: str, study: str) -> Run:
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = ", ".join(sorted(e.name for e in client.search_experiments())) or "none"
        raise UsageError(f"no experiment {experiment!r} in this store (experiments: {names}); see --experiment")
    parents = search_all(client, found.experiment_id, f"tags.`{STUDY_ROLE_TAG}` = 'study'")
    matching = [run for run in parents if run.data.tags.get(STUDY_NAME_TAG) == study]
    if not matching:
        names = sorted({run.data.tags.get(STUDY_NAME_TAG, "?") for run in parents})
        found_text = f"studies found: {', '.join(names)}" if names else "no studies found"
        raise UsageError(f"no study {study!r} in experiment {experiment!r}; {found_text}")
    return max(matching, key=lambda run: run.info.start_time or 0)


def search_all(client: MlflowClient, experiment_id: str, filter_string: str) -> list[Run]:
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs([experiment_id], filter_string, max_results=MAX_RESULTS, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def number_ranges(numbers: Sequence[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``"0-2, 5, 7-8"``."""
    spans: list[list[int]] = []
    for number in sorted(numbers):
        if spans and number == spans[-1][1] + 1:
            spans[-1][1] = number
        else:
            spans.append([number, number])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def get_run(client: MlflowClient, run_id: str, uri: str) -> Run:
    try:
        return client.get_run(run_id)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise UsageError(f"no run {run_id!r} in {uri}; check the id and --tracking-uri") from None
        raise
