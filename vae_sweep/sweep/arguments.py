"""The sweep's command line: ``key=choice(...)`` and other sweep overrides join the study's
search space, plain ``key=value`` overrides are fixed for every trial (and fix a searched key),
and ``hydra.sweeper.direction`` is one direction per objective."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import ListConfig

from vae_sweep.errors import require

DIRECTIONS = ("minimize", "maximize")


def split_arguments(arguments: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Command-line overrides: sweeps (``key=choice(...)``) join the search space, the rest are fixed."""
    sweeps: dict[str, str] = {}
    fixed: list[str] = []
    for override in OverridesParser.create().parse_overrides(list(arguments)):
        if override.is_sweep_override():
            sweeps[override.get_key_element()] = override.input_line.split("=", 1)[1]
        else:
            fixed.append(override.input_line)
    return sweeps, fixed


def merge_params(params: Mapping[str, Any], sweeps: Mapping[str, str], fixed: Sequence[str]) -> dict[str, Any]:
    """The study's space with the command line on top: ``key=choice(...)`` adds or replaces a
    searched key, and a plain ``key=value`` for a searched key fixes it (conditions on it resolve)."""
    merged = {**params, **sweeps}
    for override in fixed:
        key, _, value = override.partition("=")
        if key in merged:
            merged[key] = value
    return merged


def parse_directions(direction: Any) -> tuple[str, ...]:
    directions = tuple(direction) if isinstance(direction, (list, tuple, ListConfig)) else (direction,)
    for value in directions:
        require(
            str(value).lower() in DIRECTIONS,
            "hydra.sweeper.direction",
            f"{value!r} is not a direction; use minimize or maximize (or a list for several objectives)",
        )
    return tuple(str(value).lower() for value in directions)
