"""What the sweep needs of Hydra's launchers: that the one chosen is one, whether its workers
share this machine (then they split its cores, ``apps.share_torch``), how many it starts at once,
how many are worth starting, and what to call it."""

from __future__ import annotations

import logging

import hydra.utils
from hydra.plugins.launcher import Launcher
from omegaconf import DictConfig, OmegaConf, read_write

from vae_sweep.errors import require

log = logging.getLogger(__name__)
# The loggers of the launchers' job listings ("Joblib.Parallel(n_jobs=2,backend=loky,...) is
# launching 2 jobs", "Launching 1 jobs locally", "#0 : study=quick"), their only INFO lines. The
# sweep's jobs are its workers, each running trial after trial, so "#0" read as trial 0 while
# it stood for all of them; the sweep says in one line of its own how it runs (sweeper.py).
JOB_LISTING_LOGGERS = (
    "hydra._internal.core_plugins.basic_launcher",
    "hydra_plugins.hydra_joblib_launcher._core",
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher",
    "hydra_plugins.hydra_ray_launcher._core",
)


def launches_locally(launcher: DictConfig) -> bool:
    """Whether every worker runs on this machine, so that they share its cores: the basic and
    joblib launchers, submitit's local executor, and Ray without a cluster address or with
    one on this machine (``ray start --head`` here)."""
    target = str(launcher.get("_target_", ""))
    if target.endswith("RayLauncher"):
        address = OmegaConf.select(launcher, "ray.init.address", default=None)
        return address in (None, "local", "auto") or str(address).split(":")[0] in ("127.0.0.1", "localhost")
    return target.endswith(("BasicLauncher", "JoblibLauncher", "submitit_launcher.LocalLauncher"))


def launcher_name(config: DictConfig) -> str:
    """The launcher as the user chose it (``joblib``, ``submitit_slurm``), else its class."""
    choice = OmegaConf.select(config, "hydra.runtime.choices", default=None) or {}
    return str(choice.get("hydra/launcher") or str(config.hydra.launcher.get("_target_", "?")).rsplit(".", 1)[-1])


def check_launcher(launcher_config: DictConfig, n_jobs: int) -> None:
    """The launcher must be a Hydra launcher plugin (checked now: Hydra itself only finds out
    once the study and its parent run exist)."""
    launcher = str(launcher_config.get("_target_", ""))
    try:
        cls = hydra.utils.get_class(launcher)
    except Exception:  # not importable, or not a class
        cls = None
    require(
        isinstance(cls, type) and issubclass(cls, Launcher),
        "hydra.launcher._target_",
        f"{launcher!r} is not a Hydra launcher; pick one with hydra/launcher=basic, joblib, submitit_local, "
        "submitit_slurm or ray (their plugins installed)",
    )
    require(
        n_jobs == 1 or not launcher.endswith("BasicLauncher"),
        "hydra.sweeper.n_jobs",
        f"{n_jobs} parallel trials need a parallel launcher; add hydra/launcher=joblib",
    )


def set_launcher_jobs(config: DictConfig, n_workers: int) -> None:
    """A launcher with ``n_jobs`` (joblib) runs ``n_workers`` at once: set once, as
    ``hydra.sweeper.n_jobs``. Written as if typed on the command line, since every job's
    config is composed again from those overrides, and Hydra 1.4 requires a job's
    ``hydra.launcher`` to equal the sweep's."""
    if "n_jobs" not in config.hydra.launcher:
        return
    with read_write(config.hydra):
        config.hydra.launcher.n_jobs = n_workers
        typed = [line for line in config.hydra.overrides.hydra if not line.startswith("hydra.launcher.n_jobs=")]
        config.hydra.overrides.hydra = [*typed, f"hydra.launcher.n_jobs={n_workers}"]


def worker_count(n_jobs: int, left: int, *, local: bool, cores: int) -> int:
    """``n_jobs``, but no more workers than trials left to claim (one at least, to wait for
    trials running elsewhere); a warning when local workers outnumber the cores, since each
    holds its own torch and data in memory and they share the cores."""
    count = max(1, min(n_jobs, left))
    if count < n_jobs:
        log.info("hydra.sweeper.n_jobs=%d, but %d trial(s) left: starting %d worker(s)", n_jobs, left, count)
    if local and count > cores:
        log.warning(
            "hydra.sweeper.n_jobs=%d is more than this machine's %d cores: %d workers will share them",
            n_jobs,
            cores,
            count,
        )
    return count
