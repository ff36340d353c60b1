"""Rows 4-6: whole sweeps, run as a user runs them (``vae-train -m``), each in a fresh folder.

Row 4 runs the same trials with one and with two workers (random sampler, fixed seed, no
pruner: both runs train identical trials) and compares trials per hour. Row 5 runs the
``techniques`` study with a fixed seed and budget under no pruner, the median pruner and
Hyperband, counting the epochs each trained. Row 6 compares samplers over several seeds.
Everything is read back from the study's Optuna storage and MLflow store afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import optuna
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from vae_sweep.bench.progress import PROGRESS
from vae_sweep.names import RUN_ID_ATTR
from vae_sweep.track.history import metric_history

APP = "from vae_sweep.cli import train_app; train_app()"


@dataclass
class SweepResult:
    """What a finished sweep did, from its stores."""

    seconds: float  # wall time of the trials: first start to last finish
    states: dict[str, int]
    epochs: int  # epochs trained over all trials, pruned and failed ones included
    best: float | None
    ends: list[float]  # when each trial finished, seconds after the first trial started, in order

    @property
    def trials(self) -> int:
        return sum(self.states.values())

    def per_hour(self, workers: int) -> float:
        """Steady-state trials/hour: trials finished after each worker's first one (which also
        pays the worker's start-up), over the time from the last of those first ones to the end."""
        window = self.ends[-1] - self.ends[workers - 1]
        return (len(self.ends) - workers) * 3600 / window if window > 0 else float("nan")


def run_in(folder: Path, command: list[str], what: str) -> float:
    """Run ``command`` in ``folder``, on the default local stores there (MLFLOW_TRACKING_URI unset);
    its wall time in seconds. ``what`` names it in the progress line that says it ended."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    start = time.perf_counter()
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    seconds = time.perf_counter() - start
    PROGRESS.run_ended(what, seconds)
    return seconds


def run_sweep(overrides: list[str], what: str) -> SweepResult:
    """``vae-train -m OVERRIDES`` in a fresh folder with its own SQLite stores."""
    with tempfile.TemporaryDirectory(prefix="vae-bench-") as folder:
        run_in(Path(folder), [sys.executable, "-c", APP, "-m", *overrides], what)
        return read_sweep(Path(folder))


def read_sweep(folder: Path) -> SweepResult:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{folder / 'optuna.db'}"
    (summary,) = optuna.get_all_study_summaries(storage)
    trials = optuna.load_study(study_name=summary.study_name, storage=storage).get_trials(deepcopy=False)
    finished = [t for t in trials if t.state.is_finished()]
    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    epochs = sum(len(metric_history(client, t.user_attrs[RUN_ID_ATTR], "train_loss")) for t in finished)
    complete = [t.value for t in finished if t.state is optuna.trial.TrialState.COMPLETE]
    states: dict[str, int] = {}
    for trial in finished:
        states[trial.state.name] = states.get(trial.state.name, 0) + 1
    start = min(t.datetime_start for t in finished)
    ends = sorted((t.datetime_complete - start).total_seconds() for t in finished)
    return SweepResult(seconds=ends[-1], states=states, epochs=epochs, best=min(complete, default=None), ends=ends)


@dataclass(frozen=True)
class Sizes:
    """How big each row's sweeps are: the full benchmark, or a smoke run."""

    scaling_trials: int
    scaling_epochs: int
    pruning_trials: int
    pruning_epochs: int
    pruning_seeds: tuple[int, ...]
    sampler_trials: int
    sampler_epochs: int
    sampler_seeds: tuple[int, ...]
    pruners: tuple[str, ...]  # keys of PRUNERS, "none" first: the reference
    samplers: tuple[str, ...]  # keys of SAMPLERS


FULL_SIZES = Sizes(
    scaling_trials=26,
    scaling_epochs=5,
    pruning_trials=30,
    pruning_epochs=20,
    pruning_seeds=(0, 1),
    # Enough guided trials after TPE's 10 random start-up ones, and seeds, to tell samplers apart:
    # with 20 trials x 3 seeds every sampler found the same best, one from the random start-up.
    sampler_trials=40,
    sampler_epochs=4,
    sampler_seeds=(0, 1, 2, 3, 4),
    pruners=("none", "median (the study's)", "hyperband"),
    samplers=("tpe, Optuna's defaults (the sweeper's default)", "tpe multivariate + group (the study's)", "random"),
)
# A smoke run: every row once, with as few sweeps (10-15 s each, mostly start-up) as it can.
QUICK_SIZES = Sizes(
    scaling_trials=3,
    scaling_epochs=1,
    pruning_trials=2,
    pruning_epochs=2,
    pruning_seeds=(0,),
    sampler_trials=2,
    sampler_epochs=1,
    sampler_seeds=(0,),
    pruners=("median (the study's)",),
    samplers=("random",),
)


