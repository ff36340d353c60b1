"""The search-space parser against Hydra's own override parser and small in-memory Optuna studies."""

from __future__ import annotations

import itertools
import math
import pickle
import warnings
from typing import Any

import optuna
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from vae_sweep.errors import ConfigError
from vae_sweep.sweep.distributions import parse_distribution
from vae_sweep.sweep.space import SearchSpace, parse_search_space

KEY = "hydra.sweeper.params"
OPTIMIZERS = "choice(sgd, momentum, nesterov, adam, adadelta)"

# The conditional example of docs/studies.md: momentum only where it means something, a per-optimizer lr.
CONDITIONAL: dict[str, Any] = {
    "optimizer": OPTIMIZERS,
    "trainer.epochs": 5,
    "optimizer.momentum": {"optimizer=momentum,nesterov": "interval(0.5, 0.99)"},
    "optimizer.lr": {
        "optimizer=adadelta": "tag(log, interval(0.1, 2.0))",
        "optimizer=sgd,momentum,nesterov": "tag(log, interval(1e-3, 0.3))",
        "default": "tag(log, interval(1e-4, 1e-2))",
    },
    "model.latent_dim": "choice(2, 8, 16)",
}


@pytest.fixture(autouse=True)
def quiet_optuna() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def parse_override(text: str) -> tuple[str, Any]:
    (override,) = OverridesParser.create().parse_overrides([text])
    assert not override.is_sweep_override(), text
    return override.key_or_group, override.value()


def within(value: Any, distribution: Any) -> bool:
    if isinstance(distribution, CategoricalDistribution):
        return value in distribution.choices
    return distribution.low <= value <= distribution.high


# --- one entry in Hydra's override grammar ----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("choice(sgd, adam)", CategoricalDistribution(["sgd", "adam"])),
        ("sgd,adam", CategoricalDistribution(["sgd", "adam"])),  # Hydra's short form of choice
        ("choice(0.1, 0.2)", CategoricalDistribution([0.1, 0.2])),
        ("choice(2, 8, 16)", CategoricalDistribution([2, 8, 16])),
        ("choice(true, false)", CategoricalDistribution([True, False])),
        ("choice(none, batchnorm)", CategoricalDistribution(["none", "batchnorm"])),
        ("choice('a b', '5')", CategoricalDistribution(["a b", "5"])),
        ("range(1, 5)", IntDistribution(1, 5)),  # the stop is included, as the official plugin reads it
        ("range(4)", IntDistribution(0, 4)),
        ("range(0, 10, 2)", IntDistribution(0, 10, step=2)),
        ("range(0, 10, 3)", IntDistribution(0, 9, step=3)),
        ("range(0.0, 1.0, 0.25)", FloatDistribution(0.0, 1.0, step=0.25)),
        ("range(0, 1, 0.1)", FloatDistribution(0.0, 1.0, step=0.1)),
        ("tag(log, range(1, 9))", IntDistribution(1, 9, log=True)),
        ("interval(0.0, 0.5)", FloatDistribution(0.0, 0.5)),
        ("interval(0, 1)", FloatDistribution(0.0, 1.0)),  # Hydra makes a plain interval's bounds floats
        ("tag(log, interval(1e-4, 1e-1))", FloatDistribution(1e-4, 1e-1, log=True)),
        ("int(interval(8, 64))", IntDistribution(8, 64)),
        ("tag(log, int(interval(8, 256)))", IntDistribution(8, 256, log=True)),
        ("5", None),
        ("relu", None),
        ("0.1", None),
        ("[64, 32]", None),
    ],
)
def test_override_text_gives_the_distribution(text: str, expected: Any) -> None:
    distribution = parse_distribution("x", text, key="x")
    assert distribution == expected
    if expected is not None:  # == ignores the values' types; Hydra's typing must survive (2 not 2.0, True not 1)
        assert [type(v) for v in vars(distribution).values()] == [type(v) for v in vars(expected).values()]
        if isinstance(expected, CategoricalDistribution):
            assert [type(c) for c in distribution.choices] == [type(c) for c in expected.choices]


def test_plain_values_become_fixed_overrides_as_written() -> None:
    space = parse_search_space({"trainer.epochs": 5, "model.activation": "relu", "lr": 1e-05, "bn": True})
    assert space.params == {}
    assert space.fixed == {"trainer.epochs": "5", "model.activation": "relu", "lr": "1e-05", "bn": "true"}
    assert space.overrides({}) == ["trainer.epochs=5", "model.activation=relu", "lr=1e-05", "bn=true"]


