"""The study's plots, saved as PNGs at the end of a sweep and logged on its MLflow parent run.

Optuna's matplotlib plots (``optuna.visualization.matplotlib``), made readable for studies of
the size we run: the parallel coordinates show the ``MAX_PARALLEL_PARAMS`` most important
parameters, named in full, on a figure as wide as their labels need; the intermediate values
are drawn here, coloured by trial state with one legend entry per state instead of one per
trial. A plot the study cannot support yet (no trial completed; no intermediate values, as
when no pruner runs) is skipped with a note instead of an empty figure and Optuna's warning;
by default no plot is drawn before two trials completed (nothing to compare yet).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
from optuna.trial import TrialState

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

# Optuna's plot_<name>: the first only for several objectives, the others for one.
PLOTS = ("pareto_front", "optimization_history", "param_importances", "parallel_coordinate", "intermediate_values")
DPI = 150  # readable when opened full size, about 50-300 kB a plot
MIN_COMPARED = 2  # completed trials before the default plots are drawn
MAX_PARALLEL_PARAMS = 8  # more axes than this cannot be followed by eye; param_importances ranks them all
LABEL_WIDTH = 12  # characters per line of a parallel-coordinate axis name, broken at its dots
GAP_IN = 0.3  # inches kept free between the widest label and the next axis
MIN_HEIGHT_IN = 5.5  # Optuna's 4.8 flattens the lines of a figure widened for many axes
STATE_COLORS = {TrialState.COMPLETE: "#1f77b4", TrialState.PRUNED: "#ff7f0e", TrialState.RUNNING: "#7f7f7f"}


def save_plots(study: optuna.Study, folder: Path, names: Sequence[str] | None = None) -> list[Path]:
    """Optuna's standard plots as PNGs: ``names`` of them (default: every plot that fits the
    study's number of objectives, once it has trials to compare); a plot the study cannot
    support yet is skipped with a note."""
    multi = len(study.directions) > 1
    if names is None:
        complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        if complete < MIN_COMPARED:  # a smoke run's single point: not worth a second of matplotlib
            log.info(
                "plots skipped: they compare trials, and %d completed; hydra.sweeper.plots=[NAME,...] draws them",
                complete,
            )
            return []
        names = ["pareto_front"] if multi else [name for name in PLOTS if name != "pareto_front"]
    if not names:
        return []
    matplotlib_logger = logging.getLogger("matplotlib")
    level = matplotlib_logger.level
    matplotlib_logger.setLevel(logging.WARNING)  # "generated new fontManager", once per machine
    try:
        import matplotlib.pyplot as plt  # a second of imports, only when there is something to draw
    finally:
        matplotlib_logger.setLevel(level)

    folder.mkdir(parents=True, exist_ok=True)
    saved = []
    for name in names:
        with plt.style.context("ggplot"):  # Optuna's look for every plot, not left on for the process
            try:
                figure = draw(study, name)
            except (ValueError, RuntimeError, ZeroDivisionError) as error:
                log.info("plot %s skipped: %s", name, error)
                continue
            path = folder / f"{name}.png"
            try:
                figure.savefig(path, dpi=DPI, bbox_inches="tight")
            finally:
                plt.close(figure)
        saved.append(path)
    return saved


def draw(study: optuna.Study, name: str) -> Figure:
    """The figure of plot ``name``; ValueError (with the reason) when the study cannot support it."""
    from optuna.visualization import matplotlib as optuna_plots

    if name == "intermediate_values":
        return intermediate_values(study)
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise ValueError("no trial has completed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # experimental-API and layout notes from small studies
        if name == "parallel_coordinate":
            return parallel_coordinate(study)
        axes = getattr(optuna_plots, f"plot_{name}")(study)
    return axes.figure if hasattr(axes, "figure") else axes.flat[0].figure


def parallel_coordinate(study: optuna.Study, *, max_params: int = MAX_PARALLEL_PARAMS) -> Figure:
    """Optuna's parallel coordinates of at most ``max_params`` parameters, the most important
    first chosen; each axis named in full (Optuna cuts names at 17 characters), and the figure
    widened until no label reaches the next axis."""
    from optuna.visualization import matplotlib as optuna_plots

    params, total = most_important(study, max_params)
    single = len(study.directions) == 1
    target_name = study.metric_names[0] if single and study.metric_names else "Objective Value"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        axes = optuna_plots.plot_parallel_coordinate(study, params=params, target_name=target_name)
    figure = axes.figure
    ticks = axes.get_xticks()
    names = [label.get_text() for label in axes.get_xticklabels()]
    if len(names) == len(ticks) > len(params):  # the objective(s), then the parameters sorted by name
        names[len(names) - len(params) :] = sorted(params)
        axes.set_xticks(ticks, [wrap(name) for name in names], rotation=0, ha="center", fontsize=9)
    for value_axes in parameter_axes(axes):
        value_axes.tick_params(axis="y", which="both", labelsize=8)
        for label in value_labels(value_axes):
            label.set_bbox({"facecolor": "white", "alpha": 0.75, "edgecolor": "none", "pad": 1})
    if len(params) < total:
        axes.set_title(f"Parallel coordinates: the {len(params)} most important of {total} parameters", y=1.03)
    fit_labels(figure, axes, gaps=max(1, len(ticks) - 1))
    return figure


def most_important(study: optuna.Study, limit: int) -> tuple[list[str], int]:
    """At most ``limit`` of the parameters of the completed trials, the most important first
    (Optuna's default evaluator; by the first objective for several), and how many there are."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    names = sorted({name for trial in complete for name in trial.params})
    if len(names) <= limit:
        return names, len(names)
    target = None if len(study.directions) == 1 else (lambda trial: trial.values[0])
    try:
        ranked = [name for name in optuna.importance.get_param_importances(study, target=target) if name in names]
    except (ValueError, RuntimeError):  # too few trials to rank: the first by name
        ranked = []
    ranked += [name for name in names if name not in ranked]
    return ranked[:limit], len(names)


def wrap(name: str, width: int = LABEL_WIDTH) -> str:
    """A parameter's name on lines of about ``width`` characters, broken after its dots.

    >>> wrap("model.encoder_dropout"), wrap("optimizer.lr"), wrap("a.b.c", width=3)
    ('model.\\nencoder_dropout', 'optimizer.lr', 'a.\\nb.c')
    """
    lines = [""]
    for part in name.replace(".", ".\0").split("\0"):
        if lines[-1] and len(lines[-1]) + len(part) > width:
            lines.append("")
        lines[-1] += part
    return "\n".join(lines)


def parameter_axes(axes: Axes) -> list[Axes]:
    """The value axes Optuna draws one per parameter: twins of ``axes``, sharing its x axis
    (the colour bar is the figure's other axes)."""
    shared = axes.get_shared_x_axes()
    return [other for other in axes.figure.axes if other is not axes and shared.joined(axes, other)]


def value_labels(value_axes: Axes) -> list:
    """A parameter axis's tick labels: its categories, or its values (minor ones too, as a log
    axis spanning less than a decade or two shows)."""
    return [*value_axes.get_yticklabels(), *value_axes.get_yticklabels(minor=True)]


def ticks_shown(value_axes: Axes) -> list[float]:
    """The major ticks inside the axis's limits (a log axis's locator gives some beyond them)."""
    low, high = sorted(value_axes.get_ylim())
    return [tick for tick in value_axes.get_yticks() if low <= tick <= high]


def fit_labels(figure: Figure, axes: Axes, *, gaps: int) -> None:
    """Widen (and heighten) ``figure`` until its axis names and the parameter axes' value labels
    each fit between two axes with ``GAP_IN`` to spare: every part of the figure is placed in
    fractions of its size, so the space between axes grows with it. The colour bar moves right
    as far as the last axis's labels need."""
    figure.canvas.draw()  # text has a size only once drawn
    renderer = figure.canvas.get_renderer()
    texts = [*axes.get_xticklabels(), *(t for a in parameter_axes(axes) for t in value_labels(a))]
    extents = [text.get_window_extent(renderer) for text in texts if text.get_visible() and text.get_text()]
    if not extents:
        return
    box = axes.get_window_extent(renderer)
    width, height = figure.get_size_inches()
    needed = max(extent.width for extent in extents) / figure.dpi + GAP_IN
    between = box.width / gaps / figure.dpi
    most_ticks = max((len(ticks_shown(a)) for a in parameter_axes(axes)), default=0)
    tall = max(extent.height for extent in extents) / figure.dpi * 1.6
    figure.set_size_inches(
        width * max(1.0, needed / between),
        max(MIN_HEIGHT_IN, height * max(1.0, tall * most_ticks / (box.height / figure.dpi))),
    )
    for colorbar in [other for other in figure.axes if other is not axes and other not in parameter_axes(axes)]:
        place = colorbar.get_position(original=True)  # not the box its aspect shrank it to when drawn
        left = max(place.x0, axes.get_position().x1 + needed / figure.get_size_inches()[0])
        colorbar.set_position([left, place.y0, place.width, place.height])


def intermediate_values(study: optuna.Study) -> Figure:
    """Each trial's reported values by step, coloured by its state (a cross where a pruned one
    stopped), the best trial in black: a legend of states, however many trials."""
    import matplotlib.pyplot as plt

    trials = [
        trial for trial in study.get_trials(deepcopy=False, states=tuple(STATE_COLORS)) if trial.intermediate_values
    ]
    if not trials:
        raise ValueError(
            "no trial reported intermediate values "
            "(vae-train reports them only to a pruner: hydra.sweeper.pruner=median)"
        )
    with plt.style.context("ggplot"):
        figure, axes = plt.subplots(figsize=(8, 5))
        for state, color in STATE_COLORS.items():
            group = [trial for trial in trials if trial.state is state]
            for index, trial in enumerate(group):
                steps, values = curve(trial)
                label = f"{state.name.lower()} ({len(group)})" if index == 0 else None
                axes.plot(steps, values, color=color, alpha=0.5, linewidth=1.2, label=label)
                if state is TrialState.PRUNED:
                    axes.plot(steps[-1], values[-1], marker="x", color=color, alpha=0.8)
        best = best_with_curve(study, trials)
        if best is not None:
            steps, values = curve(best)
            axes.plot(steps, values, color="black", linewidth=2, label=f"best (trial {best.number})")
        axes.set_title("Intermediate values")
        axes.set_xlabel("Step")
        axes.set_ylabel("Intermediate value")
        axes.legend(loc="upper right")
        figure.tight_layout()
    return figure


def best_with_curve(study: optuna.Study, trials: Sequence[optuna.trial.FrozenTrial]) -> optuna.trial.FrozenTrial | None:
    """The best trial of a single-objective study, if it reported intermediate values."""
    if len(study.directions) > 1 or not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    number = study.best_trial.number
    return next((trial for trial in trials if trial.number == number), None)


def curve(trial: optuna.trial.FrozenTrial) -> tuple[list[int], list[float]]:
    """A trial's intermediate values in step order: the steps, then the values."""
    points = sorted(trial.intermediate_values.items())
    return [step for step, _ in points], [value for _, value in points]
