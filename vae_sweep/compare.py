"""``vae-compare``: techniques side by side, from a finished study's MLflow runs.

The study's trial runs (children of its MLflow parent run) are read into one DataFrame in
the layout of ``mlflow.search_runs(output_format="pandas")``: ``run_id``, ``status``,
``metrics.<name>`` (the last logged value), ``params.<key>``, ``tags.<key>``. Pure
functions turn it into tables (testable without MLflow):

- ``technique_table(runs, column, metric)``: one row per option of a technique or param,
  with trial counts by state, best / median / mean / std of the metric and the winner.
- ``top_trials(runs, metric, columns=...)``: the best runs with their technique choices.
- ``pareto_front(points, x=..., y=...)``: the runs no other run beats on both axes.

The rest is thin I/O: ``connect``, ``resolve_target``, ``load_runs``, ``load_study``,
``param_importances``, ``load_curves``, the report ``render``ers and ``main``.

Example (a DataFrame as ``load_runs`` returns it):
    >>> import pandas as pd
    >>> runs = pd.DataFrame({
    ...     "run_id": ["a", "b", "c"],
    ...     "status": ["FINISHED"] * 3,
    ...     "tags.optuna.trial_state": ["COMPLETE", "COMPLETE", "PRUNED"],
    ...     "tags.technique.optimizer": ["adam", "sgd", "sgd"],
    ...     "metrics.val_loss": [40.0, 42.0, 45.0],
    ... })
    >>> technique_table(runs, "tags.technique.optimizer", "val_loss")[["option", "count", "pruned", "best", "winner"]]
      option  count  pruned  best  winner
    0   adam      1       0  40.0    True
    1    sgd      2       1  42.0   False
"""

from __future__ import annotations

import argparse
import difflib
import html
import json
import math
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from vae_sweep.errors import ConfigError
from vae_sweep.metrics import EPOCH_METRICS
from vae_sweep.mlflow_store import check_existing_store, sqlite_file

TECHNIQUE_PREFIX = "tags.technique."
PARAM_PREFIX = "params."
METRIC_PREFIX = "metrics."
STATE_TAG = "tags.optuna.trial_state"
TRIAL_TAG = "tags.optuna.trial_number"
STUDY_ROLE_TAG = "vae_sweep.role"  # as set by vae_sweep.sweep.parent_run
PARENT_RUN_ATTR = "mlflow_parent_run_id"  # the study's user attribute, as in vae_sweep.sweep.trial_link
LR_PARAM = "params.optimizer.lr"

TECHNIQUES = ("optimizer", "scheduler", "activation", "normalization", "dropout", "regularization")
STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING")
STATE_COLUMNS = {"completed": "COMPLETE", "pruned": "PRUNED", "failed": "FAIL"}
MLFLOW_STATUS_STATES = {"FINISHED": "COMPLETE", "FAILED": "FAIL", "KILLED": "FAIL", "RUNNING": "RUNNING"}
SIDE_METRICS = ("test_recon", "test_kl", "active_units", "train_seconds")  # medians beside the metric

BINS = 4  # quantile bins for a numeric param ...
MAX_LEVELS = 6  # ... with more distinct values than this
UNSET = "(unset)"
FORMATS = ("terminal", "markdown", "csv", "html", "json")
REPORT_FILES = {"terminal": "report.txt", "markdown": "report.md", "html": "report.html", "json": "report.json"}
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_STORAGE = "sqlite:///optuna.db"
ARTIFACT_FOLDER = "compare"


class UsageError(ValueError):
    """Bad input (unknown target, key or metric; unreachable store): one message, exit code 2."""


# --------------------------------------------------------------------------- pure functions


def metric_values(runs: pd.DataFrame, metric: str) -> pd.Series:
    """The metric's last logged value per run; missing, NaN and infinite values are NaN."""
    column = f"{METRIC_PREFIX}{metric}"
    if column not in runs:
        return pd.Series(math.nan, index=runs.index, dtype=float)
    values = pd.to_numeric(runs[column], errors="coerce").astype(float)
    return values.where(values.abs() != math.inf)