# --- every mistake names the entry to fix ------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "key", "fragment"),
    [
        ({"optimizer.lr": "interval(0.1"}, f"{KEY}.optimizer.lr", "not valid Hydra override grammar"),
        ({"optimizer.lr": "interval(0.1"}, f"{KEY}.optimizer.lr", "no viable alternative"),  # Hydra's words
        ({"optimizer.lr": "interval(1, 0)"}, f"{KEY}.optimizer.lr", "low >= high"),
        ({"optimizer.lr": "interval(0, inf)"}, f"{KEY}.optimizer.lr", "finite bounds"),
        ({"optimizer.lr": "tag(log, interval(0, 1))"}, f"{KEY}.optimizer.lr", "needs low > 0"),
        ({"optimizer.lr": "tag(lg, interval(0.1, 1))"}, f"{KEY}.optimizer.lr", "unknown tag ['lg']"),
        ({"optimizer": "choice()"}, f"{KEY}.optimizer", "empty choice"),
        ({"optimizer": "choice(sgd, sgd)"}, f"{KEY}.optimizer", "appears twice"),
        ({"optimizer": "choice([1, 2], [3])"}, f"{KEY}.optimizer", "strings, numbers or booleans"),
        ({"optimizer": "tag(log, choice(1, 10))"}, f"{KEY}.optimizer", "not to choice"),
        ({"optimizer": "glob(*)"}, f"{KEY}.optimizer", "cannot be searched by Optuna"),
        ({"layers": "range(5, 1)"}, f"{KEY}.layers", "is empty"),
        ({"layers": "range(5, 1, -1)"}, f"{KEY}.layers", "positive step"),
        ({"layers": "tag(log, range(1, 9, 2))"}, f"{KEY}.layers", "needs step 1"),
        ({"layers": "tag(log, range(0, 9))"}, f"{KEY}.layers", "positive start"),
        ({"beta": "tag(log, range(0.1, 1.0, 0.1))"}, f"{KEY}.beta", "float step"),
        ({"layers": [64, 32]}, f"{KEY}.layers", "must be an override string"),
        ({"layers": None}, f"{KEY}.layers", "got NoneType"),
        ({1: "choice(a, b)"}, KEY, "config keys"),
        (["optimizer=choice(sgd, adam)"], KEY, "must map config keys"),
        # conditions
        ({"optimizer.momentum": {}}, f"{KEY}.optimizer.momentum", "at least one '<parent>=<value>"),
        (
            {"optimizer": OPTIMIZERS, "optimizer.lr": {"default": "interval(0.1, 1)"}},
            f"{KEY}.optimizer.lr",
            "at least one '<parent>=<value>",
        ),
        (
            {"optimizer": OPTIMIZERS, "optimizer.lr": {"optimizer": "interval(0.1, 1)"}},
            f"{KEY}.optimizer.lr.optimizer",
            "condition keys are '<parent>=<value>",
        ),
        (
            {"optimizer": OPTIMIZERS, "optimizer.lr": {"optimiser=sgd": "interval(0.1, 1)"}},
            f"{KEY}.optimizer.lr.optimiser=sgd",
            "unknown parameter 'optimiser'",
        ),
        (
            {"optimizer.lr": "interval(0.1, 1)", "beta": {"optimizer.lr=0.1": "interval(0.1, 1)"}},
            f"{KEY}.beta.optimizer.lr=0.1",
            "only test a categorical choice(...)",
        ),
        (
            {"optimizer": OPTIMIZERS, "optimizer.lr": {"optimizer=rmsprop": "interval(0.1, 1)"}},
            f"{KEY}.optimizer.lr.optimizer=rmsprop",
            "'rmsprop' is not a choice of optimizer",
        ),
        (
            {"optimizer": OPTIMIZERS, "optimizer.lr": {"optimizer=range(0, 2)": "interval(0.1, 1)"}},
            f"{KEY}.optimizer.lr.optimizer=range(0, 2)",
            "separated by commas",
        ),
        (
            {"optimizer": OPTIMIZERS, "optimizer.lr": {"optimizer=sgd": {"model=mlp": "interval(0.1, 1)"}}},
            f"{KEY}.optimizer.lr.optimizer=sgd",
            "one level deep",
        ),
        (
            {
                "optimizer": OPTIMIZERS,
                "optimizer.momentum": {"optimizer=momentum": "choice(0.5, 0.9)"},
                "optimizer.dampening": {"optimizer.momentum=0.9": "interval(0.0, 0.5)"},
            },
            f"{KEY}.optimizer.dampening.optimizer.momentum=0.9",
            "itself conditional; conditions may only test unconditional parameters",
        ),
        (
            {"optimizer": OPTIMIZERS, "bn": "choice(true, false)", "beta": {"optimizer=sgd": "0.5"}},
            f"{KEY}.beta.optimizer=sgd",
            "is a fixed value",
        ),
        (
            {
                "optimizer": OPTIMIZERS,
                "bn": "choice(true, false)",
                "beta": {"optimizer=sgd": "interval(0.1, 1)", "bn=true": "interval(0.1, 1)"},
            },
            f"{KEY}.beta.bn=true",
            "must test the same parameter",
        ),
        (
            {
                "optimizer": OPTIMIZERS,
                "beta": {"optimizer=sgd,adam": "interval(0.1, 1)", "optimizer=adam": "interval(0.2, 1)"},
            },
            f"{KEY}.beta.optimizer=adam",
            "optimizer=adam has two branches",
        ),
        (
            {
                "optimizer": "choice(sgd, adam)",
                "beta": {"optimizer=sgd": "interval(0.1, 1)", "optimizer=adam": "interval(0.2, 1)", "default": "0.5"},
            },
            f"{KEY}.beta.default",
            "is a fixed value",
        ),
        (
            {
                "optimizer": "choice(sgd, adam)",
                "beta": {
                    "optimizer=sgd": "interval(0.1, 1)",
                    "optimizer=adam": "interval(0.2, 1)",
                    "default": "interval(0.3, 1)",
                },
            },
            f"{KEY}.beta.default",
            "never applies",
        ),
        # branches of one name must be compatible, or Optuna refuses the second trial
        (
            {"optimizer": OPTIMIZERS, "beta": {"optimizer=sgd": "interval(0.1, 1)", "default": "range(1, 4)"}},
            f"{KEY}.beta.default",
            "different distribution kind",
        ),
        (
            {
                "optimizer": OPTIMIZERS,
                "optimizer.lr": {
                    "optimizer=adadelta": "interval(0.1, 2.0)",
                    "optimizer=sgd,momentum,nesterov": "tag(log, interval(1e-3, 0.3))",
                },
            },
            f"{KEY}.optimizer.lr.optimizer=sgd,momentum,nesterov",
            "the same log flag",
        ),
        (
            {"optimizer": OPTIMIZERS, "act": {"optimizer=sgd": "choice(relu, tanh)", "default": "choice(relu, elu)"}},
            f"{KEY}.act.default",
            "categorical branches the same choices",
        ),
    ],
)
def test_bad_search_spaces_raise_config_error_naming_the_entry(params: Any, key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_search_space(params)
    assert caught.value.key == key
    assert fragment in caught.value.message


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (FloatDistribution(0.1, 2.0), FloatDistribution(1e-3, 0.3, log=True)),
        (FloatDistribution(0.1, 1.0), IntDistribution(1, 3)),
        (CategoricalDistribution(["relu", "tanh"]), CategoricalDistribution(["relu", "elu"])),
    ],
)
def test_optuna_itself_refuses_the_branches_we_refuse(first: Any, second: Any) -> None:
    study = optuna.create_study()
    study.ask({"x": first})
    with pytest.raises(ValueError):
        study.ask({"x": second})


