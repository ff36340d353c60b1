"""``vae-replicate STUDY --top K --seeds N``: a study's best configurations trained again with fresh seeds.

It reads the study (Optuna) and its trial runs (MLflow), chooses the configurations
(``choose``), puts one WAITING trial per configuration and seed into the replication study
``STUDY-replicates`` in the same storage (``vae_sweep.sweep.replicates``), and runs that study
with ``vae-train -m``: the study's own recorded command, so the same config groups, space and
launcher, with every trial's params fixed and pruning off. The sweep does the rest, as for any
study: parallel workers, heartbeats, retries, resume. Run it again and it adds only what is
missing (a larger ``--seeds`` or ``--top``, or new best trials of a study that grew), then
completes whatever has not run. ``vae-compare STUDY`` then reads the replicates.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from vae_sweep.errors import UsageError
from vae_sweep.local_stores import absolute_sqlite_url
from vae_sweep.names import (
    COMMAND_ATTR,
    DEFAULT_EXPERIMENT,
    DEFAULT_STORAGE,
    DEFAULT_TRACKING_URI,
    PARENT_RUN_ATTR,
    REPLICATES_OF_ATTR,
    RUN_ID_ATTR,
)
from vae_sweep.replicate.choose import Chosen, choose, fresh_seeds
from vae_sweep.replicate.command import replication_argv

SUFFIX = "-replicates"  # the replication study of STUDY is STUDY-replicates
SEED_PARAM = "params.trainer.seed"


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(
        prog="vae-replicate",
        description=(
            "Train a study's best configurations again with fresh seeds: the best --top complete trials\n"
            "of each option of each technique and overall, --seeds times each, as the trials of the\n"
            "study STUDY-replicates (same storage, MLflow runs under a parent run of their own). Rerun\n"
            "it to complete or grow it; vae-compare STUDY then gives verdicts with confidence intervals."
        ),
        epilog=(
            "examples:\n"
            "  vae-replicate techniques                                  # top 3 x 5 seeds\n"
            "  vae-replicate techniques --top 2 --seeds 3 hydra.sweeper.n_jobs=2\n"
            "  vae-replicate techniques --by optimizer,scheduler\n"
            '\nSee docs/compare.md ("Verdicts from replicates").'
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cli.add_argument("study", help="the Optuna study to replicate (a vae-train -m study)")
    cli.add_argument("--top", type=int, default=3, metavar="K", help="configurations per option (default: %(default)s)")
    cli.add_argument("--seeds", type=int, default=5, metavar="N", help="seeds per configuration (default: %(default)s)")
    cli.add_argument(
        "--by",
        metavar="KEYS",
        help="comma-separated techniques or param keys whose options each get --top configurations "
        "(default: every technique that differs between the study's runs, as vae-compare)",
    )
    cli.add_argument("--storage", default=DEFAULT_STORAGE, metavar="URL", help="Optuna storage (default: %(default)s)")
    cli.add_argument(
        "--tracking-uri",
        default=os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI,
        metavar="URI",
        help="MLflow tracking store of the study's runs (default: $MLFLOW_TRACKING_URI or %(default)s)",
    )
    cli.add_argument(
        "--experiment", default=DEFAULT_EXPERIMENT, metavar="NAME", help="its experiment (default: %(default)s)"
    )
    cli.add_argument(
        "overrides",
        nargs="*",
        metavar="OVERRIDE",
        help="Hydra overrides for the replication sweep, after the study's own (hydra.sweeper.n_jobs=2, "
        "hydra/launcher=submitit_local)",
    )
    return cli


def main(argv: Sequence[str] | None = None) -> int:
    """``vae-replicate`` with ``argv``: the replication sweep's exit code; ``UsageError`` for
    input it cannot use (``vae_sweep.cli.replicate`` prints it and gives the exit code)."""
    args = parser().parse_intermixed_args(argv)  # overrides may come after the options
    if args.top < 1 or args.seeds < 1:
        raise UsageError(f"--top and --seeds must be at least 1, got --top {args.top} --seeds {args.seeds}")
    storage_url = absolute_sqlite_url(args.storage, Path.cwd())
    storage = open_storage(storage_url)
    study = source_study(storage, storage_url, args.study)
    command = study.user_attrs.get(COMMAND_ATTR)
    if not command and not args.overrides:
        raise UsageError(
            f"study {args.study!r} does not record the command that swept it (swept before vae-sweep recorded it, "
            "or by another tool); give its vae-train -m overrides after the options, e.g. "
            f"vae-replicate {args.study} study={args.study}"
        )
    command = command or {"task": [], "hydra": []}
    chosen, seeds = plan(study, args)
    name = f"{args.study}{SUFFIX}"
    added, total = enqueue(storage, name, study, chosen, seeds)
    # Its connections closed before the sweep runs in this process: with one left open on SQLite,
    # the sweep never saw what its worker processes wrote and relaunched them for ever.
    storage.engine.dispose()
    print(describe(args.study, name, chosen, seeds, added, total))
    code = run_vae_train(
        replication_argv(command, study=name, n_trials=total, storage=storage_url, extra=args.overrides)
    )
    if code == 0:
        print(f"Verdicts: vae-compare {args.study}  (reads the replicates of study {name!r})")
    return code


def open_storage(storage_url: str):  # -> RDBStorage
    from vae_sweep.local_stores import sqlite_file
    from vae_sweep.sweep.study import make_storage

    path = sqlite_file(storage_url)
    if path is not None and not path.is_file():
        raise UsageError(f"no Optuna storage at {path} (pass --storage)")
    return make_storage(storage_url)


def source_study(storage, storage_url: str, name: str):  # -> optuna.Study
    import optuna

    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = ", ".join(s.study_name for s in optuna.get_all_study_summaries(storage)) or "none"
        raise UsageError(f"no study {name!r} in {storage_url}; studies there: {names}") from None
    if len(study.directions) > 1:
        raise UsageError(f"study {name!r} has {len(study.directions)} objectives; vae-replicate ranks by one")
    return study


def plan(study, args: argparse.Namespace) -> tuple[list[Chosen], list[int]]:
    """The configurations to replicate and the seeds, from the study's trials and MLflow runs."""
    import optuna

    from vae_sweep.compare.sources import connect, load_runs, resolve_target
    from vae_sweep.compare.tables import default_keys, resolve_keys

    client = connect(args.tracking_uri)
    source, _ = resolve_target(client, args.study, args.experiment)
    runs = load_runs(client, source)
    if runs.empty:
        raise UsageError(f"{source.describe()} has no trial runs to group by technique")
    names = [name.strip() for name in (args.by or "").split(",") if name.strip()]
    keys = resolve_keys(names, runs) if names else default_keys(runs)[0]
    maximize = study.direction is optuna.study.StudyDirection.MAXIMIZE
    chosen = choose(study.get_trials(deepcopy=False), runs, keys, top=args.top, maximize=maximize)
    if not chosen:
        raise UsageError(f"study {args.study!r} has no complete (feasible) trial to replicate")
    used = {int(float(seed)) for seed in runs.get(SEED_PARAM, []) if seed is not None and str(seed) != "nan"}
    return chosen, fresh_seeds(args.seeds, used=used)


