"""The I/O half of ``vae-compare``'s input: reading a study's runs from MLflow and its Optuna study.

``connect`` checks the tracking store before opening it, ``resolve_target`` turns the
command's target into a ``Source`` (a study's parent run, an experiment or a parent run id),
``load_runs`` reads the source's trial runs into the DataFrame ``vae_sweep.compare.tables``
works on, ``find_replication`` the study's replicates (``vae-replicate``), ``load_curves`` a
metric's history per run, ``load_study`` and
``param_importances`` the Optuna side. MLflow and Optuna are imported lazily (``--help``
stays fast).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from vae_sweep.compare.tables import METRIC_PREFIX, PARAM_PREFIX
from vae_sweep.errors import ConfigError, UsageError
from vae_sweep.local_stores import sqlite_file
from vae_sweep.names import (
    PARENT_RUN_ATTR,
    REPLICATION_TAG_PREFIX,
    STUDY_NAME_TAG,
    STUDY_ROLE_TAG,
    by_metric_name,
)
from vae_sweep.track.history import metric_history
from vae_sweep.track.stores import check_existing_store


@dataclass(frozen=True)
class Source:
    """What ``target`` resolved to: a study's parent run, an experiment or a parent run id."""

    kind: str  # "study", "experiment" or "parent run"
    name: str
    experiment_id: str
    experiment: str
    parent_run_id: str | None = None
    study_name: str | None = None

    def describe(self) -> str:
        """``study 'techniques' (parent run 3f2a..., experiment 'vae-sweep')`` and the like."""
        where = f"experiment {self.experiment!r}"
        if self.kind == "study":
            return f"study {self.name!r} (parent run {self.parent_run_id}, {where})"
        if self.kind == "parent run":
            study = f"study {self.study_name!r}, " if self.study_name else ""
            return f"parent run {self.parent_run_id} ({study}{where})"
        return where


def connect(uri: str):  # -> MlflowClient (imported lazily: --help stays fast)
    """A client for the tracking store, after checking that it is there: a missing SQLite file
    would otherwise be created empty, a dead server retried for minutes."""
    from mlflow.tracking import MlflowClient

    try:
        check_existing_store(uri)
    except ConfigError as error:
        raise UsageError(error.message) from None
    client = MlflowClient(tracking_uri=uri)
    try:
        client.search_experiments(max_results=1)
    except Exception as error:  # any store error (driver, schema, auth) ends in one message
        raise UsageError(f"cannot read the MLflow store at {uri}: {error}") from None
    return client


