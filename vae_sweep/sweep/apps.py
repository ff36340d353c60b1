"""What the sweeper knows of the app it sweeps: vae-train, or any other ``@hydra.main`` app.

The machinery is the same for every app: the study and its storage, trial claims without a
batch barrier, heartbeats and retries, budget-based resume, pruning from inside the task
(``vae_sweep.current_trial``), MLflow parent and child runs. What differs is here:

- ``App`` (any app): before the first trial, every corner of the search space is composed by
  Hydra, so a misspelt key or option costs one line, not a failed sweep; when
  ``hydra.sweeper.tracking_uri`` is set, the sweeper makes each trial's MLflow run itself.
- ``VaeTrain``: every corner is also validated as a vae-sweep config, the objectives are
  counted against the directions, the data and the device are checked, and each trial trains
  and tracks its own run (with technique tags) under the study's parent run.

Chosen by the task function (``app_for``), and shipped to every worker inside the plan.
"""

from __future__ import annotations

import importlib
import logging
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from vae_sweep.errors import ConfigError, require
from vae_sweep.sweep.space import SearchSpace

log = logging.getLogger(__name__)
VAE_TRAIN_TASK = ("vae_sweep.cli", "train_task")  # the task function behind vae-train
Compose = Callable[[Sequence[str]], DictConfig]  # overrides -> the task's config, as a trial sees it


@dataclass(frozen=True)
class Tracking:
    uri: str
    experiment: str
    key: str  # the setting that named the store, for messages


@dataclass(frozen=True)
class Checked:
    """What the checks found out: where the sweep records into MLflow (if anywhere), and the
    objectives' names, which the study keeps for Optuna's plots and dashboard."""

    tracking: Tracking | None = None
    metric_names: tuple[str, ...] | None = None


@dataclass(frozen=True)
class App:
    """Any Hydra app: its task function returns a float, or a list of floats for several objectives."""

    command: str  # what re-runs one trial: ``python sphere.py``
    makes_trial_runs: bool = True  # the sweeper makes each trial's MLflow run (else the task does)

    def check(
        self, compose: Compose, fixed: Sequence[str], space: SearchSpace, n_directions: int, hydra: DictConfig
    ) -> Checked:
        """Compose every corner of the space; the MLflow store the sweep records into, if any.
        The objectives have no names Optuna could show but its own ("Objective 0")."""
        for overrides in corner_overrides(fixed, space):
            compose(overrides)
        uri = hydra.sweeper.get("tracking_uri")
        if uri is None:
            return Checked()
        experiment = hydra.sweeper.get("experiment") or hydra.job.name
        return Checked(Tracking(str(uri), str(experiment), "hydra.sweeper.tracking_uri"))

    def tracking_uri(self, config: DictConfig) -> str | None:
        """The MLflow store the sweep's own config names, read before any check so that a new one
        can be built meanwhile (``StoreAhead``); the checks settle which store it is."""
        uri = config.hydra.sweeper.get("tracking_uri")
        return None if uri is None else str(uri)

    def default_study_name(self, hydra: DictConfig) -> str:
        """``study=NAME`` when the app has such a group, else the app's name (its job name)."""
        return str(hydra.runtime.choices.get("study") or hydra.job.name)

    def prepare_worker(self, worker: int, config: DictConfig, n_local_workers: int | None) -> None:
        """An app that trains with torch gets its share of the cores and its GPU, as vae-train does."""
        if "torch" in sys.modules:
            share_torch(worker, n_local_workers, gpus=None)

    def preload(self) -> None:
        """Nothing to import ahead: the app's own module is imported when its task function is."""


