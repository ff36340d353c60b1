"""Optuna samplers and pruners from ``hydra.sweeper.sampler`` / ``hydra.sweeper.pruner``.

Names map to Optuna's own classes; ``options`` are passed through as keyword arguments, and
anything Optuna would refuse is refused here first with the key and the accepted names.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import optuna
from omegaconf import OmegaConf

from vae_sweep.errors import ConfigError, require
from vae_sweep.sweep.space import SearchSpace

SAMPLERS: dict[str, Callable[..., optuna.samplers.BaseSampler]] = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "grid": optuna.samplers.GridSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
    "gp": optuna.samplers.GPSampler,
    "nsgaii": optuna.samplers.NSGAIISampler,
    "qmc": optuna.samplers.QMCSampler,
}

# Their seed shuffles the grid / scrambles the sequence once for the whole study, and each
# trial takes its element by number: every trial must see the same seed.
SEQUENCE_SAMPLERS = frozenset({"grid", "qmc"})

PRUNERS: dict[str, Callable[..., optuna.pruners.BasePruner]] = {
    "none": optuna.pruners.NopPruner,
    "median": optuna.pruners.MedianPruner,
    "percentile": optuna.pruners.PercentilePruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "patient": optuna.pruners.PatientPruner,
    "threshold": optuna.pruners.ThresholdPruner,
}


def checked_call(factory: Callable[..., Any], key: str, options: Mapping[str, Any], **fixed: Any) -> Any:
    """``factory(**options, **fixed)``, turning an unknown or bad user option into a ``ConfigError``."""
    accepted = [name for name in inspect.signature(factory).parameters if name not in fixed]
    for name in options:
        require(
            name in accepted,
            f"{key}.options.{name}",
            f"{factory.__name__} has no option {name!r} (it takes {', '.join(accepted) or 'none'}); "
            f"remove it with ~{key}.options.{name}",
        )
    try:
        with warnings.catch_warnings():  # multivariate/group TPE, GP, QMC: years-old "experimental" notes
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return factory(**options, **fixed)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{key}.options", f"{factory.__name__} refused {dict(options)}: {error}") from None


def sampler_class(name: str) -> Callable[..., optuna.samplers.BaseSampler] | None:
    """A short name of ``SAMPLERS``, or the name of another sampler class of ``optuna.samplers``."""
    if name in SAMPLERS:
        return SAMPLERS[name]
    found = getattr(optuna.samplers, name, None)
    return found if isinstance(found, type) and issubclass(found, optuna.samplers.BaseSampler) else None


def plain(node: Any) -> Any:
    """A setting as Hydra hands it over (a DictConfig, or a name) as plain Python."""
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def sampler_choice(node: Mapping[str, Any] | str) -> tuple[str, int | None, dict[str, Any]]:
    """``(name, seed, options)`` from ``hydra.sweeper.sampler``, written as ours,
    ``{name: tpe, seed: 1, options: {...}}``, as the official plugin's,
    ``{_target_: optuna.samplers.TPESampler, seed: 1, n_startup_trials: 5}``, or as a plain name.
    Only classes of ``optuna.samplers`` may be named: a config never makes another object."""
    key = "hydra.sweeper.sampler"
    node = plain(node)
    if isinstance(node, str):  # hydra.sweeper.sampler=random: that sampler, unseeded, with no options
        return node, None, {}
    rest = dict(node)
    seed = rest.pop("seed", None)
    require(
        seed is None or (isinstance(seed, int) and not isinstance(seed, bool)),
        f"{key}.seed",
        f"must be an integer or null, got {seed!r}",
    )
    target = rest.pop("_target_", None)
    name = rest.pop("name", "tpe")
    options = dict(rest.pop("options", None) or {})
    if target is None:
        require(
            not rest,
            key,
            f"unknown key(s) {', '.join(sorted(rest))}: a sampler has name, seed and options, or is written "
            "as {_target_: optuna.samplers.<Class>, <its arguments>}",
        )
        return name, seed, options
    module, _, class_name = str(target).rpartition(".")
    cls = sampler_class(class_name) if module == "optuna.samplers" else None
    require(
        cls is not None,
        f"{key}._target_",
        f"{target!r} is not a sampler class of optuna.samplers; only those may be named "
        "(e.g. optuna.samplers.TPESampler)",
    )
    short = next((short for short, factory in SAMPLERS.items() if factory is cls), class_name)
    require(
        name in ("tpe", short),  # tpe is the default, present unless replaced
        f"{key}.name",
        f"name {name!r} and _target_ {target!r} pick different samplers; keep one of them",
    )
    return short, seed, {**rest, **options}


def make_sampler(
    name: str, seed: int | None, options: Mapping[str, Any], space: SearchSpace
) -> optuna.samplers.BaseSampler:
    """The sampler; ``grid`` enumerates ``space.grid()`` (every value of every parameter)."""
    key = "hydra.sweeper.sampler"
    factory = sampler_class(name)
    require(
        factory is not None,
        f"{key}.name",
        f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)} or a class of optuna.samplers",
    )
    fixed: dict[str, Any] = {} if seed is None else {"seed": seed}
    if factory is optuna.samplers.GridSampler:
        fixed["search_space"] = space.grid()
    return checked_call(factory, key, options, **fixed)


def pruner_choice(node: Mapping[str, Any] | str) -> tuple[str, dict[str, Any]]:
    """``(name, options)`` from ``hydra.sweeper.pruner``: ``{name: median, options: {...}}`` or a
    plain name (``hydra.sweeper.pruner=none``)."""
    node = plain(node)
    if isinstance(node, str):
        return node, {}
    rest = dict(node)
    name, options = rest.pop("name", "none"), dict(rest.pop("options", None) or {})
    require(
        not rest,
        "hydra.sweeper.pruner",
        f"unknown key(s) {', '.join(sorted(rest))}: a pruner has name and options (its keyword arguments)",
    )
    return str(name), options


def make_pruner(name: str, options: Mapping[str, Any], *, multi_objective: bool) -> optuna.pruners.BasePruner:
    """The pruner; ``patient`` wraps a median pruner unless ``options.wrapped`` names another.
    ``none`` ignores options, so ``pruner.name=none`` switches a study file's pruner off."""
    key = "hydra.sweeper.pruner"
    require(name in PRUNERS, f"{key}.name", f"unknown pruner {name!r}; choose one of {', '.join(PRUNERS)}")
    require(
        name == "none" or not multi_objective,
        f"{key}.name",
        f"pruner {name!r} cannot be used with several objectives (Optuna prunes single-objective studies only); "
        "use pruner none",
    )
    if name == "none":  # no pruning: options left over from a study file do not matter
        return optuna.pruners.NopPruner()
    if name != "patient":
        return checked_call(PRUNERS[name], key, options)
    kwargs = {"patience": 3, **options}
    wrapped = kwargs.pop("wrapped", "median")
    require(wrapped in PRUNERS and wrapped != "patient", f"{key}.options.wrapped", f"unknown pruner {wrapped!r}")
    return checked_call(PRUNERS[name], key, kwargs, wrapped_pruner=PRUNERS[wrapped]())