def search_all(client, experiment_ids: Sequence[str], filter_string: str = "") -> list:
    """Every active run matching ``filter_string`` (``search_runs`` page by page)."""
    runs, token = [], None
    while True:
        page = client.search_runs(list(experiment_ids), filter_string, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def resolve_target(client, target: str, experiment: str) -> tuple[Source, list[str]]:
    """``target`` as a study name (in ``experiment``), else an experiment name, else a parent run
    id; notes about the choice. Unknown: ``UsageError`` listing the studies there are."""
    from mlflow.exceptions import MlflowException

    experiments = {e.experiment_id: e.name for e in client.search_experiments()}
    studies = search_all(client, list(experiments), f"tags.{STUDY_ROLE_TAG} = 'study'") if experiments else []
    home = client.get_experiment_by_name(experiment)
    matches = [
        run
        for run in studies
        if run.data.tags.get(STUDY_NAME_TAG) == target and home and run.info.experiment_id == home.experiment_id
    ]
    notes: list[str] = []
    if matches:
        matches.sort(key=lambda run: run.info.start_time, reverse=True)
        parent = matches[0]
        if len(matches) > 1:
            notes.append(f"{len(matches)} parent runs are named {target!r}; using the latest, {parent.info.run_id}")
        return Source("study", target, home.experiment_id, home.name, parent.info.run_id, target), notes
    named = client.get_experiment_by_name(target)
    if named is not None:
        return Source("experiment", target, named.experiment_id, named.name), notes
    try:
        run = client.get_run(target)
    except MlflowException:
        run = None
    if run is not None:
        study = run.data.tags.get(STUDY_NAME_TAG)
        name = experiments.get(run.info.experiment_id, run.info.experiment_id)
        return Source("parent run", target, run.info.experiment_id, name, run.info.run_id, study), notes
    raise UsageError(unknown_target_message(target, experiment, studies, experiments))


def unknown_target_message(target: str, experiment: str, studies: Sequence, experiments: Mapping[str, str]) -> str:
    found: dict[str, list[str]] = {}
    for run in sorted(studies, key=lambda run: run.info.start_time):
        names = found.setdefault(experiments.get(run.info.experiment_id, "?"), [])
        if run.data.tags.get(STUDY_NAME_TAG) not in names:
            names.append(run.data.tags.get(STUDY_NAME_TAG, run.info.run_name))
    listing = "; ".join(f"in experiment {name!r}: {', '.join(names)}" for name, names in found.items())
    return (
        f"no study, experiment or run {target!r} (studies are looked up in experiment {experiment!r}, "
        f"see --experiment). Studies found: {listing or 'none'}"
    )


def load_runs(client, source: Source) -> pd.DataFrame:
    """The source's trial runs, in ``mlflow.search_runs(output_format="pandas")``'s layout:
    the parent's children, or every run of an experiment but its study parent runs."""
    if source.parent_run_id:
        runs = search_all(client, [source.experiment_id], f"tags.mlflow.parentRunId = '{source.parent_run_id}'")
    else:
        runs = [r for r in search_all(client, [source.experiment_id]) if r.data.tags.get(STUDY_ROLE_TAG) != "study"]
    rows = []
    for run in runs:
        row: dict[str, object] = {
            "run_id": run.info.run_id,
            "run_name": run.info.run_name,
            "status": run.info.status,
            "start_time": pd.Timestamp(run.info.start_time, unit="ms", tz="UTC"),
        }
        row.update({f"{METRIC_PREFIX}{k}": v for k, v in by_metric_name(run.data.metrics).items()})
        row.update({f"{PARAM_PREFIX}{k}": v for k, v in run.data.params.items()})
        row.update({f"tags.{k}": v for k, v in run.data.tags.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def find_replication(client, source: Source) -> Source | None:
    """The replication study of ``source``'s study (``vae-replicate``): its latest parent run in
    the same experiment, tagged ``replication.of_study``; None when there is none."""
    if source.study_name is None:
        return None
    tag = f"tags.`{REPLICATION_TAG_PREFIX}of_study` = '{source.study_name}'"
    found = search_all(client, [source.experiment_id], f"tags.{STUDY_ROLE_TAG} = 'study' and {tag}")
    if not found:
        return None
    parent = max(found, key=lambda run: run.info.start_time)
    name = parent.data.tags.get(STUDY_NAME_TAG, parent.info.run_name)
    return Source("study", name, source.experiment_id, source.experiment, parent.info.run_id, name)


def load_curves(client, run_ids: Sequence[str], metric: str) -> dict[str, pd.DataFrame]:
    """``metric``'s history (``step``, ``value``) of each run, by run id."""
    curves = {}
    for run_id in dict.fromkeys(run_ids):
        history = metric_history(client, run_id, metric)
        curves[run_id] = pd.DataFrame({"step": [m.step for m in history], "value": [m.value for m in history]})
        curves[run_id] = curves[run_id].sort_values("step", kind="stable")
    return curves


def load_study(storage: str, source: Source):  # -> tuple[optuna.Study | None, str | None]
    """The source's Optuna study, or None and a one-line reason to skip importances."""
    if not source.study_name:
        return None, f"parameter importances skipped: {source.describe()} is not an Optuna study"
    path = sqlite_file(storage)
    if path is not None and not path.is_file():
        return None, f"parameter importances skipped: no Optuna storage at {path} (pass --storage)"
    import optuna

    try:
        study = optuna.load_study(study_name=source.study_name, storage=storage)
    except KeyError:
        return None, f"parameter importances skipped: no study {source.study_name!r} in {storage} (pass --storage)"
    except Exception as error:  # a storage we cannot open is worth a note, not a failed report
        return None, f"parameter importances skipped: cannot open {storage}: {error}"
    parent = study.user_attrs.get(PARENT_RUN_ATTR)
    if parent and source.parent_run_id and parent != source.parent_run_id:
        return None, (
            f"parameter importances skipped: study {source.study_name!r} in {storage} belongs to "
            f"another MLflow parent run ({parent})"
        )
    return study, None


def param_importances(study) -> tuple[pd.DataFrame | None, list[str]]:
    """Optuna's parameter importances (its default evaluator): an ``importance`` column, or one
    column per objective of a multi-objective study; None and a note with fewer than two
    complete trials. Optuna's warnings (e.g. too few trials per range) become notes."""
    import optuna

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 2:
        return None, [f"parameter importances skipped: {len(complete)} complete trial(s), need 2"]
    objectives = len(study.directions)
    names = ["importance"] if objectives == 1 else (study.metric_names or [f"objective_{i}" for i in range(objectives)])
    columns, notes = {}, []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            for i, name in enumerate(names):
                target = None if len(names) == 1 else (lambda trial, i=i: trial.values[i])
                columns[name] = optuna.importance.get_param_importances(study, target=target)
        except (RuntimeError, ValueError) as error:
            return None, [f"parameter importances skipped: {error}"]
    notes += sorted(
        {
            f"parameter importances: {str(w.message).splitlines()[0]}"
            for w in caught
            if issubclass(w.category, UserWarning)
        }
    )
    table = pd.DataFrame(columns).rename_axis("param").reset_index()
    return table.sort_values(names[0], ascending=False, kind="stable").reset_index(drop=True), notes
