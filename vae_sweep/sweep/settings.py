"""The sweeper's settings under ``hydra.sweeper.*``, as typed dataclasses.

Registered in Hydra's ConfigStore by the plugin facade (``hydra/sweeper=vae_sweep``), so a
typo or a wrong type in ``hydra.sweeper.n_trials=abc`` is refused by Hydra itself and
``vae-train --cfg hydra`` shows every setting with its default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vae_sweep.names import DEFAULT_STORAGE

SWEEPER_TARGET = "hydra_plugins.vae_sweep_optuna.optuna_sweeper.OptunaSweeper"


def default_sampler() -> dict[str, Any]:
    """``{name, seed, options}``: name is tpe, random, grid, cmaes, gp, nsgaii, qmc or another
    class of ``optuna.samplers``; options are its keyword arguments, e.g. {multivariate: true}.
    The official plugin's form, ``{_target_: optuna.samplers.TPESampler, seed: 1, ...}``, and a
    plain name (``hydra.sweeper.sampler=random``) are read too
    (``vae_sweep.sweep.samplers_and_pruners.sampler_choice``), so the node is not typed."""
    return {"name": "tpe", "seed": None, "options": {}}


def default_pruner() -> dict[str, Any]:
    """``{name, options}``: name is none, median, percentile, successive_halving, hyperband,
    patient or threshold; options its keyword arguments, e.g. {n_warmup_steps: 5}. A plain name
    stands for it too (``hydra.sweeper.pruner=none``), so the node is not typed."""
    return {"name": "none", "options": {}}


@dataclass
class OptunaSweeperSettings:
    _target_: str = SWEEPER_TARGET
    # Hydra hands the settings over as written: a sampler written as {_target_: ...} is made by
    # us, from optuna.samplers only (sampler_choice), not by Hydra's instantiate.
    _recursive_: bool = False
    # Defaults to the study file's name (study=NAME) or "vae-sweep".
    study_name: str | None = None
    # Persistent and local by default, so re-running the same command resumes the study (null,
    # which the official plugin reads as in memory, means this default too).
    storage: str | None = DEFAULT_STORAGE
    # "minimize", "maximize", or a list of them for a multi-objective study.
    direction: Any = "minimize"
    # The study's total budget: finished trials from earlier runs count toward it.
    n_trials: int = 20
    # Trials running at the same time on this machine (one worker process each).
    n_jobs: int = 1
    sampler: Any = field(default_factory=default_sampler)
    pruner: Any = field(default_factory=default_pruner)
    # The search space: key -> Hydra override grammar (choice, range, interval, tag(log, ...))
    # or a mapping of conditions (see docs/studies.md).
    params: dict[str, Any] = field(default_factory=dict)
    # Start a new study (named with a timestamp suffix) instead of resuming.
    fresh: bool = False
    # Stop claiming trials once more than this fraction of finished trials failed.
    max_failure_rate: float = 1.0
    # vae-train's trials: a complete trial with fewer active latent units than this is
    # infeasible (Optuna's trial.set_constraint), so TPE learns where models that use their latent
    # space live, and the study's best is the best feasible trial. null: no constraint.
    min_active_units: int | None = None
    # vae-train's trials: prune a trial whose validation set has had no active latent unit for
    # this many validated epochs in a row after its KL warm-up (posterior collapse), whatever
    # the pruner. null: off.
    collapse_patience: int | None = None
    # Optuna plots saved at the end and logged on the parent run: null draws every one that fits
    # the study (pareto_front for several objectives; else optimization_history,
    # param_importances, parallel_coordinate, intermediate_values) once two trials completed;
    # a list draws those named; [] draws none.
    plots: list[str] | None = None
    # Print only the study's status (every 30 s), warnings (failed trials among them) and the
    # summary, not a line per trial started and finished (hydra.verbose turns loggers up).
    quiet: bool = False
    # Seconds between heartbeats of a running trial; a trial silent for grace_period
    # (default 2 x interval) is marked failed and retried up to max_retry times.
    heartbeat_interval: int = 30
    grace_period: int | None = None
    max_retry: int = 1
    # MLflow for an app that is not vae-train (which sets tracking.uri itself): a parent run per
    # study and a child run per trial with its params, state and value (docs/studies.md).
    tracking_uri: str | None = None
    # The MLflow experiment of those runs; null: the app's job name.
    experiment: str | None = None
