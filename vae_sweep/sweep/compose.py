"""A trial's config, composed as Hydra's multirun would, at the cost of one composition per
combination of config-group choices instead of one per trial.

Hydra rebuilds the defaults tree and merges every option file for each job (about 100 ms with
our seven groups). Only overrides that pick config-group options change that tree; the rest
set values, which Hydra applies after composition anyway. So the tree is composed once per
set of group choices and cached, and each trial sets its values on a copy with
``OmegaConf.update``, as Hydra does for a plain ``key=value``. Only public Hydra API is used:
anything but a plain ``key=value`` of an existing key (``+key``, ``~key``, a package, a group)
is part of the cache key and goes through Hydra's own composition, and so does a value that
cannot be set (Hydra then raises its own message). tests/train/test_compose.py checks that
the result equals ``load_sweep_config`` for every trial of the shipped studies and of a plain
Hydra app.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Sequence

from hydra.core.config_loader import ConfigLoader
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException


class TrialComposer:
    """``compose(overrides)`` gives what ``config_loader.load_sweep_config(master, overrides)`` gives.

    One composer serves the sweep's checks and its workers: a worker in the sweep's process
    reuses the compositions the checks made, and one in another process gets them with the
    pickled task function. The master config's Hydra overrides are part of each composition's
    key, since the sweep sets the launcher's ``n_jobs`` there before launching."""

    def __init__(self, config_loader: ConfigLoader, master_config: DictConfig) -> None:
        self.config_loader = config_loader
        self.master_config = master_config
        # (the master's Hydra overrides, the group-choice overrides) -> the composed config
        self.trees: dict[tuple[tuple[str, ...], tuple[str, ...]], DictConfig] = {}

    def __getstate__(self) -> dict:
        """Without the parser and the config sources (not picklable; rebuilt where unpickled)."""
        return {k: v for k, v in self.__dict__.items() if k not in ("parser", "sources")}

    @functools.cached_property
    def parser(self) -> OverridesParser:
        return OverridesParser.create()

    @functools.cached_property
    def sources(self) -> list:
        return self.config_loader.get_sources()

    def sets_a_value(self, override: Override) -> bool:
        """Whether ``override`` is a plain ``key=value`` that Hydra applies after composition."""
        if override.type is not OverrideType.CHANGE or override.package is not None or override.is_hydra_override():
            return False
        group = override.key_or_group.replace(".", "/")
        return not any(source.is_group(group) for source in self.sources)

    def compose(self, overrides: Sequence[str]) -> DictConfig:
        parsed = self.parser.parse_overrides(list(overrides))
        values = [o for o in parsed if self.sets_a_value(o)]  # each asks every config source once
        choices = tuple(o.input_line for o in parsed if o not in values)
        key = (tuple(self.master_config.hydra.overrides.hydra), choices)
        tree = self.trees.get(key)
        if tree is None:
            tree = self.trees[key] = self.config_loader.load_sweep_config(self.master_config, list(choices))
        config = copy.deepcopy(tree)
        try:
            for override in values:
                OmegaConf.update(config, override.key_or_group, override.value(), merge=True)
        except OmegaConfBaseException:  # an unknown key, a wrong type: Hydra's own message
            return self.config_loader.load_sweep_config(self.master_config, list(overrides))
        task = [o for o in parsed if not o.is_hydra_override()]
        with open_dict(config.hydra):
            config.hydra.overrides.task = [o.input_line for o in task]
            options = config.hydra.job.config.override_dirname
            if not OmegaConf.is_interpolation(config.hydra.job, "override_dirname"):  # Hydra < 1.4 stores it
                config.hydra.job.override_dirname = override_dirname(
                    task, kv_sep=options.kv_sep, item_sep=options.item_sep, exclude_keys=options.exclude_keys
                )
        return config


def override_dirname(overrides: Sequence[Override], *, kv_sep: str, item_sep: str, exclude_keys: Sequence[str]) -> str:
    """``hydra.job.override_dirname`` as Hydra 1.3 writes it: the task's overrides but the
    excluded keys, sorted, joined by ``item_sep``, each ``=`` written as ``kv_sep``."""
    lines = sorted(o.input_line for o in overrides if o.key_or_group not in exclude_keys)
    return re.sub("=", kv_sep, item_sep.join(lines))
