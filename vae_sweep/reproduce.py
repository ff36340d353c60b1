"""``vae-reproduce``: re-run a logged run from its ``config.yaml`` and check that the numbers match.

A run is named by its MLflow id, or found through a study's parent run (``--study NAME --best``,
``--study NAME --trial N``). Its ``config.yaml`` is fetched, read as plain YAML data and
validated by ``parse_run_config`` (only registered spec classes may be named as ``_target_``),
then trained again as a new run tagged ``reproduced_from=<run id>`` in the same store. The
original and reproduced final metrics are printed side by side and the weights compared bit
for bit (the original ``state_dict`` is loaded with ``torch.load(weights_only=True)``).

Exit codes: 0 identical or within ``--tolerance``, 1 different, 2 the run could not be
reproduced (unknown run, study or trial; missing or refused ``config.yaml``; ...).

Example:
    >>> [d.verdict_part for d in compare_metrics({"test_loss": 1.0, "train_seconds": 2.0},
    ...                                          {"test_loss": 1.0, "train_seconds": 3.0})]
    [True, False]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
from tabulate import tabulate

from vae_sweep.config import CONFIG_VERSION, NoTracking, parse_run_config
from vae_sweep.errors import ConfigError, DataError, TrainingDiverged
from vae_sweep.experiment import run_experiment
from vae_sweep.metrics import FINAL_METRICS
from vae_sweep.mlflow_store import check_existing_store
from vae_sweep.names import INCOMPLETE_TAG
from vae_sweep.reproduce_command import train_command
from vae_sweep.specs import target_of
from vae_sweep.sweep.parent_run import STUDY_ROLE_TAG
from vae_sweep.tracking import THREADS_TAG, environment_tags

PROG = "vae-reproduce"
TIMING_METRICS = ("samples_per_sec", "train_seconds")  # wall-clock: shown, never part of the verdict
REPRODUCED_FROM_TAG = "reproduced_from"
VERDICT_TAG = "reproduce.verdict"
CONFIG_ARTIFACT = "config.yaml"
WEIGHTS_ARTIFACT = "model/state_dict.pt"
# Tags written by the sweep (vae_sweep.sweep.parent_run and trial_link).
STUDY_NAME_TAG = "optuna.study_name"
TRIAL_NUMBER_TAG = "optuna.trial_number"
PARENT_RUN_TAG = "mlflow.parentRunId"
BEST_RUN_TAG = "best.run_id"
MAX_RESULTS = 1000  # runs per search_runs page
NO_WEIGHTS = "the original run logged no weights (tracking.log_model=false)"


class ReproduceError(Exception):
    """The run cannot be reproduced; the message says why and what to do (exit code 2)."""


# ---------------------------------------------------------------- finding the run


def open_store(uri: str) -> MlflowClient:
    """A client for an existing store: a mistyped SQLite path is an error, not a new empty store."""
    try:
        check_existing_store(uri)
    except ConfigError as error:
        raise ReproduceError(error.message) from None
    return MlflowClient(tracking_uri=uri)


@dataclass(frozen=True)
class Selection:
    run_id: str
    description: str  # how it was found, for the report


def select_run(
    client: MlflowClient,
    *,
    run_id: str | None = None,
    study: str | None = None,
    best: bool = False,
    trial: int | None = None,
    experiment: str = "vae-sweep",
) -> Selection:
    """The run named by id, or a study's best run or trial ``N`` (found through its parent run)."""
    if run_id is not None:
        return Selection(run_id, f"run {run_id}")
    if study is None or best == (trial is not None):
        raise ValueError("give run_id, or study with exactly one of best and trial")
    parent = study_parent_run(client, experiment, study)
    if best:
        best_id = parent.data.tags.get(BEST_RUN_TAG)
        if not best_id:
            raise ReproduceError(
                f"study {study!r} has no best run yet (no trial completed, or several objectives: "
                f"a Pareto front has no single best); pick one with --study {study} --trial N"
            )
        number = parent.data.tags.get("best.trial_number", "?")
        return Selection(best_id, f"run {best_id}, the best trial ({number}) of study {study!r}")
    children = search_all(client, parent.info.experiment_id, f"tags.`{PARENT_RUN_TAG}` = '{parent.info.run_id}'")
    numbered = [run for run in children if run.data.tags.get(TRIAL_NUMBER_TAG) == str(trial)]
    if not numbered:
        numbers = sorted({int(n) for run in children if (n := run.data.tags.get(TRIAL_NUMBER_TAG, "")).isdigit()})
        have = f"its trials are {number_ranges(numbers)}" if numbers else "it has no trial runs yet"
        raise ReproduceError(f"study {study!r} has no trial {trial}; {have}")
    chosen = max(numbered, key=lambda run: run.info.start_time or 0)  # a re-logged trial: the latest
    return Selection(chosen.info.run_id, f"run {chosen.info.run_id}, trial {trial} of study {study!r}")


