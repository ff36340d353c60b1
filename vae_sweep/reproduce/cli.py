"""``vae-reproduce``: re-run a logged run from its ``config.yaml`` and check that the numbers match.

The command line, and the order of the steps the other modules of this package do: find the run
(``find``), read what it logged (``logged``), train it again (``rerun``), compare (``diff``) and
report. A run is named by its MLflow id, or found through a study's parent run
(``--study NAME --best``, ``--study NAME --trial N``). Its ``config.yaml`` is fetched, read as
plain YAML data and validated by ``parse_run_config`` (only registered spec classes may be named
as ``_target_``), then trained again as a new run tagged ``reproduced_from=<run id>`` in the same
store. The original and reproduced final metrics are printed side by side and the weights
compared bit for bit (the original ``state_dict`` is loaded with ``torch.load(weights_only=True)``).

Exit codes: 0 identical or within ``--tolerance``, 1 different, 2 the run could not be
reproduced (unknown run, study or trial; missing or refused ``config.yaml``; ...).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence

import torch
from mlflow.entities import Run

from vae_sweep.errors import ConfigError, DataError, TrainingDiverged, UsageError
from vae_sweep.names import DEFAULT_EXPERIMENT, DEFAULT_TRACKING_URI, INCOMPLETE_TAG, VERDICT_TAG, by_metric_name
from vae_sweep.reproduce.command import train_command
from vae_sweep.reproduce.diff import (
    MetricDiff,
    Verdict,
    WeightsDiff,
    compare_metrics,
    compare_weights,
    environment_changes,
    metrics_table,
    verdict,
)
from vae_sweep.reproduce.find import get_run, open_store, select_run
from vae_sweep.reproduce.logged import NO_WEIGHTS, fetch_config, load_weights
from vae_sweep.reproduce.rerun import PROG, REPRODUCED_FROM_TAG, Reproduction, match_threads, refuse_unfinished, rerun
from vae_sweep.track.run import environment_tags
from vae_sweep.train.config import CONFIG_VERSION
from vae_sweep.train.extensions import missing_extensions


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Re-run a logged vae-sweep run from its config.yaml and compare the final metrics and weights.",
        epilog=f"exit codes: 0 identical or within --tolerance, 1 different, 2 could not reproduce. "
        f"This vae-sweep reads config version {CONFIG_VERSION}.",
    )
    parser.add_argument("run_id", nargs="?", help="the MLflow run id to reproduce")
    parser.add_argument("--study", help="find the run through this study's MLflow parent run")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--best", action="store_true", help="the study's best run (its parent's best.run_id)")
    which.add_argument("--trial", type=int, metavar="N", help="the study's trial number N")
    parser.add_argument(
        "--tracking-uri",
        default=os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI),
        help="the MLflow store the run is in; the reproduction is logged there too "
        "(default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)",
    )
    parser.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="where --study looks (default: vae-sweep)")
    parser.add_argument("--no-track", action="store_true", help="re-run without logging a new MLflow run")
    parser.add_argument(
        "--extensions",
        type=lambda text: [name for name in text.split(",") if name],
        default=[],
        metavar="MODULE[,MODULE]",
        help="extension modules the run's config lists that you trust to import here (installed "
        "vae_sweep.extensions entry points are imported without it)",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=0.0,
        help="relative difference still accepted when not bit-identical (default 0: identical or exit 1)",
    )
    parser.add_argument(
        "--print-command",
        action="store_true",
        help="print the vae-train command that recreates the config; train nothing",
    )
    args = parser.parse_args(list(argv))
    if (args.run_id is None) == (args.study is None):
        parser.error("name a run: RUN_ID, or --study NAME with --best or --trial N")
    if args.study is not None and not (args.best or args.trial is not None):
        parser.error("--study needs --best or --trial N")
    if args.run_id is not None and (args.best or args.trial is not None):
        parser.error("--best and --trial go with --study, not with a RUN_ID")
    if not args.tolerance >= 0:
        parser.error(f"--tolerance must be >= 0, got {args.tolerance}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """``vae-reproduce`` with ``argv``: 0 identical (or within the tolerance, or recovered), 1
    different or not verified; raises ``UsageError`` when the run cannot be reproduced
    (``vae_sweep.cli.reproduce`` prints it and gives the exit code)."""
    return reproduce(parse_args(sys.argv[1:] if argv is None else argv))


def reproduce(args: argparse.Namespace) -> int:
    uri = args.tracking_uri
    client = open_store(uri)
    selection = select_run(
        client, run_id=args.run_id, study=args.study, best=args.best, trial=args.trial, experiment=args.experiment
    )
    run = get_run(client, selection.run_id, uri)
    missing = missing_extensions(run.data.tags)
    if missing:
        raise UsageError(
            f"run {run.info.run_id} was trained with extension(s) not installed here: {'; '.join(missing)}"
        )
    config = fetch_config(client, run, args.extensions)
    if args.print_command:
        print(f"# {selection.description}", file=sys.stderr)
        try:
            print(train_command(config))
        except ConfigError as error:
            raise UsageError(f"cannot write a vae-train command for run {run.info.run_id}: {error}") from None
        return 0
    incomplete = INCOMPLETE_TAG in run.data.tags  # closed after its tracking server went away: a recovery
    if not incomplete:
        refuse_unfinished(run)
    original_weights = load_weights(client, run.info.run_id)
    print(f"Reproducing {selection.description} from {uri}")
    try:
        match_threads(config, run.data.tags)
        reproduction = rerun(config, run.info.run_id, tracking_uri=uri, track=not args.no_track)
    except (ConfigError, DataError) as error:
        raise UsageError(f"cannot re-run {run.info.run_id} here: {error}") from None
    except TrainingDiverged as error:
        print(f"The original finished, the reproduction did not: {error}")
        print("Verdict: DIFFERENT")
        return 1
    rows = compare_metrics(by_metric_name(run.data.metrics), reproduction.metrics)
    weights = compare_weights(original_weights, reproduction.state_dict) if isinstance(original_weights, dict) else None
    unreadable = original_weights if isinstance(original_weights, str) and original_weights != NO_WEIGHTS else None
    result = verdict(rows, weights, args.tolerance, unreadable)
    if incomplete and not rows:
        result = Verdict(
            "recovered",
            "recovered: the original run's final metrics never reached its tracking server, so there is nothing "
            "to compare; the new run holds them",
        )
    report(run, reproduction, rows, weights, original_weights, result)
    if reproduction.run_id is not None:
        client.set_tag(reproduction.run_id, VERDICT_TAG, result.label)
    return result.exit_code


def report(
    run: Run,
    reproduction: Reproduction,
    rows: Sequence[MetricDiff],
    weights: WeightsDiff | None,
    original_weights: Mapping[str, torch.Tensor] | str,
    result: Verdict,
) -> None:
    new_run = reproduction.run_id or "not logged (--no-track)"
    print(f"New run: {new_run}" + (f" (tag {REPRODUCED_FROM_TAG}={run.info.run_id})" if reproduction.run_id else ""))
    print()
    print(metrics_table(rows))
    print("* timing: shown, not part of the verdict")
    print()
    if weights is None:
        print(f"Weights: not compared: {original_weights}")
    elif weights.equal:
        print(f"Weights: bitwise equal ({weights.tensors} tensors)")
    else:
        names = ", ".join(weights.different[:5]) + (", ..." if len(weights.different) > 5 else "")
        shown = f"{len(weights.different)} of {weights.tensors}"
        print(f"Weights: {shown} tensors differ ({names}); largest relative difference {weights.max_rel_diff:.3g}")
    changes = environment_changes(run.data.tags, environment_tags())
    if changes:
        print(f"Environment: changed since the original: {'; '.join(changes)}")
    else:
        print("Environment: same package versions and git commit as the original")
    print(f"Verdict: {result.text}")
    if not result.identical and result.label != "recovered":
        print("Why results differ and what to do: docs/reproduce.md, 'When the numbers differ'")
