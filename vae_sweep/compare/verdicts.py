"""Verdicts from replicates: which option of a technique is better, and whether the runs settle it.

A search's best run per option is a lucky draw (one seed, and the best of many); replicates, the
same configurations trained again with fresh seeds (``vae-replicate``), measure what an option
gives and how much that varies. Pure functions on the replicate runs' DataFrame (the layout of
``sources.load_runs``), as ``tables`` is for the search's runs:

- per option: the mean of ``metric`` over its complete replicate runs with a Student's t interval
  (95% by default), the configurations and runs behind it, and its failed runs;
- per technique: the best option (best mean) against each other option, the difference with its
  interval: paired over runs that differ only in that technique (seed included) when every run
  of the two options has such a partner (a full grid), else Welch's interval for two means of
  unequal variance. An
  interval that excludes 0 settles it ("adam beats sgd by 2.1 nats [1.8, 2.4]"); one that does
  not is "not settled at this budget", with the seeds per configuration that would settle it
  with 80% power if the difference is what the runs show;
- per configuration: its search value beside its replicated mean (``gaps``): how much of a
  search run was luck.

Example (two configurations of each optimizer, three seeds each; adam's runs are lower):
    >>> import pandas as pd
    >>> values = {("adam", 0): [40.0, 40.2, 40.1], ("adam", 1): [40.5, 40.4, 40.6],
    ...           ("sgd", 2): [41.0, 41.3, 41.1], ("sgd", 3): [41.6, 41.2, 41.4]}
    >>> runs = pd.DataFrame([
    ...     {"tags.technique.optimizer": opt, "tags.replicate.of_trial": str(trial), "tags.replicate.seed": str(seed),
    ...      "tags.optuna.trial_state": "COMPLETE", "metrics.val_loss": value}
    ...     for (opt, trial), series in values.items() for seed, value in enumerate(series, start=1)])
    >>> found = verdicts(runs, {"optimizer": "tags.technique.optimizer"}, "val_loss")
    >>> found.tables["optimizer"][["option", "configs", "runs", "mean"]].round(3)
      option  configs  runs    mean
    0   adam        2     6  40.300
    1    sgd        2     6  41.267
    >>> found.sentences()
    ['optimizer: adam beats sgd by 0.967 nats [0.675, 1.26] (Welch 95% intervals)']
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd
from scipy import stats

from vae_sweep.compare.tables import PARAM_PREFIX, TECHNIQUE_PREFIX, TRIAL_TAG, completed_values, trial_states
from vae_sweep.compare.units import unit
from vae_sweep.names import REPLICATE_TAG_PREFIX

CONFIDENCE = 0.95
POWER_Z = stats.norm.ppf(0.975) + stats.norm.ppf(0.80)  # a two-sided 5% test with 80% power
MIN_PAIRS = 2  # runs paired across two options before the paired interval is used
MAX_SEEDS = 1000  # beyond this, "seeds needed" says the options are alike at any practical budget
CONFIG_TAG = f"tags.{REPLICATE_TAG_PREFIX}of_trial"
SEED_TAG = f"tags.{REPLICATE_TAG_PREFIX}seed"
SEED_PARAM = f"{PARAM_PREFIX}trainer.seed"
# The config keys each technique tag is made of (vae_sweep.track.tags): a pair of runs that
# differ in nothing else isolates the technique.
TECHNIQUE_PARAMS = {
    "optimizer": ("optimizer.",),
    "scheduler": ("scheduler.",),
    "activation": ("model.activation",),
    "normalization": ("model.encoder_norm", "model.decoder_norm"),
    "dropout": ("model.encoder_dropout", "model.decoder_dropout"),
    "regularization": ("regularization.",),
}


@dataclass(frozen=True)
class Difference:
    """How much better ``better`` is than ``worse`` (positive: better), with its interval."""

    better: str
    worse: str
    difference: float
    low: float
    high: float
    method: str  # "paired; 10 pairs" or "Welch; 15 vs 12 runs"
    seeds_needed: int | None = None  # per configuration, when not settled (None: no difference seen)

    @property
    def settled(self) -> bool:
        return self.low > 0

    def record(self) -> dict[str, object]:
        return {
            "better": self.better,
            "worse": self.worse,
            "difference": self.difference,
            "low": self.low,
            "high": self.high,
            "method": self.method,
            "settled": self.settled,
            "seeds_needed": self.seeds_needed,
        }


@dataclass
class Verdicts:
    metric: str
    runs: int  # complete replicate runs with a value: what every table divides among its options
    tables: dict[str, pd.DataFrame]  # technique -> one row per option, best mean first
    differences: dict[str, list[Difference]]  # technique -> best option against each other
    gaps: pd.DataFrame = field(default_factory=pd.DataFrame)  # one row per replicated configuration

    def sentences(self) -> list[str]:
        """One sentence per technique: its best option against each other, settled or not."""
        unit_name = unit(self.metric) or ""
        nats = " nats" if unit_name.startswith("nats") else f" {unit_name}" if unit_name else ""
        lines = []
        for name, table in self.tables.items():
            found = self.differences.get(name, [])
            if len(table) < 2:  # one option everywhere: nothing to compare
                continue
            if not found:
                options = ", ".join(table.loc[table["runs"] > 0, "option"].astype(str)) or "no option"
                lines.append(f"{name}: no verdict: only {options} has two or more complete replicate runs")
                continue
            settled = [d for d in found if d.settled]
            open_ = [d for d in found if not d.settled]
            beats = [
                f"{d.worse} by {d.difference:.3g}{nats if i == 0 else ''} [{d.low:.3g}, {d.high:.3g}]"
                for i, d in enumerate(settled)
            ]
            parts = [f"{found[0].better} beats {' and '.join(beats)}"] if beats else []
            if open_:
                versus = ", ".join(f"{d.worse} ({d.difference:.3g} [{d.low:.3g}, {d.high:.3g}])" for d in open_)
                who = f"{found[0].better} vs " if not beats else "vs "
                parts.append(f"{who}{versus} not settled at this budget: {need(max(open_, key=needed))}")
            methods = sorted({d.method.split(";")[0] for d in found})
            lines.append(f"{name}: " + "; ".join(parts) + f" ({' and '.join(methods)} 95% intervals)")
        return lines


def needed(d: Difference) -> float:
    return math.inf if d.seeds_needed is None else d.seeds_needed


def need(d: Difference) -> str:
    if d.seeds_needed is None:
        return "no difference seen, more seeds would only narrow the interval around 0"
    if d.seeds_needed > MAX_SEEDS:
        return f"more than {MAX_SEEDS} seeds per configuration would be needed: alike at any practical budget"
    return f"about {d.seeds_needed} seeds per configuration would likely settle it"


def config_ids(runs: pd.DataFrame) -> pd.Series:
    """Which configuration each run is: the trial a replicate repeats, else its params but the seed
    (runs of a study that itself repeats configurations over seeds, e.g. a grid with trainer.seed)."""
    if CONFIG_TAG in runs:
        return runs[CONFIG_TAG].astype(str)
    params = sorted(c for c in runs.columns if c.startswith(PARAM_PREFIX) and c != SEED_PARAM)
    if not params:
        return pd.Series(runs.index.astype(str), index=runs.index)
    return runs[params].map(str).agg("|".join, axis=1)


def complete(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The complete replicate runs with a finite value, as ``value``, ``config`` and ``seed`` columns."""
    values = completed_values(runs, metric)  # what the search's tables compare, the same way
    done = runs[values.notna()].copy()
    done["value"] = values[done.index]
    done["config"] = config_ids(done)
    seeds = done[SEED_TAG] if SEED_TAG in done else done.get(SEED_PARAM, pd.Series("", index=done.index))
    done["seed"] = seeds.astype(str)
    return done


