"""Hydra's override grammar to Optuna distributions, one parameter at a time: ``choice(...)``,
``range(...)``, ``interval(...)``, ``int(...)`` and ``tag(log, ...)`` parsed by Hydra's own parser
into the distribution Optuna samples, checked so that what Optuna samples is exactly what was
written (integers beyond 2**53, steps that do not divide a range), and back: a distribution's
values, its extremes (what a space is validated at) and a trial's suggestion.
"""

from __future__ import annotations

import math
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.errors import OverrideParseException
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import BaseTrial

from vae_sweep.errors import ConfigError, require
from vae_sweep.overrides import format_value

Choice = str | int | float | bool
Distribution = CategoricalDistribution | IntDistribution | FloatDistribution

SEARCHED = (
    "choice(a, b, ...), range(start, stop[, step]), interval(low, high), int(interval(low, high)) "
    "or tag(log, <range or interval>)"
)
ALLOWED = f"{SEARCHED}, or a plain value for a fixed override"

_PARSER = OverridesParser.create()
# Optuna samples integers through floats, which stop telling integers apart beyond 2**53; the
# same bound keeps a stepped float range's step count exact.
EXACT_LIMIT = 2**53
MAX_GRID_VALUES = 100_000  # values of one parameter the grid sampler may list


def parse_distribution(name: str, text: str, *, key: str) -> Distribution | None:
    """The Optuna distribution for ``name=text`` in Hydra's override grammar; None for a fixed value."""
    override = parse_override(f"{name}={text}", key=key)
    if not override.is_sweep_override():
        return None
    sweep = override.value()
    if not isinstance(sweep, ChoiceSweep | RangeSweep | IntervalSweep):
        raise ConfigError(key, f"{text!r} ({type(sweep).__name__}) cannot be searched by Optuna; use {ALLOWED}")
    unknown = sorted(sweep.tags - {"log"})
    require(not unknown, key, f"unknown tag {unknown} in {text!r}; the only tag understood is log: tag(log, ...)")
    log = "log" in sweep.tags
    if isinstance(sweep, IntervalSweep):
        return _interval(sweep.start, sweep.end, log=log, text=text, key=key)
    if isinstance(sweep, RangeSweep) and sweep.shuffle:  # the official plugin's reading: its values, as choices
        require(not log, key, f"tag(log, ...) in {text!r} applies to range(...) or interval(...), not to shuffle(...)")
        return _categorical([*override.sweep_iterator()], text=text, key=key)
    if isinstance(sweep, RangeSweep):
        return _range(sweep.start, sweep.stop, sweep.step, log=log, text=text, key=key)
    require(not log, key, f"tag(log, ...) in {text!r} applies to range(...) or interval(...), not to choice(...)")
    return _categorical(sweep.list, text=text, key=key)


def _categorical(choices: list[Any], *, text: str, key: str) -> CategoricalDistribution:
    require(len(choices) > 0, key, f"{text!r} is an empty choice; list at least one value")
    for index, choice in enumerate(choices):
        require(
            isinstance(choice, Choice),
            key,
            f"choice values must be strings, numbers or booleans (what Optuna stores), got {choice!r} in {text!r}",
        )
        require(
            not (isinstance(choice, float) and math.isnan(choice)),
            key,
            f"nan in {text!r} is not a value to search (it equals nothing, not even itself); remove it",
        )
        require(
            choice not in choices[:index],
            key,
            f"{choice!r} appears twice in {text!r} (true, 1 and 1.0 count as equal); list each choice once",
        )
    return CategoricalDistribution(choices)