@dataclass(frozen=True)
class VaeTrain(App):
    command: str = "vae-train"
    makes_trial_runs: bool = False

    def check(
        self, compose: Compose, fixed: Sequence[str], space: SearchSpace, n_directions: int, hydra: DictConfig
    ) -> Checked:
        """Every corner of the space as a valid vae-sweep config, one direction per objective,
        the device and the data usable, the tracking server reachable."""
        from vae_sweep.track.stores import check_reachable
        from vae_sweep.train.config import MlflowTracking, parse_run_config

        require(
            hydra.sweeper.get("tracking_uri") is None,
            "hydra.sweeper.tracking_uri",
            "is for apps other than vae-train, which records its runs where tracking.uri says; "
            "use tracking.uri=... (tracking=mlflow)",
        )
        base = parse_run_config(compose(fixed))
        objectives = base.objectives
        require(
            len(objectives) == n_directions,
            "hydra.sweeper.direction",
            f"{n_directions} direction(s) for objective(s) {list(objectives)}; give one per objective",
        )
        for overrides in corner_overrides(fixed, space)[1:]:
            try:
                parse_run_config(compose(overrides))
            except ConfigError as error:
                searched = overrides[len(fixed) :]
                raise ConfigError(
                    error.key, f"{error.message} (in the search space, with {' '.join(searched)})"
                ) from None
        base.trainer.resolve_device()  # cuda asked for on a machine without one
        base.data.check()  # missing or corrupt data files would fail every trial
        tracking = base.tracking
        if not isinstance(tracking, MlflowTracking):
            return Checked(metric_names=tuple(objectives))
        check_reachable(tracking.uri)
        return Checked(Tracking(tracking.uri, tracking.experiment, "tracking.uri"), tuple(objectives))

    def tracking_uri(self, config: DictConfig) -> str | None:
        """``tracking.uri`` (tracking=mlflow), unless it cannot be read yet: the checks say why."""
        try:
            uri = OmegaConf.select(config, "tracking.uri", default=None)
        except OmegaConfBaseException:
            return None
        return None if uri is None else str(uri)

    def default_study_name(self, hydra: DictConfig) -> str:
        from vae_sweep.names import DEFAULT_EXPERIMENT

        return str(hydra.runtime.choices.get("study") or DEFAULT_EXPERIMENT)

    def prepare_worker(self, worker: int, config: DictConfig, n_local_workers: int | None) -> None:
        """Its share of the cores and its GPU; the data set kept from one trial to the next."""
        from vae_sweep.train.data import KEPT

        share_torch(worker, n_local_workers, gpus=config.trainer.get("gpus"))
        KEPT.keep()

    def preload(self) -> None:
        """Pay the process's one-time costs (seconds of imports) before claiming a trial, so that a
        trial's duration, and a sweep's trials per hour, measure trials rather than the start-up."""
        import torch

        importlib.import_module("vae_sweep.track.training")  # the trainer, its models and data sets
        # The first call imports the backends it configures (seconds); this one changes nothing.
        torch.use_deterministic_algorithms(torch.are_deterministic_algorithms_enabled())


def app_for(task_function: Any) -> App:
    """vae-train's own checks when the task is vae-train's, any app's otherwise."""
    if (getattr(task_function, "__module__", None), getattr(task_function, "__name__", None)) == VAE_TRAIN_TASK:
        return VaeTrain()
    return App(command=app_command(sys.argv[0]))


def app_command(argv0: str) -> str:
    """How the user started the app: ``python sphere.py`` for a script, its name for a console script."""
    if argv0.endswith(".py"):
        return shlex.join(["python", argv0])
    return os.path.basename(argv0) or "python app.py"


def corner_overrides(fixed: Sequence[str], space: SearchSpace) -> list[list[str]]:
    """The fixed overrides alone, then with each corner of the space (``SearchSpace.corners``)."""
    return [list(fixed)] + [[*fixed, *space.overrides(corner)] for corner in space.corners()]


def share_torch(worker: int, n_local_workers: int | None, *, gpus: Sequence[int] | None) -> None:
    """Workers on one machine split its cores between them, so the CPU is not oversubscribed
    (``n_local_workers`` is None when each runs on a machine of its own); worker i makes its
    GPU, ``cuda:(i mod G)`` or the ``gpus`` list in turn, the current CUDA device, so that
    ``cuda`` means it."""
    import torch

    from vae_sweep.train.config import worker_gpu

    if n_local_workers:
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // n_local_workers))
    gpu = worker_gpu(worker, torch.cuda.device_count() if torch.cuda.is_available() else 0, gpus)
    if gpu is not None:
        torch.cuda.set_device(gpu)
        log.info("worker %d trains on cuda:%d", worker, gpu)
