"""Fuzzing the search-space parser (``hydra.sweeper.params``) with Hypothesis.

Whatever a study file or a command line holds, ``parse_search_space`` returns a space that
Optuna and Hydra accept, or raises our ``ConfigError`` naming an entry under
``hydra.sweeper.params``: never another exception, which the sweeper would show as a traceback.
Inputs are arbitrary text and YAML values, near-valid override strings (the grammar's own
functions with odd arguments, then one character inserted or deleted) and study mappings with
conditions. ``derandomize`` makes every run draw the same examples, so CI is repeatable.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import optuna
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from vae_sweep.errors import ConfigError
from vae_sweep.sweep.distributions import parse_distribution
from vae_sweep.sweep.space import SearchSpace, parse_search_space

KEY = "hydra.sweeper.params"
FUZZ = settings(
    max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow], database=None
)
PARSER = OverridesParser.create()


@pytest.fixture(autouse=True, scope="module")
def quiet_optuna() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)


# --- inputs ---------------------------------------------------------------------------------------

NUMBERS = st.one_of(
    st.integers(-(10**6), 10**6),
    st.floats(width=64),  # nan and inf included
    st.sampled_from([0, 1, -1, 2, 0.0, -0.0, 1e-4, 0.1, 1.0, 1e308, 5e-324, 1e-300, 1e40, 10**10, 10**22]),
)
WORDS = st.one_of(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=6),
    st.sampled_from(["true", "false", "null", "none", "adam", "sgd", "log", "inf", "nan", "'a b'", "''", '"x,y"']),
)
ATOMS = st.one_of(NUMBERS.map(str), WORDS, st.lists(NUMBERS.map(str), max_size=3).map(lambda xs: f"[{', '.join(xs)}]"))
FUNCTIONS = ["choice", "range", "interval", "int", "float", "tag", "shuffle", "sort", "glob", "str", "extend_list"]
CALLS = st.recursive(
    ATOMS,
    lambda inner: st.builds(
        lambda function, args: f"{function}({', '.join(args)})", st.sampled_from(FUNCTIONS), st.lists(inner, max_size=3)
    ),
    max_leaves=8,
)
TAGGED = st.builds(lambda tag, inner: f"tag({tag}, {inner})", st.sampled_from(["log", "lg", "log, grid"]), CALLS)
NEAR_VALID = st.one_of(CALLS, TAGGED, ATOMS, st.lists(ATOMS, min_size=2, max_size=4).map(",".join))


@st.composite
def intervals(draw: st.DrawFn, kinds: tuple[str, ...] = ("float", "log", "int", "log int")) -> str:
    """``interval(low, high)``, ``tag(log, ...)`` of it or ``int(...)`` of it, with low < high."""
    kind = draw(st.sampled_from(kinds))
    if "int" in kind:
        low = draw(st.integers(1 if "log" in kind else -100, 100))
        text = f"int(interval({low}, {low + draw(st.integers(1, 100))}))"
    else:
        low = draw(st.floats(1e-6 if kind == "log" else -1e3, 1e3))
        high = low + draw(st.floats(1e-3, 1e3))
        text = f"interval({low!r}, {high!r})"
    return f"tag(log, {text})" if "log" in kind else text


@st.composite
def ranges(draw: st.DrawFn) -> str:
    start = draw(st.integers(-20, 20))
    return f"range({start}, {start + draw(st.integers(1, 20))}, {draw(st.integers(1, 5))})"


LETTERS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=2, max_size=6).filter(
    lambda word: word not in ("true", "false", "null", "inf", "nan")  # Hydra reads these as other types
)
CHOICES = st.lists(st.one_of(LETTERS, st.integers(-100, 100)), min_size=1, max_size=4, unique=True).map(
    lambda choices: f"choice({', '.join(map(str, choices))})"
)
NUMERIC_SPECS = st.one_of(intervals(), ranges())
VALID_SPECS = st.one_of(NUMERIC_SPECS, CHOICES, LETTERS, NUMBERS.map(str))


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """A near-valid string with one character inserted or deleted."""
    text = draw(st.one_of(VALID_SPECS, NEAR_VALID))
    at = draw(st.integers(0, len(text)))
    if text and draw(st.booleans()):
        return text[:at] + text[at + 1 :]
    return text[:at] + draw(st.sampled_from(list("(),[]{}'\"=:$\\ \n"))) + text[at:]


TEXTS = st.one_of(VALID_SPECS, VALID_SPECS, NEAR_VALID, mutated(), st.text(max_size=30))
NAMES = st.one_of(
    st.sampled_from(["optimizer", "optimizer.lr", "model.activation", "beta", "n"]),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz._", min_size=1, max_size=12),
    st.sampled_from(["", " ", "a=b", "x y"]),
)
YAML_KEYS = st.one_of(NAMES, NAMES, st.integers(), st.booleans(), st.none())  # a YAML key need not be a string
SCALARS = st.one_of(TEXTS, NUMBERS, st.booleans(), st.none())
# Most conditions test the optimizer, which BASES below searches (or fixes) as the shipped studies do.
OPTIMIZERS = ["sgd", "adam", "momentum"]
CONDITION_KEYS = st.one_of(
    st.lists(st.sampled_from([*OPTIMIZERS, "rmsprop"]), min_size=1, max_size=3, unique=True).map(
        lambda values: f"optimizer={','.join(values)}"
    ),
    st.just("default"),
    st.builds(lambda parent, values: f"{parent}={','.join(values)}", NAMES, st.lists(ATOMS, min_size=1, max_size=3)),
    st.builds(lambda parent, value: f"{parent}={value}", NAMES, CALLS),
    st.text(max_size=10),
    st.integers(),
)
BRANCHES = st.one_of(
    NUMERIC_SPECS,
    NUMERIC_SPECS,
    CHOICES,
    SCALARS,
    st.lists(SCALARS, max_size=2),
    st.dictionaries(NAMES, SCALARS, max_size=2),
)
CONDITIONS = st.dictionaries(CONDITION_KEYS, BRANCHES, min_size=1, max_size=4)
ENTRIES = st.one_of(VALID_SPECS, SCALARS, CONDITIONS, CONDITIONS, st.lists(SCALARS, max_size=3))


@st.composite
def conditions(draw: st.DrawFn) -> dict[str, str]:
    """A conditional entry as the shipped studies write one: branches of one kind on optimizer values."""
    kinds = draw(st.sampled_from([("float",), ("log",), ("int",), ("log int",)]))
    keys = draw(
        st.lists(
            st.lists(st.sampled_from(OPTIMIZERS), min_size=1, max_size=2, unique=True).map(",".join),
            min_size=1,
            max_size=3,
            unique=True,
        )
    )
    branches = {f"optimizer={key}": draw(intervals(kinds)) for key in keys}
    if draw(st.booleans()):
        branches["default"] = draw(intervals(kinds))
    return branches


BASES = st.sampled_from(
    [{"optimizer": f"choice({', '.join(OPTIMIZERS)})"}, {"optimizer": "choice(sgd, adam)"}, {"optimizer": "adam"}, {}]
)
STUDIES = st.builds(lambda base, extra: {**base, **extra}, BASES, st.dictionaries(YAML_KEYS, ENTRIES, max_size=4))
KEYS = st.sampled_from(["optimizer.lr", "optimizer.momentum", "model.latent_dim", "beta", "n", "act"])
LIKELY_STUDIES = st.builds(  # valid more often than not, so the checks on a parsed space run too
    lambda base, extra: {**base, **extra},
    BASES,
    st.dictionaries(KEYS, st.one_of(VALID_SPECS, conditions(), conditions()), max_size=4),
)
CONDITIONAL_STUDIES = st.builds(
    lambda base, plain, conditional: {**base, **plain, **conditional},
    st.sampled_from([{"optimizer": f"choice({', '.join(OPTIMIZERS)})"}, {"optimizer": "choice(sgd, adam)"}]),
    st.dictionaries(KEYS, VALID_SPECS, max_size=2),
    st.dictionaries(KEYS, conditions(), min_size=1, max_size=2),
)
NOT_MAPPINGS = st.one_of(st.lists(TEXTS, max_size=2), TEXTS, NUMBERS, st.booleans(), st.none())


# --- what "a valid space" means -------------------------------------------------------------------


def assert_names_an_entry(error: ConfigError) -> None:
    assert error.key == KEY or error.key.startswith(f"{KEY}."), error.key
    assert error.message.strip(), "an error must say what is wrong"
    assert "\n" not in error.message, "one line"


def distributions(space: SearchSpace) -> list[Any]:
    found = []
    for spec in space.params.values():
        found += [spec.distribution] if spec.distribution is not None else [*spec.branches.values(), spec.default]
    return [d for d in found if d is not None]


def assert_valid(space: SearchSpace) -> None:
    """Every distribution is one Optuna samples from; the sweeper's corner check, the trial
    overrides (read back by Hydra's parser) and real sampling all work on it."""
    for distribution in distributions(space):
        assert isinstance(distribution, CategoricalDistribution | IntDistribution | FloatDistribution)
        if not isinstance(distribution, CategoricalDistribution):
            assert math.isfinite(distribution.low) and math.isfinite(distribution.high)
            assert distribution.low <= distribution.high
            assert not distribution.log or distribution.low > 0
        else:
            assert distribution.choices
    for name, text in space.fixed.items():
        assert not PARSER.parse_overrides([f"{name}={text}"])[0].is_sweep_override()
    for corner in space.corners():
        assert space.sample(optuna.trial.FixedTrial(corner)) == corner  # corners respect the conditions
        overrides = space.overrides(corner)[len(space.fixed) :]
        parsed = dict((o.key_or_group, o.value()) for o in PARSER.parse_overrides(overrides))
        assert parsed == corner
        assert {k: type(v) for k, v in parsed.items()} == {k: type(v) for k, v in corner.items()}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(2):
        trial = study.ask()
        space.sample(trial)
        study.tell(trial, 0.0)
    try:
        grid = space.grid()
    except ConfigError as error:
        assert_names_an_entry(error)
    else:
        assert set(grid) == set(space.params) and all(grid.values())


# --- properties -----------------------------------------------------------------------------------


@FUZZ
@given(params=st.one_of(CONDITIONAL_STUDIES, LIKELY_STUDIES, STUDIES), narrowed=st.frozensets(NAMES, max_size=2))
def test_any_params_give_a_valid_space_or_a_config_error_naming_the_entry(params: Any, narrowed: frozenset[str]):
    try:
        space = parse_search_space(params, narrowed=narrowed)
    except ConfigError as error:
        assert_names_an_entry(error)
        event("refused")
        return
    event("conditional space" if space.is_conditional else "space" if space.params else "fixed values only")
    assert_valid(space)


@FUZZ
@given(params=NOT_MAPPINGS)
def test_params_that_are_not_a_mapping_are_refused_as_a_whole(params: Any):
    with pytest.raises(ConfigError) as caught:
        parse_search_space(params)
    assert caught.value.key == KEY
    assert "must map config keys to search spaces" in caught.value.message


@FUZZ
@given(text=TEXTS)
@example(text="0,nan")  # found by this test: nan was a choice, though it equals no value Optuna records
@example(text="int(shuffle())")  # and an empty choice reached Optuna
@example(text="range(true, 5)")  # and a boolean bound broke the decimal step count
def test_any_override_text_is_fixed_searched_or_a_config_error_naming_the_entry(text: str):
    try:
        distribution = parse_distribution("x", text, key=f"{KEY}.x")
    except ConfigError as error:
        assert error.key == f"{KEY}.x"
        event("refused")
        return
    event(type(distribution).__name__)
    if distribution is None:  # a fixed value: Hydra must read it as one
        assert not PARSER.parse_overrides([f"x={text}"])[0].is_sweep_override()
    else:
        assert_valid(parse_search_space({"x": text}))


EXTREMES = st.one_of(
    st.integers(-(10**30), 10**30),
    st.floats(width=64),
    st.sampled_from([0, 1, 10**10, 10**22, 1e40, 1e-300, 5e-324, 1e308, -1e308]),
)
NUMERIC_FORMS = ["range({})", "interval({})", "int(interval({}))", "tag(log, range({}))", "tag(log, interval({}))"]


@FUZZ
@given(form=st.sampled_from(NUMERIC_FORMS), bounds=st.lists(EXTREMES, min_size=1, max_size=3))
@example(form="range({})", bounds=[0, 10**10, 1])  # found by this test: the grid listed 10**10 values
@example(form="tag(log, range({}))", bounds=[1, 10**22])  # and overflowed listing these
@example(form="int(interval({}))", bounds=[1e300, 1e301])  # TPE cannot sample integers this large
@example(form="range({})", bounds=[0.1, 0.3, 1e-300])  # Optuna's decimal step arithmetic failed
@example(form="interval({})", bounds=[-1e308, 1e308])  # high - low overflows: Optuna cannot sample it
@example(form="range({})", bounds=[-1e308, 1e308, 1e308])  # nor this, once padded by half a step each side
@example(form="range({})", bounds=[0, math.inf, math.inf])  # the step count was an invalid decimal operation
def test_extreme_bounds_and_steps_give_a_valid_space_or_a_config_error(form: str, bounds: list[float]):
    """Huge, tiny and non-finite numbers: Optuna's step arithmetic, the grid and sampling must all cope."""
    text = form.format(", ".join(map(repr, bounds)))
    try:
        space = parse_search_space({"x": text})
    except ConfigError as error:
        assert error.key == f"{KEY}.x"
        return
    assert_valid(space)


FINITE = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@FUZZ
@given(low=FINITE, high=FINITE, log=st.booleans())
def test_a_well_formed_interval_is_exactly_that_distribution_or_names_its_bound(low: float, high: float, log: bool):
    text = f"interval({low!r}, {high!r})"
    text = f"tag(log, {text})" if log else text
    try:
        distribution = parse_distribution("x", text, key="k")
    except ConfigError as error:
        assert error.key == "k"
        assert low >= high or (log and low <= 0)
        assert ("low >= high" if low >= high else "needs low > 0") in error.message
        return
    assert distribution == FloatDistribution(low, high, log=log)


@FUZZ
@given(start=st.integers(-50, 50), stop=st.integers(-50, 50), step=st.integers(1, 7))
def test_a_well_formed_integer_range_includes_its_stop_as_the_official_plugin_reads_it(
    start: int, stop: int, step: int
):
    try:
        distribution = parse_distribution("x", f"range({start}, {stop}, {step})", key="k")
    except ConfigError as error:
        assert start > stop and "is empty" in error.message
        return
    values = list(range(start, stop + 1, step))
    assert distribution == IntDistribution(values[0], values[-1], step=step)
    assert list(range(distribution.low, distribution.high + 1, distribution.step)) == values


@FUZZ
@given(
    start=st.decimals("-5", "5", places=2),
    width=st.decimals("0.01", "5", places=2),
    step=st.decimals("0.01", "2", places=2),
)
def test_a_float_range_ends_at_the_last_decimal_step_not_above_its_stop(start: Decimal, width: Decimal, step: Decimal):
    stop = start + width
    distribution = parse_distribution("x", f"range({start}, {stop}, {step})", key="k")
    last = start + (width / step).to_integral_value(rounding="ROUND_FLOOR") * step
    assert distribution == FloatDistribution(float(start), float(last), step=float(step))
    assert last <= stop < last + step


@FUZZ
@given(choices=st.lists(st.one_of(LETTERS, st.integers(-100, 100)), min_size=1, max_size=6))
def test_choices_keep_their_order_and_types_and_a_repeat_is_refused(choices: list[Any]):
    try:
        distribution = parse_distribution("x", f"choice({', '.join(map(str, choices))})", key="k")
    except ConfigError as error:
        assert "appears twice" in error.message
        assert len(set(choices)) < len(choices)
        return
    assert list(distribution.choices) == choices
    assert [type(c) for c in distribution.choices] == [type(c) for c in choices]
