"""Checks a sweep makes of its files before its study exists: the MLflow store made whole and its
experiment usable, the output folder writable. Each failure is one ``ConfigError`` naming the key,
so a bad setting costs one line, not a half-made study."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from vae_sweep.errors import ConfigError
from vae_sweep.local_stores import unwritable_folder
from vae_sweep.sweep.study import enable_sqlite_wal
from vae_sweep.track.store_ahead import StoreAhead
from vae_sweep.track.stores import prepare_mlflow_store
from vae_sweep.track.urls import masked


def prepare_tracking_store(
    uri: str, experiment: str, *, key: str = "tracking.uri", ahead: StoreAhead | None = None
) -> None:
    """A new local MLflow store made whole (its migrations take seconds; ``ahead`` has made them
    meanwhile, if it could), in WAL mode for the parallel workers, and its experiment usable,
    before the study exists; MLflow itself is imported here, before any lock is taken."""
    from vae_sweep.sweep.parent_run import tracking_client
    from vae_sweep.track.run import TRACKING_ERRORS, experiment_id

    if ahead is not None:  # after MLflow's imports, a second the build had to finish in
        ahead.use(uri)
    try:
        prepare_mlflow_store(uri)
        experiment_id(tracking_client(uri), experiment)  # before any other write: a deleted one is refused
        enable_sqlite_wal(uri)
    except (sqlite3.Error, *TRACKING_ERRORS) as error:  # a damaged store, a full disk, a schema MLflow refuses
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(key, f"cannot open the MLflow store {masked(uri)}: {first[:300]}") from None


def check_output_folder(folder: Path) -> None:
    """The sweep folder (trial folders, results, plots) must be writable. Made to try, then
    removed again if this made it: a check that fails later leaves no empty ``multirun/``."""
    absolute = folder.absolute()
    made = [path for path in (absolute, *absolute.parents) if not path.exists()]
    problem = unwritable_folder(folder)
    for path in made:  # deepest first; a folder something else filled meanwhile stays
        with contextlib.suppress(OSError):
            path.rmdir()
    if problem:
        raise ConfigError("hydra.sweep.dir", f"cannot write the sweep's output folder {folder}: {problem}")
