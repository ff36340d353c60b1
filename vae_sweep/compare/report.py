"""``vae-compare``'s report: a ``Comparison`` of a study's runs, rendered and written.

``compare_runs`` gathers the tables (``vae_sweep.compare.tables``) on a ``Basis`` (which values
are compared) into a ``Comparison``; ``render`` turns it into a terminal (100 columns, see
``vae_sweep.compare.terminal``), markdown, CSV, HTML or JSON report (file name -> text),
``to_stdout`` into what is printed, and ``write_report`` writes the report and the plots
(``vae_sweep.compare.plots``, imported only then: no matplotlib otherwise) into a folder and
logs them on the study's MLflow parent run.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from tabulate import tabulate

from vae_sweep.compare.basis import Basis
from vae_sweep.compare.sources import Source
from vae_sweep.compare.tables import (
    SIDE_METRICS,
    STATE_COLUMNS,
    STATES,
    default_top_columns,
    technique_table,
    top_trials,
    trial_states,
)
from vae_sweep.compare.terminal import SHORT, WIDTH, fill, fit_table
from vae_sweep.compare.units import label

if TYPE_CHECKING:
    from vae_sweep.compare.verdicts import Verdicts

FORMATS = ("terminal", "markdown", "csv", "html", "json")
REPORT_FILES = {"terminal": "report.txt", "markdown": "report.md", "html": "report.html", "json": "report.json"}
ARTIFACT_FOLDER = "compare"
TERMINAL_NAMES = (
    "Columns: runs = count, done = completed, recon / kl / bpd = test_recon / test_kl / test_bpd, "
    "AU = active_units, sec = train_seconds; mean in --format markdown"
)


@dataclass
class Comparison:
    """Everything a report shows; ``render`` turns it into text, ``write_plots`` into figures.
    ``values`` holds the compared value per run (``basis.values``: NaN = counted, not
    compared); ``histories`` the metric histories read so far (metric -> run id -> ``step``,
    ``value``), so the plots do not read them twice."""

    source: Source
    basis: Basis
    maximize: bool
    runs: pd.DataFrame
    keys: dict[str, str]  # dimension -> runs column
    techniques: dict[str, pd.DataFrame]
    top: pd.DataFrame
    values: pd.Series
    histories: dict[str, dict[str, pd.DataFrame]] = field(default_factory=dict)
    importances: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    replication: Source | None = None  # the study's replicates (vae-replicate), when it has them
    verdicts: Verdicts | None = None  # computed from them

    def verdict_lines(self) -> list[str]:
        """The top-level summary: one sentence per technique from the replicates, or a plain
        statement that the ranking is from single runs."""
        if self.verdicts is None or self.replication is None:
            study = self.source.study_name or "STUDY"
            return [
                f"Ranking from single runs: one seed per configuration, no interval. vae-replicate {study} "
                "replicates the best configurations with fresh seeds for verdicts with 95% intervals"
            ]
        where = (
            "the study's own runs, which repeat configurations over seeds"
            if self.replication == self.source
            else self.replication.describe()
        )
        return [
            f"Verdicts from {self.verdicts.runs} complete replicate runs ({where}): the mean of "
            f"{label(self.metric)} over fresh seeds, 95% intervals; see docs/compare.md",
            *(f"- {sentence}" for sentence in self.verdicts.sentences()),
        ]

    @property
    def metric(self) -> str:
        return self.basis.metric

    def headline(self) -> str:
        counts = trial_states(self.runs).value_counts()
        states = ", ".join(f"{counts.get(s, 0)} {label}" for label, s in STATE_COLUMNS.items())
        running = counts.get("RUNNING", 0)
        return f"{self.source.describe()}: {len(self.runs)} runs ({states}{f', {running} running' if running else ''})"

    def metric_line(self) -> str:
        ranked = "higher first" if self.maximize else "lower first"
        return (
            f"Per option: runs by state; n = runs compared; best / median / mean / std of "
            f"{label(self.metric, at_epoch=self.basis.at_epoch)}, ranked {ranked}; medians over completed "
            f"runs of {', '.join(SIDE_METRICS)}"
        )


def compare_runs(
    source: Source,
    runs: pd.DataFrame,
    keys: Mapping[str, str],
    basis: Basis,
    *,
    histories: Mapping[str, pd.DataFrame] | None = None,
    maximize: bool = False,
    top: int = 10,
) -> Comparison:
    """The technique tables and the top-``top`` table, for ``keys`` (dimension -> runs column),
    on ``basis``; ``histories`` (run id -> history of ``basis.metric``) is needed with ``--at-epoch``."""
    values = basis.values(runs, histories)
    techniques = {
        name: technique_table(runs, column, basis.metric, values=values, maximize=maximize, min_runs=basis.min_runs)
        for name, column in keys.items()
    }
    columns = default_top_columns(runs)
    columns.update({name: column for name, column in keys.items() if column not in columns.values()})
    best = top_trials(runs, basis.metric, values=values, maximize=maximize, top=top, columns=columns)
    comparison = Comparison(source, basis, maximize, runs, dict(keys), techniques, best, values)
    if histories is not None:
        comparison.histories[basis.metric] = dict(histories)
    if values.isna().all() and basis.at_epoch is not None:
        last = max((int(h["step"].max()) for h in (histories or {}).values() if len(h)), default=0)
        comparison.notes.append(
            f"no run logged {basis.metric} at epoch {basis.at_epoch} (the longest went to epoch {last}): no winner"
        )
    elif values.isna().all():
        comparison.notes.append(f"no completed run has {basis.metric}: no winner (--at-epoch N compares pruned runs)")
    return comparison


def display(table: pd.DataFrame) -> pd.DataFrame:
    """For people: ★ in front of the winner and ``thin`` in front of options with too few runs
    to win, ``compared`` as ``n``, run ids shortened, ``median_`` dropped from the side metrics'
    names (the metric line says they are medians), missing values as None."""
    shown = table.rename(columns={"compared": "n", **{f"median_{side}": side for side in SIDE_METRICS}})
    if "winner" in shown:
        thin = shown.pop("thin") if "thin" in shown else pd.Series(False, index=shown.index)
        mark = shown.pop("winner").map({True: "★", False: ""}).where(~thin, "thin")
        shown.insert(0, "", mark)
    if "run_id" in shown:
        shown.insert(shown.columns.get_loc("run_id"), "run", shown.pop("run_id").str[:8])
    return shown.astype(object).where(shown.notna(), None)


def sections(comparison: Comparison) -> list[tuple[str, pd.DataFrame]]:
    """(title, table) in report order: the replicates' tables first when there are any."""
    epoch = f" at epoch {comparison.basis.at_epoch}" if comparison.basis.at_epoch else ""
    parts = []
    if comparison.verdicts is not None:
        parts += [
            (f"{name}, replicated (mean and 95% interval of {comparison.metric} over seeds)", table)
            for name, table in comparison.verdicts.tables.items()
        ]
        gap = "replicated mean minus search value: what the search run owed to its seed"
        parts.append((f"Search vs replicates, per configuration ({gap})", comparison.verdicts.gaps))
    searched = " in the search" if comparison.verdicts is not None else ""
    parts += [(f"{name}{searched} (by {comparison.metric}{epoch})", t) for name, t in comparison.techniques.items()]
    runs = "completed runs" if comparison.basis.at_epoch is None else "runs"
    parts.append((f"Top {len(comparison.top)} {runs} by {comparison.metric}{epoch}", comparison.top))
    if comparison.importances is not None:
        parts.append(("Parameter importances (Optuna)", comparison.importances))
    return parts


