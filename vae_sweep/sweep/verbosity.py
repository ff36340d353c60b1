"""How much a sweep prints.

By default: where the study is and how it runs, one line when each trial starts and one when
it ends, the study's status every ``progress.STATUS_INTERVAL_S`` and the summary. With
``hydra.sweeper.quiet=true`` (a sweep of hundreds of trials, a CI log) only the status lines,
warnings (a failed trial among them) and the summary. Hydra's own ``hydra.verbose`` (true, or
names of loggers) still turns any logger up, as in every Hydra app.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Iterator
from typing import Any

# What the libraries a sweep runs say at INFO: Optuna's "A new study created in RDB", MLflow's
# "Creating initial MLflow database tables" (or "View run ... at" per run on a server), and
# our note on a plot skipped.
QUIET_LOGGERS = ("optuna", "mlflow", "vae_sweep.sweep.plots")
# MLflow sets its logger's level when imported, from this variable (the sweep imports it late).
MLFLOW_LEVEL = "MLFLOW_LOGGING_LEVEL"


def detail_level(quiet: bool) -> int:
    """The level of the lines a quiet sweep leaves out (a trial started or finished)."""
    return logging.DEBUG if quiet else logging.INFO


def turned_up(name: str, verbose: Any) -> bool:
    """Whether ``hydra.verbose`` asks for logger ``name``: true (every logger), or a name or
    list of names of it or of a logger above it.

    >>> turned_up("hydra_plugins.hydra_joblib_launcher._core", ["hydra_plugins.hydra_joblib_launcher"])
    True
    >>> turned_up("optuna", False), turned_up("optuna", "optuna_dashboard")
    (False, False)
    """
    if isinstance(verbose, bool) or verbose is None:
        return bool(verbose)
    names = [verbose] if isinstance(verbose, str) else list(verbose)
    return any(name == asked or name.startswith(f"{asked}.") for asked in map(str, names))


@contextlib.contextmanager
def lowered(names: Iterable[str], *, verbose: Any = False, level: int = logging.WARNING) -> Iterator[None]:
    """Loggers ``names`` show only ``level`` and above inside the block (their own level is set,
    so that a handler Hydra configures meanwhile changes nothing), then are as they were; a
    logger ``hydra.verbose`` asks for is left alone."""
    loggers = [logging.getLogger(name) for name in names if not turned_up(name, verbose)]
    before = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(level, logger.level))
    try:
        yield
    finally:
        for logger, old in zip(loggers, before, strict=True):
            logger.setLevel(old)


@contextlib.contextmanager
def quieted(quiet: bool, *, verbose: Any = False) -> Iterator[None]:
    """While a quiet sweep or worker runs: ``QUIET_LOGGERS`` at WARNING, MLflow too if it is
    imported meanwhile (unless the user set its level); nothing when not ``quiet``."""
    if not quiet:
        yield
        return
    mlflow_too = MLFLOW_LEVEL not in os.environ and not turned_up("mlflow", verbose)
    if mlflow_too:
        os.environ[MLFLOW_LEVEL] = "WARNING"
    try:
        with lowered(QUIET_LOGGERS, verbose=verbose):
            yield
    finally:
        if mlflow_too:
            os.environ.pop(MLFLOW_LEVEL, None)
