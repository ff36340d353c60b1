"""``vae-compare``'s figures: the metric per option, every option's learning curves, recon vs KL.

Each figure says how many runs it rests on (``adam`` becomes ``adam\\nn=3 of 14`` on an axis,
titles count the runs not drawn), puts the unit and, where one holds, the direction on its axes
(``vae_sweep.compare.units``), and shows the runs a comparison leaves out instead of hiding
them: pruned runs at their last value with their own marker, runs with no value counted in the
title. Learning curves are the median and interquartile band of all of an option's runs, not
its best run, which would show luck. Every figure is written as PNG (200 dpi), SVG and PDF.

Built on matplotlib's object API (``Figure``, no ``pyplot``): no display, no global state.
The ``*_figure`` functions take plain pandas objects and return a figure; ``figures`` builds a
``Comparison``'s three (four with replicates), ``draw`` reads the histories they need, ``write_plots`` saves them.
Importing this module imports matplotlib, so ``vae_sweep.compare.report`` imports it only
when it draws.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from vae_sweep.compare.sources import load_curves
from vae_sweep.compare.tables import group_labels, metric_values, pareto_front, trial_states
from vae_sweep.compare.units import label
from vae_sweep.names import EPOCH_METRICS

if TYPE_CHECKING:
    from vae_sweep.compare.report import Comparison

STATE_MARKERS = {"COMPLETE": ("o", "tab:blue"), "PRUNED": ("^", "tab:orange"), "FAIL": ("v", "tab:red")}
OTHER_MARKER = ("s", "tab:gray")
STATE_WORDS = {"COMPLETE": "completed", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running"}
FORMATS = {".png": {"dpi": 200}, ".svg": {}, ".pdf": {}}
BAND = "interquartile range (25-75 %)"
MAX_COLUMNS = 3


def grid(count: int, *, width: float = 5.0, height: float = 3.8) -> tuple[Figure, list[Axes]]:
    """A figure with ``count`` subplots, at most three a row; unused cells are hidden."""
    columns = min(max(count, 1), MAX_COLUMNS)
    rows = math.ceil(max(count, 1) / columns)
    figure = Figure(figsize=(width * columns, height * rows), layout="constrained")
    axes = list(np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel())
    for extra in axes[count:]:
        extra.set_visible(False)
    return figure, axes[:count]


def suptitle(figure: Figure, text: str) -> None:
    """``text`` over the whole figure, wrapped to its width (constrained layout does not wrap)."""
    figure.suptitle(textwrap.fill(text, width=int(figure.get_figwidth() * 11)))


def runs_word(count: int) -> str:
    return f"{count} run" if count == 1 else f"{count} runs"


def axis_label(metric: str, *, at_epoch: int | None = None) -> str:
    """``units.label`` on two lines (name, then unit and direction): fits beside a short axis."""
    return label(metric, at_epoch=at_epoch).replace(" (", "\n(", 1)


def counted(states: pd.Series) -> str:
    """``2 pruned, 1 failed``: runs by state, most first."""
    counts = states.value_counts()
    return ", ".join(f"{n} {STATE_WORDS.get(str(state), str(state).lower())}" for state, n in counts.items())


def tick_label(row: pd.Series) -> str:
    """``★ adam`` / ``sgd`` over ``n=3 of 14`` (compared of all its runs), ``thin`` when it cannot win."""
    mark = "★ " if row.get("winner") else ""
    thin = ", thin" if row.get("thin") else ""
    return f"{mark}{row['option']}\nn={int(row['compared'])} of {int(row['count'])}{thin}"


def distribution_figure(
    compared: pd.Series,
    last: pd.Series,
    states: pd.Series,
    groups: Mapping[str, pd.Series],
    tables: Mapping[str, pd.DataFrame],
    metric: str,
    *,
    at_epoch: int | None = None,
) -> Figure:
    """One subplot per dimension: a box of the ``compared`` values per option (the table's
    order), every run on top, jittered, marker by trial state: filled when compared, hollow at
    its ``last`` value when not (a pruned run); runs with neither are counted in the title."""
    figure, axes = grid(len(groups))
    rng = np.random.default_rng(0)
    for ax, (dimension, labels) in zip(axes, groups.items(), strict=True):
        table = tables[dimension]
        options = list(table["option"])
        boxes = [compared[(labels == option) & compared.notna()].to_numpy() for option in options]
        ax.boxplot(boxes, positions=range(len(options)), widths=0.5, showfliers=False)
        for position, option in enumerate(options):
            for state, members in states[labels == option].groupby(states[labels == option]):
                marker, color = STATE_MARKERS.get(str(state), OTHER_MARKER)
                word = STATE_WORDS.get(str(state), str(state).lower())
                inside = compared[members.index].dropna()
                outside = last[members.index][compared[members.index].isna()].dropna()
                kinds = ((inside, True, f"{word}, in box"), (outside, False, f"{word}: last value, not in box"))
                for y, filled, text in kinds:
                    if len(y):
                        x = position + rng.uniform(-0.15, 0.15, len(y))
                        face = color if filled else "none"
                        ax.scatter(x, y, marker=marker, facecolors=face, edgecolors=color, s=26, label=text, zorder=3)
        ax.set_xticks(range(len(options)), [tick_label(row) for _, row in table.iterrows()])
        missing = states[compared.isna() & last.isna()]
        shown = f"\n{len(missing)} without a value, not shown: {counted(missing)}" if len(missing) else ""
        ax.set_title(f"{dimension}: {len(states)} runs ({counted(states)}){shown}", fontsize="medium")
        ax.set_ylabel(axis_label(metric, at_epoch=at_epoch))
        handles, names = ax.get_legend_handles_labels()
        unique = dict(zip(names, handles, strict=True))
        if unique:
            ax.legend(unique.values(), unique.keys(), fontsize="small")
    name = f"{metric} at epoch {at_epoch}" if at_epoch is not None else metric
    suptitle(figure, f"{name} per option; box: quartiles and median of the runs in it, whiskers 1.5 IQR")
    return figure


def curve_band(histories: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Per step of ``histories`` (``step``, ``value`` each): ``median``, ``low`` / ``high`` (the
    25th / 75th percentiles) and ``runs``, over the runs that logged that step."""
    logged = [h.dropna(subset=["value"]).drop_duplicates("step", keep="last") for h in histories if len(h)]
    if not logged:
        return pd.DataFrame(columns=["step", "median", "low", "high", "runs"])
    steps = pd.concat(logged, ignore_index=True).groupby("step")["value"]
    band = pd.DataFrame(
        {"median": steps.median(), "low": steps.quantile(0.25), "high": steps.quantile(0.75), "runs": steps.size()}
    )
    return band.rename_axis("step").reset_index()


