"""vae-compare's figures, read back from the ``Figure`` objects (``vae_sweep.compare.draw``) of the
constructed study: run counts in titles and tick labels, units on the axes, pruned and failed
runs visible, every run's learning curve in a median and band; and the files, in three formats."""

from __future__ import annotations

import contextlib
import io
import statistics

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from PIL import Image

from vae_sweep.cli import compare
from vae_sweep.compare import comparison, curve_band, draw

STEMS = ("distribution", "learning_curves", "recon_vs_kl")


@pytest.fixture(scope="module")
def figures(constructed):
    client, compared = comparison(constructed.argv())
    return draw(client, compared)


def texts(items) -> list[str]:
    return [item.get_text() for item in items]


def test_distribution_counts_runs_and_shows_pruned_ones(figures, constructed):
    (ax,) = figures["distribution"].axes
    trials = constructed.trials
    no_value = [t for t in trials if t.last is None]
    assert f"{len(trials)} runs" in ax.get_title()
    assert f"{len(no_value)} without a value, not shown: {len(no_value)} failed" in ax.get_title()
    ticks = texts(ax.get_xticklabels())
    for option in constructed.options():
        completed, every = constructed.of(option, "COMPLETE"), constructed.of(option)
        (tick,) = [t for t in ticks if t.split("\n")[0].removeprefix("★ ") == option]
        assert f"n={len(completed)} of {len(every)}" in tick
        assert ("thin" in tick) == (len(completed) < 3)
    assert sum(tick.startswith("★ ") for tick in ticks) == 1
    drawn = sum(len(c.get_offsets()) for c in ax.collections if isinstance(c, PathCollection))
    assert drawn == len(trials) - len(no_value)  # pruned runs and a failed run with a value are drawn
    legend = texts(ax.get_legend().get_texts())
    assert "pruned: last value, not in box" in legend and "completed, in box" in legend
    assert "nats per example" in ax.get_ylabel() and "lower is better" in ax.get_ylabel()


def test_learning_curves_are_the_median_of_every_run(figures, constructed):
    (ax,) = figures["learning_curves"].axes
    legend = texts(ax.get_legend().get_texts())
    assert any("interquartile" in text for text in legend)
    for option in constructed.options():
        with_curve = [t for t in constructed.of(option) if t.history]
        steps = range(1, max(len(t.history) for t in with_curve) + 1)
        to_end = sum(len(t.history) == len(steps) for t in with_curve)
        survivors = f", {to_end} to epoch {len(steps)}" if to_end < len(with_curve) else ""
        name = f"{option} (n={len(with_curve)}{survivors})"  # how many runs the median's end rests on
        assert name in legend
        (line,) = [line for line in ax.get_lines() if line.get_label() == name]
        medians = [statistics.median(t.at(s) for t in with_curve if t.at(s) is not None) for s in steps]
        assert list(line.get_xdata()) == list(steps)
        assert list(line.get_ydata()) == pytest.approx(medians)
    without = [t for t in constructed.trials if not t.history]
    assert f"{len(without)} run{'s' if len(without) != 1 else ''} with no curve" in ax.get_title()


def test_recon_vs_kl_counts_runs_and_does_not_call_low_kl_better(figures, constructed):
    (ax,) = figures["recon_vs_kl"].axes
    completed = [t for t in constructed.trials if t.state == "COMPLETE"]
    assert f"{len(completed)} completed runs" in ax.get_title()
    assert f"{sum(t.state == 'PRUNED' for t in constructed.trials)} pruned" in ax.get_title()
    assert "lower is better" in ax.get_xlabel()
    assert "better" not in ax.get_ylabel() and "nats per example" in ax.get_ylabel()
    legend = texts(ax.get_legend().get_texts())
    collapsed = [t for t in completed if t.number % 3 == 0]  # conftest.final_metrics: 0 active units
    assert ("0 active units (collapsed)" in legend) == bool(collapsed)
    for option in constructed.options():
        assert f"{option} (n={len(constructed.of(option, 'COMPLETE'))})" in legend


def test_plots_are_written_as_png_svg_and_pdf_at_200_dpi(constructed, tmp_path):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = compare(constructed.argv("--out", str(tmp_path), "--no-log", "--format", "markdown"))
    assert code == 0
    for stem in STEMS:
        with Image.open(tmp_path / f"{stem}.png") as png:
            assert png.info["dpi"] == pytest.approx((200, 200), abs=0.01)
        assert (tmp_path / f"{stem}.svg").read_text(encoding="utf-8").lstrip().startswith("<?xml")
        assert (tmp_path / f"{stem}.pdf").read_bytes().startswith(b"%PDF")
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert all(f"]({stem}.{ext})" in report for stem in STEMS for ext in ("png", "svg", "pdf"))


def test_curve_band_is_median_and_quartiles_over_the_runs_at_each_step():
    rng = np.random.default_rng(1)
    histories = [pd.DataFrame({"step": range(1, n + 1), "value": rng.normal(40, 3, n)}) for n in (5, 5, 3, 2, 5, 1)]
    band = curve_band(histories).set_index("step")
    for step in range(1, 6):
        values = [h.loc[h["step"] == step, "value"].iloc[0] for h in histories if step <= len(h)]
        assert band.loc[step, "runs"] == len(values)
        assert band.loc[step, "median"] == pytest.approx(np.median(values))
        assert band.loc[step, ["low", "high"]].tolist() == pytest.approx(np.percentile(values, [25, 75]))
    assert curve_band([]).empty