def study_parent_run(client: MlflowClient, experiment: str, study: str) -> Run:
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = ", ".join(sorted(e.name for e in client.search_experiments())) or "none"
        raise ReproduceError(f"no experiment {experiment!r} in this store (experiments: {names}); see --experiment")
    parents = search_all(client, found.experiment_id, f"tags.`{STUDY_ROLE_TAG}` = 'study'")
    matching = [run for run in parents if run.data.tags.get(STUDY_NAME_TAG) == study]
    if not matching:
        names = sorted({run.data.tags.get(STUDY_NAME_TAG, "?") for run in parents})
        found_text = f"studies found: {', '.join(names)}" if names else "no studies found"
        raise ReproduceError(f"no study {study!r} in experiment {experiment!r}; {found_text}")
    return max(matching, key=lambda run: run.info.start_time or 0)


def search_all(client: MlflowClient, experiment_id: str, filter_string: str) -> list[Run]:
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs([experiment_id], filter_string, max_results=MAX_RESULTS, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def number_ranges(numbers: Sequence[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``"0-2, 5, 7-8"``."""
    spans: list[list[int]] = []
    for number in sorted(numbers):
        if spans and number == spans[-1][1] + 1:
            spans[-1][1] = number
        else:
            spans.append([number, number])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def get_run(client: MlflowClient, run_id: str, uri: str) -> Run:
    try:
        return client.get_run(run_id)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise ReproduceError(f"no run {run_id!r} in {uri}; check the id and --tracking-uri") from None
        raise


# ---------------------------------------------------------------- the logged config


@contextlib.contextmanager
def quiet_downloads() -> Iterator[None]:
    """No artifact-download progress bars in the report."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    previous = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if previous is None:
            del os.environ[key]
        else:
            os.environ[key] = previous


def has_artifact(client: MlflowClient, run_id: str, path: str) -> bool:
    folder = path.rpartition("/")[0] or None
    return any(entry.path == path for entry in client.list_artifacts(run_id, folder))


def fetch_config(client: MlflowClient, run: Run) -> dict[str, Any]:
    """The run's ``config.yaml``, read as data and validated; refused with the offending key."""
    run_id = run.info.run_id
    if not has_artifact(client, run_id, CONFIG_ARTIFACT):
        if run.data.tags.get(STUDY_ROLE_TAG) == "study":
            study = run.data.tags.get(STUDY_NAME_TAG, "NAME")
            raise ReproduceError(
                f"run {run_id} is the parent run of study {study!r}, which trains nothing; "
                f"use --study {study} --best or --trial N"
            )
        raise ReproduceError(f"run {run_id} has no {CONFIG_ARTIFACT} artifact: it was not logged by vae-sweep")
    with tempfile.TemporaryDirectory() as folder, quiet_downloads():
        text = Path(client.download_artifacts(run_id, CONFIG_ARTIFACT, folder)).read_text()
    refused = f"run {run_id}'s {CONFIG_ARTIFACT} is refused"
    try:
        config = yaml.load(text, Loader=DataLoader)  # plain data: tags such as !!python/object are an error
    except yaml.YAMLError as error:
        raise ReproduceError(f"{refused}: it is not plain YAML data ({yaml_problem(error)})") from None
    if not isinstance(config, dict):
        raise ReproduceError(f"{refused}: expected a mapping of config groups, got {type(config).__name__}")
    try:
        parse_run_config(literal(config))
    except ConfigError as error:
        hint = ""
        if error.key == "config_version":
            logged_by = run.data.tags.get("version.vae-sweep", "unknown")
            commit = run.data.tags.get("mlflow.source.git.commit", "unknown")
            hint = f"; re-run it with the vae-sweep that logged it (version {logged_by}, commit {commit})"
        elif error.key.endswith("_target_"):
            hint = " (a fetched config is data: it may only name vae-sweep's registered spec classes)"
        raise ReproduceError(f"{refused}: {error}{hint}") from None
    return config


def yaml_problem(error: yaml.YAMLError) -> str:
    """What the parser found and where, in one line."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        return f"{error.problem}, line {mark.line + 1}, column {mark.column + 1}"
    return str(error).splitlines()[0]


class DataLoader(yaml.SafeLoader):
    """``yaml.safe_load`` without aliases: vae-sweep never writes them, and aliases of aliases
    ("billion laughs", 1.7 kB of text) expand to more data than memory holds."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases (*name) are refused in a logged config", self.peek_event().start_mark
            )
        return super().compose_node(parent, index)


def literal(config: Any) -> Any:
    """The resolved config as OmegaConf input that resolves to itself: a ``${`` in a logged
    string is text, never an interpolation (which could read environment variables)."""
    if isinstance(config, dict):
        return {key: literal(value) for key, value in config.items()}
    if isinstance(config, list):
        return [literal(value) for value in config]
    return config.replace("${", "\\${") if isinstance(config, str) else config


def load_weights(client: MlflowClient, run_id: str) -> dict[str, torch.Tensor] | str:
    """The original ``state_dict`` (tensors only: ``weights_only=True``), or why there is none."""
    if not has_artifact(client, run_id, WEIGHTS_ARTIFACT):
        return NO_WEIGHTS
    with tempfile.TemporaryDirectory() as folder, quiet_downloads():
        path = client.download_artifacts(run_id, WEIGHTS_ARTIFACT, folder)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # an unpickling refusal or a corrupt file: report, do not load
            return f"the original {WEIGHTS_ARTIFACT} was refused by torch.load(weights_only=True): {error}"
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        return f"the original {WEIGHTS_ARTIFACT} is not a state_dict of tensors"
    return state


# ---------------------------------------------------------------- comparing


@dataclass(frozen=True)
class MetricDiff:
    name: str
    original: float
    reproduced: float

    @property
    def verdict_part(self) -> bool:
        return self.name not in TIMING_METRICS

    @property
    def identical(self) -> bool:
        both_nan = math.isnan(self.original) and math.isnan(self.reproduced)
        return both_nan or self.original == self.reproduced

    @property
    def abs_diff(self) -> float:
        return 0.0 if self.identical else abs(self.reproduced - self.original)

    @property
    def rel_diff(self) -> float:
        if self.identical:
            return 0.0
        return self.abs_diff / abs(self.original) if self.original != 0 else math.inf


def compare_metrics(original: Mapping[str, float], reproduced: Mapping[str, float]) -> list[MetricDiff]:
    """One row per final metric that both runs have, in ``FINAL_METRICS`` order."""
    return [
        MetricDiff(name, float(original[name]), float(reproduced[name]))
        for name in FINAL_METRICS
        if name in original and name in reproduced
    ]


@dataclass(frozen=True)
class WeightsDiff:
    tensors: int
    different: tuple[str, ...]  # names of tensors that differ in any bit, shape, dtype or presence
    max_rel_diff: float  # max |a - b| / max |a| over the differing tensors (inf for a structural mismatch)

    @property
    def equal(self) -> bool:
        return not self.different


def compare_weights(original: Mapping[str, torch.Tensor], reproduced: Mapping[str, torch.Tensor]) -> WeightsDiff:
    """Bitwise comparison of two state_dicts, with the largest relative difference."""
    different, worst = [], 0.0
    for name in sorted(set(original) | set(reproduced)):
        a, b = original.get(name), reproduced.get(name)
        if a is None or b is None or a.dtype != b.dtype or a.shape != b.shape:
            different.append(name)
            worst = math.inf
            continue
        a, b = a.detach().cpu().contiguous(), b.detach().cpu().contiguous()
        if torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8)):
            continue
        different.append(name)
        a64, b64 = a.double(), b.double()
        scale = a64.abs().max().item() if a64.numel() else 0.0
        gap = (a64 - b64).abs().nan_to_num(nan=math.inf).max().item()
        worst = max(worst, 0.0 if gap == 0 else gap / scale if scale > 0 else math.inf)  # gap 0: -0.0 vs 0.0
    return WeightsDiff(len(set(original) | set(reproduced)), tuple(different), worst)