def curves_figure(
    histories: Mapping[str, pd.DataFrame],
    runs: pd.DataFrame,
    groups: Mapping[str, pd.Series],
    tables: Mapping[str, pd.DataFrame],
    metric: str,
) -> Figure:
    """One subplot per dimension, per option the median of all its runs' curves (``histories``,
    run id -> ``step``, ``value``) and their interquartile band; a hollow triangle where a
    pruned run stopped. Runs with no history are counted in the title."""
    figure, axes = grid(len(groups))
    states = trial_states(runs)
    has_curve = runs["run_id"].map(lambda run_id: len(histories.get(run_id, ())) > 0)
    for ax, (dimension, labels) in zip(axes, groups.items(), strict=True):
        for option in tables[dimension]["option"]:
            members = runs[(labels == option) & has_curve]
            band = curve_band([histories[run_id] for run_id in members["run_id"]])
            if band.empty:
                continue
            end_count = int(band["runs"].iloc[-1])
            survivors = f", {end_count} to epoch {int(band['step'].iloc[-1])}" if end_count < len(members) else ""
            name = f"{option} (n={len(members)}{survivors})"
            (line,) = ax.plot(band["step"], band["median"], marker="o", markersize=3, label=name)
            ax.fill_between(band["step"], band["low"], band["high"], color=line.get_color(), alpha=0.2, linewidth=0)
            for run_id in members["run_id"][states[members.index] == "PRUNED"]:
                logged = histories[run_id].dropna(subset=["value"])
                if len(logged):
                    end = logged.iloc[-1]
                    ax.scatter(end["step"], end["value"], marker="^", facecolors="none", edgecolors=line.get_color())
        handles, _ = ax.get_legend_handles_labels()
        if handles:
            end = Line2D([], [], marker="^", color="gray", markerfacecolor="none", ls="", label="pruned run ends")
            handles += [Patch(color="gray", alpha=0.3, label=f"band: {BAND}"), end]
            ax.legend(handles=handles, fontsize="small")
        missing = states[~has_curve]
        shown = f"\n{runs_word(len(missing))} with no curve: {counted(missing)}" if len(missing) else ""
        ax.set_title(f"{dimension}: all {int(has_curve.sum())} runs with a curve{shown}", fontsize="medium")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(axis_label(metric))
    suptitle(figure, f"{metric} per epoch: median over the runs still training at each epoch")
    return figure


def pareto_figure(
    points: pd.DataFrame, front: pd.Series, *, x: str, y: str, color_by: str | None, left_out: str
) -> Figure:
    """``points[x]`` against ``points[y]``, coloured by the ``color_by`` column (with counts),
    the front (``front`` is True on it) ringed and joined by a step line, and the runs with no
    active latent unit crossed out: their KL near 0 is posterior collapse, not a better model.
    ``left_out`` (e.g. ``7 pruned``) names the runs that have no point."""
    figure = Figure(figsize=(7.0, 5.2), layout="constrained")
    ax = figure.subplots()
    groups = points.groupby(points[color_by].astype(str)) if color_by else [("runs", points)]
    for name, group in groups:
        ax.scatter(group[x], group[y], s=30, alpha=0.8, label=f"{name} (n={len(group)})")
    edge = points[front].sort_values(x)
    ax.scatter(edge[x], edge[y], s=110, facecolors="none", edgecolors="black", linewidths=1.5, label="front")
    ax.step(edge[x], edge[y], where="post", color="black", linewidth=1, alpha=0.6)
    if "active_units" in points:
        collapsed = points[points["active_units"] == 0]
        if len(collapsed):
            ax.scatter(collapsed[x], collapsed[y], marker="x", color="black", s=60, label="0 active units (collapsed)")
    ax.set_xlabel(label(x))
    ax.set_ylabel(label(y))
    by = f", by {color_by}" if color_by else ""
    missing = f"\nno {x} / {y}, not shown: {left_out}" if left_out else ""
    ax.set_title(f"{x} vs {y}: {len(points)} completed runs{by}{missing}", fontsize="medium")
    ax.legend(fontsize="small", title="front: no run lower on both", title_fontsize="small")
    return figure