def _range(start: float, stop: float, step: float, *, log: bool, text: str, key: str) -> Distribution:
    """``stop`` included, as the official Optuna sweeper reads a range (unlike Hydra's basic
    sweeper and Python): high is the last value of ``start + k * step`` not above ``stop``."""
    bounds = (start, stop, step)
    require(not any(isinstance(v, bool) for v in bounds), key, f"{text!r} takes numbers, not true or false")
    require(all(map(math.isfinite, bounds)), key, f"{text!r} needs finite numbers")
    require(step > 0, key, f"{text!r} needs a positive step (Optuna's distributions are ascending)")
    require(start <= stop, key, f"{text!r} is empty: start must not be above stop")
    count = ((_decimal(stop) - _decimal(start)) / _decimal(step)).to_integral_value(rounding=ROUND_FLOOR) + 1
    last = _decimal(start) + (count - 1) * _decimal(step)
    if log:
        require(start > 0, key, f"tag(log, ...) needs a positive start, got {text!r}")
    if all(isinstance(bound, int) for bound in (start, stop, step)):
        require(not log or step == 1, key, f"tag(log, range(...)) needs step 1 in Optuna, got {text!r}")
        _require_exact_integers(start, int(last), text=text, key=key)
        return IntDistribution(start, int(last), step=step, log=log)
    require(not log, key, f"Optuna cannot combine log with a float step in {text!r}; use tag(log, interval(...))")
    require(
        count <= EXACT_LIMIT and math.isfinite(float(last) - float(start) + float(step)),  # Optuna pads by a step
        key,
        f"{text!r} has {count:.3g} steps, more than floats can count exactly; use interval(...) or a larger step",
    )
    return FloatDistribution(float(start), float(last), step=float(step))


def _interval(low: float, high: float, *, log: bool, text: str, key: str) -> Distribution:
    """Integer bounds come only from ``int(...)``: Hydra makes a plain interval's bounds floats."""
    require(math.isfinite(low) and math.isfinite(high), key, f"{text!r} needs finite bounds")
    require(low < high, key, f"{text!r} has low >= high; write interval(low, high) with low < high")
    require(not log or low > 0, key, f"tag(log, ...) needs low > 0, got {text!r}")
    if isinstance(low, int) and isinstance(high, int):
        _require_exact_integers(low, high, text=text, key=key)
        return IntDistribution(low, high, log=log)
    require(math.isfinite(high - low), key, f"{text!r} is wider than the largest float; narrow it")
    return FloatDistribution(low, high, log=log)


def _require_exact_integers(low: int, high: int, *, text: str, key: str) -> None:
    require(
        low >= -EXACT_LIMIT and high <= EXACT_LIMIT,
        key,
        f"{text!r} reaches beyond +-2**53 ({EXACT_LIMIT}), where Optuna's sampling, which goes through floats, "
        "cannot tell integers apart; narrow it",
    )


def value_text(value: Any, *, key: str) -> str:
    """A YAML scalar as override text: strings as written, numbers and booleans as Hydra writes them."""
    if isinstance(value, str):
        return value
    require(
        isinstance(value, bool | int | float),
        key,
        f"must be an override string ({ALLOWED}) or a mapping of conditions, got {type(value).__name__} {value!r}",
    )
    return format_value(value, interpolate=True)


def parse_override(line: str, *, key: str) -> Override:
    try:
        return _PARSER.parse_overrides([line])[0]  # wraps every grammar error in one exception
    except OverrideParseException as error:
        reason = "; ".join(part.strip() for part in str(error).splitlines() if part.strip())  # one line
        raise ConfigError(key, f"{line!r} is not valid Hydra override grammar ({ALLOWED}): {reason}") from None


def suggest(trial: BaseTrial, name: str, distribution: Distribution) -> Any:
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(
            name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
        )
    return trial.suggest_float(name, distribution.low, distribution.high, step=distribution.step, log=distribution.log)


def value_count(distribution: BaseDistribution) -> int | None:
    """How many values a finite distribution has; None for a continuous one."""
    if isinstance(distribution, CategoricalDistribution):
        return len(distribution.choices)
    if isinstance(distribution, IntDistribution):
        return (distribution.high - distribution.low) // distribution.step + 1
    if distribution.step is None:
        return None
    return int((_decimal(distribution.high) - _decimal(distribution.low)) / _decimal(distribution.step)) + 1


def all_values(distribution: BaseDistribution) -> list[Any] | None:
    """Every value of a finite distribution; None for a continuous one."""
    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    if isinstance(distribution, IntDistribution):
        return list(range(distribution.low, distribution.high + 1, distribution.step))
    if distribution.step is None:
        return None
    low, step = _decimal(distribution.low), _decimal(distribution.step)
    return [float(low + index * step) for index in range(value_count(distribution))]  # 0.3, not 0.30000000000000004


def extremes(distribution: Distribution) -> list[Any]:
    """Every choice of a categorical; the low and high bounds of a numeric distribution."""
    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    return [distribution.low, distribution.high]


def _decimal(number: float) -> Decimal:
    """The decimal a user wrote (``0.1``, not its binary approximation), as Optuna's own step checks do."""
    return Decimal(str(number))
