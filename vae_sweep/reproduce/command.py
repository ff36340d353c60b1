"""The ``vae-train`` command line that recreates a logged, resolved config exactly.

Each config group is chosen by its ``name`` (``optimizer=adagrad``, checked against the option
files shipped in ``vae_sweep.conf``), then every leaf value is set explicitly, so the command
does not depend on today's defaults. Keys the option file has but the logged config lacks are
deleted (``~group.key``), keys only the logged config has are added (``+group.key=...``).

Example:
    >>> scheduler = {"_target_": "vae_sweep.train.schedules.Constant", "name": "constant", "warmup_epochs": 0.0}
    >>> train_overrides({"scheduler": scheduler, "objective": "val_loss"})
    ['scheduler=constant', 'scheduler.warmup_epochs=0.0', 'objective=val_loss', '~extensions', '~config_version']
    >>> format_value([16, 32]), format_value(None), format_value("tiny run #1")
    ('[16,32]', 'null', "'tiny run #1'")
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from importlib import resources
from typing import TYPE_CHECKING, Any

import yaml

from vae_sweep.errors import ConfigError
from vae_sweep.overrides import format_value

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

CONF_PACKAGE = "vae_sweep.conf"
IDENTITY_KEYS = ("_target_", "name")  # set by the group choice itself


def train_command(config: Mapping[str, Any]) -> str:
    """``vae-train`` and the overrides that recreate ``config``, quoted for a POSIX shell."""
    return shlex.join(["vae-train", *train_overrides(config)])


def train_overrides(config: Mapping[str, Any]) -> list[str]:
    """Hydra overrides that turn the packaged primary config into exactly ``config``.

    Raises ``ConfigError`` naming ``<group>.name`` when a group's option has no file here.
    """
    conf = resources.files(CONF_PACKAGE)
    primary = yaml.safe_load((conf / "config.yaml").read_text()) or {}
    defaults = default_choices(primary.get("defaults", []))
    overrides: list[str] = []
    for key, value in config.items():
        if key in defaults:
            overrides += group_overrides(str(key), value, conf / str(key), defaults[key])
        else:
            overrides.append(f"{'' if key in primary else '+'}{key}={format_value(value)}")
    overrides += [f"~{key}" for key in primary if key != "defaults" and key not in defaults and key not in config]
    return overrides


def default_choices(defaults: list[Any]) -> dict[str, str | None]:
    """``[{"data": "digits"}, "_self_", {"study": None}]`` -> ``{"data": "digits", "study": None}``."""
    return {key: value for entry in defaults if isinstance(entry, Mapping) for key, value in entry.items()}


def group_overrides(group: str, node: Any, folder: Traversable, default: str | None) -> list[str]:
    """``group=<name>`` then one override per leaf of ``node``, relative to that option's file."""
    if not isinstance(node, Mapping):
        raise ConfigError(group, f"expected a mapping (a config group), got {node!r}")
    option = node.get("name", default)
    path = folder / f"{option}.yaml"
    if not isinstance(option, str) or not path.is_file():
        options = sorted(entry.name.removesuffix(".yaml") for entry in folder.iterdir() if entry.name.endswith(".yaml"))
        raise ConfigError(
            f"{group}.name",
            f"the run used option {option!r}, but this vae-sweep has no conf/{group}/{option}.yaml "
            f"(options: {', '.join(options)}); add that option file (or hydra.searchpath) to recreate it",
        )
    base = leaves(yaml.safe_load(path.read_text()) or {})
    logged = leaves(node)
    overrides = [f"{group}={option}"]
    for key, value in logged.items():
        if key in IDENTITY_KEYS and base.get(key) == value:
            continue
        overrides.append(f"{'' if key in base else '+'}{group}.{key}={format_value(value)}")
    overrides += [f"~{group}.{key}" for key in base if key not in logged]
    return overrides


def leaves(node: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys of every non-mapping value (lists are one leaf); an empty mapping is a leaf."""
    flat: dict[str, Any] = {}
    for key, value in node.items():
        if isinstance(value, Mapping) and value:
            flat.update(leaves(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