def trial_states(runs: pd.DataFrame) -> pd.Series:
    """COMPLETE / PRUNED / FAIL / RUNNING per run: the ``optuna.trial_state`` tag, else (runs
    outside a study) ``pruned_at_epoch`` or the MLflow status."""
    from_status = runs["status"].map(MLFLOW_STATUS_STATES).fillna("FAIL") if "status" in runs else "COMPLETE"
    states = pd.Series(from_status, index=runs.index, dtype=object)
    if "tags.pruned_at_epoch" in runs:
        states = states.where(runs["tags.pruned_at_epoch"].isna(), "PRUNED")
    if STATE_TAG in runs:
        states = runs[STATE_TAG].astype(object).where(runs[STATE_TAG].notna(), states)
    return states.astype(str)


def group_labels(values: pd.Series, *, bins: int = BINS, max_levels: int = MAX_LEVELS) -> pd.Series:
    """The option each run belongs to: its value, or for a numeric column with more than
    ``max_levels`` distinct values, its quantile range (``bins`` ranges of about equal counts,
    e.g. ``(0.00327, 0.00992]``). Runs without a value are ``(unset)``."""
    labels = values.astype(object).where(values.notna(), UNSET).astype(str)
    present = values.dropna()
    numbers = pd.to_numeric(present, errors="coerce")
    if present.empty or numbers.isna().any() or numbers.nunique() <= max_levels:
        return labels
    codes, edges = pd.qcut(numbers, bins, labels=False, retbins=True, duplicates="drop")
    for digits in (3, 4, 6, 17):
        names = [
            f"{'[' if i == 0 else '('}{edges[i]:.{digits}g}, {edges[i + 1]:.{digits}g}]" for i in range(len(edges) - 1)
        ]
        if len(set(names)) == len(names):
            break
    labels.loc[present.index] = [names[int(code)] for code in codes]
    return labels


def technique_table(
    runs: pd.DataFrame,
    column: str,
    metric: str,
    *,
    maximize: bool = False,
    bins: int = BINS,
    max_levels: int = MAX_LEVELS,
) -> pd.DataFrame:
    """One row per option of ``column`` (a ``tags.technique.*`` or ``params.*`` column), best first.

    ``count`` runs, of which ``completed`` / ``pruned`` / ``failed`` (running ones make up the
    rest); ``best`` / ``median`` / ``mean`` / ``std`` of ``metric`` over the runs that have it
    (a pruned run counts with its last logged value, see ``metric_values``); the medians of
    ``test_recon``, ``test_kl``, ``active_units`` and ``train_seconds``; ``winner`` is True on
    the row with the best ``best`` (ties: the better median).
    """
    values = metric_values(runs, metric)
    labels = group_labels(
        runs[column] if column in runs else pd.Series(math.nan, index=runs.index), bins=bins, max_levels=max_levels
    )
    states = trial_states(runs)
    by_option = values.groupby(labels, sort=False)
    table = pd.DataFrame({"count": labels.groupby(labels, sort=False).size()})
    for name, state in STATE_COLUMNS.items():
        table[name] = (states == state).groupby(labels, sort=False).sum().astype(int)
    table["best"] = by_option.max() if maximize else by_option.min()
    table["median"] = by_option.median()
    table["mean"] = by_option.mean()
    table["std"] = by_option.std()
    for side in SIDE_METRICS:
        table[f"median_{side}"] = metric_values(runs, side).groupby(labels, sort=False).median()
    table = table.rename_axis("option").reset_index()
    table = table.sort_values(["best", "median"], ascending=not maximize, na_position="last", kind="stable")
    table = table.reset_index(drop=True)
    table["winner"] = False
    if len(table) and pd.notna(table.loc[0, "best"]):
        table.loc[0, "winner"] = True
    return table