def text_table(table: pd.DataFrame, tablefmt: str) -> str:
    return tabulate(display(table), headers="keys", tablefmt=tablefmt, showindex=False, missingval="-", floatfmt="g")


def terminal_table(table: pd.DataFrame, comparison: Comparison) -> tuple[str, list[str]]:
    """A section's table at most ``terminal.WIDTH`` wide: short names, no ``mean`` (the median is
    what is ranked), long labels wrapped, then the least needed columns left out."""
    shown = display(table).rename(columns=SHORT)
    if "low" not in shown:  # the median is what is ranked; a replicated table ranks its mean
        shown = shown.drop(columns=["mean"], errors="ignore")
    if "option" in shown:
        return fit_table(shown, wrap={"option": 16}, drop=["sec", "bpd", "std", "AU"])
    if "run" not in shown:  # parameter importances: two columns
        return fit_table(shown)
    extra = [c for c in shown.columns if c not in ("trial", "run", "state", comparison.metric)]
    return fit_table(shown, wrap=dict.fromkeys(extra, 14), drop=extra[::-1])


def render_terminal(comparison: Comparison) -> str:
    lines = [fill(comparison.headline()), *map(fill, comparison.verdict_lines()), ""]
    lines += [fill(comparison.metric_line()), fill(comparison.basis.describe()), fill(TERMINAL_NAMES), ""]
    left_out: dict[str, None] = {}
    for title, table in sections(comparison):
        text, dropped = terminal_table(table, comparison)
        lines += [title, text, ""]
        left_out.update(dict.fromkeys(dropped))
    if left_out:
        lines.append(
            fill(f"Note: left out to fit {WIDTH} columns: {', '.join(left_out)}; --format markdown has every column")
        )
    lines += [fill(f"Note: {note}") for note in comparison.notes]
    return "\n".join(lines).rstrip() + "\n"