def parallel_scaling(sizes: Sizes) -> dict[int, SweepResult]:
    """Row 4: the ``quick`` study's trials (its space and epochs) with one and two workers."""
    return {
        n_jobs: run_sweep(
            [
                "study=quick",
                f"trainer.epochs={sizes.scaling_epochs}",
                f"hydra.sweeper.n_trials={sizes.scaling_trials}",
                f"hydra.sweeper.n_jobs={n_jobs}",
                *RANDOM_FOR_QUICK,
                "hydra.sweeper.pruner.name=none",
            ],
            f"{n_jobs} worker(s)",
        )
        for n_jobs in (1, 2)
    }


RANDOM_FOR_QUICK = ("hydra.sweeper.sampler.name=random", "~hydra.sweeper.sampler.options.n_startup_trials")
PRUNERS = {
    "none": ["hydra.sweeper.pruner.name=none"],
    "median (the study's)": [],
    "hyperband": [
        "hydra.sweeper.pruner.name=hyperband",
        "~hydra.sweeper.pruner.options.n_startup_trials",
        "~hydra.sweeper.pruner.options.n_warmup_steps",
        "+hydra.sweeper.pruner.options.min_resource=2",
        "+hydra.sweeper.pruner.options.reduction_factor=3",
    ],
}


def study_pruner(study: str = "techniques") -> str:
    """The pruner ``study``'s file ships, as the row's text names it: ``median (n_startup_trials=3, ...)``."""
    pruner = OmegaConf.load(files("vae_sweep.conf").joinpath("study", f"{study}.yaml")).hydra.sweeper.pruner
    options = ", ".join(f"{key}={value}" for key, value in pruner.get("options", {}).items())
    return f"{pruner.name} ({options})" if options else str(pruner.name)


def pruning(sizes: Sizes) -> dict[str, list[SweepResult]]:
    """Row 5: ``techniques`` with each pruner, same seeds and budget, one worker (deterministic)."""
    return {
        name: [
            run_sweep(
                [
                    "study=techniques",
                    f"trainer.epochs={sizes.pruning_epochs}",
                    f"hydra.sweeper.n_trials={sizes.pruning_trials}",
                    "hydra.sweeper.n_jobs=1",
                    f"hydra.sweeper.sampler.seed={seed}",
                    *extra,
                ],
                f"pruner {name}, seed {seed}",
            )
            for seed in sizes.pruning_seeds
        ]
        for name, extra in PRUNERS.items()
        if name in sizes.pruners
    }


TECHNIQUES_SAMPLER_OPTIONS = ("n_startup_trials", "multivariate", "group")
SAMPLERS = {
    "tpe, Optuna's defaults (the sweeper's default)": [
        f"~hydra.sweeper.sampler.options.{option}" for option in TECHNIQUES_SAMPLER_OPTIONS
    ],
    "tpe multivariate + group (the study's)": [],
    "random": [
        "hydra.sweeper.sampler.name=random",
        *(f"~hydra.sweeper.sampler.options.{option}" for option in TECHNIQUES_SAMPLER_OPTIONS),
    ],
}


def sampler_efficiency(sizes: Sizes) -> dict[str, list[SweepResult]]:
    """Row 6: best value after the same budget of ``techniques`` trials, per sampler and seed."""
    return {
        name: [
            run_sweep(
                [
                    "study=techniques",
                    f"trainer.epochs={sizes.sampler_epochs}",
                    f"hydra.sweeper.n_trials={sizes.sampler_trials}",
                    "hydra.sweeper.n_jobs=1",
                    "hydra.sweeper.pruner.name=none",
                    f"hydra.sweeper.sampler.seed={seed}",
                    *extra,
                ],
                f"sampler {name}, seed {seed}",
            )
            for seed in sizes.sampler_seeds
        ]
        for name, extra in SAMPLERS.items()
        if name in sizes.samplers
    }