def top_trials(
    runs: pd.DataFrame,
    metric: str,
    *,
    maximize: bool = False,
    top: int = 10,
    columns: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """The ``top`` runs by ``metric`` (runs without it last): ``trial``, ``run_id``, ``state``,
    the metric, then ``columns`` (display name -> runs column; default: every technique tag
    and ``lr``)."""
    if columns is None:
        columns = default_top_columns(runs)
    table = pd.DataFrame(
        {
            "trial": pd.to_numeric(runs.get(TRIAL_TAG), errors="coerce") if TRIAL_TAG in runs else math.nan,
            "run_id": runs["run_id"],
            "state": trial_states(runs),
            metric: metric_values(runs, metric),
        },
        index=runs.index,
    )
    table["trial"] = table["trial"].astype("Int64")
    for name, column in columns.items():
        if column not in runs:
            continue
        numbers = pd.to_numeric(runs[column], errors="coerce")
        table[name] = numbers if numbers.notna().sum() == runs[column].notna().sum() else runs[column]
    table = table.sort_values([metric, "trial"], ascending=[not maximize, True], na_position="last", kind="stable")
    return table.head(top).reset_index(drop=True)


def default_top_columns(runs: pd.DataFrame) -> dict[str, str]:
    """Every technique that differs between runs (the constant ones say nothing) and ``lr``."""
    columns = {
        name.removeprefix(TECHNIQUE_PREFIX): name
        for name in technique_columns(runs)
        if runs[name].nunique(dropna=False) > 1
    }
    if LR_PARAM in runs:
        columns["lr"] = LR_PARAM
    return columns


def pareto_front(points: pd.DataFrame, *, x: str, y: str) -> pd.Series:
    """True for the points that no other point beats on both ``x`` and ``y`` (both minimised);
    rows with a missing value are never on the front."""
    front = pd.Series(False, index=points.index)
    best_y = math.inf
    for index, row in points.dropna(subset=[x, y]).sort_values([x, y], kind="stable").iterrows():
        if row[y] < best_y:
            front[index] = True
            best_y = row[y]
    return front


def technique_columns(runs: pd.DataFrame) -> list[str]:
    """The ``tags.technique.*`` columns, in the order of ``TECHNIQUES`` (others after, sorted)."""
    present = sorted(column for column in runs.columns if column.startswith(TECHNIQUE_PREFIX))
    rank = {f"{TECHNIQUE_PREFIX}{name}": i for i, name in enumerate(TECHNIQUES)}
    return sorted(present, key=lambda column: rank.get(column, len(rank)))


def available_metrics(runs: pd.DataFrame) -> list[str]:
    """Metrics logged on at least one run."""
    return sorted(
        c.removeprefix(METRIC_PREFIX) for c in runs.columns if c.startswith(METRIC_PREFIX) and runs[c].notna().any()
    )


def resolve_keys(names: Sequence[str], runs: pd.DataFrame) -> dict[str, str]:
    """``--by`` names -> runs columns: a technique (``optimizer`` -> ``tags.technique.optimizer``,
    also spelled ``technique.optimizer``) or a param key (``optimizer.lr``). An unknown name
    raises ``UsageError`` listing the keys there are."""
    keys: dict[str, str] = {}
    for name in names:
        bare = name.removeprefix("tags.").removeprefix("technique.").removeprefix(PARAM_PREFIX)
        candidates = [f"{TECHNIQUE_PREFIX}{bare}", f"{PARAM_PREFIX}{bare}"]
        if name.startswith(PARAM_PREFIX):
            candidates.reverse()
        column = next((c for c in candidates if c in runs), None)
        if column is None:
            raise UsageError(unknown_key_message(name, runs))
        keys[bare] = column
    return keys


def unknown_key_message(name: str, runs: pd.DataFrame) -> str:
    techniques = [c.removeprefix(TECHNIQUE_PREFIX) for c in technique_columns(runs)]
    params = sorted(c.removeprefix(PARAM_PREFIX) for c in runs.columns if c.startswith(PARAM_PREFIX))
    varying = [p for p in params if runs[f"{PARAM_PREFIX}{p}"].nunique() > 1]
    close = difflib.get_close_matches(name, techniques + params, n=3, cutoff=0.6)
    close += [p for p in params if p.endswith(f".{name}") and p not in close]
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    constant = len(params) - len(varying)
    return (
        f"unknown --by key {name!r}.{hint} Techniques: {', '.join(techniques) or 'none'}. "
        f"Params that vary across the runs: {', '.join(varying) or 'none'}"
        + (f" (and {constant} params that are the same in every run)." if constant else ".")
    )


def default_keys(runs: pd.DataFrame) -> tuple[dict[str, str], dict[str, str]]:
    """Every technique tag that differs between runs (all of them when none does), and the
    constant ones with their value (reported in one line instead of one-row tables)."""
    keys = {c.removeprefix(TECHNIQUE_PREFIX): c for c in technique_columns(runs)}
    varying = {name: c for name, c in keys.items() if runs[c].nunique(dropna=False) > 1}
    constant = {
        name: str(runs[c].dropna().iloc[0]) if runs[c].notna().any() else UNSET
        for name, c in keys.items()
        if name not in varying
    }
    return (varying, constant) if varying else (keys, {})


# --------------------------------------------------------------------------- reading MLflow and Optuna


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
        if run.data.tags.get("optuna.study_name") == target and home and run.info.experiment_id == home.experiment_id
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
        study = run.data.tags.get("optuna.study_name")
        name = experiments.get(run.info.experiment_id, run.info.experiment_id)
        return Source("parent run", target, run.info.experiment_id, name, run.info.run_id, study), notes
    raise UsageError(unknown_target_message(target, experiment, studies, experiments))


def unknown_target_message(target: str, experiment: str, studies: Sequence, experiments: Mapping[str, str]) -> str:
    found: dict[str, list[str]] = {}
    for run in sorted(studies, key=lambda run: run.info.start_time):
        names = found.setdefault(experiments.get(run.info.experiment_id, "?"), [])
        if run.data.tags.get("optuna.study_name") not in names:
            names.append(run.data.tags.get("optuna.study_name", run.info.run_name))
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
        row.update({f"{METRIC_PREFIX}{k}": v for k, v in run.data.metrics.items()})
        row.update({f"{PARAM_PREFIX}{k}": v for k, v in run.data.params.items()})
        row.update({f"tags.{k}": v for k, v in run.data.tags.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def load_curves(client, run_ids: Sequence[str], metric: str) -> dict[str, pd.DataFrame]:
    """``metric``'s history (``step``, ``value``) of each run, by run id."""
    curves = {}
    for run_id in dict.fromkeys(run_ids):
        history = client.get_metric_history(run_id, metric)
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


# --------------------------------------------------------------------------- the report


@dataclass
class Comparison:
    """Everything a report shows; ``render`` turns it into text, ``write_plots`` into figures."""

    source: Source
    metric: str
    maximize: bool
    runs: pd.DataFrame
    keys: dict[str, str]  # dimension -> runs column
    techniques: dict[str, pd.DataFrame]
    top: pd.DataFrame
    importances: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)

    def headline(self) -> str:
        counts = trial_states(self.runs).value_counts()
        states = ", ".join(f"{counts.get(s, 0)} {label}" for label, s in STATE_COLUMNS.items())
        running = counts.get("RUNNING", 0)
        return f"{self.source.describe()}: {len(self.runs)} runs ({states}{f', {running} running' if running else ''})"

    def metric_line(self) -> str:
        better = "higher" if self.maximize else "lower"
        over = "a pruned run counts with its last logged value" if self.metric in EPOCH_METRICS else "runs that have it"
        return (
            f"Per option: runs by state; best / median / mean / std of {self.metric} ({better} is better; "
            f"{over}); medians of {', '.join(SIDE_METRICS)}"
        )


def compare_runs(
    source: Source,
    runs: pd.DataFrame,
    keys: Mapping[str, str],
    metric: str,
    *,
    maximize: bool = False,
    top: int = 10,
) -> Comparison:
    """The technique tables and the top-``top`` table, for ``keys`` (dimension -> runs column)."""
    techniques = {name: technique_table(runs, column, metric, maximize=maximize) for name, column in keys.items()}
    columns = default_top_columns(runs)
    columns.update({name: column for name, column in keys.items() if column not in columns.values()})
    best = top_trials(runs, metric, maximize=maximize, top=top, columns=columns)
    return Comparison(source, metric, maximize, runs, dict(keys), techniques, best)


def display(table: pd.DataFrame) -> pd.DataFrame:
    """For people: the winner as a ★ in front, run ids shortened, ``median_`` dropped from the
    side metrics' names (the headline says they are medians), missing values as None."""
    shown = table.rename(columns={f"median_{side}": side for side in SIDE_METRICS})
    if "winner" in shown:
        shown.insert(0, "", shown.pop("winner").map({True: "★", False: ""}))
    if "run_id" in shown:
        shown.insert(shown.columns.get_loc("run_id"), "run", shown.pop("run_id").str[:8])
    return shown.astype(object).where(shown.notna(), None)


def sections(comparison: Comparison) -> list[tuple[str, pd.DataFrame]]:
    """(title, table) in report order."""
    parts = [(f"{name} (by {comparison.metric})", table) for name, table in comparison.techniques.items()]
    parts.append((f"Top {len(comparison.top)} runs by {comparison.metric}", comparison.top))
    if comparison.importances is not None:
        parts.append(("Parameter importances (Optuna)", comparison.importances))
    return parts


def text_table(table: pd.DataFrame, tablefmt: str) -> str:
    return tabulate(display(table), headers="keys", tablefmt=tablefmt, showindex=False, missingval="-", floatfmt="g")


def render_terminal(comparison: Comparison) -> str:
    lines = [comparison.headline(), comparison.metric_line(), ""]
    for title, table in sections(comparison):
        lines += [title, text_table(table, "simple"), ""]
    lines += [f"Note: {note}" for note in comparison.notes]
    return "\n".join(lines).rstrip() + "\n"


def render_markdown(comparison: Comparison) -> str:
    lines = [f"# vae-compare: {comparison.source.kind} {comparison.source.name}", "", comparison.headline() + ".", ""]
    lines += [comparison.metric_line() + ".", ""]
    for title, table in sections(comparison):
        lines += [f"## {title}", "", text_table(table, "github"), ""]
    if comparison.plots:
        lines += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in comparison.plots] + [""]
    if comparison.notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in comparison.notes] + [""]
    return "\n".join(lines)