# --- conditional parameters -------------------------------------------------------------------


def test_conditional_parameters_come_after_the_unconditional_ones_in_file_order() -> None:
    space = parse_search_space(CONDITIONAL)
    assert list(space.params) == ["optimizer", "model.latent_dim", "optimizer.momentum", "optimizer.lr"]
    assert space.fixed == {"trainer.epochs": "5"}
    assert space.is_conditional
    assert not parse_search_space({"optimizer": OPTIMIZERS}).is_conditional


def test_sampling_follows_the_conditions_in_a_real_study() -> None:
    space = parse_search_space(CONDITIONAL)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(50):
        trial = study.ask()
        values = space.sample(trial)
        study.tell(trial, 0.0)
        assert trial.params == values
        optimizer = values["optimizer"]
        seen.add(optimizer)
        assert values["model.latent_dim"] in (2, 8, 16)
        assert ("optimizer.momentum" in values) == (optimizer in ("momentum", "nesterov"))
        if "optimizer.momentum" in values:
            assert 0.5 <= values["optimizer.momentum"] <= 0.99
        low, high = {"adadelta": (0.1, 2.0), "sgd": (1e-3, 0.3), "momentum": (1e-3, 0.3), "nesterov": (1e-3, 0.3)}.get(
            optimizer,
            (1e-4, 1e-2),  # the default branch: adam
        )
        assert low <= values["optimizer.lr"] <= high
    assert seen == {"sgd", "momentum", "nesterov", "adam", "adadelta"}


