"""What a run is tagged with: one tag per technique choice (what comparison reports group runs
by), the name of its model, and the process's versions, commit and program."""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import subprocess
import sys
from pathlib import Path

from vae_sweep.names import EXTENSION_TAG_PREFIX
from vae_sweep.train.config import RunConfig
from vae_sweep.train.extensions import loaded_extensions
from vae_sweep.train.models import MLPVAESpec, ModelSpec

VERSIONED_PACKAGES = ("vae-sweep", "torch", "numpy", "scikit-learn", "hydra-core", "omegaconf", "mlflow", "optuna")


def model_label(model: ModelSpec) -> str:
    """What a run's name says of its model: the activation of an MLP (the catalog's default
    kind), the option's name and activation of another model (``conv-relu``)."""
    activation = getattr(model, "activation", None)
    if activation is None:
        return model.name
    return activation.value if isinstance(model, MLPVAESpec) else f"{model.name}-{activation.value}"


TECHNIQUE_FIELDS = ("activation", "encoder_norm", "decoder_norm", "encoder_dropout", "decoder_dropout")


def technique_tags(config: RunConfig) -> dict[str, str]:
    """One tag per technique choice: what comparison reports group runs by. The activation,
    normalization and dropout tags come from the model's fields of those names (the catalog's
    MLP and conv models have them all); a model of one's own without them gets none."""
    model, regularization = config.model, config.regularization

    def pair(encoder: str, decoder: str) -> str:
        return encoder if encoder == decoder else f"{encoder}/{decoder}"

    def rate(value: float) -> str:
        return f"{value:g}" if value else "none"

    tags = {
        "technique.optimizer": config.optimizer.name,
        "technique.scheduler": config.scheduler.name + ("+warmup" if config.scheduler.warmup_epochs > 0 else ""),
    }
    if all(hasattr(model, key) for key in TECHNIQUE_FIELDS):
        tags["technique.activation"] = model.activation.value
        tags["technique.normalization"] = pair(model.encoder_norm.value, model.decoder_norm.value)
        tags["technique.dropout"] = pair(rate(model.encoder_dropout), rate(model.decoder_dropout))  # 0.2, none/0.1
    tags["technique.regularization"] = regularization.name
    return tags


@functools.lru_cache(maxsize=1)
def environment_tags() -> dict[str, str]:
    """Versions, commit and the program that ran (the runs table's Source column: vae-train,
    vae-reproduce, a Hydra app's script): the same for every run of a process, so looked up once."""
    tags = {"version.python": platform.python_version(), "mlflow.source.type": "LOCAL"}
    program = sys.argv[0] if sys.argv else ""
    tags["mlflow.source.name"] = Path(program).name if program not in ("", "-c") else "python"
    for extension in loaded_extensions():  # what another machine must install to re-run this
        tags[f"{EXTENSION_TAG_PREFIX}{extension.module}"] = (
            f"{extension.package}=={extension.version}" if extension.package else "not an installed package"
        )
    for package in VERSIONED_PACKAGES:
        try:
            tags[f"version.{package}"] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    commit = git_commit(Path(__file__).resolve().parent)
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags


def git_commit(folder: Path) -> str | None:
    """The commit of the checkout holding ``folder`` (None for an installed wheel)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None