def repeats_configurations(runs: pd.DataFrame, metric: str) -> bool:
    """Whether some configuration has complete runs with two or more seeds: replicates of its own."""
    done = complete(runs, metric)
    return bool(len(done)) and bool((done.groupby("config")["seed"].nunique() >= 2).any())


def mean_interval(values: pd.Series, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """Mean and Student's t interval; the interval is NaN for fewer than two values."""
    n = len(values)
    mean = float(values.mean()) if n else math.nan
    if n < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * float(values.std(ddof=1)) / math.sqrt(n)
    return mean, mean - half, mean + half


def option_table(runs: pd.DataFrame, done: pd.DataFrame, column: str, *, maximize: bool) -> pd.DataFrame:
    rows = []
    options = runs[column].astype(str) if column in runs else pd.Series(dtype=str)
    for option in sorted(options.unique()):
        values = done.loc[done[column].astype(str) == option, "value"] if column in done else pd.Series(dtype=float)
        mean, low, high = mean_interval(values)
        rows.append(
            {
                "option": option,
                "configs": int(done.loc[values.index, "config"].nunique()),
                "runs": len(values),
                "failed": int(((options == option) & (trial_states(runs) == "FAIL")).sum()),
                "mean": mean,
                "low": low,
                "high": high,
                "std": float(values.std(ddof=1)) if len(values) > 1 else math.nan,
            }
        )
    table = pd.DataFrame(rows, columns=["option", "configs", "runs", "failed", "mean", "low", "high", "std"])
    order = table["mean"] * (-1 if maximize else 1)
    return table.assign(_order=order).sort_values(["_order", "option"], na_position="last").drop(columns="_order")


def own_params(name: str, column: str) -> tuple[str, ...]:
    """The param keys a technique (or a ``--by`` param) is made of."""
    if column.startswith(TECHNIQUE_PREFIX):
        return TECHNIQUE_PARAMS.get(name, ())
    return (column.removeprefix(PARAM_PREFIX),)


def pairs(done: pd.DataFrame, column: str, own: tuple[str, ...], better: str, worse: str) -> pd.DataFrame:
    """Runs of ``better`` and ``worse`` alike in every param but ``own`` (the seed included):
    ``value_better``, ``value_worse`` per pair."""
    if not own:
        return pd.DataFrame(columns=["value_better", "value_worse"])
    key = [
        c
        for c in done.columns
        if c.startswith(PARAM_PREFIX)
        and not any(c.removeprefix(PARAM_PREFIX) == p or c.removeprefix(PARAM_PREFIX).startswith(p) for p in own)
    ]
    if SEED_PARAM not in key:
        return pd.DataFrame(columns=["value_better", "value_worse"])
    sides = [done[done[column].astype(str) == option].drop_duplicates(key) for option in (better, worse)]
    merged = (
        sides[0][[*key, "value"]]
        .astype({c: str for c in key})
        .merge(sides[1][[*key, "value"]].astype({c: str for c in key}), on=key, suffixes=("_better", "_worse"))
    )
    return merged[["value_better", "value_worse"]]


def difference(
    done: pd.DataFrame, column: str, own: tuple[str, ...], better: str, worse: str, *, maximize: bool
) -> Difference:
    """``better`` against ``worse``: paired when the design allows, else Welch's interval."""
    sign = -1.0 if maximize else 1.0  # positive: ``better`` is better
    matched = pairs(done, column, own, better, worse)
    a = done.loc[done[column].astype(str) == better, "value"]
    b = done.loc[done[column].astype(str) == worse, "value"]
    # Paired only when every run has its partner: pairs of a subset would compare other means.
    if len(matched) >= MIN_PAIRS and len(matched) == len(a) == len(b):
        gaps = sign * (matched["value_worse"] - matched["value_better"])
        d, low, high = mean_interval(gaps)
        se, method = float(gaps.std(ddof=1)) / math.sqrt(len(gaps)), f"paired; {len(gaps)} pairs"
    else:
        va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
        d, se = sign * float(b.mean() - a.mean()), math.sqrt(va + vb)
        df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if se > 0 else math.inf
        half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, df)) * se
        low, high, method = d - half, d + half, f"Welch; {len(a)} vs {len(b)} runs"
    seeds = None
    if low <= 0 < d:  # not settled: the seeds that would give 80% power at this difference
        involved = done[done[column].astype(str).isin([better, worse])]
        per_config = len(involved) / max(1, involved["config"].nunique())
        seeds = max(math.ceil(per_config * (POWER_Z * se / d) ** 2), math.floor(per_config) + 1)
    return Difference(better, worse, d, low, high, method, seeds)


