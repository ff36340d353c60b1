"""The plots a sweep leaves: readable at any number of parameters and trials, and skipped with a
note (never an empty figure and Optuna's warning) when the study has nothing to draw.

Tiny ask/tell studies stand in for sweeps; the figures are measured with matplotlib's Agg
renderer, as ``savefig`` draws them."""

from __future__ import annotations

import itertools
import logging
import random
import warnings
from collections.abc import Iterator
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from vae_sweep.sweep.plots import (
    DPI,
    MAX_PARALLEL_PARAMS,
    PLOTS,
    intermediate_values,
    parallel_coordinate,
    parameter_axes,
    save_plots,
    value_labels,
)

matplotlib.use("Agg")
CHOICES = ["none", "batchnorm", "layernorm", "leaky_relu", "exponential"]


@pytest.fixture(autouse=True)
def optuna_logs_in_caplog() -> Iterator[None]:
    """Optuna's own log lines (its handler writes to the terminal) reach ``caplog`` instead."""
    optuna.logging.set_verbosity(optuna.logging.INFO)
    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
    yield
    optuna.logging.disable_propagation()
    optuna.logging.enable_default_handler()
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def study_of(
    n_params: int, *, n_trials: int = 12, curves: bool = True, seed: int = 0, log_range: tuple = (1e-4, 1.0)
) -> optuna.Study:
    """``n_params`` parameters with long dotted names (half categorical, half floats on a log
    scale of ``log_range``); trials reporting a curve each, some pruned."""
    rng = random.Random(seed)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    log_scale = FloatDistribution(*log_range, log=True)
    names = [f"model.encoder_block_{i}.setting" for i in range(n_params)]
    space = {name: CategoricalDistribution(CHOICES) if i % 2 else log_scale for i, name in enumerate(names)}
    for number in range(n_trials):
        trial = study.ask(space)
        value = rng.uniform(40, 60)
        pruned = number >= 4 and number % 3 == 0
        for step in range(1, 3 if pruned else 6):
            if curves:
                trial.report(value + 20 / step, step)
        study.tell(trial, None if pruned else value, state=TrialState.PRUNED if pruned else TrialState.COMPLETE)
    return study


def overlapping(boxes: list) -> list[tuple[int, int]]:
    return [(i, j) for (i, a), (j, b) in itertools.combinations(enumerate(boxes), 2) if a.overlaps(b)]


@pytest.mark.parametrize(
    ("n_params", "log_range"),
    [(2, (4e-4, 8e-3)), (5, (1e-4, 1.0)), (12, (1e-4, 1.0))],  # within a decade or two: minor labels too
)
def test_parallel_coordinate_labels_never_overlap_nor_cross_another_axis(n_params: int, log_range: tuple) -> None:
    figure = parallel_coordinate(study_of(n_params, log_range=log_range))
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    axes = figure.axes[0]
    names = [label.get_text().replace("\n", "") for label in axes.get_xticklabels()]
    shown = min(n_params, MAX_PARALLEL_PARAMS)
    assert len(names) == 1 + shown  # the objective, then the parameters
    assert all(name.startswith("model.encoder_block_") and name.endswith(".setting") for name in names[1:])  # in full
    assert overlapping([label.get_window_extent(renderer) for label in axes.get_xticklabels()]) == []
    axis_x = [axes.transData.transform((tick, 0))[0] for tick in axes.get_xticks()]
    (colorbar,) = [other for other in figure.axes if other is not axes and other not in parameter_axes(axes)]
    labels = [t for other in parameter_axes(axes) for t in value_labels(other) if t.get_text()]
    assert labels
    for label in labels:
        box = label.get_window_extent(renderer)
        crossed = [x for x in axis_x if box.x0 < x < box.x1]
        assert not crossed, (label.get_text(), box, axis_x)
        assert not box.overlaps(colorbar.get_tightbbox(renderer)), label.get_text()
    plt.close(figure)


def test_parallel_coordinate_grows_with_its_axes_and_shows_the_most_important_beyond_eight() -> None:
    widths = []
    for n_params in (2, 5, 8):
        figure = parallel_coordinate(study_of(n_params))
        widths.append(figure.get_size_inches()[0])
        plt.close(figure)
    assert widths[0] <= widths[1] < widths[2]
    figure = parallel_coordinate(study_of(12))
    assert f"the {MAX_PARALLEL_PARAMS} most important of 12 parameters" in figure.axes[0].get_title()
    plt.close(figure)


def test_intermediate_values_have_a_legend_of_states_not_of_trials() -> None:
    study = study_of(2, n_trials=30)
    figure = intermediate_values(study)
    entries = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    pruned = len(study.get_trials(states=(TrialState.PRUNED,)))
    assert entries == [f"complete ({30 - pruned})", f"pruned ({pruned})", f"best (trial {study.best_trial.number})"]
    plt.close(figure)


def test_without_intermediate_values_the_plot_is_skipped_with_a_note_and_no_warning(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        saved = save_plots(study_of(3, curves=False), tmp_path)
    assert [path.name for path in saved] == [
        "optimization_history.png",
        "param_importances.png",
        "parallel_coordinate.png",
    ]
    notes = [r.getMessage() for r in caplog.records if r.name == "vae_sweep.sweep.plots"]
    assert notes == [
        "plot intermediate_values skipped: no trial reported intermediate values "
        "(vae-train reports them only to a pruner: hydra.sweeper.pruner=median)"
    ]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text  # "You need to set up ..."
    assert not caught, [str(w.message) for w in caught]


def test_a_study_without_a_complete_trial_skips_its_plots_with_a_note_each(tmp_path: Path, caplog) -> None:
    study = optuna.create_study()
    study.tell(study.ask(), state=TrialState.FAIL)
    caplog.set_level(logging.INFO)
    assert save_plots(study, tmp_path, [name for name in PLOTS if name != "pareto_front"]) == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text  # Optuna's "no complete trials"
    assert len([r for r in caplog.records if "skipped" in r.getMessage()]) == 4


def test_the_default_plots_wait_for_two_completed_trials_but_named_ones_are_drawn(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO)
    single = study_of(3, n_trials=1, curves=False)
    assert save_plots(single, tmp_path / "default") == []
    assert not (tmp_path / "default").exists()
    notes = [r.getMessage() for r in caplog.records if r.name == "vae_sweep.sweep.plots"]
    assert notes == ["plots skipped: they compare trials, and 1 completed; hydra.sweeper.plots=[NAME,...] draws them"]
    named = save_plots(single, tmp_path / "named", ["optimization_history"])
    assert [path.name for path in named] == ["optimization_history.png"]
    assert [path.name for path in save_plots(study_of(3, n_trials=2, curves=False), tmp_path / "two")] == [
        "optimization_history.png",
        "param_importances.png",
        "parallel_coordinate.png",
    ]


def test_plots_are_written_at_a_readable_resolution_and_a_reasonable_size(tmp_path: Path) -> None:
    saved = save_plots(study_of(12, n_trials=30), tmp_path)
    assert {path.stem for path in saved} == {
        "optimization_history", "param_importances", "parallel_coordinate", "intermediate_values",
    }  # fmt: skip
    for path in saved:
        height, width, _ = plt.imread(path).shape  # a PNG matplotlib reads back
        assert width >= 6 * DPI * 0.8 and height >= 4 * DPI * 0.8, (path.name, width, height)
        assert path.stat().st_size < 1_500_000, path.name
