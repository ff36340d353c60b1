"""The search space: ``hydra.sweeper.params`` parsed into Optuna distributions.

Each entry maps a config key (``optimizer.lr``) or config group (``optimizer``) to a string in
Hydra's override grammar, parsed by Hydra's own parser so a study file reads like a command line:

- ``choice(sgd, adam)`` -> ``CategoricalDistribution`` (values typed as Hydra parses them);
- ``range(1, 5)``, ``range(0, 10, 2)`` -> ``IntDistribution(1, 5)``, ``IntDistribution(0, 10, step=2)``
  (the stop included, as the official Optuna sweeper reads it, unlike Hydra's basic sweeper and
  Python; float arguments give a stepped ``FloatDistribution``);
- ``interval(0.0, 0.5)`` -> ``FloatDistribution``; Hydra turns the bounds of a plain interval into floats,
  so ``interval(0, 1)`` is a float interval too, and only ``int(interval(8, 64))`` gives an ``IntDistribution``;
- ``tag(log, ...)`` around a range or interval samples on a log scale;
- a plain value (``5``, ``relu``) is a fixed override, applied to every trial and not searched.

An entry may instead be a mapping of conditions on a categorical parameter, one level deep::

    optimizer.lr:
      optimizer=sgd,momentum: tag(log, interval(1e-3, 0.3))
      default: tag(log, interval(1e-4, 1e-2))

Example:
    >>> space = parse_search_space({"optimizer": "choice(sgd, adam)", "optimizer.lr": "tag(log, interval(1e-4, 1e-1))"})
    >>> space.params["optimizer.lr"].distribution
    FloatDistribution(high=0.1, log=True, low=0.0001, step=None)
    >>> space.overrides({"optimizer": "adam", "optimizer.lr": 0.001})
    ['optimizer=adam', 'optimizer.lr=0.001']
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.types import ChoiceSweep
from optuna.distributions import (
    CategoricalDistribution,
    check_distribution_compatibility,
)
from optuna.trial import BaseTrial

from vae_sweep.errors import ConfigError, require
from vae_sweep.overrides import format_value
from vae_sweep.suggestions import did_you_mean
from vae_sweep.sweep.distributions import (
    MAX_GRID_VALUES,
    SEARCHED,
    Choice,
    Distribution,
    all_values,
    extremes,
    parse_distribution,
    parse_override,
    suggest,
    value_count,
    value_text,
)

DEFAULT = "default"  # the condition key that applies when no other condition matches


@dataclass(frozen=True)
class ParamSpec:
    """One searched parameter: a single distribution, or one picked by the value of a categorical parent."""

    name: str
    key: str  # the full config key, so errors point at the study file's line
    distribution: Distribution | None = None  # set when unconditional
    parent: str | None = None  # set when conditional
    branches: dict[Choice, Distribution] = field(default_factory=dict)  # parent value -> distribution
    default: Distribution | None = None  # when the parent's value has no branch; None: not sampled then

    @property
    def is_conditional(self) -> bool:
        return self.parent is not None

    def active(self, values: Mapping[str, Any]) -> Distribution | None:
        """The distribution to sample given the parent's value in ``values``; None when the condition fails."""
        if self.parent is None:
            return self.distribution
        return self.branches.get(values[self.parent], self.default)


