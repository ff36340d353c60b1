"""``vae-compare``'s figures: metric per option, best learning curves, recon vs KL.

Built on matplotlib's object API (``Figure``, no ``pyplot``): no display, no global state,
PNG through the Agg canvas. The ``*_figure`` functions take plain pandas objects and return a
figure; ``write_plots`` draws a ``Comparison``'s three into a folder. Importing this module
imports matplotlib, so ``vae_sweep.compare.report`` imports it only when it draws.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from vae_sweep.compare.sources import load_curves
from vae_sweep.compare.tables import TRIAL_TAG, group_labels, metric_values, pareto_front, trial_states
from vae_sweep.names import EPOCH_METRICS

if TYPE_CHECKING:
    from vae_sweep.compare.report import Comparison

STATE_MARKERS = {"COMPLETE": ("o", "tab:blue"), "PRUNED": ("x", "tab:orange"), "FAIL": ("v", "tab:red")}
OTHER_MARKER = ("s", "tab:gray")
MAX_COLUMNS = 3


def grid(count: int, *, width: float = 5.0, height: float = 3.6) -> tuple[Figure, list[Axes]]:
    """A figure with ``count`` subplots, at most three a row; unused cells are hidden."""
    columns = min(max(count, 1), MAX_COLUMNS)
    rows = math.ceil(max(count, 1) / columns)
    figure = Figure(figsize=(width * columns, height * rows), layout="constrained")
    axes = list(np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel())
    for extra in axes[count:]:
        extra.set_visible(False)
    return figure, axes[:count]


def distribution_figure(
    values: pd.Series,
    states: pd.Series,
    groups: Mapping[str, pd.Series],
    order: Mapping[str, Sequence[str]],
    metric: str,
) -> Figure:
    """One subplot per dimension: a box of ``values`` per option, with every run on top
    (jittered; marker by trial state). Options run left to right in ``order`` (best first)."""
    figure, axes = grid(len(groups))
    rng = np.random.default_rng(0)
    for ax, (dimension, labels) in zip(axes, groups.items(), strict=True):
        options = list(order[dimension])
        boxes = [values[(labels == option) & values.notna()].to_numpy() for option in options]
        ax.boxplot(boxes, positions=range(len(options)), widths=0.5, showfliers=False)
        for position, option in enumerate(options):
            members = (labels == option) & values.notna()
            for state, group in states[members].groupby(states[members]):
                marker, color = STATE_MARKERS.get(str(state), OTHER_MARKER)
                y = values[group.index]
                x = position + rng.uniform(-0.15, 0.15, len(y))
                ax.scatter(x, y, marker=marker, color=color, s=22, alpha=0.8, label=str(state), zorder=3)
        ax.set_xticks(range(len(options)), options, rotation=20 if len(options) > 3 else 0)
        ax.set_title(dimension)
        ax.set_ylabel(metric)
        handles, names = ax.get_legend_handles_labels()
        unique = dict(zip(names, handles, strict=True))
        if unique:
            ax.legend(unique.values(), unique.keys(), fontsize="small")
    figure.suptitle(f"{metric} per option")
    return figure


def curves_figure(curves: Mapping[str, Mapping[str, pd.DataFrame]], metric: str) -> Figure:
    """One subplot per dimension, one line per option: ``curves[dimension][label]`` holds the
    ``step`` and ``value`` columns of the option's best run."""
    figure, axes = grid(len(curves))
    for ax, (dimension, lines) in zip(axes, curves.items(), strict=True):
        for label, history in lines.items():
            ax.plot(history["step"], history["value"], marker="o", markersize=3, label=label)
        ax.set_title(f"{dimension}: best run per option")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(metric)
        if lines:
            ax.legend(fontsize="small")
    figure.suptitle(f"{metric} per epoch")
    return figure


def pareto_figure(points: pd.DataFrame, front: pd.Series, *, x: str, y: str, color_by: str | None) -> Figure:
    """``points[x]`` against ``points[y]``, coloured by the ``color_by`` column, with the Pareto
    front (``front`` is True on it) ringed and joined by a step line."""
    figure = Figure(figsize=(6.5, 4.8), layout="constrained")
    ax = figure.subplots()
    groups = points.groupby(points[color_by].astype(str)) if color_by else [("runs", points)]
    for label, group in groups:
        ax.scatter(group[x], group[y], s=30, alpha=0.8, label=str(label))
    edge = points[front].sort_values(x)
    ax.scatter(edge[x], edge[y], s=110, facecolors="none", edgecolors="black", linewidths=1.5, label="Pareto front")
    ax.step(edge[x], edge[y], where="post", color="black", linewidth=1, alpha=0.6)
    ax.set_xlabel(f"{x} (lower is better)")
    ax.set_ylabel(f"{y} (lower is better)")
    ax.set_title(f"{x} vs {y}, completed runs" + (f", by {color_by}" if color_by else ""))
    ax.legend(fontsize="small")
    return figure


def save(figure: Figure, path: Path) -> Path:
    figure.savefig(path, dpi=110)
    return path


def write_plots(client, comparison: Comparison, folder: Path) -> list[Path]:
    """``distribution.png``, ``learning_curves.png`` and (with completed runs) ``recon_vs_kl.png``."""
    runs, metric = comparison.runs, comparison.metric
    values, states = metric_values(runs, metric), trial_states(runs)
    groups = {name: group_labels(runs[column]) for name, column in comparison.keys.items()}
    order = {name: list(table["option"]) for name, table in comparison.techniques.items()}
    written = [save(distribution_figure(values, states, groups, order, metric), folder / "distribution.png")]

    curve_metric = metric if metric in EPOCH_METRICS else "val_loss"
    best_runs: dict[str, dict[str, pd.Series]] = {}
    for name, labels in groups.items():
        ranked = runs.assign(_value=values, _label=labels).dropna(subset=["_value"])
        ranked = ranked.sort_values("_value", ascending=not comparison.maximize, kind="stable")
        best_runs[name] = {label: rows.iloc[0] for label, rows in ranked.groupby("_label", sort=False)}
    histories = load_curves(
        client, [row["run_id"] for rows in best_runs.values() for row in rows.values()], curve_metric
    )
    curves = {
        name: {
            f"{label} ({run_label(row)})": histories[row["run_id"]]
            for label in order[name]
            if (row := rows.get(label)) is not None and not histories[row["run_id"]].empty
        }
        for name, rows in best_runs.items()
    }
    written.append(save(curves_figure(curves, curve_metric), folder / "learning_curves.png"))

    points = pd.DataFrame({"test_recon": metric_values(runs, "test_recon"), "test_kl": metric_values(runs, "test_kl")})
    points = points[states == "COMPLETE"].dropna()
    if points.empty:
        comparison.notes.append("recon vs KL plot skipped: no completed run has test_recon and test_kl")
    else:
        color_by = next(iter(groups), None)
        if color_by:
            points[color_by] = groups[color_by][points.index]
        front = pareto_front(points, x="test_recon", y="test_kl")
        figure = pareto_figure(points, front, x="test_recon", y="test_kl", color_by=color_by)
        written.append(save(figure, folder / "recon_vs_kl.png"))
    return written


def run_label(row: pd.Series) -> str:
    trial = row.get(TRIAL_TAG)
    return f"trial {trial}" if isinstance(trial, str) else f"run {row['run_id'][:8]}"