def render_html(comparison: Comparison) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8">',
        f"<title>vae-compare: {html.escape(comparison.source.name)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}img{max-width:100%}</style>",
        "</head><body>",
        f"<h1>vae-compare: {html.escape(comparison.source.kind)} {html.escape(comparison.source.name)}</h1>",
        f"<p>{html.escape(comparison.headline())}.<br>{html.escape(comparison.metric_line())}.</p>",
    ]
    for title, table in sections(comparison):
        parts += [
            f"<h2>{html.escape(title)}</h2>",
            display(table).to_html(index=False, na_rep="-", float_format="{:g}".format),
        ]
    if comparison.plots:
        parts += ["<h2>Plots</h2>"] + [
            f'<p><img src="{html.escape(p)}" alt="{html.escape(p)}"></p>' for p in comparison.plots
        ]
    if comparison.notes:
        parts += ["<h2>Notes</h2><ul>"] + [f"<li>{html.escape(note)}</li>" for note in comparison.notes] + ["</ul>"]
    return "\n".join([*parts, "</body></html>", ""])


def records(table: pd.DataFrame) -> list[dict[str, object]]:
    """JSON-ready rows: NaN -> null, numpy scalars -> Python."""
    return json.loads(table.to_json(orient="records", double_precision=15))


def render_json(comparison: Comparison) -> str:
    source = comparison.source
    document = {
        "source": {
            "kind": source.kind,
            "name": source.name,
            "experiment": source.experiment,
            "parent_run_id": source.parent_run_id,
            "study_name": source.study_name,
        },
        "metric": comparison.metric,
        "maximize": comparison.maximize,
        "runs": len(comparison.runs),
        "states": {state: int((trial_states(comparison.runs) == state).sum()) for state in STATES},
        "techniques": {name: records(table) for name, table in comparison.techniques.items()},
        "top_trials": records(comparison.top),
        "importances": None if comparison.importances is None else records(comparison.importances),
        "plots": comparison.plots,
        "notes": comparison.notes,
    }
    return json.dumps(document, indent=2, allow_nan=False) + "\n"


