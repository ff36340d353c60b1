"""A sweep's command, checked: the study it is about and what it asks of it.

Everything here needs no trial config composed and no store opened, so a mistake in the sweeper's
settings is one message at once, and a rerun of a finished study is answered before any of the
slow set-up (``finished``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from vae_sweep.errors import ConfigError, require
from vae_sweep.local_stores import absolute_sqlite_url
from vae_sweep.names import DEFAULT_STORAGE
from vae_sweep.suggestions import did_you_mean
from vae_sweep.sweep.arguments import merge_params, parse_directions, split_arguments
from vae_sweep.sweep.finished import request_key
from vae_sweep.sweep.plots import PLOTS
from vae_sweep.sweep.samplers_and_pruners import pruner_choice, sampler_choice
from vae_sweep.sweep.settings import OptunaSweeperSettings
from vae_sweep.sweep.space import SearchSpace, parse_search_space

MAX_TRIALS = 100_000  # budget slots are written one by one (a few hundred a second on SQLite)


@dataclasses.dataclass(frozen=True)
class SweepRequest:
    study_name: str
    storage_url: str
    n_trials: int  # the budget asked for (a grid's size at most)
    fixed: tuple[str, ...]  # the command line's fixed overrides, applied to every trial
    space: SearchSpace
    directions: tuple[str, ...]
    sampler: tuple[str, int | None, dict]  # name, seed, options
    pruner: tuple[str, dict]  # name, options
    searchpath: tuple[str, ...]  # hydra.searchpath
    key: str  # ``finished.request_key``: the same for the same command
    arguments: tuple[str, ...] = ()  # the command line's task overrides, as given


def read_request(
    settings: DictConfig, arguments: Sequence[str], *, study_name: str, searchpath: tuple[str, ...]
) -> SweepRequest:
    """The request of ``hydra.sweeper`` ``settings`` and the command line's ``arguments``, or
    one ``ConfigError`` naming the first setting that cannot be used and what is allowed."""
    allowed = [f.name for f in dataclasses.fields(OptunaSweeperSettings)]
    settable = [name for name in allowed if not name.startswith("_")]  # _target_ is the plugin's own
    for key in settings:  # a typo added with + (hydra.sweeper.n_trial=3) would be ignored
        if key not in allowed:
            question = did_you_mean(key, settable, spelled="hydra.sweeper.{}")
            listing = ", ".join(settable)
            raise ConfigError(f"hydra.sweeper.{key}", f"unknown sweeper setting{question}; allowed: {listing}")
    sweeps, fixed = split_arguments(list(arguments))
    study_params = OmegaConf.to_container(settings.params, resolve=False)
    space = parse_search_space(
        merge_params(study_params, sweeps, fixed), narrowed=frozenset(sweeps) & frozenset(study_params)
    )
    directions = parse_directions(settings.direction)
    sampler_name, sampler_seed, sampler_options = sampler_choice(settings.sampler)
    pruner_name, pruner_options = pruner_choice(settings.pruner)
    plot_names(settings)  # an unknown plot is refused now, not after the last trial
    require(
        1 <= settings.n_trials <= MAX_TRIALS,
        "hydra.sweeper.n_trials",
        f"must be in [1, {MAX_TRIALS:,}] (each trial is a row written before the sweep starts), "
        f"got {settings.n_trials}",
    )
    require(settings.n_jobs >= 1, "hydra.sweeper.n_jobs", f"must be >= 1, got {settings.n_jobs}")
    require(
        settings.min_active_units is None or settings.min_active_units >= 1,
        "hydra.sweeper.min_active_units",
        f"must be >= 1 (active latent units a feasible trial has) or null, got {settings.min_active_units}",
    )
    require(
        settings.collapse_patience is None or settings.collapse_patience >= 1,
        "hydra.sweeper.collapse_patience",
        f"must be >= 1 (validated epochs without an active latent unit) or null, got {settings.collapse_patience}",
    )
    require(
        0 <= settings.max_failure_rate <= 1,
        "hydra.sweeper.max_failure_rate",
        f"must be in [0, 1], got {settings.max_failure_rate}",
    )
    require(
        settings.heartbeat_interval >= 0,
        "hydra.sweeper.heartbeat_interval",
        f"must be >= 0 seconds (0 turns heartbeats off), got {settings.heartbeat_interval}",
    )
    require(
        settings.grace_period is None or settings.grace_period > 0,
        "hydra.sweeper.grace_period",
        f"must be > 0 seconds or null (twice the heartbeat interval), got {settings.grace_period}",
    )
    require(settings.max_retry >= 0, "hydra.sweeper.max_retry", f"must be >= 0, got {settings.max_retry}")
    return SweepRequest(
        study_name=study_name,
        # Workers (in job folders with hydra.job.chdir=true, or other processes) open this very file.
        storage_url=absolute_sqlite_url(settings.storage or DEFAULT_STORAGE, Path.cwd()),
        n_trials=min(settings.n_trials, grid_size(space)) if sampler_name == "grid" else settings.n_trials,
        fixed=tuple(fixed),
        space=space,
        directions=directions,
        sampler=(sampler_name, sampler_seed, sampler_options),
        pruner=(pruner_name, pruner_options),
        searchpath=searchpath,
        key=request_key(OmegaConf.to_container(settings, resolve=False), arguments, searchpath),
        arguments=tuple(arguments),
    )


def plot_names(settings: DictConfig) -> list[str] | None:
    """The end-of-sweep plots asked for (None: every plot that fits the study)."""
    names = settings.plots
    if names is None:
        return None
    for name in names:
        require(name in PLOTS, "hydra.sweeper.plots", f"unknown plot {name!r}; choose from {', '.join(PLOTS)}")
    return list(names)


def grid_size(space: SearchSpace) -> int:
    size = 1
    for values in space.grid().values():
        size *= len(values)
    return size
