"""Every sampler a study may name runs on our search spaces (small in-memory ask/tell studies, as
the sweep's workers drive them), and a sampler that fails costs one trial, never the worker."""

from __future__ import annotations

import math
import warnings

import optuna
import pytest
from optuna.trial import TrialState

from vae_sweep.errors import ConfigError
from vae_sweep.sweep.plan import trial_seed
from vae_sweep.sweep.samplers_and_pruners import SAMPLERS, make_sampler, pruner_choice, sampler_choice
from vae_sweep.sweep.space import parse_search_space
from vae_sweep.sweep.worker import Outcome, TrialWorker, tell

# The shape of studies/techniques.yaml: a choice, a log-scale interval, an integer range, and a
# parameter that exists only for some values of the choice.
SPACE = parse_search_space(
    {
        "optimizer": "choice(sgd, momentum, adam)",
        "optimizer.lr": "tag(log, interval(1e-4, 1e-1))",
        "model.latent_dim": "range(2, 16)",
        "optimizer.momentum": {"optimizer=momentum": "interval(0.5, 0.99)"},
    }
)
GRID_SPACE = parse_search_space({"optimizer": "choice(sgd, adam)", "model.latent_dim": "choice(4, 8, 16)"})
N_TRIALS = 14  # past every sampler's start-up trials (TPE 10, CMA-ES and GP fewer), so its model is used


def loss(values: dict) -> float:
    """A smooth toy objective with its minimum inside the space."""
    return (math.log10(values.get("optimizer.lr", 1e-2)) + 2.5) ** 2 + (values["model.latent_dim"] - 8) ** 2 / 10


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_every_listed_sampler_runs_our_search_space_past_its_start_up_trials(name: str) -> None:
    space = GRID_SPACE if name == "grid" else SPACE
    sampler = make_sampler(name, 0, {}, space)
    study = optuna.create_study(sampler=sampler)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # experimental-feature notes, independent-sampling fallbacks
        for _ in range(6 if name == "grid" else N_TRIALS):
            trial = study.ask()
            values = space.sample(trial)
            tell(study, trial, Outcome(TrialState.COMPLETE, values=[loss(values)]))  # as the workers do
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * len(trials)
    assert all(("optimizer.momentum" in t.params) == (t.params["optimizer"] == "momentum") for t in trials)
    if name == "grid":  # every combination once
        assert len({tuple(sorted(t.params.items())) for t in trials}) == 6


def random_draws(seed: int, n_trials: int = 6) -> list[dict]:
    """A study's first trials, each sampled with the seed a worker gives trial N (``SweepPlan.sampler``)."""
    study = optuna.create_study()
    draws = []
    for number in range(n_trials):
        study.sampler = make_sampler("random", trial_seed(seed, number), {}, SPACE)
        trial = study.ask()
        draws.append(SPACE.sample(trial))
        study.tell(trial, loss(draws[-1]))
    return draws


def test_studies_of_other_seeds_draw_other_trials_and_a_seed_draws_the_same_ones_again() -> None:
    # seed + N made seed 1's trial N seed 0's trial N + 1: every seed of random search found the same best
    seed_0, seed_1 = random_draws(0), random_draws(1)
    assert random_draws(0) == seed_0
    assert not [draw for draw in seed_1 if draw in seed_0]


class BrokenSampler(optuna.samplers.RandomSampler):
    """A sampler that fails once its start-up is over, as CMA-ES did without its package."""

    def sample_independent(self, study, trial, param_name, param_distribution):
        if trial.number >= 1:
            raise ImportError("No module named 'cmaes'")
        return super().sample_independent(study, trial, param_name, param_distribution)


def test_a_sampler_that_fails_fails_that_trial_with_its_reason_not_the_worker() -> None:
    study = optuna.create_study(sampler=BrokenSampler(seed=0))
    plan = type("Plan", (), {"space": SPACE, "base_overrides": ()})()
    worker = TrialWorker(plan, hydra_context=None, master_config=None, task_function=None)  # type: ignore[arg-type]
    study.tell(study.ask(), 1.0)
    outcome = worker.run_trial(study.ask(), study.trials)  # sampling is the first step of a trial: it fails there
    assert outcome.state is TrialState.FAIL
    assert outcome.reason == "ImportError: No module named 'cmaes'"


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        ({"name": "tpe", "seed": 1, "options": {"multivariate": True}}, ("tpe", 1, {"multivariate": True})),
        (  # the official plugin's form, as lightning-hydra-template writes it (our defaults merged in)
            {
                "name": "tpe",
                "seed": 1234,
                "options": {},
                "_target_": "optuna.samplers.TPESampler",
                "n_startup_trials": 10,
            },
            ("tpe", 1234, {"n_startup_trials": 10}),
        ),
        ({"name": "tpe", "seed": None, "_target_": "optuna.samplers.RandomSampler"}, ("random", None, {})),
        ({"name": "tpe", "_target_": "optuna.samplers.BruteForceSampler"}, ("BruteForceSampler", None, {})),
    ],
)
def test_a_sampler_is_read_in_our_form_or_the_official_plugins(node: dict, expected: tuple) -> None:
    name, seed, options = sampler_choice(node)
    assert (name, seed, options) == expected
    sampler = make_sampler(name, seed, options, SPACE)  # the options are the class's own keyword arguments
    assert type(sampler).__name__ == (node.get("_target_") or "optuna.samplers.TPESampler").rsplit(".", 1)[1]


@pytest.mark.parametrize(
    ("node", "key", "message"),
    [
        ({"_target_": "os.system"}, "hydra.sweeper.sampler._target_", "not a sampler class of optuna.samplers"),
        ({"_target_": "optuna.pruners.MedianPruner"}, "hydra.sweeper.sampler._target_", "only those may be named"),
        ({"_target_": "optuna.samplers.BaseSampler.__subclasses__"}, "hydra.sweeper.sampler._target_", "not a sampler"),
        (
            {"name": "grid", "_target_": "optuna.samplers.TPESampler"},
            "hydra.sweeper.sampler.name",
            "different samplers",
        ),
        ({"name": "tpe", "n_startup_trials": 5}, "hydra.sweeper.sampler", "unknown key(s) n_startup_trials"),
        ({"name": "tpe", "seed": "abc"}, "hydra.sweeper.sampler.seed", "must be an integer or null"),
    ],
)
def test_a_sampler_naming_anything_but_an_optuna_sampler_is_refused(node: dict, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        sampler_choice(node)
    assert refused.value.key == key and message in refused.value.message


def test_a_plain_name_stands_for_a_sampler_or_pruner_without_the_study_files_options() -> None:
    assert sampler_choice("random") == ("random", None, {})  # hydra.sweeper.sampler=random
    assert pruner_choice("none") == ("none", {})  # hydra.sweeper.pruner=none
    assert pruner_choice({"name": "median", "options": {"n_warmup_steps": 5}}) == ("median", {"n_warmup_steps": 5})
    with pytest.raises(ConfigError) as refused:
        pruner_choice({"name": "median", "n_warmup_steps": 5})  # an option outside options
    assert refused.value.key == "hydra.sweeper.pruner" and "unknown key(s) n_warmup_steps" in refused.value.message