def csv_files(comparison: Comparison) -> dict[str, str]:
    """``techniques.csv`` (all dimensions, long: a ``dimension`` column first),
    ``top_trials.csv`` and, when computed, ``importances.csv``."""
    long = pd.concat([table.assign(dimension=name) for name, table in comparison.techniques.items()], ignore_index=True)
    long.insert(0, "dimension", long.pop("dimension"))
    files = {"techniques.csv": long.to_csv(index=False), "top_trials.csv": comparison.top.to_csv(index=False)}
    if comparison.importances is not None:
        files["importances.csv"] = comparison.importances.to_csv(index=False)
    return files


def render(comparison: Comparison, fmt: str) -> dict[str, str]:
    """The report in ``fmt`` as file name -> text."""
    if fmt == "csv":
        return csv_files(comparison)
    renderer = {"terminal": render_terminal, "markdown": render_markdown, "html": render_html, "json": render_json}
    return {REPORT_FILES[fmt]: renderer[fmt](comparison)}


def to_stdout(files: Mapping[str, str]) -> str:
    """One file as it is; several (csv) each under a ``# name`` line, separated by a blank line."""
    if len(files) == 1:
        return next(iter(files.values()))
    return "\n".join(f"# {name}\n{text}" for name, text in files.items())


# --------------------------------------------------------------------------- plots