def test_without_default_a_parameter_is_neither_sampled_nor_overridden() -> None:
    space = parse_search_space(CONDITIONAL)
    values = space.sample(optuna.trial.FixedTrial({"optimizer": "adam", "model.latent_dim": 8, "optimizer.lr": 1e-3}))
    assert values == {"optimizer": "adam", "model.latent_dim": 8, "optimizer.lr": 1e-3}
    assert space.overrides(values) == [
        "trainer.epochs=5",
        "optimizer=adam",
        "model.latent_dim=8",
        "optimizer.lr=0.001",
    ]


def test_a_search_space_survives_pickling_for_worker_processes() -> None:
    space = parse_search_space(CONDITIONAL)
    assert pickle.loads(pickle.dumps(space)) == space


# --- overrides round-trip through Hydra's parser ---------------------------------------------


def test_overrides_parse_back_to_the_same_keys_and_values() -> None:
    strings = "choice('a b', '5', 'true', 'null', 'x,y', 'it\\'s', 'f(x)', '${oc.env:HOME}', ' pad ', '', 'back\\\\')"
    space = parse_search_space(
        {
            "trainer.epochs": "5",
            "s": strings,
            "lr": "tag(log, interval(1e-6, 1.0))",
            "beta": "interval(-1.0, 1e20)",
            "n": "range(-3, 3)",
            "bn": "choice(true, false)",
        }
    )
    choices = space.params["s"].distribution.choices
    assert "it's" in choices and "back\\" in choices and "x,y" in choices
    floats = [1e-05, 0.1, 1 / 3, 0.30000000000000004, 1.0, 5e-324, -0.0, 1e20, 123456789.123456789]
    cases = itertools.zip_longest(choices, floats, [-3, 0, 2], [True, False], fillvalue=None)
    for s, x, n, bn in cases:
        values = {"s": s, "lr": x, "beta": x, "n": n, "bn": bn}
        values = {name: value for name, value in values.items() if value is not None}
        overrides = space.overrides(values)
        assert overrides[0] == "trainer.epochs=5"
        parsed = dict(parse_override(text) for text in overrides[1:])
        assert parsed == values
        assert {name: type(value) for name, value in parsed.items()} == {k: type(v) for k, v in values.items()}
        assert all(math.copysign(1, parsed[k]) == math.copysign(1, values[k]) for k in ("lr", "beta") if k in values)


def test_overrides_refuse_values_outside_the_space() -> None:
    with pytest.raises(ValueError, match="not parameters of this search space"):
        parse_search_space({"optimizer": OPTIMIZERS}).overrides({"optimiser": "sgd"})


# --- grid -------------------------------------------------------------------------------------


def test_grid_sampler_enumerates_every_combination_exactly_once() -> None:
    space = parse_search_space(
        {
            "optimizer": "choice(sgd, adam)",
            "layers": "range(1, 3)",
            "beta": "range(0.0, 1.0, 0.3)",
            "bn": "choice(true, false)",
            "hidden": "int(interval(8, 9))",
            "trainer.epochs": 5,
        }
    )
    grid = space.grid()
    assert grid == {
        "optimizer": ["sgd", "adam"],
        "layers": [1, 2, 3],
        "beta": [0.0, 0.3, 0.6, 0.9],  # decimal steps, not 0.8999999999999999
        "bn": [True, False],
        "hidden": [8, 9],
    }
    n = math.prod(len(values) for values in grid.values())
    study = optuna.create_study(sampler=optuna.samplers.GridSampler(grid, seed=0))
    sampled = []

    def objective(trial: optuna.Trial) -> float:
        sampled.append(tuple(space.sample(trial).values()))
        return 0.0

    # optimize(), not ask/tell: once the grid is exhausted GridSampler.after_trial calls study.stop(), which
    # raises RuntimeError outside optimize().
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # GridSampler warns about values outside the suggested distribution
        study.optimize(objective, n_trials=n)
    assert sorted(sampled, key=repr) == sorted(itertools.product(*grid.values()), key=repr)
    assert len(set(sampled)) == n


