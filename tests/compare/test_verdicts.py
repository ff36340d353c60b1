"""Verdicts from replicates, checked against scipy's own intervals computed from the runs.

A constructed study and its replication are written into a real MLflow store, tagged as a sweep
and ``vae-replicate`` tag them: four configurations (adam or sgd x relu or tanh), four fresh seeds
each. adam's runs are two nats lower than sgd's (an interval that excludes 0: a verdict), relu's
and tanh's are mixed (an interval around 0: not settled). The expected numbers come from scipy
(``ttest_ind``, ``ttest_rel``, ``t.interval``) on the values written, not from vae-compare.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from scipy import stats

from vae_sweep.cli import compare
from vae_sweep.compare.verdicts import POWER_Z, verdicts
from vae_sweep.names import epoch_key

SEEDS = (1, 2, 3, 4)
# trial -> (optimizer, activation, search value, val_loss per seed)
CONFIGS = {
    0: ("adam", "relu", 39.5, [40.0, 40.4, 39.8, 40.2]),
    1: ("adam", "tanh", 39.9, [40.6, 40.4, 40.8, 40.2]),
    2: ("sgd", "relu", 41.6, [42.0, 42.5, 41.8, 42.3]),
    3: ("sgd", "tanh", 41.7, [42.5, 42.2, 42.7, 42.4]),
}
KEYS = {"optimizer": "tags.technique.optimizer", "activation": "tags.technique.activation"}


def values_of(**where: str) -> list[float]:
    """The replicate values of the configurations with these options, seed by seed."""
    index = {"optimizer": 0, "activation": 1}
    return [v for c in CONFIGS.values() if all(c[index[k]] == o for k, o in where.items()) for v in c[3]]


def replicate_rows(*, pairable: bool) -> list[dict[str, object]]:
    """One dict per replicate run, in ``load_runs``'s layout; ``pairable``: the configurations
    differ only in their techniques (else each has its own latent size, and nothing pairs)."""
    rows = []
    for trial, (optimizer, activation, _, series) in CONFIGS.items():
        for seed, value in zip(SEEDS, series, strict=True):
            rows.append(
                {
                    "tags.technique.optimizer": optimizer,
                    "tags.technique.activation": activation,
                    "tags.replicate.of_trial": str(trial),
                    "tags.replicate.seed": str(seed),
                    "tags.optuna.trial_state": "COMPLETE",
                    "metrics.val_loss": value,
                    "params.optimizer.name": optimizer,
                    "params.model.activation": activation,
                    "params.model.latent_dim": "8" if pairable else str(4 + trial),
                    "params.trainer.seed": str(seed),
                }
            )
    return rows


def test_option_means_and_intervals_are_students_t_over_the_replicate_runs():
    found = verdicts(pd.DataFrame(replicate_rows(pairable=False)), KEYS, "val_loss")
    for name, option in (("optimizer", "adam"), ("optimizer", "sgd"), ("activation", "tanh")):
        row = found.tables[name].set_index("option").loc[option]
        values = np.array(values_of(**{name: option}))
        low, high = stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=stats.sem(values))
        assert (row["configs"], row["runs"]) == (2, 8)
        assert row["mean"] == pytest.approx(values.mean())
        assert (row["low"], row["high"]) == (pytest.approx(low), pytest.approx(high))


def test_unpaired_design_gets_welchs_interval_settled_when_it_excludes_zero_and_seeds_needed_when_not():
    found = verdicts(pd.DataFrame(replicate_rows(pairable=False)), KEYS, "val_loss")
    [optimizer] = found.differences["optimizer"]
    welch = stats.ttest_ind(values_of(optimizer="sgd"), values_of(optimizer="adam"), equal_var=False)
    assert (optimizer.better, optimizer.worse, optimizer.method) == ("adam", "sgd", "Welch; 8 vs 8 runs")
    assert optimizer.difference == pytest.approx(
        np.mean(values_of(optimizer="sgd")) - np.mean(values_of(optimizer="adam"))
    )
    assert (optimizer.low, optimizer.high) == pytest.approx(tuple(welch.confidence_interval(0.95)))
    assert optimizer.low > 0 and optimizer.settled and optimizer.seeds_needed is None

    [activation] = found.differences["activation"]
    relu, tanh = np.array(values_of(activation="relu")), np.array(values_of(activation="tanh"))
    better, worse = (relu, tanh) if relu.mean() < tanh.mean() else (tanh, relu)
    welch = stats.ttest_ind(worse, better, equal_var=False)
    assert (activation.low, activation.high) == pytest.approx(tuple(welch.confidence_interval(0.95)))
    assert activation.low < 0 < activation.high and not activation.settled
    se = math.sqrt(better.var(ddof=1) / 8 + worse.var(ddof=1) / 8)
    assert activation.seeds_needed == math.ceil(4 * (POWER_Z * se / (worse.mean() - better.mean())) ** 2)

    sentences = found.sentences()
    assert sentences[0].startswith("optimizer: adam beats sgd by 2 nats [")
    assert "not settled at this budget" in sentences[1] and f"about {activation.seeds_needed} seeds" in sentences[1]


def test_runs_that_differ_only_in_the_technique_and_share_a_seed_are_compared_paired():
    found = verdicts(pd.DataFrame(replicate_rows(pairable=True)), KEYS, "val_loss")
    [optimizer] = found.differences["optimizer"]
    # adam and sgd pair up by activation and seed: trial 0 with 2, 1 with 3, seed by seed.
    paired = stats.ttest_rel(CONFIGS[2][3] + CONFIGS[3][3], CONFIGS[0][3] + CONFIGS[1][3])
    assert optimizer.method == "paired; 8 pairs"
    assert (optimizer.low, optimizer.high) == pytest.approx(tuple(paired.confidence_interval(0.95)))
    # Pairing removes what the configurations share: narrower than Welch on the same runs.
    unpaired = verdicts(pd.DataFrame(replicate_rows(pairable=False)), KEYS, "val_loss").differences["optimizer"][0]
    assert optimizer.high - optimizer.low < unpaired.high - unpaired.low


def test_higher_is_better_metrics_rank_and_orient_the_other_way():
    found = verdicts(pd.DataFrame(replicate_rows(pairable=False)), KEYS, "val_loss", maximize=True)
    [optimizer] = found.differences["optimizer"]
    assert (optimizer.better, optimizer.worse) == ("sgd", "adam") and optimizer.settled
    assert list(found.tables["optimizer"]["option"]) == ["sgd", "adam"]


@pytest.fixture(scope="module")
def replicated_store(tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path) -> str:
    """The searched study (one run per configuration) and its replication, as MLflow runs."""
    folder = tmp_path_factory.mktemp("verdicts")
    shutil.copy(mlflow_template, folder / "mlflow.db")
    uri = f"sqlite:///{folder}/mlflow.db"
    client = MlflowClient(uri)
    experiment = client.create_experiment("vae-sweep", artifact_location=str(folder / "artifacts"))
    searched = client.create_run(experiment, tags={"vae_sweep.role": "study", "optuna.study_name": "searched"})
    for trial, (optimizer, activation, search, _) in CONFIGS.items():
        tags = {"mlflow.parentRunId": searched.info.run_id, "optuna.trial_number": str(trial)}
        tags |= {"optuna.trial_state": "COMPLETE", "technique.optimizer": optimizer, "technique.activation": activation}
        run = client.create_run(experiment, tags=tags)
        client.log_batch(run.info.run_id, metrics=[Metric(epoch_key("val_loss"), search, 0, 3)])
        client.set_terminated(run.info.run_id)
    tags = {"vae_sweep.role": "study", "optuna.study_name": "searched-replicates", "replication.of_study": "searched"}
    parent = client.create_run(experiment, tags=tags)
    for row in replicate_rows(pairable=False):
        tags = {k.removeprefix("tags."): str(v) for k, v in row.items() if k.startswith("tags.")}
        run = client.create_run(experiment, tags={**tags, "mlflow.parentRunId": parent.info.run_id})
        params = [Param(k.removeprefix("params."), str(v)) for k, v in row.items() if k.startswith("params.")]
        metric = Metric(epoch_key("val_loss"), float(row["metrics.val_loss"]), 0, 3)
        client.log_batch(run.info.run_id, metrics=[metric], params=params)
        client.set_terminated(run.info.run_id)
    return uri


def test_vae_compare_reports_the_verdicts_and_the_search_vs_replicate_gap(replicated_store, tmp_path, capsys):
    argv = ["searched", "--tracking-uri", replicated_store, "--storage", f"sqlite:///{tmp_path}/none.db"]
    assert compare([*argv, "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)["verdicts"]
    assert report["replication"]["study_name"] == "searched-replicates"
    [optimizer] = report["differences"]["optimizer"]
    welch = stats.ttest_ind(values_of(optimizer="sgd"), values_of(optimizer="adam"), equal_var=False)
    assert optimizer["settled"] and (optimizer["low"], optimizer["high"]) == pytest.approx(
        tuple(welch.confidence_interval(0.95))
    )
    assert not report["differences"]["activation"][0]["settled"]
    gaps = {row["trial"]: row for row in report["gaps"]}
    for trial, (_, _, search, series) in CONFIGS.items():
        assert gaps[str(trial)]["search"] == search
        assert gaps[str(trial)]["gap"] == pytest.approx(np.mean(series) - search)

    assert compare(argv) == 0
    terminal = capsys.readouterr().out
    assert "Verdicts from 16 complete replicate runs" in terminal
    assert "- optimizer: adam beats sgd by 2 nats" in terminal
    assert "activation, replicated (mean and 95% interval" in terminal


def test_a_study_whose_own_runs_repeat_configurations_over_seeds_is_its_own_replication():
    """A grid over trainer.seed (no vae-replicate): configurations are told apart by their params."""
    rows = [
        {k: v for k, v in row.items() if not k.startswith("tags.replicate.")} for row in replicate_rows(pairable=True)
    ]
    found = verdicts(pd.DataFrame(rows), KEYS, "val_loss")
    assert list(found.tables["optimizer"]["configs"]) == [2, 2]
    assert found.differences["optimizer"][0].method == "paired; 8 pairs"
    assert found.gaps.empty  # no search run apart from the replicates


def test_without_replicates_the_report_says_the_ranking_is_from_single_runs(constructed, capsys):
    assert compare(constructed.argv()) == 0
    out = capsys.readouterr().out
    assert "Ranking from single runs: one seed per configuration, no interval. vae-replicate constructed" in out
    assert "replicated" not in out
