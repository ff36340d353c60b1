"""vae-compare against a real finished sweep (the session's ``finished_study``), checked
against numbers read back independently with ``MlflowClient`` and pandas."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import optuna
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from vae_sweep.cli import compare
from vae_sweep.compare import group_labels, pareto_front, technique_table, trial_states
from vae_sweep.names import by_metric_name

DIMENSIONS = {"optimizer": "technique.optimizer", "activation": "technique.activation"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def study(finished_study):
    """The fixture study with its parent run id (from Optuna, not from vae-compare's lookup)."""
    loaded = optuna.load_study(study_name=finished_study.study_name, storage=finished_study.storage)
    return finished_study, loaded.user_attrs["mlflow_parent_run_id"]


@pytest.fixture(scope="module")
def trials(study) -> pd.DataFrame:
    """One row per trial run, read straight from MLflow: state, techniques, lr, val_loss."""
    finished, parent = study
    client = MlflowClient(tracking_uri=finished.tracking_uri)
    experiment = client.get_run(parent).info.experiment_id
    runs = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent}'", max_results=1000)
    return pd.DataFrame(
        {
            "run_id": r.info.run_id,
            "state": r.data.tags["optuna.trial_state"],
            **{name: r.data.tags[tag] for name, tag in DIMENSIONS.items()},
            "lr": float(r.data.params["optimizer.lr"]),
            "val_loss": by_metric_name(r.data.metrics).get("val_loss", math.nan),
        }
        for r in runs
    )


def expected(trials: pd.DataFrame, dimension: str) -> pd.DataFrame:
    """The technique table's numbers, computed directly with a groupby: runs by state over all
    runs, the statistics over completed runs only (vae-compare's default basis)."""
    grouped = trials.groupby(dimension)
    completed = trials[trials["state"] == "COMPLETE"].groupby(dimension)["val_loss"]
    table = completed.agg(["min", "median", "mean"]).reindex(grouped.size().index)
    for column, state in {"completed": "COMPLETE", "pruned": "PRUNED", "failed": "FAIL"}.items():
        table[column] = grouped["state"].apply(lambda s, state=state: int((s == state).sum()))
    table["count"] = grouped.size()
    return table


def expected_winner(trials: pd.DataFrame, dimension: str, min_runs: int) -> list[str]:
    """The option with the lowest completed-run median among those with ``min_runs`` completed runs."""
    completed = trials[trials["state"] == "COMPLETE"].groupby(dimension)["val_loss"]
    medians = completed.median()[completed.count() >= min_runs]
    return [medians.idxmin()] if len(medians) else []


