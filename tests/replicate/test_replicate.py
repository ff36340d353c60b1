"""vae-replicate on a real finished study: what it chooses, what it trains, what it records, and
that running it again adds only what is missing.

The session's finished study (10 tiny trials: optimizer x activation x batch norm, pruned) is
copied, so its stores stay as other tests expect them. Each replicate's logged config is checked
against the run it repeats: every param equal but ``trainer.seed``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import pytest
from helpers.environment import clean_env
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from scipy import stats

from vae_sweep.cli import compare
from vae_sweep.names import REPLICATE_ATTR

pytestmark = pytest.mark.slow
BY = ("--by", "optimizer")  # three options, one configuration each: at most three replicated


@dataclass(frozen=True)
class Replicated:
    folder: Path
    outputs: list[subprocess.CompletedProcess]

    @property
    def storage(self) -> str:
        return f"sqlite:///{self.folder}/optuna.db"

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(f"sqlite:///{self.folder}/mlflow.db")

    def study(self, name: str) -> optuna.Study:
        return optuna.load_study(study_name=name, storage=self.storage)

    def runs(self) -> list:
        experiments = [e.experiment_id for e in self.client.search_experiments()]
        return self.client.search_runs(experiments, max_results=1000)


def vae_replicate(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [shutil.which("vae-replicate") or "vae-replicate", "fixture", *BY, *args],
        cwd=folder,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def replicated(finished_study, tmp_path_factory: pytest.TempPathFactory) -> Replicated:
    """One seed per configuration, then two (one more each) with two workers, then the same
    command again. (With worker processes, a connection vae-replicate left open once hid what
    they wrote from the sweep's own process, which relaunched them for ever.)"""
    folder = tmp_path_factory.mktemp("replicated") / "study"
    shutil.copytree(finished_study.folder, folder)
    outputs = [
        vae_replicate(folder, "--top", "1", "--seeds", "1"),
        vae_replicate(folder, "--top", "1", "--seeds", "2", "hydra.sweeper.n_jobs=2"),
        vae_replicate(folder, "--top", "1", "--seeds", "2", "hydra.sweeper.n_jobs=2"),
    ]
    for out in outputs:
        assert out.returncode == 0, out.stderr[-3000:]
    return Replicated(folder, outputs)


def test_each_option_gets_its_best_trial_replicated_with_fresh_seeds(replicated):
    source = replicated.study("fixture")
    complete = sorted((t for t in source.trials if t.state is TrialState.COMPLETE), key=lambda t: t.value)
    pruned = [t for t in source.trials if t.state is TrialState.PRUNED]
    pruned.sort(key=lambda t: t.intermediate_values[max(t.intermediate_values)])
    options = {}
    for trial in complete + pruned:  # an option the pruner stopped everywhere: its best pruned trial
        options.setdefault(trial.params["optimizer"], trial.number)
    replicas = replicated.study("fixture-replicates").trials
    repeats = {(t.system_attrs[REPLICATE_ATTR]["of_trial"], t.params["trainer.seed"]) for t in replicas}
    # The searched trials all ran with trainer.seed=0: the fresh seeds are 1 and 2.
    assert repeats == {(number, seed) for number in options.values() for seed in (1, 2)}
    assert all(t.state is TrialState.COMPLETE for t in replicas)
    for replica in replicas:
        of = source.trials[replica.system_attrs[REPLICATE_ATTR]["of_trial"]]
        assert {k: v for k, v in replica.params.items() if k != "trainer.seed"} == of.params


def test_replicates_log_the_config_they_repeat_under_a_replication_parent(replicated):
    runs = replicated.runs()
    by_id = {run.info.run_id: run for run in runs}
    parents = [r for r in runs if r.data.tags.get("replication.of_study") == "fixture"]
    [parent] = parents
    source_parent = replicated.study("fixture").user_attrs["mlflow_parent_run_id"]
    assert parent.data.tags["replication.of_run"] == source_parent
    assert parent.data.tags["optuna.study_name"] == "fixture-replicates"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == len(replicated.study("fixture-replicates").trials)
    for child in children:
        tags = child.data.tags
        assert tags["replicate.of_study"] == "fixture"
        assert child.data.params["trainer.seed"] == tags["replicate.seed"]
        repeated = by_id[tags["replicate.of_run"]]
        assert repeated.data.tags["optuna.trial_number"] == tags["replicate.of_trial"]
        differing = {
            key
            for key in repeated.data.params.keys() | child.data.params.keys()
            if repeated.data.params.get(key) != child.data.params.get(key)
        }
        assert differing == {"trainer.seed"}


def test_running_it_again_adds_only_what_is_missing(replicated):
    first, grown, again = (out.stdout for out in replicated.outputs)
    chosen = len(replicated.study("fixture-replicates").trials) // 2
    assert f"{chosen} runs ({chosen} new)" in first
    assert f"{2 * chosen} runs ({chosen} new)" in grown
    assert f"{2 * chosen} runs (0 new)" in again
    assert "Study 'fixture-replicates' is done" in again  # answered from the study: nothing launched
    assert "Verdicts: vae-compare fixture" in again


def vae_compare(replicated: Replicated, capsys, *args: str) -> str:
    """vae-compare's report on the replicated study (in this process: the numbers, not start-up)."""
    stores = ["--tracking-uri", f"sqlite:///{replicated.folder}/mlflow.db", "--storage", replicated.storage]
    assert compare(["fixture", *BY, *stores, *args]) == 0
    return capsys.readouterr().out


def test_vae_compare_reads_the_replicates_and_its_numbers_are_the_runs(replicated, capsys):
    out = vae_compare(replicated, capsys)
    assert "Verdicts from" in out and "study 'fixture-replicates'" in out
    assert "optimizer, replicated (mean and 95% interval of val_loss over seeds)" in out
    report = json.loads(vae_compare(replicated, capsys, "--format", "json"))["verdicts"]
    values: dict[str, list[float]] = {}  # per optimizer, its complete replicates' val_loss by seed
    runs = [r for r in replicated.runs() if r.data.tags.get("replicate.of_study") == "fixture"]
    for run in sorted(runs, key=lambda r: int(r.data.tags["replicate.seed"])):
        if run.data.tags["optuna.trial_state"] == "COMPLETE":
            values.setdefault(run.data.tags["technique.optimizer"], []).append(run.data.metrics["epoch/val_loss"])
    rows = {row["option"]: row for row in report["techniques"]["optimizer"]}
    for option, series in values.items():  # each option: its runs' mean and Student's t interval
        low, high = stats.t.interval(0.95, len(series) - 1, loc=np.mean(series), scale=stats.sem(series))
        assert rows[option]["runs"] == len(series)
        assert (rows[option]["mean"], rows[option]["low"], rows[option]["high"]) == pytest.approx(
            (np.mean(series), low, high)
        )
    for found in report["differences"].get("optimizer", []):  # the best against each other option
        worse, better = values[found["worse"]], values[found["better"]]
        # Paired when the two configurations differ only in the optimizer (seed by seed), else Welch.
        if found["method"].startswith("paired"):
            test = stats.ttest_rel(worse, better)
        else:
            test = stats.ttest_ind(worse, better, equal_var=False)
        assert (found["low"], found["high"]) == pytest.approx(tuple(test.confidence_interval(0.95)))
        assert found["settled"] == (found["low"] > 0)


def test_a_study_that_does_not_exist_is_one_line_naming_those_there_are(finished_study, tmp_path):
    shutil.copytree(finished_study.folder, tmp_path / "study")
    out = subprocess.run(
        [shutil.which("vae-replicate") or "vae-replicate", "fixtur"],
        cwd=tmp_path / "study",
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"vae-replicate: error: no study 'fixtur' in sqlite:///{tmp_path}/study/optuna.db; studies there: fixture"
    ]
