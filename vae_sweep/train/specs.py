"""Typed, validated views of the config groups.

Every option file in ``conf/`` names its spec class with ``_target_``; only classes
registered here may be named (an allowlist: a config fetched from a tracking server is
data, never a way to import arbitrary code). OmegaConf checks the types against the
dataclass fields and each spec's ``__post_init__`` checks the ranges, so a bad value
fails before training with a message naming the full key.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import typing
from collections.abc import Mapping
from enum import Enum
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from vae_sweep.errors import ConfigError
from vae_sweep.suggestions import did_you_mean

_REGISTRY: dict[str, type] = {}

SpecT = TypeVar("SpecT", bound=type)


def register(cls: SpecT) -> SpecT:
    """Class decorator: allow ``cls`` as a ``_target_`` in config files (vae_sweep.train.extensions
    says how a package of one's own registers its classes). A dataclass, as every spec is."""
    target = target_of(cls)
    if not dataclasses.is_dataclass(cls):
        raise ConfigError("_target_", f"{target} is registered but is not a dataclass; add @dataclass under @register")
    if target in _REGISTRY and _REGISTRY[target] is not cls:
        raise ConfigError(
            "_target_",
            f"{target} is registered twice (the module ran twice, e.g. imported as a script and as a "
            "module, or two classes share a name); register each class once",
        )
    _REGISTRY[target] = cls
    return cls


def target_of(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def allowed_targets() -> list[str]:
    return sorted(_REGISTRY)


# Where the spec classes lived before vae_sweep/train/ existed; a config.yaml logged then names
# them so (``vae_sweep.optim.Adam``), and must still load: such a name finds the class of that name.
FORMER_MODULES = (
    "vae_sweep.config",
    "vae_sweep.data",
    "vae_sweep.models",
    "vae_sweep.optim",
    "vae_sweep.regularization",
)


def registered(target: Any) -> type | None:
    """The spec class a ``_target_`` names (today's name, or a former one), or None."""
    if not isinstance(target, str):
        return None
    if target in _REGISTRY:
        return _REGISTRY[target]
    module, _, name = target.rpartition(".")
    if module not in FORMER_MODULES:
        return None
    matches = [
        cls for cls in _REGISTRY.values() if cls.__qualname__ == name and cls.__module__.startswith("vae_sweep.")
    ]
    return matches[0] if len(matches) == 1 else None


@functools.cache
def schema(cls: type) -> DictConfig:
    """The typed OmegaConf schema of a spec class, built once (``merge`` copies it, never changes it)."""
    return OmegaConf.structured(cls)


def parse_spec(node: Mapping[str, Any] | DictConfig, group: str, base: type | None = None) -> Any:
    """Turn one config group's node into its validated spec object.

    ``base`` restricts the ``_target_`` to subclasses of it (an optimizer file cannot name
    a model spec).
    """
    if not isinstance(node, (Mapping, DictConfig)):
        raise ConfigError(group, f"expected a mapping with a _target_, got {node!r}")
    values = dict(OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node)
    target = values.pop("_target_", None)
    candidates = [t for t, c in _REGISTRY.items() if base is None or issubclass(c, base)]
    cls = registered(target)
    if cls is None or (base is not None and not issubclass(cls, base)):
        # A name of no class may be a typo; a class of another group is not.
        hint = did_you_mean(target, candidates, before="", after=" ") if cls is None else ""
        raise ConfigError(
            f"{group}._target_", f"{target!r} is not allowed here; {hint}allowed: {', '.join(sorted(candidates))}"
        )
    fields = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in fields:
            name = values.get("name", cls.__name__)
            hint = did_you_mean(key, fields, spelled=f"{group}.{{}}", before="", after=" ")
            raise ConfigError(
                f"{group}.{key}", f"unknown key for {name!r}; {hint}allowed keys: {', '.join(sorted(fields))}"
            )
    for key, example in list_fields(cls).items():  # OmegaConf's own words for these are about its node types
        value = values.get(key, example)
        if not isinstance(value, (list, tuple)):
            listed = ",".join(map(str, example))
            raise ConfigError(
                f"{group}.{key}",
                f"must be a list such as [{listed}] (on the command line: '{group}.{key}=[{listed}]'), got {value!r}",
            )
    try:
        return validated(cls, values)
    except ConfigError as error:
        raise error.within(group) from None
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", "") or ""
        first_line = str(error).splitlines()[0]  # an Enum's: Invalid value 'relux', expected one of [...]
        hint = did_you_mean(getattr(error, "value", None), enum_names(cls, key))  # "" for other fields
        raise ConfigError(f"{group}.{key}" if key else group, first_line + hint) from None


VALIDATED_KEPT = 64  # distinct group nodes: a sweep's worker meets a few per group, trial after trial
_validated: dict[tuple[type, str], Any] = {}


def validated(cls: type, values: dict[str, Any]) -> Any:
    """``cls`` built from ``values`` by OmegaConf (the types checked, then ``__post_init__``'s
    ranges), once per distinct node in a process: a sweep's worker validates the same groups
    trial after trial, and OmegaConf's merge and ``to_object`` take 1-7 ms a group. Specs are
    mutable, so each caller gets a copy; a node that fails is not kept, and fails again."""
    key = (cls, repr(values))
    if key not in _validated:
        if len(_validated) >= VALIDATED_KEPT:
            del _validated[next(iter(_validated))]  # the oldest
        _validated[key] = OmegaConf.to_object(OmegaConf.merge(schema(cls), values))
    return copy.deepcopy(_validated[key])


def enum_names(cls: type, key: str) -> list[str]:
    """The names an Enum-typed field of ``cls`` accepts (``Activation``: relu, tanh, ...); none
    for a field of any other type, or a key that is not a field."""
    hint = typing.get_type_hints(cls).get(key)
    kinds = (hint, *typing.get_args(hint))  # Activation, or Activation | None
    return next((list(kind.__members__) for kind in kinds if isinstance(kind, type) and issubclass(kind, Enum)), [])


@functools.cache
def list_fields(cls: type) -> dict[str, list[Any]]:
    """The list-valued fields of a spec class, with their default values (an example of the form)."""
    hints = typing.get_type_hints(cls)
    return {
        field.name: field.default_factory()
        for field in dataclasses.fields(cls)
        if typing.get_origin(hints[field.name]) is list and field.default_factory is not dataclasses.MISSING
    }
