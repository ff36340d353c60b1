"""The environment a test's ``vae-train`` process runs in."""

from __future__ import annotations

import os


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without ``MLFLOW_TRACKING_URI`` (a developer's own server must
    never receive a test's runs; every test names its store), plus ``extra``."""
    environment = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    return {**environment, **extra}