@dataclass(frozen=True)
class SearchSpace:
    """Searched parameters (unconditional first, so parents come before their children) and fixed overrides."""

    params: dict[str, ParamSpec]
    fixed: dict[str, str]  # key -> override value text as written

    @property
    def is_conditional(self) -> bool:
        return any(spec.is_conditional for spec in self.params.values())

    def sample(self, trial: BaseTrial) -> dict[str, Any]:
        """Suggest every parameter whose condition holds, through the trial's public ``suggest_*`` API."""
        values: dict[str, Any] = {}
        for spec in self.params.values():
            distribution = spec.active(values)
            if distribution is not None:
                values[spec.name] = suggest(trial, spec.name, distribution)
        return values

    def distributions(self) -> dict[str, list[Distribution]]:
        """Every distribution a parameter may be sampled from (one, or one per branch)."""
        return {
            name: [spec.distribution]
            if spec.distribution is not None
            else [*spec.branches.values(), *([spec.default] if spec.default is not None else [])]
            for name, spec in self.params.items()
        }

    def overrides(self, values: Mapping[str, Any]) -> list[str]:
        """The fixed overrides, then ``values`` as Hydra override strings that parse back to the same values."""
        unknown = sorted(set(values) - set(self.params))
        if unknown:
            raise ValueError(f"not parameters of this search space: {unknown}; it has {list(self.params)}")
        sampled = [f"{name}={format_value(values[name], interpolate=True)}" for name in self.params if name in values]
        return [f"{name}={text}" for name, text in self.fixed.items()] + sampled

    def grid(self) -> dict[str, list[Any]]:
        """Every parameter's values, for ``optuna.samplers.GridSampler`` (which needs each one in every trial)."""
        grid = {}
        for spec in self.params.values():
            require(
                spec.distribution is not None,
                spec.key,
                f"the grid sampler needs every parameter in every trial, but {spec.name} depends on {spec.parent}; "
                "make it unconditional or use another sampler",
            )
            count = value_count(spec.distribution)
            require(
                count is not None,
                spec.key,
                f"{spec.distribution} has no finite set of values for the grid sampler; "
                "use choice(...) or range(...), or another sampler",
            )
            require(
                count <= MAX_GRID_VALUES,
                spec.key,
                f"{spec.distribution} has {count} values; the grid sampler tries every one, so keep it to "
                f"{MAX_GRID_VALUES} or use another sampler",
            )
            grid[spec.name] = all_values(spec.distribution)
        return grid

    def corners(self) -> list[dict[str, Any]]:
        """A few assignments that together reach every choice and both bounds of every branch of every parameter.

        Each pins one parameter (and the parent value that selects the branch) and leaves the others at their
        first choice or low bound, so composing them all checks the whole space against the real config cheaply.
        """
        found = [self._complete({})]
        for spec in self.params.values():
            for pins, distribution in self._cases(spec):
                for value in extremes(distribution):
                    assignment = self._complete({**pins, spec.name: value})
                    if assignment not in found:
                        found.append(assignment)
        return found

    def _cases(self, spec: ParamSpec) -> list[tuple[dict[str, Any], Distribution]]:
        """Each distinct distribution of ``spec``, with the parent value that selects it."""
        if spec.distribution is not None:
            return [({}, spec.distribution)]
        cases: list[tuple[dict[str, Any], Distribution]] = []
        parent = self.params[spec.parent].distribution
        for choice in parent.choices:
            distribution = spec.active({spec.parent: choice})
            if distribution is not None and all(distribution != seen for _, seen in cases):
                cases.append(({spec.parent: choice}, distribution))
        return cases

    def _complete(self, pins: Mapping[str, Any]) -> dict[str, Any]:
        """An assignment with ``pins`` and every other active parameter at its first value."""
        values: dict[str, Any] = {}
        for spec in self.params.values():
            distribution = spec.active(values)
            if distribution is not None:
                values[spec.name] = pins[spec.name] if spec.name in pins else extremes(distribution)[0]
        return values


def parse_search_space(
    params: Mapping[str, Any], *, key: str = "hydra.sweeper.params", narrowed: frozenset[str] = frozenset()
) -> SearchSpace:
    """Parse a study's ``params`` mapping; every mistake is a ``ConfigError`` naming the entry to fix.

    ``narrowed`` names choices the command line replaced (``optimizer=choice(sgd,adam)`` on a study
    with more optimizers): conditions on their dropped values are ignored rather than errors.
    """
    require(isinstance(params, Mapping), key, f"must map config keys to search spaces, got {type(params).__name__}")
    unconditional: dict[str, ParamSpec] = {}
    conditions: dict[str, Mapping[Any, Any]] = {}
    fixed: dict[str, str] = {}
    for name, value in params.items():
        require(isinstance(name, str) and name.strip() != "", key, f"keys are config keys (strings), got {name!r}")
        param_key = f"{key}.{name}"
        if isinstance(value, Mapping):
            conditions[name] = value
            continue
        text = value_text(value, key=param_key)
        distribution = parse_distribution(name, text, key=param_key)
        if distribution is None:
            fixed[name] = text
        else:
            unconditional[name] = ParamSpec(name, param_key, distribution=distribution)
    conditional: dict[str, ParamSpec] = {}
    for name, branches in conditions.items():
        pinned, spec = _pin_to_fixed_parent(name, branches, key=f"{key}.{name}", fixed=fixed)
        if not pinned:
            spec = _parse_conditional(
                name,
                branches,
                key=f"{key}.{name}",
                space=unconditional,
                fixed=fixed,
                conditional=conditions,
                narrowed=narrowed,
            )
        if spec is not None:
            conditional[name] = spec
    return SearchSpace(params={**unconditional, **conditional}, fixed=fixed)


def _pin_to_fixed_parent(
    name: str, branches: Mapping[Any, Any], *, key: str, fixed: Mapping[str, str]
) -> tuple[bool, ParamSpec | None]:
    """A conditional parameter whose parent has a fixed value (``optimizer=adam`` on the command
    line of a study that searches optimizers) becomes plain: the branch for that value, else the
    default, else it is not searched. Returns (whether the parent is fixed, the parameter)."""
    conditions = [c for c in branches if c != DEFAULT and isinstance(c, str) and "=" in c]
    parents = {_parse_condition(c, key=f"{key}.{c}")[0] for c in conditions}
    if len(parents) != 1 or (parent := next(iter(parents))) not in fixed:
        return False, None
    value = parse_override(f"{parent}={fixed[parent]}", key=key).value()
    chosen = next((c for c in conditions if value in _parse_condition(c, key=f"{key}.{c}")[1]), DEFAULT)
    if chosen not in branches:
        return True, None
    distribution = parse_distribution(name, value_text(branches[chosen], key=f"{key}.{chosen}"), key=f"{key}.{chosen}")
    require(distribution is not None, f"{key}.{chosen}", f"each branch must be a search space: {SEARCHED}")
    return True, ParamSpec(name, f"{key}.{chosen}", distribution=distribution)