def render_markdown(comparison: Comparison) -> str:
    lines = [f"# vae-compare: {comparison.source.kind} {comparison.source.name}", "", comparison.headline() + ".", ""]
    head, *verdicts = comparison.verdict_lines()
    lines += ["## Verdicts", "", head + ".", "", *verdicts, *([""] if verdicts else [])]
    lines += [comparison.metric_line() + ".", "", comparison.basis.describe(), ""]
    for title, table in sections(comparison):
        lines += [f"## {title}", "", text_table(table, "github"), ""]
    if comparison.plots:
        lines += ["## Plots", ""]
        for stem, files in plot_files(comparison.plots).items():
            others = ", ".join(f"[{Path(f).suffix[1:].upper()}]({f})" for f in files[1:])
            lines += [f"![{stem}]({files[0]})" + (f" ({others})" if others else ""), ""]
    if comparison.notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in comparison.notes] + [""]
    return "\n".join(lines)


def render_html(comparison: Comparison) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8">',
        f"<title>vae-compare: {html.escape(comparison.source.name)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}img{max-width:100%}</style>",
        "</head><body>",
        f"<h1>vae-compare: {html.escape(comparison.source.kind)} {html.escape(comparison.source.name)}</h1>",
        f"<p>{html.escape(comparison.headline())}.<br>{html.escape(comparison.metric_line())}.<br>"
        f"{html.escape(comparison.basis.describe())}</p>",
        "<h2>Verdicts</h2>",
        "<p>" + "<br>".join(html.escape(line) for line in comparison.verdict_lines()) + "</p>",
    ]
    for title, table in sections(comparison):
        parts += [
            f"<h2>{html.escape(title)}</h2>",
            display(table).to_html(index=False, na_rep="-", float_format="{:g}".format),
        ]
    if comparison.plots:
        parts.append("<h2>Plots</h2>")
        for stem, files in plot_files(comparison.plots).items():
            links = " ".join(f'<a href="{html.escape(f)}">{html.escape(Path(f).suffix[1:].upper())}</a>' for f in files)
            parts.append(f'<p><img src="{html.escape(files[0])}" alt="{html.escape(stem)}"><br>{links}</p>')
    if comparison.notes:
        parts += ["<h2>Notes</h2><ul>"] + [f"<li>{html.escape(note)}</li>" for note in comparison.notes] + ["</ul>"]
    return "\n".join([*parts, "</body></html>", ""])


def plot_files(plots: list[str]) -> dict[str, list[str]]:
    """Plot file names by figure, the PNG first (it is what a page shows; SVG and PDF are linked)."""
    figures: dict[str, list[str]] = {}
    for name in plots:
        figures.setdefault(Path(name).stem, []).append(name)
    return {stem: sorted(files, key=lambda f: not f.endswith(".png")) for stem, files in figures.items()}


def records(table: pd.DataFrame) -> list[dict[str, object]]:
    """JSON-ready rows: NaN -> null, numpy scalars -> Python."""
    return json.loads(table.to_json(orient="records", double_precision=15))


