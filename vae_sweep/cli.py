"""Console entry points, and the one place that turns errors into exit codes.

Library code raises (``vae_sweep.errors``); the commands here print one ``<program>: error:``
line for our errors and exit with the code ``EXIT_CODES`` gives them. Hydra's refusals of an
option or key that does not exist become one such line too, with a did-you-mean (exit code 2);
its other errors keep Hydra's report and exit code 1. Everything the commands do is a function
elsewhere that tests can call.
"""

from __future__ import annotations

import importlib.resources
import logging
import math
import os
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

import hydra
import yaml
from hydra.errors import CompactHydraException
from omegaconf import DictConfig, open_dict

from vae_sweep import interrupts
from vae_sweep.errors import (
    ConfigError,
    DataError,
    SweepFailed,
    SweepInterrupted,
    TrainingDiverged,
    UsageError,
    VaeSweepError,
)
from vae_sweep.garbage import collect_nothing_at_exit, hold_full_collections, release_after_startup
from vae_sweep.hydra_version import VERSION_BASE
from vae_sweep.local_stores import absolute_sqlite_url
from vae_sweep.suggestions import unknown_name_line

log = logging.getLogger(__name__)

# Our errors and their exit codes: 2 the input cannot be used (nothing was started), 1 the work
# could not be done, 130 stopped by a signal (SIGINT, SIGTERM and SIGHUP alike, docs/reliability.md).
EXIT_CODES: tuple[tuple[type[VaeSweepError], int], ...] = (
    (ConfigError, 2),
    (DataError, 2),
    (UsageError, 2),
    (SweepFailed, 1),
    (SweepInterrupted, interrupts.EXIT_CODE),
)
CONFIG_PACKAGE = "vae_sweep.conf"  # where train_task finds its config and groups
HYDRA_HINT = "\nSet the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace."


def exit_code(error: VaeSweepError) -> int:
    return next((code for kind, code in EXIT_CODES if isinstance(error, kind)), 1)


def report(prog: str, error: VaeSweepError) -> int:
    """Print the error's one line; its exit code. An interrupted sweep's line says how to resume."""
    line = str(error) if isinstance(error, SweepInterrupted) else f"{prog}: error: {error}"
    print(line, file=sys.stderr)
    return exit_code(error)


def report_and_exit(prog: str, error: VaeSweepError) -> None:
    sys.exit(report(prog, error))


def train_app() -> None:
    """``vae-train``: the Hydra app below, whose errors are reported here.

    Hydra prints a traceback for any error it meets before the job starts, unless it is one of
    its own; with ``HYDRA_FULL_ERROR=1`` it raises instead, so errors can be told apart: ours
    (from the job or our sweeper) become one line, a config file that is not valid YAML (or not
    UTF-8 text) one line naming the file, an option or key that does not exist one line with
    the closest name and what exists (exit code 2), and every other error gets Hydra's report,
    as if we had not asked. A user who sets ``HYDRA_FULL_ERROR=1`` gets full tracebacks
    of everything but our own errors.
    """
    hold_full_collections()
    collect_nothing_at_exit()
    interrupts.install()
    full_errors = os.environ.get("HYDRA_FULL_ERROR") == "1"
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
    except VaeSweepError as error:
        report_and_exit("vae-train", error)
    except Exception as error:
        if full_errors:
            raise
        message = config_file_error(error) or unknown_name_line(error, groups=config_groups())
        if message is not None:
            print(f"vae-train: error: {message}", file=sys.stderr)
            sys.exit(2)
        hydra_report(error)
        sys.exit(1)
    finally:
        if not full_errors:
            os.environ.pop("HYDRA_FULL_ERROR", None)


def hydra_report(error: Exception) -> None:
    """What Hydra prints for an error when ``HYDRA_FULL_ERROR`` is unset: its own errors (bad
    override syntax, a value Hydra's own settings refuse) as their message, any other error as
    a traceback from the job down. (Unknown options and keys are ``unknown_name_line``'s.)"""
    if isinstance(error, CompactHydraException):
        print(error, file=sys.stderr)
        if error.__cause__ is not None:
            print(error.__cause__, file=sys.stderr)
    else:
        traceback.print_exception(type(error), error, frames_below(error.__traceback__, "run_job"))
    print(HYDRA_HINT, file=sys.stderr)


def config_groups() -> list[str]:
    """vae-train's config groups (folders of ``vae_sweep.conf``), some of which have no key in a
    composed config (``study``, ``debug``): what a misspelt top-level name may have meant."""
    folder = importlib.resources.files(CONFIG_PACKAGE)
    return sorted(entry.name for entry in folder.iterdir() if entry.is_dir() and not entry.name.startswith("_"))