def write_plots(client, comparison: Comparison, folder: Path) -> list[Path]:
    """``distribution.png``, ``learning_curves.png`` and (with completed runs) ``recon_vs_kl.png``."""
    from vae_sweep import compare_plots as plots

    runs, metric = comparison.runs, comparison.metric
    values, states = metric_values(runs, metric), trial_states(runs)
    groups = {name: group_labels(runs[column]) for name, column in comparison.keys.items()}
    order = {name: list(table["option"]) for name, table in comparison.techniques.items()}
    written = [
        plots.save(plots.distribution_figure(values, states, groups, order, metric), folder / "distribution.png")
    ]

    curve_metric = metric if metric in EPOCH_METRICS else "val_loss"
    best_runs: dict[str, dict[str, pd.Series]] = {}
    for name, labels in groups.items():
        ranked = runs.assign(_value=values, _label=labels).dropna(subset=["_value"])
        ranked = ranked.sort_values("_value", ascending=not comparison.maximize, kind="stable")
        best_runs[name] = {label: rows.iloc[0] for label, rows in ranked.groupby("_label", sort=False)}
    histories = load_curves(
        client, [row["run_id"] for rows in best_runs.values() for row in rows.values()], curve_metric
    )
    curves = {
        name: {
            f"{label} ({run_label(row)})": histories[row["run_id"]]
            for label in order[name]
            if (row := rows.get(label)) is not None and not histories[row["run_id"]].empty
        }
        for name, rows in best_runs.items()
    }
    written.append(plots.save(plots.curves_figure(curves, curve_metric), folder / "learning_curves.png"))

    points = pd.DataFrame({"test_recon": metric_values(runs, "test_recon"), "test_kl": metric_values(runs, "test_kl")})
    points = points[states == "COMPLETE"].dropna()
    if points.empty:
        comparison.notes.append("recon vs KL plot skipped: no completed run has test_recon and test_kl")
    else:
        color_by = next(iter(groups), None)
        if color_by:
            points[color_by] = groups[color_by][points.index]
        front = pareto_front(points, x="test_recon", y="test_kl")
        figure = plots.pareto_figure(points, front, x="test_recon", y="test_kl", color_by=color_by)
        written.append(plots.save(figure, folder / "recon_vs_kl.png"))
    return written


def run_label(row: pd.Series) -> str:
    trial = row.get(TRIAL_TAG)
    return f"trial {trial}" if isinstance(trial, str) else f"run {row['run_id'][:8]}"