def vae_compare(finished, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    argv = [finished.study_name, "--tracking-uri", finished.tracking_uri, "--storage", finished.storage, *args]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = compare(argv)
    return code, out.getvalue(), err.getvalue()


def assert_matches(rows: pd.DataFrame, table: pd.DataFrame) -> None:
    """``rows`` (option, count, completed, pruned, failed, best, median, mean) equal ``table``."""
    assert sorted(rows["option"]) == sorted(table.index)
    for _, row in rows.iterrows():
        want = table.loc[row["option"]]
        for column in ("count", "completed", "pruned", "failed"):
            assert int(row[column]) == want[column], (row["option"], column)
        for column, name in (("best", "min"), ("median", "median"), ("mean", "mean")):
            if pd.isna(want[name]):  # no completed run: nothing compared
                assert pd.isna(row[column]) or row[column] in ("", "-", None), (row["option"], column)
            else:
                assert float(row[column]) == pytest.approx(want[name], rel=1e-5), (row["option"], column)


@pytest.fixture(scope="module")
def json_report(study):
    finished, _ = study
    code, out, err = vae_compare(finished, "--by", ",".join(DIMENSIONS), "--format", "json", "--min-runs", "1")
    assert code == 0, err
    return json.loads(out), err


def test_technique_tables_equal_a_direct_groupby(json_report, trials):
    report, err = json_report
    assert "study 'fixture'" in err  # says what the target resolved to
    assert report["runs"] == len(trials) == 10
    assert report["states"]["COMPLETE"] + report["states"]["PRUNED"] + report["states"]["FAIL"] == 10
    assert report["basis"] == {
        "compared": "completed",
        "at_epoch": None,
        "min_runs": 1,
        "note": report["basis"]["note"],
    }
    for dimension in DIMENSIONS:
        rows = pd.DataFrame(report["techniques"][dimension])
        assert_matches(rows, expected(trials, dimension))
        assert rows["option"][rows["winner"]].tolist() == expected_winner(trials, dimension, 1)
        ranked = rows[~rows["thin"]]["median"]
        assert ranked.is_monotonic_increasing  # ranked by median, thin options after


def test_top_trials_are_the_best_completed_runs(json_report, trials):
    top = pd.DataFrame(json_report[0]["top_trials"])
    completed = trials[trials["state"] == "COMPLETE"].sort_values("val_loss")
    assert list(top["run_id"]) == list(completed["run_id"].head(10))
    assert {"trial", "state", "val_loss", "optimizer", "activation", "lr"} <= set(top.columns)


def test_importances_for_the_fixture_study(json_report):
    importances = {row["param"]: row["importance"] for row in json_report[0]["importances"]}
    assert {"optimizer", "model.activation", "model.encoder_norm"} <= set(importances)
    assert sum(importances.values()) == pytest.approx(1.0)


def markdown_table(text: str, title: str) -> pd.DataFrame:
    """The pipe table under ``## title``, as strings."""
    lines = text.splitlines()
    start = lines.index(f"## {title}") + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    header, body = rows[0], rows[2:]
    assert set("".join(rows[1])) <= set("-:")  # the separator row
    return pd.DataFrame(body, columns=header)


def test_markdown_has_one_row_per_option_with_the_same_numbers(study, trials):
    code, out, err = vae_compare(study[0], "--by", ",".join(DIMENSIONS), "--format", "markdown")
    assert code == 0, err
    assert err == ""  # the report's headline is the header: not printed twice
    for dimension in DIMENSIONS:
        rows = markdown_table(out, f"{dimension} (by val_loss)")
        assert {"option", "count", "completed", "pruned", "failed", "n", "best", "median", "mean"} <= set(rows.columns)
        assert_matches(rows, expected(trials, dimension))
        assert rows.loc[rows[""] == "★", "option"].tolist() == expected_winner(trials, dimension, 3)
        completed = trials[trials["state"] == "COMPLETE"].groupby(dimension).size()
        thin = [o for o in rows["option"] if completed.get(o, 0) < 3]
        assert rows.loc[rows[""] == "thin", "option"].tolist() == thin
    assert "## Parameter importances (Optuna)" in out
    code, out, err = vae_compare(study[0], "--by", ",".join(DIMENSIONS), "--format", "html")
    assert code == 0, err
    assert out.startswith("<!DOCTYPE html>") and out.count("<table") == len(DIMENSIONS) + 2  # + top, importances


@pytest.fixture(scope="module")
def csv_out(study, tmp_path_factory):
    """``--format csv --out DIR``: tables, plots, and the files logged on the parent run."""
    folder = tmp_path_factory.mktemp("compare") / "reports"
    code, out, err = vae_compare(study[0], "--by", ",".join(DIMENSIONS), "--format", "csv", "--out", str(folder))
    assert code == 0, err
    return folder, out


def test_csv_parses_back_with_the_same_numbers(csv_out, trials):
    folder, _ = csv_out
    techniques = pd.read_csv(folder / "techniques.csv")
    for dimension in DIMENSIONS:
        assert_matches(techniques[techniques["dimension"] == dimension], expected(trials, dimension))
    top = pd.read_csv(folder / "top_trials.csv")
    completed = trials.loc[trials["state"] == "COMPLETE", "val_loss"]
    assert top["val_loss"].tolist() == pytest.approx(completed.nsmallest(10).tolist())
    assert not pd.read_csv(folder / "importances.csv").empty
    assert "Compared: completed runs only" in (folder / "notes.txt").read_text(encoding="utf-8")


def test_plots_are_written_and_logged_on_the_parent_run(csv_out, study):
    folder, out = csv_out
    stems = ["distribution", "learning_curves", "recon_vs_kl"]
    for stem in stems:
        data = (folder / f"{stem}.png").read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000, stem
    plots = {f"{stem}.{ext}" for stem in stems for ext in ("png", "svg", "pdf")}
    finished, parent = study
    logged = {Path(a.path).name for a in MlflowClient(finished.tracking_uri).list_artifacts(parent, "compare")}
    assert plots | {"techniques.csv", "top_trials.csv", "notes.txt"} <= logged
    assert f"on parent run {parent}" in out


def test_by_a_numeric_param_bins_it_into_quantile_ranges(study, trials):
    code, out, err = vae_compare(study[0], "--by", "optimizer.lr", "--format", "json", "--no-log")
    assert code == 0, err
    rows = pd.DataFrame(json.loads(out)["techniques"]["optimizer.lr"])
    assert len(rows) == 4 and rows["count"].sum() == len(trials)  # 10 distinct values -> 4 bins
    edges = rows["option"].str.strip("[(]").str.split(",", expand=True).astype(float)
    rows = rows.assign(low=edges[0], high=edges[1]).sort_values("low")
    lrs = iter(trials["lr"].sort_values())
    for _, row in rows.iterrows():  # the ranges, low to high, hold the runs' lrs in order (edges have 3 digits)
        for _ in range(row["count"]):
            assert row["low"] * 0.995 <= next(lrs) <= row["high"] * 1.005, row["option"]


def test_target_as_a_parent_run_id_or_an_experiment(study, trials):
    finished, parent = study
    by_id = ["--tracking-uri", finished.tracking_uri, "--storage", finished.storage, "--format", "json"]
    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()) as err:
        assert compare([parent, *by_id]) == 0
    report = json.loads(out.getvalue())
    assert report["source"]["kind"] == "parent run" and report["runs"] == len(trials)
    assert report["importances"]  # the parent names its study
    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()) as err:
        assert compare(["vae-sweep", *by_id]) == 0
    report = json.loads(out.getvalue())
    assert report["source"]["kind"] == "experiment" and report["runs"] >= len(trials)
    assert "experiment 'vae-sweep'" in err.getvalue()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["no-such-study"], ["no study, experiment or run 'no-such-study'", "Studies found", "fixture"]),
        (["fixture", "--by", "lr"], ["unknown --by key 'lr'", "optimizer.lr", "Techniques: optimizer"]),
        (["fixture", "--metric", "val_los"], ["unknown metric 'val_los'", "val_loss", "test_recon"]),
    ],
)
def test_bad_input_exits_2_with_one_message(study, capsys, args, says):
    finished, _ = study
    assert compare([*args, "--tracking-uri", finished.tracking_uri, "--storage", finished.storage]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("vae-compare: error: ")
    for text in says:
        assert text in captured.err


@pytest.mark.parametrize(
    ("uri", "says"),
    [("http://127.0.0.1:9", "cannot reach the MLflow tracking server"), ("sqlite:///{tmp}/none.db", "no MLflow store")],
)
def test_a_store_that_is_not_there_exits_2(tmp_path, capsys, uri, says):
    uri = uri.format(tmp=tmp_path)
    assert compare(["fixture", "--tracking-uri", uri]) == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists()  # not created empty


def test_missing_optuna_study_skips_importances_with_a_note(study, tmp_path):
    finished, _ = study
    code, out, err = vae_compare(finished, "--storage", f"sqlite:///{tmp_path}/optuna.db")
    assert code == 0, err
    assert "Note: parameter importances skipped: no Optuna storage" in out
    assert "Parameter importances" not in out
    assert not (tmp_path / "optuna.db").exists()


# --------------------------------------------------------------------------- pure functions


def test_group_labels_keep_few_values_and_bin_many():
    assert group_labels(pd.Series(["4", "8", None, "4"])).tolist() == ["4", "8", "(unset)", "4"]
    labels = group_labels(pd.Series([float(i) for i in range(12)]))
    assert labels.nunique() == 4 and labels.value_counts().tolist() == [3, 3, 3, 3]
    assert labels.iloc[0] == "[0, 2.75]"


def test_technique_table_counts_states_and_maximizes():
    runs = pd.DataFrame(
        {
            "run_id": list("abcde"),
            "status": ["FINISHED", "FINISHED", "FAILED", "FINISHED", "FINISHED"],
            "tags.pruned_at_epoch": [None, "2", None, None, None],
            "tags.technique.optimizer": ["adam", "adam", "sgd", "sgd", "adam"],
            "metrics.active_units": [3.0, 9.0, math.nan, 2.0, 1.0],
        }
    )
    assert trial_states(runs).tolist() == ["COMPLETE", "PRUNED", "FAIL", "COMPLETE", "COMPLETE"]
    table = technique_table(runs, "tags.technique.optimizer", "active_units", maximize=True, min_runs=1)
    columns = ["option", "count", "completed", "pruned", "failed", "compared", "best", "median", "winner"]
    assert table[columns].values.tolist() == [  # the pruned run's 9 is counted, not compared
        ["adam", 3, 2, 1, 0, 2, 3.0, 2.0, True],  # the same median: the better best wins
        ["sgd", 2, 1, 0, 1, 1, 2.0, 2.0, False],
    ]
    assert technique_table(runs, "tags.technique.optimizer", "active_units", maximize=True)["thin"].all()


def test_pareto_front():
    points = pd.DataFrame({"recon": [1.0, 2.0, 3.0, 2.5, 1.5], "kl": [5.0, 2.0, 1.0, 3.0, 5.5]})
    assert pareto_front(points, x="recon", y="kl").tolist() == [True, True, True, False, False]