def gaps(done: pd.DataFrame, searched: pd.DataFrame | None, metric: str, *, maximize: bool) -> pd.DataFrame:
    """Per replicated configuration: its search run's value, its replicated mean and interval, and
    the gap (replicated minus searched; positive for a loss: the search run was luckier)."""
    if searched is None:  # the study's own runs are the replicates: no search value apart from them
        return pd.DataFrame(columns=["trial", "seeds", "search", "mean", "low", "high", "gap"])
    search = {}
    if TRIAL_TAG in searched:
        # Only a complete run's value is its search value: a pruned one's is from an earlier epoch.
        values = completed_values(searched, metric)
        search = dict(zip(searched[TRIAL_TAG].astype(str), values, strict=True))
    rows = []
    for config, values in done.groupby("config")["value"]:
        mean, low, high = mean_interval(values)
        found = search.get(str(config), math.nan)
        rows.append({"trial": config, "seeds": len(values), "search": found, "mean": mean, "low": low, "high": high})
    table = pd.DataFrame(rows, columns=["trial", "seeds", "search", "mean", "low", "high"])
    table["gap"] = table["mean"] - table["search"]
    order = table["mean"] * (-1 if maximize else 1)
    return table.assign(_order=order).sort_values("_order").drop(columns="_order").reset_index(drop=True)


def verdicts(
    runs: pd.DataFrame,
    keys: Mapping[str, str],
    metric: str,
    *,
    maximize: bool = False,
    searched: pd.DataFrame | None = None,
) -> Verdicts:
    """The verdicts of ``runs`` (replicate runs) for each technique of ``keys`` (name -> column)."""
    done = complete(runs, metric)
    tables, found = {}, {}
    for name, column in keys.items():
        table = option_table(runs, done, column, maximize=maximize)
        tables[name] = table.reset_index(drop=True)
        ranked = table[table["runs"] >= 2]
        if len(ranked) < 2:
            continue
        best = str(ranked.iloc[0]["option"])
        own = own_params(name, column)
        found[name] = [
            difference(done, column, own, best, str(other), maximize=maximize) for other in ranked["option"].iloc[1:]
        ]
    return Verdicts(metric, len(done), tables, found, gaps(done, searched, metric, maximize=maximize))