def intervals_figure(tables: Mapping[str, pd.DataFrame], metric: str) -> Figure:
    """Each technique's options from the replicates: the mean over seeds (dot) and its 95%
    interval (bar), one panel per technique, best option on top; an option without an interval
    (one complete run) is a hollow dot."""
    figure, axes = grid(len(tables))
    for ax, (name, table) in zip(axes, tables.items(), strict=False):
        rows = table[table["runs"] > 0].reset_index(drop=True)
        y = np.arange(len(rows))[::-1]
        has = rows["low"].notna().to_numpy()
        errors = np.vstack([rows["mean"] - rows["low"], rows["high"] - rows["mean"]])[:, has]
        ax.errorbar(rows["mean"][has], y[has], xerr=errors, fmt="o", color="tab:blue", capsize=3)
        ax.plot(rows["mean"][~has], y[~has], "o", mfc="none", color="tab:blue")
        ax.set_yticks(
            y,
            [f"{row.option}\n{row.configs} configs, {row.runs} runs" for row in rows.itertuples()],
        )
        ax.set_title(name)
        ax.set_xlabel(label(metric))
    suptitle(figure, "Replicated: mean over fresh seeds and its 95% interval, per option")
    return figure


def save(figure: Figure, folder: Path, stem: str) -> list[Path]:
    """``stem`` as PNG (200 dpi: sharp on a slide), SVG and PDF (vector: papers, zooming)."""
    paths = [folder / f"{stem}{suffix}" for suffix in FORMATS]
    for path in paths:
        figure.savefig(path, **FORMATS[path.suffix])
    return paths


def figures(comparison: Comparison, histories: Mapping[str, pd.DataFrame], curve_metric: str) -> dict[str, Figure]:
    """``distribution``, ``learning_curves`` (of ``curve_metric``, from ``histories``), with
    replicates ``intervals``, and, with completed runs that have both, ``recon_vs_kl``; a note on
    ``comparison`` for one left out."""
    runs, basis = comparison.runs, comparison.basis
    states = trial_states(runs)
    groups = {name: group_labels(runs[column]) for name, column in comparison.keys.items()}
    tables = comparison.techniques
    drawn = {
        "distribution": distribution_figure(
            comparison.values,
            metric_values(runs, basis.metric),
            states,
            groups,
            tables,
            basis.metric,
            at_epoch=basis.at_epoch,
        ),
        "learning_curves": curves_figure(histories, runs, groups, tables, curve_metric),
    }
    if comparison.verdicts is not None:
        drawn["intervals"] = intervals_figure(comparison.verdicts.tables, basis.metric)
    points = pd.DataFrame({name: metric_values(runs, name) for name in ("test_recon", "test_kl", "active_units")})
    drawable = (states == "COMPLETE") & points[["test_recon", "test_kl"]].notna().all(axis=1)
    if not drawable.any():
        comparison.notes.append("recon vs KL plot skipped: no completed run has test_recon and test_kl")
        return drawn
    color_by = next(iter(groups), None)
    if color_by:
        points[color_by] = groups[color_by]
    points = points[drawable]
    front = pareto_front(points, x="test_recon", y="test_kl")
    left_out = counted(states[~drawable])
    drawn["recon_vs_kl"] = pareto_figure(
        points, front, x="test_recon", y="test_kl", color_by=color_by, left_out=left_out
    )
    return drawn


def draw(client, comparison: Comparison) -> dict[str, Figure]:
    """``figures`` of ``comparison``, reading the learning curves' histories: of the ranked
    metric when it is a per-epoch one, else of ``val_loss``; histories already read
    (``--at-epoch``) are reused."""
    metric = comparison.metric
    curve_metric = metric if metric in EPOCH_METRICS else "val_loss"
    histories = comparison.histories.get(curve_metric)
    if histories is None:
        histories = load_curves(client, list(comparison.runs["run_id"]), curve_metric)
        comparison.histories[curve_metric] = histories
    return figures(comparison, histories, curve_metric)


def write_plots(client, comparison: Comparison, folder: Path) -> list[Path]:
    """``draw``'s figures as PNG, SVG and PDF in ``folder``."""
    return [path for stem, figure in draw(client, comparison).items() for path in save(figure, folder, stem)]
