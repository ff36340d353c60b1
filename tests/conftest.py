"""Shared fixtures: compose the real Hydra config the way users do, then shrink it.

``compose_config(*overrides)`` goes through ``hydra.compose`` with the packaged primary
config (``vae_sweep.conf``), so option files, defaults lists and the override grammar are
exercised exactly as on the command line. ``tiny_overrides`` turns any run into one that
trains in well under a second on a laptop CPU; ``tiny_config(*overrides)`` composes and
validates such a run into a ``RunConfig``.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers.environment import clean_env
from helpers.tiny import TINY_SWEEP
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from vae_sweep.hydra_version import VERSION_BASE
from vae_sweep.track.store_template import CACHE_ENV
from vae_sweep.track.stores import prepare_mlflow_store
from vae_sweep.train.config import RunConfig, parse_run_config

CONFIG_MODULE = "vae_sweep.conf"

# The tiny run (conf/debug/tiny.yaml: synthetic 8x8 images, a small MLP, one thread), for one
# epoch and without tracking.
TINY_OVERRIDES = ("debug=tiny", "trainer.epochs=1", "tracking=none")


def compose_run(*overrides: str) -> DictConfig:
    """The primary config with Hydra ``overrides`` applied, as ``vae-train`` would see it."""
    GlobalHydra.instance().clear()  # a test that failed inside an initialize block leaves it set
    with initialize_config_module(config_module=CONFIG_MODULE, **VERSION_BASE):
        return compose(config_name="config", overrides=list(overrides))


@pytest.fixture(scope="session")
def compose_config() -> Callable[..., DictConfig]:
    """``compose_config("optimizer=sgd", "optimizer.lr=0.1") -> DictConfig``."""
    return compose_run


@pytest.fixture(scope="session")
def tiny_overrides() -> tuple[str, ...]:
    """Overrides that shrink any run to synthetic 8x8 data, a small MLP and one epoch, untracked.

    Later overrides win, so ``compose_config(*tiny_overrides, "trainer.epochs=3")`` trains three.
    """
    return TINY_OVERRIDES


@pytest.fixture(scope="session")
def tiny_config(tiny_overrides: tuple[str, ...]) -> Callable[..., RunConfig]:
    """``tiny_config(*overrides) -> RunConfig``: a tiny run with ``overrides`` on top, validated."""

    def make(*overrides: str) -> RunConfig:
        return parse_run_config(compose_run(*tiny_overrides, *overrides))

    return make


@pytest.fixture(scope="session", autouse=True)
def vae_sweep_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The suite's own cache (the migrated MLflow store new stores copy): never the developer's,
    and shared by every test and every process a test starts."""
    folder = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(folder))
        yield folder


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow store, made once by the code that makes every new store (its migrations
    take seconds); ``workdir`` copies it."""
    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    prepare_mlflow_store(f"sqlite:///{path}")
    return path


@pytest.fixture
def workdir(tmp_path: Path, mlflow_template: Path) -> Path:
    """A test's working folder that already holds an (empty) ``mlflow.db``, for tests about what
    happens after a store exists; tests about making one use ``tmp_path``."""
    shutil.copy(mlflow_template, tmp_path / "mlflow.db")
    return tmp_path


@pytest.fixture
def tmp_mlflow_uri(tmp_path: Path) -> str:
    """A fresh SQLite MLflow store in the test's temporary folder."""
    return f"sqlite:///{tmp_path}/mlflow.db"


@dataclass(frozen=True)
class FinishedStudy:
    """A real sweep's outputs: the Optuna study and its MLflow parent and child runs."""

    folder: Path
    study_name: str
    tracking_uri: str
    storage: str
    sweep_dir: Path


@pytest.fixture(scope="session")
def finished_study(tmp_path_factory: pytest.TempPathFactory) -> FinishedStudy:
    """A 10-trial techniques-style sweep (optimizer x activation x batch norm, with pruning),
    run once per session as users run it, with `vae-train -m`."""
    folder = tmp_path_factory.mktemp("finished_study")
    overrides = [
        "-m",
        "study=techniques",
        "hydra.sweeper.study_name=fixture",
        "hydra.sweeper.n_trials=10",
        "hydra.sweeper.sampler.name=random",
        "~hydra.sweeper.sampler.options.n_startup_trials",
        "~hydra.sweeper.sampler.options.multivariate",
        "~hydra.sweeper.sampler.options.group",
        "hydra.sweeper.pruner.options.n_startup_trials=3",
        "hydra.sweeper.pruner.options.n_warmup_steps=1",
        "hydra.sweep.dir=sweep",
        "hydra.sweeper.plots=[]",  # seconds of matplotlib that no test reads
        "optimizer=choice(sgd,adagrad,adam)",
        "model.activation=choice(relu,tanh)",
        "model.encoder_norm=choice(none,batchnorm)",
        "scheduler=constant",
        "model.decoder_norm=none",
        "model.encoder_dropout=0.0",
        "model.decoder_dropout=0.0",
        *TINY_SWEEP,
        "trainer.epochs=3",
    ]
    env = clean_env()
    out = subprocess.run(
        [shutil.which("vae-train") or "vae-train", *overrides],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    return FinishedStudy(
        folder=folder,
        study_name="fixture",
        tracking_uri=f"sqlite:///{folder}/mlflow.db",
        storage=f"sqlite:///{folder}/optuna.db",
        sweep_dir=folder / "sweep",
    )
