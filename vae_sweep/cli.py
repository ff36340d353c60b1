"""Console entry points. Thin: everything they do is a function elsewhere that tests can call."""

from __future__ import annotations

import functools
import logging
import math
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import hydra
from omegaconf import DictConfig, open_dict

from vae_sweep import interrupts
from vae_sweep.config import parse_objectives
from vae_sweep.errors import ConfigError, DataError, TrainingDiverged
from vae_sweep.experiment import run_experiment
from vae_sweep.hydra_errors import config_file_error, frames_below, reraise
from vae_sweep.mlflow_store import absolute_sqlite_url

log = logging.getLogger(__name__)


def train_app() -> None:
    """``vae-train``: the Hydra app below, with a config file that is not valid YAML (or not UTF-8
    text) reported in one line naming the file (exit code 2) rather than in Hydra's full traceback.

    Hydra prints a traceback for any error it meets before the job starts, unless it is one of
    its own; with ``HYDRA_FULL_ERROR=1`` it raises instead, so these errors can be told apart.
    Every other error goes back to Hydra's own report, unchanged.
    """
    interrupts.install()
    if os.environ.get("HYDRA_FULL_ERROR") == "1":  # the user asked for full tracebacks
        train_task()
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        train_task()
        if interrupts.requested() is not None:  # came while the finished run was being recorded
            name = signal.Signals(interrupts.requested()).name
            print(f"vae-train: interrupted ({name}) after the run ended", file=sys.stderr)
            sys.exit(interrupts.EXIT_CODE)
    except KeyboardInterrupt as error:
        print(f"vae-train: {interrupted_message(error)}", file=sys.stderr)
        sys.exit(interrupts.EXIT_CODE)
    except Exception as error:
        from hydra._internal.utils import run_and_report

        message = config_file_error(error)
        if message is not None:
            print(f"vae-train: error: {message}", file=sys.stderr)
            sys.exit(2)

        del os.environ["HYDRA_FULL_ERROR"]
        trimmed = error.with_traceback(frames_below(error.__traceback__, "run_and_report"))
        run_and_report(functools.partial(reraise, trimmed))  # Hydra's own report of it, then exit code 1
    finally:
        os.environ.pop("HYDRA_FULL_ERROR", None)


@hydra.main(version_base="1.3", config_path="pkg://vae_sweep.conf", config_name="config")
def train_task(cfg: DictConfig) -> float | list[float]:
    """Train one VAE and return its objective metric(s), for any Hydra sweeper to minimise.

    A diverged run returns NaN (its MLflow run is FAILED with a reason) instead of raising,
    so one bad combination never takes down a multirun. Outside our sweeper, bad config or
    missing data stop the process with one clear message and exit code 2; inside it they
    fail the trial (the sweeper records the reason) and the sweep goes on.
    """
    from hydra.core.hydra_config import HydraConfig

    from vae_sweep.sweep.trial_link import link_current_job

    link = link_current_job()
    # The run's own Hydra folder (a sweep trial's job folder), where a retry finds it.
    folder = Path(HydraConfig.get().runtime.output_dir) if HydraConfig.initialized() else Path.cwd()
    checkpoint = folder / "checkpoint.pt"
    launched_in = Path(HydraConfig.get().runtime.cwd) if HydraConfig.initialized() else Path.cwd()
    if launched_in.resolve() != Path.cwd().resolve() and "uri" in cfg.get("tracking", {}):  # hydra.job.chdir=true
        with open_dict(cfg):  # a relative store is the one where vae-train was started
            cfg.tracking.uri = absolute_sqlite_url(cfg.tracking.uri, launched_in)
    try:
        objectives = parse_objectives(cfg.get("objective", "val_loss"))
        if link is not None and cfg.trainer.get("checkpoint_every"):
            link.record_checkpoint(checkpoint)
        result = run_experiment(
            cfg,
            callbacks=link.callbacks(objectives[0]) if link else (),
            tags=link.tags() if link else None,
            on_run_start=link.record_run if link else None,
            require_tracking=link is None,  # a sweep checked its store at the start; a trial goes on without it
            checkpoint=checkpoint,
            resume=link.resume_point() if link else None,
        )
    except (ConfigError, DataError) as error:
        if link is not None:
            raise
        print(f"vae-train: error: {error}", file=sys.stderr)
        sys.exit(2)
    except TrainingDiverged as error:
        log.error("%s; the run is recorded as failed", error)
        return [math.nan] * len(objectives) if len(objectives) > 1 else math.nan
    values = [result.metrics[name] for name in objectives]
    log.info("%s", ", ".join(f"{name} = {value:.4f}" for name, value in zip(objectives, values, strict=True)))
    return values if len(values) > 1 else values[0]


def interrupted_message(error: KeyboardInterrupt) -> str:
    """``interrupted (SIGTERM): MLflow run <id> is KILLED``: one line for a stopped run."""
    name = getattr(error, "signal_name", "SIGINT")
    run_id = getattr(error, "run_id", None)
    where = f": MLflow run {run_id} is KILLED (failure_reason=interrupted)" if run_id else " before training started"
    return f"interrupted ({name}){where}"


def compare_main() -> None:
    """``vae-compare``: techniques side by side from a finished study's MLflow runs."""
    from vae_sweep.compare import main

    run_tool("vae-compare", main)


def reproduce_main() -> None:
    """``vae-reproduce``: re-run a logged run from its ``config.yaml`` and compare the metrics."""
    from vae_sweep.reproduce import main

    run_tool("vae-reproduce", main)


def run_tool(prog: str, main: Callable[[list[str]], int]) -> None:
    """Exit with ``main``'s code; Ctrl-C or SIGTERM (a reproduction's new run is then KILLED)
    ends in one line and code 130, not a traceback."""
    interrupts.install()
    try:
        code = main(sys.argv[1:])
    except KeyboardInterrupt as error:
        print(f"{prog}: {interrupted_message(error)}", file=sys.stderr)
        code = interrupts.EXIT_CODE
    sys.exit(code)
