"""One mark per thing a test needs, so each skip says the same thing everywhere. Under
``CI=true`` a missing PostgreSQL or Chromium fails instead (``helpers.postgres``, ``chromium``):
there they are part of the setup and must not be missing quietly."""

from __future__ import annotations

import shutil

import pytest
import torch

from helpers.postgres import in_ci

VAE_TRAIN = shutil.which("vae-train")
VAE_REPRODUCE = shutil.which("vae-reproduce")

needs_vae_train = pytest.mark.skipif(VAE_TRAIN is None, reason="vae-train is not installed (pip install -e .)")
needs_vae_reproduce = pytest.mark.skipif(
    VAE_REPRODUCE is None, reason="vae-reproduce is not installed (pip install -e .)"
)
without_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


def chromium() -> tuple[str, str]:
    """Debian's chromium and chromedriver, for the MLflow UI tests: skipped without them, failed in CI."""
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if browser is None or driver is None:
        if in_ci():
            pytest.fail("chromium and chromedriver must be installed in CI (.ci/run installs them)")
        pytest.skip("needs Debian's chromium and chromium-driver")
    return browser, driver