def frames_below(tb: TracebackType | None, function: str) -> TracebackType | None:
    """The traceback from the frame called by ``function`` down (all of it if ``function`` is not in it)."""
    entry = tb
    while entry is not None and entry.tb_frame.f_code.co_name != function:
        entry = entry.tb_next
    return entry.tb_next if entry is not None else tb


def config_file_error(error: Exception) -> str | None:
    """One line for a config file that is not valid YAML or not UTF-8 text; None for any other error."""
    if isinstance(error, yaml.YAMLError):
        return yaml_error_text(error)
    path = config_file_of(error.__traceback__)
    if isinstance(error, UnicodeDecodeError) and path is not None:
        return f"{path}: not UTF-8 text ({error.reason} at byte {error.start}); save it as UTF-8"
    return None


def config_file_of(tb: TracebackType | None) -> str | None:
    """The config file Hydra's config source was loading when ``tb`` was raised, if it was."""
    path = None
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == "load_config":
            path = frame.f_locals.get("full_path") or frame.f_locals.get("config_path") or path
        tb = tb.tb_next
    return None if path is None else str(path)


def yaml_error_text(error: yaml.YAMLError) -> str:
    """``path, line L, column C: not valid YAML: <what the parser expected>``."""
    if not isinstance(error, yaml.MarkedYAMLError) or error.problem_mark is None:
        return f"a config file is not valid YAML: {' '.join(str(error).split())}"
    mark = error.context_mark or error.problem_mark  # where the broken construct starts
    what = "; ".join(str(part) for part in (error.context, error.problem) if part)
    if error.context_mark is not None and error.context_mark.line != error.problem_mark.line:
        what += f" (line {error.problem_mark.line + 1}, column {error.problem_mark.column + 1})"
    return f"{mark.name}, line {mark.line + 1}, column {mark.column + 1}: not valid YAML: {what}; fix the file"


@hydra.main(config_path=f"pkg://{CONFIG_PACKAGE}", config_name="config", **VERSION_BASE)
def train_task(cfg: DictConfig) -> float | list[float]:
    """Train one VAE and return its objective metric(s), for any Hydra sweeper to minimise.

    A diverged run returns NaN (its MLflow run is FAILED with a reason) instead of raising,
    so one bad combination never takes down a multirun. Outside our sweeper, bad config or
    missing data stop the process with one clear message and exit code 2; inside it they
    fail the trial (the sweeper records the reason) and the sweep goes on.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    # Here, not at the top: a sweep's own process (and the rerun of a finished study) needs no torch.
    from vae_sweep.sweep.trial_link import link_current_job
    from vae_sweep.track.training import train_and_track
    from vae_sweep.train.config import parse_objectives
    from vae_sweep.train.progress import run_summary

    release_after_startup()  # a single run's, or the first job's of another sweeper; ours released before its trials
    link = link_current_job()
    # The run's own Hydra folder (a sweep trial's job folder), where a retry finds it.
    folder = Path(HydraConfig.get().runtime.output_dir) if HydraConfig.initialized() else Path.cwd()
    checkpoint = folder / "checkpoint.pt"
    launched_in = Path(HydraConfig.get().runtime.cwd) if HydraConfig.initialized() else Path.cwd()
    if launched_in.resolve() != Path.cwd().resolve() and "uri" in cfg.get("tracking", {}):  # hydra.job.chdir=true
        with open_dict(cfg):  # a relative store is the one where vae-train was started
            cfg.tracking.uri = absolute_sqlite_url(cfg.tracking.uri, launched_in)
    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN  # any sweeper's job
    run_ids: list[str] = []
    try:
        objectives = parse_objectives(cfg.get("objective", "val_loss"))
        if link is not None and cfg.trainer.get("checkpoint_every"):
            link.record_checkpoint(checkpoint)
        result = train_and_track(
            cfg,
            callbacks=link.callbacks(objectives[0]) if link else single_run_progress(cfg, multirun),
            tags=link.tags() if link else None,
            on_run_start=link.record_run if link else run_ids.append,
            require_tracking=link is None,  # a sweep checked its store at the start; a trial goes on without it
            checkpoint=checkpoint,
            resume=link.resume_point() if link else None,
            sweep_trial=link is not None or multirun,
        )
    except TrainingDiverged as error:
        if link is None:  # a trial's failure is one line of the sweeper's
            log.error("%s; the run is recorded as failed", error)
        return [math.nan] * len(objectives) if len(objectives) > 1 else math.nan
    values = [result.metrics[name] for name in objectives]
    if link is not None:  # a trial's line comes from the sweeper
        link.record_constraints(result.metrics)
    else:
        named = dict(zip(objectives, values, strict=True))
        print(run_summary(result.metrics, named, run_ids[0] if run_ids else None, where_to_look(cfg, run_ids)))
    return values if len(values) > 1 else values[0]


def single_run_progress(cfg: DictConfig, multirun: bool) -> tuple:
    """A single run's epoch progress, as ``trainer.progress`` says (the config is checked later:
    an unknown mode is refused there, before training). ``auto`` prints no epoch lines in a
    ``multirun`` of Hydra's own sweeper when not on a terminal: six jobs would be 300 lines."""
    from vae_sweep.train.progress import PROGRESS, EpochProgress

    mode = str(cfg.get("trainer", {}).get("progress", "auto"))
    if mode == "off" or mode not in PROGRESS or (mode == "auto" and multirun and not sys.stderr.isatty()):
        return ()
    return (EpochProgress(int(cfg.trainer.epochs), mode),)


