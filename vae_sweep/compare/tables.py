"""The pure half of ``vae-compare``: a study's runs in, tables out (testable without MLflow).

The runs are one DataFrame in the layout of ``mlflow.search_runs(output_format="pandas")``
(``vae_sweep.compare.sources.load_runs`` reads it): ``run_id``, ``status``,
``metrics.<name>`` (the last logged value), ``params.<key>``, ``tags.<key>``. Nothing here
talks to MLflow or Optuna:

- ``completed_values(runs, metric)``: the values compared by default (completed runs only).
- ``technique_table(runs, column, metric, values=..., min_runs=...)``: one row per option of a
  technique or param, with trial counts by state, best / median / mean / std of the compared
  values, thin options (too few runs to win) and the winner (best median).
- ``top_trials(runs, metric, values=..., columns=...)``: the best runs with their technique choices.
- ``pareto_front(points, x=..., y=...)``: the runs no other run beats on both axes.
- ``resolve_keys`` / ``default_keys``: what to group by (``--by``, or every technique that varies).

Example (a DataFrame as ``load_runs`` returns it):
    >>> import pandas as pd
    >>> runs = pd.DataFrame({
    ...     "run_id": list("abcde"),
    ...     "status": ["FINISHED"] * 5,
    ...     "tags.optuna.trial_state": ["COMPLETE", "COMPLETE", "COMPLETE", "COMPLETE", "PRUNED"],
    ...     "tags.technique.optimizer": ["adam", "adam", "adam", "sgd", "sgd"],
    ...     "metrics.val_loss": [41.0, 42.0, 43.0, 40.0, 45.0],
    ... })
    >>> columns = ["option", "count", "pruned", "compared", "best", "median", "thin", "winner"]
    >>> technique_table(runs, "tags.technique.optimizer", "val_loss", min_runs=3)[columns]
      option  count  pruned  compared  best  median   thin  winner
    0   adam      3       0         3  41.0    42.0  False    True
    1    sgd      2       1         1  40.0    40.0   True   False
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence

import pandas as pd

from vae_sweep.errors import UsageError
from vae_sweep.names import TRIAL_NUMBER_TAG, TRIAL_STATE_TAG

TECHNIQUE_PREFIX = "tags.technique."
PARAM_PREFIX = "params."
METRIC_PREFIX = "metrics."
STATE_TAG = f"tags.{TRIAL_STATE_TAG}"  # columns of the runs DataFrame (MlflowClient.search_runs)
TRIAL_TAG = f"tags.{TRIAL_NUMBER_TAG}"
LR_PARAM = "params.optimizer.lr"

TECHNIQUES = ("optimizer", "scheduler", "activation", "normalization", "dropout", "regularization")
STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING")
STATE_COLUMNS = {"completed": "COMPLETE", "pruned": "PRUNED", "failed": "FAIL"}
MLFLOW_STATUS_STATES = {"FINISHED": "COMPLETE", "FAILED": "FAIL", "KILLED": "FAIL", "RUNNING": "RUNNING"}
# Medians beside the metric; test_bpd is the images' usual unit (older runs lack it: blank).
SIDE_METRICS = ("test_recon", "test_kl", "test_bpd", "active_units", "train_seconds")

MIN_RUNS = 3  # compared runs an option needs to win (--min-runs)
BINS = 4  # quantile bins for a numeric param ...
MAX_LEVELS = 6  # ... with more distinct values than this
UNSET = "(unset)"


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


def completed_values(runs: pd.DataFrame, metric: str) -> pd.Series:
    """``metric_values`` of the completed runs; NaN for the others. The default basis of a
    comparison: a pruned run's last value comes from the epoch it was stopped at, so next to
    completed runs' final-epoch values it would compare different amounts of training."""
    return metric_values(runs, metric).where(trial_states(runs) == "COMPLETE")


def technique_table(
    runs: pd.DataFrame,
    column: str,
    metric: str,
    *,
    values: pd.Series | None = None,
    maximize: bool = False,
    min_runs: int = MIN_RUNS,
    bins: int = BINS,
    max_levels: int = MAX_LEVELS,
) -> pd.DataFrame:
    """One row per option of ``column`` (a ``tags.technique.*`` or ``params.*`` column), winner first.

    ``count`` runs, of which ``completed`` / ``pruned`` / ``failed`` (running ones make up the
    rest); ``compared``: the runs with a value in ``values`` (default ``completed_values``: every
    run counts, only completed ones are compared); ``best`` / ``median`` / ``mean`` / ``std`` of
    those values; the medians of ``SIDE_METRICS`` (final metrics: completed runs only). An option
    with fewer than ``min_runs`` compared runs is ``thin``: its median rests on too few runs to
    rank it, so it cannot win. ``winner`` is True on the non-thin option with the best median
    (ties: the better ``best``); the median, not the best run, because the best of 14 runs beats
    the best of 3 by luck alone. Rows: non-thin options by median, then the thin ones.
    """
    if min_runs < 1:
        raise ValueError(f"min_runs must be at least 1, got {min_runs=}")
    if values is None:
        values = completed_values(runs, metric)
    labels = group_labels(
        runs[column] if column in runs else pd.Series(math.nan, index=runs.index), bins=bins, max_levels=max_levels
    )
    states = trial_states(runs)
    by_option = values.groupby(labels, sort=False)
    table = pd.DataFrame({"count": labels.groupby(labels, sort=False).size()})
    for name, state in STATE_COLUMNS.items():
        table[name] = (states == state).groupby(labels, sort=False).sum().astype(int)
    table["compared"] = by_option.count().astype(int)
    table["best"] = by_option.max() if maximize else by_option.min()
    table["median"] = by_option.median()
    table["mean"] = by_option.mean()
    table["std"] = by_option.std()
    for side in SIDE_METRICS:
        table[f"median_{side}"] = metric_values(runs, side).groupby(labels, sort=False).median()
    table["thin"] = table["compared"] < min_runs
    table = table.rename_axis("option").reset_index()
    table = table.sort_values(
        ["thin", "median", "best"], ascending=[True, not maximize, not maximize], na_position="last", kind="stable"
    )
    table = table.reset_index(drop=True)
    table["winner"] = False
    if len(table) and not table.loc[0, "thin"] and pd.notna(table.loc[0, "median"]):
        table.loc[0, "winner"] = True
    return table


def top_trials(
    runs: pd.DataFrame,
    metric: str,
    *,
    values: pd.Series | None = None,
    maximize: bool = False,
    top: int = 10,
    columns: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """The ``top`` runs by ``values`` (default ``completed_values``; runs without one are left
    out, as in the technique tables): ``trial``, ``run_id``, ``state``, the value under the
    metric's name, then ``columns`` (display name -> runs column; default: every technique tag
    and ``lr``)."""
    if values is None:
        values = completed_values(runs, metric)
    if columns is None:
        columns = default_top_columns(runs)
    table = pd.DataFrame(
        {
            "trial": pd.to_numeric(runs.get(TRIAL_TAG), errors="coerce") if TRIAL_TAG in runs else math.nan,
            "run_id": runs["run_id"],
            "state": trial_states(runs),
            metric: values,
        },
        index=runs.index,
    )
    table = table[table[metric].notna()]
    table["trial"] = table["trial"].astype("Int64")
    for name, column in columns.items():
        if column not in runs:
            continue
        numbers = pd.to_numeric(runs[column], errors="coerce")
        table[name] = (numbers if numbers.notna().sum() == runs[column].notna().sum() else runs[column])[table.index]
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