def _parse_conditional(
    name: str,
    branches: Mapping[Any, Any],
    *,
    key: str,
    space: Mapping[str, ParamSpec],
    fixed: Mapping[str, str],
    conditional: Mapping[str, Any],
    narrowed: frozenset[str],
) -> ParamSpec:
    """A parameter whose distribution depends on the value of one unconditional categorical parameter."""
    require(
        any(condition != DEFAULT for condition in branches),
        key,
        f"a mapping of conditions needs at least one '<parent>=<value>[,<value>...]' key besides {DEFAULT!r}, "
        f"got {list(branches)}",
    )
    parent: str | None = None
    by_value: dict[Choice, Distribution] = {}
    default: Distribution | None = None
    first: tuple[str, Distribution] | None = None
    for condition, value in branches.items():
        branch_key = f"{key}.{condition}"
        require(
            not isinstance(value, Mapping),
            branch_key,
            "conditions go one level deep: a branch is a search space such as interval(...), not another mapping",
        )
        if condition != DEFAULT:
            branch_parent, parent_values = _parse_condition(condition, key=branch_key)
            require(
                parent in (None, branch_parent),
                branch_key,
                f"every condition of {name} must test the same parameter, got {parent!r} and {branch_parent!r}",
            )
            parent = branch_parent
            choices = _parent_choices(parent, key=branch_key, space=space, fixed=fixed, conditional=conditional)
            if parent in narrowed:  # the command line narrowed the parent's choices: drop the others
                parent_values = [v for v in parent_values if v in choices]
                if not parent_values:
                    continue
            for parent_value in parent_values:
                require(
                    parent_value in choices,
                    branch_key,
                    f"{parent_value!r} is not a choice of {parent}; its choices are {list(choices)}"
                    + did_you_mean(parent_value, choices),
                )
                require(parent_value not in by_value, branch_key, f"{parent}={parent_value} has two branches")
        distribution = parse_distribution(name, value_text(value, key=branch_key), key=branch_key)
        require(
            distribution is not None,
            branch_key,
            f"{value!r} is a fixed value; each branch must be a search space: {SEARCHED}",
        )
        if first is None:
            first = (condition, distribution)
        else:
            _require_compatible(first, (condition, distribution), key=branch_key)
        if condition == DEFAULT:
            default = distribution
        else:
            by_value.update(dict.fromkeys(parent_values, distribution))
    choices = _parent_choices(parent, key=key, space=space, fixed=fixed, conditional=conditional)
    if default is not None:
        require(
            len(by_value) < len(choices),
            f"{key}.{DEFAULT}",
            f"never applies: the conditions already cover every choice of {parent} ({list(choices)}); remove it",
        )
    return ParamSpec(name, key, parent=parent, branches=by_value, default=default)


def _parse_condition(condition: Any, *, key: str) -> tuple[str, list[Any]]:
    """``optimizer=momentum,nesterov`` -> ("optimizer", ["momentum", "nesterov"]), values typed by Hydra."""
    require(
        isinstance(condition, str) and "=" in condition,
        key,
        f"condition keys are '<parent>=<value>[,<value>...]' or {DEFAULT!r}, got {condition!r}",
    )
    override = parse_override(condition, key=key)
    value = override.value()
    if isinstance(value, ChoiceSweep):
        return condition.split("=", 1)[0].strip(), value.list
    require(
        not override.is_sweep_override(),
        key,
        f"list the parent's values separated by commas ('<parent>=<value>,<value>'), got {condition!r}",
    )
    return condition.split("=", 1)[0].strip(), [value]


def _parent_choices(
    parent: str, *, key: str, space: Mapping[str, ParamSpec], fixed: Mapping[str, str], conditional: Mapping[str, Any]
) -> tuple[Choice, ...]:
    """The choices of a condition's parent, which must be an unconditional ``choice(...)`` of the same space."""
    require(
        parent not in conditional,
        key,
        f"{parent} is itself conditional; conditions may only test unconditional parameters (one level deep)",
    )
    require(parent not in fixed, key, f"{parent} is a fixed override ({fixed.get(parent)}), not a searched choice")
    require(
        parent in space,
        key,
        f"unknown parameter {parent!r}; a condition tests a choice(...) parameter of this space: {list(space)}"
        + did_you_mean(parent, space),
    )
    distribution = space[parent].distribution
    require(
        isinstance(distribution, CategoricalDistribution),
        key,
        f"{parent} is {distribution}; a condition can only test a categorical choice(...) parameter",
    )
    return distribution.choices


def _require_compatible(first: tuple[str, Distribution], other: tuple[str, Distribution], *, key: str) -> None:
    """Optuna keeps one distribution per parameter name across a study and refuses a mismatched one."""
    try:
        check_distribution_compatibility(first[1], other[1])
    except ValueError as error:
        raise ConfigError(
            key,
            f"{other[1]} does not fit the branch {first[0]!r} ({first[1]}): {error} "
            "Optuna records one distribution per parameter name, so all branches must be the same kind "
            "(float, int or categorical) with the same log flag, and categorical branches the same choices",
        ) from None
