"""The environment a test's ``vae-train`` process runs in."""

from __future__ import annotations

import os

# A developer's own settings that would send a test's runs elsewhere or change what it prints.
PERSONAL = ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR")


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without ``PERSONAL`` variables (every test names its store),
    plus ``extra``."""
    environment = {key: value for key, value in os.environ.items() if key not in PERSONAL}
    return {**environment, **extra}