@pytest.mark.parametrize(
    ("params", "key", "fragment"),
    [
        ({"optimizer": OPTIMIZERS, "lr": "tag(log, interval(1e-4, 1e-1))"}, f"{KEY}.lr", "no finite set of values"),
        (CONDITIONAL, f"{KEY}.optimizer.momentum", "depends on optimizer"),
    ],
)
def test_grid_refuses_intervals_and_conditional_parameters(params: Any, key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_search_space(params).grid()
    assert caught.value.key == key
    assert fragment in caught.value.message


# --- corners ----------------------------------------------------------------------------------


def test_corners_reach_every_choice_and_bound_and_respect_the_conditions() -> None:
    space = parse_search_space({**CONDITIONAL, "layers": "range(1, 3)", "beta": "range(0.0, 1.0, 0.25)"})
    corners = space.corners()
    for corner in corners:  # exactly the active parameters, each inside its active distribution
        assert space.sample(optuna.trial.FixedTrial(corner)) == corner
        for name, value in corner.items():
            assert within(value, space.params[name].active(corner))
    for spec in space.params.values():
        parent_choices = [None] if spec.parent is None else space.params[spec.parent].distribution.choices
        for parent_value in parent_choices:
            distribution = spec.active({spec.parent: parent_value})
            if distribution is None:
                continue
            reached = {c[spec.name] for c in corners if spec.name in c and spec.active(c) == distribution}
            expected = distribution.choices if isinstance(distribution, CategoricalDistribution) else ()
            assert set(expected) <= reached
            if not isinstance(distribution, CategoricalDistribution):
                assert {distribution.low, distribution.high} <= reached
    # one assignment per (parameter, branch, extreme or choice) at most, plus the all-first one
    assert len(corners) <= 1 + 5 + 3 + 2 + 3 * 2 + 3 + 2
    assert len(corners) == len({repr(sorted(c.items())) for c in corners})


def test_corners_of_a_space_without_parameters_is_the_empty_assignment() -> None:
    assert SearchSpace(params={}, fixed={"trainer.epochs": "5"}).corners() == [{}]


def test_a_fixed_parent_pins_its_children_to_the_matching_branch():
    """`vae-train -m study=techniques optimizer=adam` fixes the optimizer: its conditional
    children become plain parameters (or drop out) instead of an error."""
    lr = {"optimizer=adadelta": "interval(0.1, 2.0)", "default": "tag(log, interval(1e-4, 1e-2))"}
    momentum = {"optimizer=momentum,nesterov": "interval(0.5, 0.99)"}
    space = parse_search_space({"optimizer": "adam", "optimizer.lr": lr, "optimizer.momentum": momentum})
    assert space.fixed == {"optimizer": "adam"}
    assert list(space.params) == ["optimizer.lr"]
    assert space.params["optimizer.lr"].distribution == FloatDistribution(1e-4, 1e-2, log=True)
    pinned = parse_search_space({"optimizer": "adadelta", "optimizer.lr": lr, "optimizer.momentum": momentum})
    assert pinned.params["optimizer.lr"].distribution == FloatDistribution(0.1, 2.0)
    with_momentum = parse_search_space({"optimizer": "nesterov", "optimizer.momentum": momentum})
    assert with_momentum.params["optimizer.momentum"].distribution == FloatDistribution(0.5, 0.99)


def test_a_narrowed_parent_drops_conditions_on_its_removed_choices():
    """`vae-train -m study=techniques 'optimizer=choice(sgd,adam)'` keeps the study's conditions."""
    lr = {"optimizer=adadelta": "interval(0.1, 2.0)", "default": "interval(1e-4, 1e-2)"}
    momentum = {"optimizer=momentum,nesterov": "interval(0.5, 0.99)"}
    params = {"optimizer": "choice(sgd, adam)", "optimizer.lr": lr, "optimizer.momentum": momentum}
    with pytest.raises(ConfigError, match="'adadelta' is not a choice of optimizer"):
        parse_search_space(params)  # in a study file, an unknown choice is a mistake
    space = parse_search_space(params, narrowed=frozenset({"optimizer"}))
    assert space.params["optimizer.lr"].branches == {}
    assert space.params["optimizer.lr"].default == FloatDistribution(1e-4, 1e-2)
    assert space.params["optimizer.momentum"].active({"optimizer": "sgd"}) is None