# --------------------------------------------------------------------------- command line


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(
        prog="vae-compare",
        description=(
            "Compare optimization techniques across a study's trials: one table per technique\n"
            "(runs by state, best / median / mean / std of a metric, the winner), the top trials,\n"
            "Optuna parameter importances and, with --out, plots logged on the study's parent run."
        ),
        epilog=(
            "examples:\n"
            "  vae-compare techniques\n"
            "  vae-compare techniques --by optimizer,scheduler --metric test_loss --format markdown --out reports/\n"
            "  vae-compare techniques --by optimizer.lr --top 5\n"
            "\nSee docs/compare.md."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cli.add_argument(
        "target", help="a study name, else an MLflow experiment name, else a parent run id (tried in that order)"
    )
    cli.add_argument(
        "--tracking-uri",
        default=os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI,
        metavar="URI",
        help="MLflow tracking store (default: $MLFLOW_TRACKING_URI or %(default)s)",
    )
    cli.add_argument(
        "--experiment", default="vae-sweep", metavar="NAME", help="experiment holding the study (default: %(default)s)"
    )
    cli.add_argument(
        "--storage",
        default=DEFAULT_STORAGE,
        metavar="URL",
        help="Optuna storage, for parameter importances; skipped with a note when the study is not there "
        "(default: %(default)s)",
    )
    cli.add_argument(
        "--by",
        metavar="KEYS",
        help="comma-separated techniques (optimizer, scheduler, activation, normalization, dropout, regularization) "
        f"or param keys (optimizer.lr, model.latent_dim); a numeric param with more than {MAX_LEVELS} values is "
        f"split into {BINS} quantile ranges (default: every technique that differs between runs)",
    )
    cli.add_argument("--metric", default="val_loss", help="metric to rank by (default: %(default)s; lower is better)")
    cli.add_argument("--maximize", action="store_true", help="higher --metric is better")
    cli.add_argument(
        "--top", type=int, default=10, metavar="K", help="rows in the top-trials table (default: %(default)s)"
    )
    cli.add_argument("--format", choices=FORMATS, default="terminal", help="report format (default: %(default)s)")
    cli.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="write the report and PNG plots into DIR and log them on the study's parent run under "
        f"{ARTIFACT_FOLDER}/ (default: print the report, no plots)",
    )
    cli.add_argument("--no-log", action="store_true", help="with --out: do not log the files on the parent run")
    return cli


def build(client, args: argparse.Namespace) -> Comparison:
    """Resolve the target, read its runs, check ``--metric`` and ``--by``, compute the tables
    and the importances."""
    source, notes = resolve_target(client, args.target, args.experiment)
    runs = load_runs(client, source)
    if runs.empty:
        raise UsageError(f"{source.describe()} has no trial runs")
    metrics = available_metrics(runs)
    if args.metric not in metrics:
        raise UsageError(f"unknown metric {args.metric!r}; the runs have: {', '.join(metrics)}")
    names = [name.strip() for name in (args.by or "").split(",") if name.strip()]
    if names:
        keys = resolve_keys(names, runs)
    else:
        keys, constant = default_keys(runs)
        if constant:
            notes.append("same in every run: " + ", ".join(f"{k}={v}" for k, v in constant.items()))
    if not keys:
        raise UsageError(
            "the runs have no technique.* tags; name what to group by with --by (e.g. --by optimizer.name)"
        )
    comparison = compare_runs(source, runs, keys, args.metric, maximize=args.maximize, top=args.top)
    comparison.notes[:0] = notes
    study, note = load_study(args.storage, source)
    if study is not None:
        comparison.importances, more = param_importances(study)
        comparison.notes += more
    elif note:
        comparison.notes.append(note)
    return comparison


def write_report(client, comparison: Comparison, folder: Path, fmt: str, *, log: bool) -> None:
    """Plots and the report into ``folder``, then (``log``) onto the parent run under ``compare/``;
    what was written, and notes, to stdout."""
    folder.mkdir(parents=True, exist_ok=True)
    written = write_plots(client, comparison, folder)
    comparison.plots = [path.name for path in written]
    for name, text in render(comparison, fmt).items():
        (folder / name).write_text(text, encoding="utf-8")
        written.append(folder / name)
    for path in written:
        print(f"wrote {path}")
    parent = comparison.source.parent_run_id
    if log and parent is None:
        comparison.notes.append(f"not logged to MLflow: {comparison.source.describe()} has no parent run")
    elif log:
        for path in written:
            client.log_artifact(parent, str(path), ARTIFACT_FOLDER)
        print(f"logged {len(written)} files under {ARTIFACT_FOLDER}/ on parent run {parent}")
    for note in comparison.notes:
        print(f"Note: {note}")


def run(args: argparse.Namespace) -> int:
    """The command behind ``main``; ``UsageError`` escapes to it. The report (or the list of
    files written) goes to stdout, the line saying what ``target`` resolved to to stderr."""
    if args.top < 1:
        raise UsageError(f"--top must be at least 1, got {args.top}")
    client = connect(args.tracking_uri)
    comparison = build(client, args)
    print(f"vae-compare: {comparison.source.describe()}, {len(comparison.runs)} runs", file=sys.stderr)
    if args.out is None:
        sys.stdout.write(to_stdout(render(comparison, args.format)))
    else:
        write_report(client, comparison, args.out, args.format, log=not args.no_log)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``vae-compare`` with ``argv``; 0, or 2 after one ``vae-compare: error: ...`` line."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as exit_:  # --help, or argparse's own usage error (code 2)
        return int(exit_.code or 0)
    try:
        return run(args)
    except UsageError as error:
        print(f"vae-compare: error: {error}", file=sys.stderr)
        return 2
