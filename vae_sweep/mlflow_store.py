"""Reaching an MLflow store before relying on it: a dead server fails at once (MLflow's client
would retry for minutes), and a store that should exist is never created empty by a typo.

Kept free of torch so the reporting commands start fast.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote

from vae_sweep.errors import ConfigError


def sqlite_file(uri: str) -> Path | None:
    """The file of a ``sqlite:///relative`` or ``sqlite:////absolute`` URL; None for other URLs."""
    if not uri.startswith("sqlite:///") or ":memory:" in uri:
        return None
    return Path(unquote(uri.removeprefix("sqlite:///").split("?", 1)[0]))


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
