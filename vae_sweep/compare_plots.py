"""Figures for ``vae-compare``: metric per option, best learning curves, recon vs KL.

Built on matplotlib's object API (``Figure``, no ``pyplot``): no display, no global state,
PNG through the Agg canvas. Each function takes plain pandas objects and returns a figure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

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
