"""The cached trial composition gives exactly the config Hydra's own ``load_sweep_config`` gives."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import optuna
import pytest
from hydra import compose, initialize_config_module
from hydra.core.config_loader import ConfigLoader
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf, open_dict

from vae_sweep.hydra_version import VERSION_BASE
from vae_sweep.sweep.compose import TrialComposer
from vae_sweep.sweep.space import parse_search_space

STUDIES = sorted(path.stem for path in (Path(__file__).parents[2] / "studies").glob("*.yaml"))
FIXED = ["trainer.epochs=3", "tracking=none"]  # command-line values every trial repeats


@pytest.fixture(autouse=True)
def fresh_global_hydra() -> Iterator[None]:
    """Hydra keeps one global instance per process: start and leave each test without one."""
    GlobalHydra.instance().clear()
    yield
    GlobalHydra.instance().clear()


def hydra_for(study: str) -> tuple[ConfigLoader, DictConfig]:
    """Hydra's loader and the multirun master config, as ``vae-train -m study=NAME`` builds them
    (through Hydra's public compose API)."""
    initialize_config_module("vae_sweep.conf", **VERSION_BASE, job_name="cli")
    master = compose("config", [f"study={study}", *FIXED, "hydra.mode=MULTIRUN"], return_hydra_config=True)
    return GlobalHydra.instance().config_loader(), master


def trial_overrides(master: DictConfig, n: int) -> list[list[str]]:
    """The overrides of ``n`` random trials of the master config's search space, fixed keys first."""
    space = parse_search_space(OmegaConf.to_container(master.hydra.sweeper.params, resolve=False))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study_choice = f"study={master.hydra.runtime.choices.study}"  # a sweep's jobs repeat the command line
    return [[study_choice, *FIXED, *space.overrides(space.sample(study.ask()))] for _ in range(n)]


def resolved_app_config(config: DictConfig) -> dict:
    """What the training job sees (the ``hydra`` node resolves only inside a running job)."""
    return OmegaConf.to_container(OmegaConf.masked_copy(config, [k for k in config if k != "hydra"]), resolve=True)


@pytest.mark.parametrize("study", STUDIES)
def test_cached_composition_equals_hydras_for_every_trial(study: str) -> None:
    loader, master = hydra_for(study)
    composer = TrialComposer(loader, master)
    trials = trial_overrides(master, 8)
    for overrides in trials:
        ours = composer.compose(overrides)
        theirs = loader.load_sweep_config(master, overrides)
        assert OmegaConf.to_yaml(ours) == OmegaConf.to_yaml(theirs), overrides
        assert resolved_app_config(ours) == resolved_app_config(theirs)
    assert len(composer.trees) <= len(trials)


def test_value_overrides_reuse_one_composition_and_do_not_leak_between_trials() -> None:
    loader, master = hydra_for("quick")
    composer = TrialComposer(loader, master)
    first = composer.compose(["study=quick", "optimizer=adam", "optimizer.lr=0.01"])
    second = composer.compose(["study=quick", "optimizer=adam", "optimizer.lr=0.002"])
    third = composer.compose(["study=quick", "optimizer=rmsprop", "optimizer.lr=0.002"])
    assert (first.optimizer.lr, second.optimizer.lr) == (0.01, 0.002)
    assert second.hydra.overrides.task == ["study=quick", "optimizer=adam", "optimizer.lr=0.002"]
    assert second.hydra.job.override_dirname == "optimizer.lr=0.002,optimizer=adam,study=quick"
    assert third.optimizer.name == "rmsprop"
    hydra_overrides = tuple(master.hydra.overrides.hydra)
    assert list(composer.trees) == [
        (hydra_overrides, ("study=quick", "optimizer=adam")),
        (hydra_overrides, ("study=quick", "optimizer=rmsprop")),
    ]


def test_a_changed_hydra_override_of_the_master_is_composed_again() -> None:
    """The sweep sets the launcher's n_jobs in the master's Hydra overrides before launching:
    a composition made before that must not reach a trial after it."""
    loader, master = hydra_for("quick")
    composer = TrialComposer(loader, master)
    trial = ["study=quick", "optimizer=adam", "optimizer.lr=0.01"]
    before = composer.compose(trial)
    with open_dict(master.hydra):
        master.hydra.overrides.hydra = [*master.hydra.overrides.hydra, "hydra.job.name=renamed"]
    after = composer.compose(trial)
    assert after.hydra.job.name == "renamed" != before.hydra.job.name
    assert OmegaConf.to_yaml(after) == OmegaConf.to_yaml(loader.load_sweep_config(master, trial))


def test_the_composer_reaches_other_processes_with_its_compositions() -> None:
    """Process launchers pickle the task function, and with it the sweep's composer."""
    loader, master = hydra_for("quick")
    composer = TrialComposer(loader, master)
    trial = ["study=quick", "optimizer=rmsprop", "optimizer.lr=0.003"]
    here = composer.compose(trial)
    shipped = cloudpickle.loads(cloudpickle.dumps(composer))
    assert list(shipped.trees) == list(composer.trees)
    assert OmegaConf.to_yaml(shipped.compose(trial)) == OmegaConf.to_yaml(here)
    other = ["study=quick", "optimizer=momentum", "optimizer.lr=0.003"]  # a new choice, composed there
    assert OmegaConf.to_yaml(shipped.compose(other)) == OmegaConf.to_yaml(loader.load_sweep_config(master, other))


def test_a_bad_value_override_fails_like_hydra() -> None:
    loader, master = hydra_for("quick")
    composer = TrialComposer(loader, master)
    with pytest.raises(Exception, match=r"optimizer\.no_such_key") as ours:
        composer.compose(["study=quick", "optimizer=adam", "optimizer.no_such_key=1"])
    with pytest.raises(Exception, match=r"optimizer\.no_such_key") as theirs:
        loader.load_sweep_config(master, ["study=quick", "optimizer=adam", "optimizer.no_such_key=1"])
    assert type(ours.value) is type(theirs.value)