def render_json(comparison: Comparison) -> str:
    source = comparison.source
    document = {
        "source": {
            "kind": source.kind,
            "name": source.name,
            "experiment": source.experiment,
            "parent_run_id": source.parent_run_id,
            "study_name": source.study_name,
        },
        "metric": comparison.metric,
        "maximize": comparison.maximize,
        "basis": {
            "compared": comparison.basis.name,
            "at_epoch": comparison.basis.at_epoch,
            "min_runs": comparison.basis.min_runs,
            "note": comparison.basis.describe(),
        },
        "runs": len(comparison.runs),
        "states": {state: int((trial_states(comparison.runs) == state).sum()) for state in STATES},
        "techniques": {name: records(table) for name, table in comparison.techniques.items()},
        "top_trials": records(comparison.top),
        "importances": None if comparison.importances is None else records(comparison.importances),
        "verdicts": verdict_record(comparison),
        "plots": comparison.plots,
        "notes": comparison.notes,
    }
    return json.dumps(document, indent=2, allow_nan=False) + "\n"


def verdict_record(comparison: Comparison) -> dict[str, object] | None:
    """The verdicts for JSON: sentences, per-option intervals, differences, search-vs-replicate gaps."""
    found = comparison.verdicts
    if found is None or comparison.replication is None:
        return None
    return {
        "replication": {
            "study_name": comparison.replication.name,
            "parent_run_id": comparison.replication.parent_run_id,
        },
        "sentences": found.sentences(),
        "techniques": {name: records(table) for name, table in found.tables.items()},
        "differences": {name: [d.record() for d in ds] for name, ds in found.differences.items()},
        "gaps": records(found.gaps),
    }


def long_table(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """One table per dimension as one long table, a ``dimension`` column first."""
    long = pd.concat([table.assign(dimension=name) for name, table in tables.items()], ignore_index=True)
    long.insert(0, "dimension", long.pop("dimension"))
    return long


def csv_files(comparison: Comparison) -> dict[str, str]:
    """``techniques.csv`` (all dimensions, long: a ``dimension`` column first),
    ``top_trials.csv``, when computed ``importances.csv``, with replicates ``replicated.csv`` and
    ``gaps.csv``, and ``notes.txt``: the headline, the verdicts, which values were compared (a
    CSV cannot say it) and the notes."""
    files = {
        "techniques.csv": long_table(comparison.techniques).to_csv(index=False),
        "top_trials.csv": comparison.top.to_csv(index=False),
    }
    if comparison.importances is not None:
        files["importances.csv"] = comparison.importances.to_csv(index=False)
    if comparison.verdicts is not None:
        files["replicated.csv"] = long_table(comparison.verdicts.tables).to_csv(index=False)
        files["gaps.csv"] = comparison.verdicts.gaps.to_csv(index=False)
    lines = [comparison.headline(), *comparison.verdict_lines(), comparison.metric_line(), comparison.basis.describe()]
    lines += comparison.notes
    files["notes.txt"] = "\n".join(lines) + "\n"
    return files


def render(comparison: Comparison, fmt: str) -> dict[str, str]:
    """The report in ``fmt`` as file name -> text."""
    if fmt == "csv":
        return csv_files(comparison)
    renderer = {"terminal": render_terminal, "markdown": render_markdown, "html": render_html, "json": render_json}
    return {REPORT_FILES[fmt]: renderer[fmt](comparison)}


def to_stdout(files: Mapping[str, str]) -> str:
    """One file as it is; several (csv) each under a ``# name`` line, separated by a blank line."""
    if len(files) == 1:
        return next(iter(files.values()))
    return "\n".join(f"# {name}\n{text}" for name, text in files.items())


def write_report(client, comparison: Comparison, folder: Path, fmt: str, *, log: bool) -> None:
    """Plots and the report into ``folder``, then (``log``) onto the parent run under ``compare/``;
    what was written, and notes, to stdout."""
    folder.mkdir(parents=True, exist_ok=True)
    from vae_sweep.compare.plots import write_plots  # matplotlib: imported only to draw

    written = write_plots(client, comparison, folder)
    comparison.plots = [path.name for path in written]
    for name, text in render(comparison, fmt).items():
        (folder / name).write_text(text, encoding="utf-8")
        written.append(folder / name)
    for path in written:
        print(f"wrote {path}")
    parent = comparison.source.parent_run_id
    if log and parent is None:
        comparison.notes.append(f"not logged to MLflow: {comparison.source.describe()} has no parent run")
    elif log:
        for path in written:
            client.log_artifact(parent, str(path), ARTIFACT_FOLDER)
        print(f"logged {len(written)} files under {ARTIFACT_FOLDER}/ on parent run {parent}")
    for note in comparison.notes:
        print(f"Note: {note}")