@dataclass(frozen=True)
class Verdict:
    label: str  # identical, within_tolerance or different: the new run's reproduce.verdict tag
    text: str

    @property
    def identical(self) -> bool:
        return self.label == "identical"

    @property
    def within_tolerance(self) -> bool:
        return self.label in ("identical", "within_tolerance")

    @property
    def exit_code(self) -> int:
        return 0 if self.within_tolerance or self.label == "recovered" else 1


def verdict(
    metrics: Sequence[MetricDiff], weights: WeightsDiff | None, tolerance: float, unreadable: str | None = None
) -> Verdict:
    """Identical when every non-timing metric and every weight is bit-for-bit the same; else the
    largest relative difference against ``tolerance``. Weights that were logged but cannot be
    read (``unreadable`` says why) leave the reproduction unverified, whatever the metrics say."""
    if unreadable is not None:
        return Verdict("unverified", f"NOT VERIFIED: the weights could not be compared ({unreadable})")
    judged = [m for m in metrics if m.verdict_part]
    gaps = [(m.rel_diff, m.name) for m in judged if not m.identical]
    if weights is not None and not weights.equal:
        gaps.append((weights.max_rel_diff, "weights"))
    if not gaps:
        what = "every final metric" + (" and every weight" if weights is not None else "")
        return Verdict("identical", f"identical ({what} bit for bit)")
    gap, where = max(gaps)
    if gap <= tolerance:
        return Verdict(
            "within_tolerance", f"within tolerance (largest relative difference {gap:.3g} in {where} <= {tolerance:g})"
        )
    return Verdict(
        "different", f"DIFFERENT (largest relative difference {gap:.3g} in {where} > --tolerance {tolerance:g})"
    )


