"""A user's own models, data sets, optimizers and schedules, registered from their own package.

An extension is a module that registers spec classes (``@vae_sweep.train.register``) when it is
imported. It is found in one of two ways:

- a Python entry point in the group ``vae_sweep.extensions`` (``pyproject.toml``:
  ``[project.entry-points."vae_sweep.extensions"] mypkg = "mypkg.vae_specs"``), imported by
  every vae-sweep process of an environment where the package is installed;
- the config's ``extensions: [mypkg.vae_specs]`` list, imported before the config is validated.

Both happen inside ``parse_run_config``, which every process runs before it validates or trains
(the sweep's start-up check, each worker of any launcher, a single run, vae-reproduce), so no
process can meet a ``_target_`` it has not loaded. Only registered classes may still be named by
``_target_``: an extension widens the allowlist on purpose, and a config fetched from a tracking
server names nothing to import (vae-reproduce imports only what is installed as an entry point,
or what its user names with ``--extensions``).
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from vae_sweep.errors import ConfigError
from vae_sweep.names import EXTENSION_TAG_PREFIX

ENTRY_POINT_GROUP = "vae_sweep.extensions"


@dataclass(frozen=True)
class Extension:
    """One imported extension module, and the installed package it comes from (for reproducing elsewhere)."""

    module: str
    package: str | None  # the distribution that provides it, when one does
    version: str | None
    source: str  # "entry point" or "config"

    def __str__(self) -> str:
        where = f"{self.package}=={self.version}" if self.package else "no installed package"
        return f"{self.module} ({where}, {self.source})"


_LOADED: dict[str, Extension] = {}  # module -> what was imported, once per process


@functools.cache
def entry_point_modules() -> dict[str, tuple[str | None, str | None]]:
    """Module -> (package, version) of every ``vae_sweep.extensions`` entry point installed here;
    read once per process (every config validation asks, and the installed packages do not change)."""
    found: dict[str, tuple[str | None, str | None]] = {}
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = entry.dist
        found[entry.module] = (dist.name if dist else None, dist.version if dist else None)
    return found


def load_extensions(config_modules: Iterable[str] = (), *, key: str = "extensions") -> list[Extension]:
    """Import the installed entry points (once per process) and ``config_modules``; every
    extension loaded so far. A module that does not import is one ``ConfigError`` naming it."""
    installed = entry_point_modules()
    for module, (package, version) in installed.items():
        if module not in _LOADED:
            _import(module, key, f", the {ENTRY_POINT_GROUP} entry point of package {package}")
            _LOADED[module] = Extension(module, package, version, "entry point")
    for index, module in enumerate(config_modules):
        if not isinstance(module, str) or not module.strip():
            raise ConfigError(f"{key}[{index}]", f"must be a module name such as mypkg.vae_specs, got {module!r}")
        if module in _LOADED:
            continue
        _import(module, f"{key}[{index}]")
        package, version = installed.get(module) or package_of(module)
        _LOADED[module] = Extension(module, package, version, "config")
    return list(_LOADED.values())


def loaded_extensions() -> list[Extension]:
    return list(_LOADED.values())


def package_of(module: str) -> tuple[str | None, str | None]:
    """The installed distribution providing ``module``'s top-level package, and its version."""
    top = module.split(".", 1)[0]
    names = importlib.metadata.packages_distributions().get(top, [])
    if not names:
        return None, None
    return names[0], importlib.metadata.version(names[0])


def _import(module: str, key: str, origin: str = "") -> None:
    try:
        importlib.import_module(module)
    except ConfigError as error:  # from register(): a target registered twice
        raise ConfigError(key, f"extension module {module!r}{origin}: {error}") from None
    except Exception as error:  # the extension's own bug, a missing dependency, a typo
        raise ConfigError(
            key, f"cannot import extension module {module!r}{origin} ({type(error).__name__}: {error})"
        ) from None


def missing_extensions(tags: Mapping[str, str]) -> list[str]:
    """Of the extensions a run logged (its ``extension.<module>`` tags), those not importable
    here, each with what to install."""
    missing = []
    for tag, package in sorted(tags.items()):
        if not tag.startswith(EXTENSION_TAG_PREFIX):
            continue
        module = tag.removeprefix(EXTENSION_TAG_PREFIX)
        if importlib.util.find_spec(module.split(".", 1)[0]) is None:
            install = f"pip install {package}" if "==" in package else f"make {module} importable"
            missing.append(f"{module} ({install})")
    return missing