def enqueue(storage, name: str, source, chosen: list[Chosen], seeds: list[int]) -> tuple[int, int]:
    """The replication study made or opened, the replicates it lacks added; (added, its replicates)."""
    import optuna

    from vae_sweep.sweep.locks import study_lock
    from vae_sweep.sweep.replicates import add_replicates
    from vae_sweep.sweep.study import is_retry, open_study

    directions = [d.name.lower() for d in source.directions]
    with study_lock(storage, name):
        study, _ = open_study(name, storage, directions, optuna.samplers.RandomSampler(), optuna.pruners.NopPruner())
        if REPLICATES_OF_ATTR not in study.user_attrs:
            study.set_user_attr(
                REPLICATES_OF_ATTR, {"of_study": source.study_name, "of_run": source.user_attrs.get(PARENT_RUN_ATTR)}
            )
        runs = {c.number: c.trial.user_attrs[RUN_ID_ATTR] for c in chosen if RUN_ID_ATTR in c.trial.user_attrs}
        added = add_replicates(study, [c.trial for c in chosen], seeds, of_study=source.study_name, runs=runs)
        total = sum(1 for trial in study.get_trials(deepcopy=False) if not is_retry(trial))
    return added, total


def describe(source: str, name: str, chosen: list[Chosen], seeds: list[int], added: int, total: int) -> str:
    lines = [
        f"Replicating {len(chosen)} configurations of study {source!r} with seeds {', '.join(map(str, seeds))}: "
        f"study {name!r}, {total} runs ({added} new)"
    ]
    lines += [f"  trial {c.number}: {', '.join(c.reasons)}" for c in chosen]
    return "\n".join(lines)


def run_vae_train(argv: list[str]) -> int:
    """``vae-train ARGV`` in this process (its report and errors are its own): its exit code."""
    from vae_sweep.cli import train_app

    saved = sys.argv
    sys.argv = ["vae-train", *argv]
    try:
        train_app()
    except SystemExit as exit_:
        return int(exit_.code or 0)
    finally:
        sys.argv = saved
    return 0