def metrics_table(rows: Sequence[MetricDiff]) -> str:
    def number(value: float) -> str:
        return f"{value:.10g}"

    table = [
        [
            row.name + ("" if row.verdict_part else " *"),
            number(row.original),
            number(row.reproduced),
            "0" if row.identical else f"{row.abs_diff:.3g}",
            "0" if row.identical else f"{row.rel_diff:.3g}",
        ]
        for row in rows
    ]
    headers = ["metric", "original", "reproduced", "abs diff", "rel diff"]
    return tabulate(table, headers, disable_numparse=True, colalign=("left", "right", "right", "right", "right"))


def environment_changes(original_tags: Mapping[str, str], current: Mapping[str, str]) -> list[str]:
    """``torch 2.12.0 -> 2.13.0``-style lines for every package version or commit that changed."""
    keys = [k for k in sorted(set(original_tags) | set(current)) if k.startswith("version.")]
    keys.append("mlflow.source.git.commit")
    changes = []
    for key in keys:
        before, now = original_tags.get(key, "?"), current.get(key, "?")
        if before != now:
            changes.append(f"{key.removeprefix('version.').replace('mlflow.source.git.', 'git ')} {before} -> {now}")
    return changes


# ---------------------------------------------------------------- re-running


@dataclass
class Reproduction:
    metrics: dict[str, float]
    state_dict: dict[str, torch.Tensor]
    run_id: str | None  # the new MLflow run; None with --no-track


