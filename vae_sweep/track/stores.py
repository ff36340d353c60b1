"""Reaching an MLflow store before relying on it: a dead server fails at once (MLflow's client
would retry for minutes), a store that should exist is never created empty by a typo, and a new
local store is made whole (every migration, or a copy of the cached migrated store) before any
run touches it.

Kept free of torch so the reporting commands start fast; MLflow is imported only to build a store.
"""

from __future__ import annotations

import urllib.error
import urllib.request

from vae_sweep.errors import ConfigError
from vae_sweep.local_stores import create_sqlite_atomically, sqlite_file
from vae_sweep.track.store_template import copy_template, save_template


def check_reachable(uri: str, *, key: str = "tracking.uri", timeout: float = 5.0) -> None:
    """Fail when a tracking server does not answer its health check (local stores need none)."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout):
            return
    except (urllib.error.URLError, OSError) as error:
        raise ConfigError(
            key,
            f"cannot reach the MLflow tracking server at {uri} ({error}); start it (mlflow server ...), "
            "point MLFLOW_TRACKING_URI elsewhere, or run with tracking=none",
        ) from None


def check_existing_store(uri: str, *, key: str = "--tracking-uri") -> None:
    """For commands that read finished runs: the store must already be there."""
    path = sqlite_file(uri)
    if path is not None and not path.is_file():
        raise ConfigError(
            key,
            f"no MLflow store at {path} ({uri}): run in the folder you ran the sweep from, "
            "or pass --tracking-uri (or set MLFLOW_TRACKING_URI)",
        )
    check_reachable(uri, key=key)


def prepare_mlflow_store(uri: str) -> None:
    """A local SQLite MLflow store that does not exist yet is created whole (tables and every
    migration) before any run touches it; other stores are left to MLflow."""
    path = sqlite_file(uri)
    if path is None or path.exists():
        return
    create_sqlite_atomically(path, initialize_mlflow_store)


def initialize_mlflow_store(url: str) -> None:
    """MLflow's tables and every migration, in the new SQLite store at ``url``: a copy of the
    cached template when there is one (``store_template``), else migrated and then cached."""
    path = sqlite_file(url)
    if path is not None and copy_template(path):
        return
    from mlflow.store.tracking import DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    SqlAlchemyStore(url, DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH).engine.dispose()
    if path is not None:
        save_template(path)
