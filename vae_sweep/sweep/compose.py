"""A trial's config, composed as Hydra's multirun would, at the cost of one composition per
combination of config-group choices instead of one per trial.

Hydra rebuilds the defaults tree and merges every option file for each job (about 100 ms with
our seven groups). Only overrides that pick config-group options change that tree; the rest
set values, which Hydra applies after composition anyway. So the tree is composed once per
set of group choices and cached, and each trial applies its value overrides to a copy with
Hydra's own override code. tests/train/test_compose.py checks that the result equals
``load_sweep_config`` for every trial of the shipped studies.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra.core.config_loader import ConfigLoader
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, open_dict


class TrialComposer:
    """``compose(overrides)`` gives what ``config_loader.load_sweep_config(master, overrides)`` gives."""

    def __init__(self, config_loader: ConfigLoader, master_config: DictConfig) -> None:
        self.config_loader = config_loader
        self.master_config = master_config
        self.parser = OverridesParser.create()
        self.trees: dict[tuple[str, ...], DictConfig] = {}  # group-choice overrides -> composed config

    def changes_defaults(self, override: Override) -> bool:
        """Whether Hydra would treat ``override`` as a defaults-list change rather than a value.
        Anything unusual (a package, a delete, a Hydra override) counts as a change: it is then
        part of the cache key and goes through Hydra's full composition."""
        if override.package is not None or override.is_delete() or override.is_hydra_override():
            return True
        repository = getattr(self.config_loader, "repository", None)
        return repository is None or repository.group_exists(override.key_or_group)

    def compose(self, overrides: Sequence[str]) -> DictConfig:
        parsed = self.parser.parse_overrides(list(overrides))
        choices = tuple(o.input_line for o in parsed if self.changes_defaults(o))
        values = [o for o in parsed if not self.changes_defaults(o)]
        tree = self.trees.get(choices)
        if tree is None:
            tree = self.trees[choices] = self.config_loader.load_sweep_config(self.master_config, list(choices))
        config = copy.deepcopy(tree)
        ConfigLoaderImpl._apply_overrides_to_config(values, config)
        task = [o for o in parsed if not o.is_hydra_override()]
        dirname = config.hydra.job.config.override_dirname
        with open_dict(config.hydra):
            config.hydra.overrides.task = [o.input_line for o in task]
            config.hydra.job.override_dirname = get_overrides_dirname(
                overrides=task, kv_sep=dirname.kv_sep, item_sep=dirname.item_sep, exclude_keys=dirname.exclude_keys
            )
        return config
