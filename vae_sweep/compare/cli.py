"""``vae-compare``'s command line: the argparse parser and the command that ties the modules together.

``main(argv)`` parses, ``run(args)`` connects (``sources``), ``build`` reads and checks the
input and computes the tables (``tables``, ``report.compare_runs``), then the report is
printed or written (``report``). Bad input raises ``vae_sweep.errors.UsageError``;
``vae_sweep.cli.compare`` turns it, and argparse's ``SystemExit``, into the exit code.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from vae_sweep.compare.basis import Basis
from vae_sweep.compare.report import ARTIFACT_FOLDER, FORMATS, Comparison, compare_runs, render, to_stdout, write_report
from vae_sweep.compare.sources import (
    connect,
    find_replication,
    load_curves,
    load_runs,
    load_study,
    param_importances,
    resolve_target,
)
from vae_sweep.compare.tables import BINS, MAX_LEVELS, MIN_RUNS, available_metrics, default_keys, resolve_keys
from vae_sweep.errors import UsageError
from vae_sweep.names import DEFAULT_EXPERIMENT, DEFAULT_STORAGE, DEFAULT_TRACKING_URI

HEADLINED = ("terminal", "markdown", "html")  # formats whose stdout report starts with the headline


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(
        prog="vae-compare",
        description=(
            "Compare optimization techniques across a study's trials: one table per technique\n"
            "(runs by state, best / median / mean / std of a metric over completed runs, the winner:\n"
            "the best median among options with at least --min-runs runs), the top trials, Optuna\n"
            "parameter importances and, with --out, plots logged on the study's parent run. With\n"
            "replicates (vae-replicate STUDY), a verdict per technique with 95% intervals first."
        ),
        epilog=(
            "examples:\n"
            "  vae-compare techniques\n"
            "  vae-compare techniques --by optimizer,scheduler --metric test_loss --format markdown --out reports/\n"
            "  vae-compare techniques --by optimizer.lr --top 5\n"
            "  vae-compare techniques --at-epoch 3 --min-runs 5\n"
            "\nSee docs/compare.md."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cli.add_argument(
        "target", help="a study name, else an MLflow experiment name, else a parent run id (tried in that order)"
    )
    cli.add_argument(
        "--tracking-uri",
        default=os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI,
        metavar="URI",
        help="MLflow tracking store (default: $MLFLOW_TRACKING_URI or %(default)s)",
    )
    cli.add_argument(
        "--experiment",
        default=DEFAULT_EXPERIMENT,
        metavar="NAME",
        help="experiment holding the study (default: %(default)s)",
    )
    cli.add_argument(
        "--storage",
        default=DEFAULT_STORAGE,
        metavar="URL",
        help="Optuna storage, for parameter importances; skipped with a note when the study is not there "
        "(default: %(default)s)",
    )
    cli.add_argument(
        "--by",
        metavar="KEYS",
        help="comma-separated techniques (optimizer, scheduler, activation, normalization, dropout, regularization) "
        f"or param keys (optimizer.lr, model.latent_dim); a numeric param with more than {MAX_LEVELS} values is "
        f"split into {BINS} quantile ranges (default: every technique that differs between runs)",
    )
    cli.add_argument("--metric", default="val_loss", help="metric to rank by (default: %(default)s; lower is better)")
    cli.add_argument("--maximize", action="store_true", help="higher --metric is better")
    cli.add_argument(
        "--min-runs",
        type=int,
        default=MIN_RUNS,
        metavar="N",
        help="compared runs an option needs to win; options with fewer are marked thin (default: %(default)s)",
    )
    cli.add_argument(
        "--at-epoch",
        type=int,
        metavar="N",
        help="compare every run's --metric at epoch N, read from its history, pruned runs that reached N "
        "included (default: compare completed runs only; pruned runs are counted, not compared)",
    )
    cli.add_argument(
        "--top", type=int, default=10, metavar="K", help="rows in the top-trials table (default: %(default)s)"
    )
    cli.add_argument("--format", choices=FORMATS, default="terminal", help="report format (default: %(default)s)")
    cli.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="write the report and the plots (PNG, SVG, PDF) into DIR and log them on the study's parent run under "
        f"{ARTIFACT_FOLDER}/ (default: print the report, no plots)",
    )
    cli.add_argument("--no-log", action="store_true", help="with --out: do not log the files on the parent run")
    return cli


def build(client, args: argparse.Namespace) -> Comparison:
    """Resolve the target, read its runs, check ``--metric`` and ``--by``, compute the tables
    and the importances."""
    source, notes = resolve_target(client, args.target, args.experiment)
    runs = load_runs(client, source)
    if runs.empty:
        raise UsageError(f"{source.describe()} has no trial runs")
    metrics = available_metrics(runs)
    if args.metric not in metrics:
        raise UsageError(f"unknown metric {args.metric!r}; the runs have: {', '.join(metrics)}")
    names = [name.strip() for name in (args.by or "").split(",") if name.strip()]
    if names:
        keys = resolve_keys(names, runs)
    else:
        keys, constant = default_keys(runs)
        if constant:
            notes.append("same in every run: " + ", ".join(f"{k}={v}" for k, v in constant.items()))
    if not keys:
        raise UsageError(
            "the runs have no technique.* tags; name what to group by with --by (e.g. --by optimizer.name)"
        )
    try:
        basis = Basis(args.metric, at_epoch=args.at_epoch, min_runs=args.min_runs)
    except ValueError as error:
        raise UsageError(str(error)) from None
    histories = load_curves(client, list(runs["run_id"]), args.metric) if basis.at_epoch else None
    comparison = compare_runs(source, runs, keys, basis, histories=histories, maximize=args.maximize, top=args.top)
    comparison.notes[:0] = notes
    add_verdicts(client, comparison, args)
    study, note = load_study(args.storage, source)
    if study is not None:
        comparison.importances, more = param_importances(study)
        comparison.notes += more
    elif note:
        comparison.notes.append(note)
    return comparison


def add_verdicts(client, comparison: Comparison, args: argparse.Namespace) -> None:
    """Verdicts from the study's replicates (``vae-replicate``), or from its own runs when they
    repeat configurations over seeds (a grid over ``trainer.seed``); neither: none."""
    from vae_sweep.compare.verdicts import repeats_configurations, verdicts  # scipy: imported only here

    replication = find_replication(client, comparison.source)
    if replication is not None:
        replicates, searched = load_runs(client, replication), comparison.runs
    elif repeats_configurations(comparison.runs, args.metric):
        replication, replicates, searched = comparison.source, comparison.runs, None
    else:
        return
    comparison.replication = replication
    comparison.verdicts = verdicts(replicates, comparison.keys, args.metric, maximize=args.maximize, searched=searched)


def comparison(argv: Sequence[str]):  # -> tuple[MlflowClient, Comparison]
    """The client and the ``Comparison`` that ``vae-compare ARGV`` would report, not rendered:
    for notebooks and tests that want the numbers or the figures (``plots.draw``)."""
    args = parser().parse_args(list(argv))
    client = connect(args.tracking_uri)
    return client, build(client, args)


def run(args: argparse.Namespace) -> int:
    """The command behind ``main``; ``UsageError`` escapes to it. The report (or the list of
    files written) goes to stdout. The line saying what ``target`` resolved to goes to stderr
    only when stdout does not start with the report's own headline (``--out``, csv, json):
    printed beside a terminal, markdown or HTML report, it was the same header twice."""
    if args.top < 1:
        raise UsageError(f"--top must be at least 1, got {args.top}")
    client = connect(args.tracking_uri)
    comparison = build(client, args)
    if args.out is not None or args.format not in HEADLINED:
        print(f"vae-compare: {comparison.source.describe()}, {len(comparison.runs)} runs", file=sys.stderr)
    if args.out is None:
        sys.stdout.write(to_stdout(render(comparison, args.format)))
    else:
        write_report(client, comparison, args.out, args.format, log=not args.no_log)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``vae-compare`` with ``argv``: 0 once the report is written; raises ``UsageError`` for
    input it cannot use (``vae_sweep.cli.compare`` prints it and gives the exit code)."""
    return run(parser().parse_args(argv))