def where_to_look(cfg: DictConfig, run_ids: list[str]) -> str:
    """The command and page that show the run: MLflow's UI on its store, in the model-training view."""
    uri = cfg.get("tracking", {}).get("uri") if run_ids else None
    if not uri:
        return "not tracked (tracking=none); tracking=mlflow logs runs to sqlite:///mlflow.db"
    from vae_sweep.track.run import TRACKING_ERRORS, client_for
    from vae_sweep.track.urls import masked, page_to_open

    try:
        experiment = client_for(str(uri)).get_run(run_ids[0]).info.experiment_id
    except TRACKING_ERRORS:  # the store went away after the run ended: its id still finds it later
        return f"run {run_ids[0]} in {masked(str(uri))}"
    return page_to_open(str(uri), experiment, run_ids[0])


def interrupted_message(error: KeyboardInterrupt) -> str:
    """``interrupted (SIGTERM): MLflow run <id> is KILLED``: one line for a stopped run."""
    name = getattr(error, "signal_name", "SIGINT")
    run_id = getattr(error, "run_id", None)
    where = f": MLflow run {run_id} is KILLED (failure_reason=interrupted)" if run_id else " before training started"
    return f"interrupted ({name}){where}"


def compare(argv: Sequence[str]) -> int:
    """``vae-compare ARGV``: its exit code, after one error line if it could not compare."""
    from vae_sweep.compare import main

    return run_tool("vae-compare", main, argv)


def reproduce(argv: Sequence[str]) -> int:
    """``vae-reproduce ARGV``: 0 identical (or within the tolerance, or recovered), 1 different
    or not verified, 2 after one error line if it could not re-run."""
    from vae_sweep.reproduce import main

    return run_tool("vae-reproduce", main, argv)


def replicate(argv: Sequence[str]) -> int:
    """``vae-replicate ARGV``: the replication sweep's exit code (vae-train's), after one error
    line if it could not start."""
    from vae_sweep.replicate import main

    return run_tool("vae-replicate", main, argv)


def compare_main() -> None:
    """``vae-compare``: techniques side by side from a finished study's MLflow runs."""
    collect_nothing_at_exit()
    sys.exit(compare(sys.argv[1:]))


def replicate_main() -> None:
    """``vae-replicate``: a study's best configurations again with fresh seeds."""
    collect_nothing_at_exit()
    sys.exit(replicate(sys.argv[1:]))


def reproduce_main() -> None:
    """``vae-reproduce``: re-run a logged run from its ``config.yaml`` and compare the metrics."""
    collect_nothing_at_exit()
    sys.exit(reproduce(sys.argv[1:]))


def run_tool(prog: str, main: Callable[[Sequence[str]], int], argv: Sequence[str]) -> int:
    """``main``'s code; argparse's own for ``--help`` (0) and its usage errors (2); one line and
    our code for our errors; Ctrl-C or SIGTERM (a reproduction's new run is then KILLED) one line
    and code 130, not a traceback."""
    interrupts.install()
    try:
        return main(list(argv))
    except SystemExit as exit_:  # argparse
        return int(exit_.code or 0)
    except KeyboardInterrupt as error:
        print(f"{prog}: {interrupted_message(error)}", file=sys.stderr)
        return interrupts.EXIT_CODE
    except VaeSweepError as error:
        return report(prog, error)