def rerun(config: Mapping[str, Any], original_run_id: str, *, tracking_uri: str, track: bool) -> Reproduction:
    """Train ``config`` again, as a new run in ``tracking_uri`` (same experiment) or untracked."""
    config = dict(literal(config))
    if track and "uri" in config["tracking"]:
        config["tracking"] = {**config["tracking"], "uri": tracking_uri}  # the store the user pointed at
    else:
        config["tracking"] = {"_target_": target_of(NoTracking), "name": NoTracking.name}
    cfg = OmegaConf.create(config)
    parse_run_config(cfg).trainer.resolve_device()  # a CUDA run on a machine without one: refused before a run exists
    started: list[str] = []
    result = run_experiment(cfg, tags={REPRODUCED_FROM_TAG: original_run_id}, on_run_start=started.append)
    state = {name: tensor.detach().cpu() for name, tensor in result.model.state_dict().items()}
    return Reproduction(dict(result.metrics), state, started[0] if started else None)


def match_threads(config: Mapping[str, Any], tags: Mapping[str, str]) -> None:
    """Train with the original's thread count when its config left it to the machine (a sweep
    worker, for one, shares the cores): another count sums floats in another order."""
    if config["trainer"].get("num_threads") is None and THREADS_TAG in tags:
        torch.set_num_threads(int(tags[THREADS_TAG]))
        print(f"Using {tags[THREADS_TAG]} torch threads, as the original run did")


def refuse_unfinished(run: Run) -> None:
    """Only a run that trained to the end has final metrics and weights to compare with."""
    run_id, tags = run.info.run_id, run.data.tags
    hint = f"pick a COMPLETE trial, or print its command with: {PROG} {run_id} --print-command"
    if "pruned_at_epoch" in tags:
        raise ReproduceError(
            f"run {run_id} was pruned at epoch {tags['pruned_at_epoch']}: it has no final metrics or "
            f"weights to compare with; {hint}"
        )
    if run.info.status != "FINISHED":
        reason = f" ({tags['failure_reason']})" if "failure_reason" in tags else ""
        raise ReproduceError(f"run {run_id} is {run.info.status}{reason}, not FINISHED; {hint}")
    missing = [name for name in FINAL_METRICS if name not in run.data.metrics and name not in TIMING_METRICS]
    if missing:
        raise ReproduceError(f"run {run_id} has no final {', '.join(missing)}: nothing to compare with; {hint}")


# ---------------------------------------------------------------- the command line


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
        default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"),
        help="the MLflow store the run is in; the reproduction is logged there too "
        "(default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)",
    )
    parser.add_argument("--experiment", default="vae-sweep", help="where --study looks (default: vae-sweep)")
    parser.add_argument("--no-track", action="store_true", help="re-run without logging a new MLflow run")
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
    """Entry point of ``vae-reproduce``; returns the exit code."""
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exit_:  # argparse: --help (0) or a usage error (2)
        return int(exit_.code or 0)
    try:
        return reproduce(args)
    except ReproduceError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2


def reproduce(args: argparse.Namespace) -> int:
    uri = args.tracking_uri
    client = open_store(uri)
    selection = select_run(
        client, run_id=args.run_id, study=args.study, best=args.best, trial=args.trial, experiment=args.experiment
    )
    run = get_run(client, selection.run_id, uri)
    config = fetch_config(client, run)
    if args.print_command:
        print(f"# {selection.description}", file=sys.stderr)
        try:
            print(train_command(config))
        except ConfigError as error:
            raise ReproduceError(f"cannot write a vae-train command for run {run.info.run_id}: {error}") from None
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
        raise ReproduceError(f"cannot re-run {run.info.run_id} here: {error}") from None
    except TrainingDiverged as error:
        print(f"The original finished, the reproduction did not: {error}")
        print("Verdict: DIFFERENT")
        return 1
    rows = compare_metrics(run.data.metrics, reproduction.metrics)
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
