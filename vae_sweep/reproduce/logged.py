"""What the original run logged, read back as data that cannot run code: its ``config.yaml``
and its weights.

The config is parsed as plain YAML (no Python tags, no aliases), its strings kept literal (a
``${`` is never an interpolation) and validated by ``parse_run_config``, so it may only name
vae-sweep's registered spec classes. The weights are loaded with ``torch.load(weights_only=True)``;
weights that are missing or refused come back as the reason, for the report and the verdict.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from vae_sweep.errors import ConfigError, UsageError
from vae_sweep.names import CONFIG_ARTIFACT, STUDY_NAME_TAG, STUDY_ROLE_TAG, WEIGHTS_ARTIFACT
from vae_sweep.train.config import parse_run_config
from vae_sweep.train.extensions import entry_point_modules

NO_WEIGHTS = "the original run logged no weights (tracking.log_model=false)"


@contextlib.contextmanager
def quiet_downloads() -> Iterator[None]:
    """No artifact-download progress bars in the report."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    previous = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if previous is None:
            del os.environ[key]
        else:
            os.environ[key] = previous


def has_artifact(client: MlflowClient, run_id: str, path: str) -> bool:
    folder = path.rpartition("/")[0] or None
    return any(entry.path == path for entry in client.list_artifacts(run_id, folder))


def fetch_config(client: MlflowClient, run: Run, trusted: Sequence[str] = ()) -> dict[str, Any]:
    """The run's ``config.yaml``, read as data and validated; refused with the offending key.

    A fetched config imports nothing on its own: each extension module it lists must be
    installed here as a ``vae_sweep.extensions`` entry point, or be among ``trusted`` (the
    user's ``--extensions``)."""
    run_id = run.info.run_id
    if not has_artifact(client, run_id, CONFIG_ARTIFACT):
        if run.data.tags.get(STUDY_ROLE_TAG) == "study":
            study = run.data.tags.get(STUDY_NAME_TAG, "NAME")
            raise UsageError(
                f"run {run_id} is the parent run of study {study!r}, which trains nothing; "
                f"use --study {study} --best or --trial N"
            )
        raise UsageError(f"run {run_id} has no {CONFIG_ARTIFACT} artifact: it was not logged by vae-sweep")
    with tempfile.TemporaryDirectory() as folder, quiet_downloads():
        text = Path(client.download_artifacts(run_id, CONFIG_ARTIFACT, folder)).read_text()
    refused = f"run {run_id}'s {CONFIG_ARTIFACT} is refused"
    try:
        config = yaml.load(text, Loader=DataLoader)  # plain data: tags such as !!python/object are an error
    except yaml.YAMLError as error:
        raise UsageError(f"{refused}: it is not plain YAML data ({yaml_problem(error)})") from None
    if not isinstance(config, dict):
        raise UsageError(f"{refused}: expected a mapping of config groups, got {type(config).__name__}")
    untrusted = untrusted_extensions(config.get("extensions"), trusted)
    if untrusted:
        raise UsageError(
            f"run {run_id}'s {CONFIG_ARTIFACT} lists extension module(s) {', '.join(untrusted)}, which are not "
            "installed here as vae_sweep.extensions entry points; vae-reproduce imports nothing a fetched config "
            "names: install the package that provides them, or pass --extensions "
            f"{','.join(untrusted)} if you trust them"
        )
    try:
        parse_run_config(literal(config))
    except ConfigError as error:
        hint = ""
        if error.key == "config_version":
            logged_by = run.data.tags.get("version.vae-sweep", "unknown")
            commit = run.data.tags.get("mlflow.source.git.commit", "unknown")
            hint = f"; re-run it with the vae-sweep that logged it (version {logged_by}, commit {commit})"
        elif error.key.endswith("_target_"):
            hint = " (a fetched config is data: it may only name vae-sweep's registered spec classes)"
        raise UsageError(f"{refused}: {error}{hint}") from None
    return config


def yaml_problem(error: yaml.YAMLError) -> str:
    """What the parser found and where, in one line."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        return f"{error.problem}, line {mark.line + 1}, column {mark.column + 1}"
    return str(error).splitlines()[0]


class DataLoader(yaml.SafeLoader):
    """``yaml.safe_load`` without aliases: vae-sweep never writes them, and aliases of aliases
    ("billion laughs", 1.7 kB of text) expand to more data than memory holds."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases (*name) are refused in a logged config", self.peek_event().start_mark
            )
        return super().compose_node(parent, index)


def literal(config: Any) -> Any:
    """The resolved config as OmegaConf input that resolves to itself: a ``${`` in a logged
    string is text, never an interpolation (which could read environment variables)."""
    if isinstance(config, dict):
        return {key: literal(value) for key, value in config.items()}
    if isinstance(config, list):
        return [literal(value) for value in config]
    return config.replace("${", "\\${") if isinstance(config, str) else config


def load_weights(client: MlflowClient, run_id: str) -> dict[str, torch.Tensor] | str:
    """The original ``state_dict`` (tensors only: ``weights_only=True``), or why there is none."""
    if not has_artifact(client, run_id, WEIGHTS_ARTIFACT):
        return NO_WEIGHTS
    with tempfile.TemporaryDirectory() as folder, quiet_downloads():
        path = client.download_artifacts(run_id, WEIGHTS_ARTIFACT, folder)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # an unpickling refusal or a corrupt file: report, do not load
            return f"the original {WEIGHTS_ARTIFACT} was refused by torch.load(weights_only=True): {error}"
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        return f"the original {WEIGHTS_ARTIFACT} is not a state_dict of tensors"
    return state


def untrusted_extensions(listed: Any, trusted: Sequence[str]) -> list[str]:
    """The modules of a fetched config's ``extensions`` that neither an installed entry point nor
    the user vouches for (anything not a list of names is left to the config's validation)."""
    if not isinstance(listed, list):
        return []
    allowed = {*entry_point_modules(), *trusted}
    return [str(module) for module in listed if module not in allowed]
