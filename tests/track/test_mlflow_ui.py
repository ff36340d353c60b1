"""The MLflow UI as a user sees it: `mlflow server` over a finished study's store, opened in
headless Chromium. With VAE_SWEEP_SCREENSHOTS=docs/images it also saves the screenshots that
docs/compare.md shows."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from helpers.mlflow_server import mlflow_server as running_server
from helpers.run_if import chromium
from mlflow.tracking import MlflowClient

from vae_sweep.names import EPOCH_METRICS, FINAL_METRICS, PRUNED_AT_TAG, epoch_key
from vae_sweep.track.urls import TRAINING_VIEW, experiment_page, run_page

pytestmark = pytest.mark.slow
TECHNIQUE_TAGS = ("technique.optimizer", "technique.activation", "technique.normalization")


@pytest.fixture(scope="module")
def browser():
    chromium_binary, chromedriver = chromium()
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1000"):
        options.add_argument(argument)
    options.binary_location = chromium_binary
    driver = webdriver.Chrome(service=webdriver.ChromeService(chromedriver), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def mlflow_server(finished_study, tmp_path_factory):
    """`mlflow server` over the finished study's store (its runs keep their artifact paths)."""
    with running_server(finished_study.tracking_uri, tmp_path_factory.mktemp("ui-server")) as server:
        yield server.url


def wait_for_text(driver, text: str, timeout: float = 30) -> str:
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout
    while True:
        body = driver.find_element(By.TAG_NAME, "body").text
        if text in body or time.monotonic() > deadline:
            return body
        time.sleep(0.5)


def screenshot(driver, name: str) -> None:
    from selenium.webdriver.common.by import By

    folder = os.environ.get("VAE_SWEEP_SCREENSHOTS")
    if folder:
        for side_panel in driver.find_elements(By.XPATH, "//button[@aria-label='Close']"):
            side_panel.click()  # the assistant panel would hide half of the page
            time.sleep(0.5)
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / name))


def lines_of(body: str) -> list[str]:
    return [line.strip() for line in body.splitlines()]


def test_the_pages_we_link_open_in_the_model_training_view(browser, mlflow_server):
    """MLflow 3's UI shows an experiment as GenAI (traces, evaluations) unless the address says
    otherwise; the links vae-train and the sweep print do."""
    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("vae-sweep")
    browser.get(experiment_page(mlflow_server, experiment.experiment_id))
    body = wait_for_text(browser, "Group by")
    assert "Model registry" in body and "Group by" in body  # the runs table of the model-training view
    for genai in ("Evaluation runs", "Prompts & versions", "Observability"):
        assert genai not in body, genai


def test_experiment_page_groups_the_trials_under_the_study_run(browser, mlflow_server, finished_study):
    from selenium.webdriver.common.by import By

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("vae-sweep")
    children = client.search_runs([experiment.experiment_id], "tags.`mlflow.parentRunId` != ''")
    pruned = [run for run in children if PRUNED_AT_TAG in run.data.tags]
    assert pruned, "the fixture's study pruned no trial: nothing to recognise"
    browser.get(experiment_page(mlflow_server, experiment.experiment_id))
    body = wait_for_text(browser, finished_study.study_name)
    assert finished_study.study_name in body  # the parent run, named after the study
    assert children[0].info.run_name not in body  # children are folded under it
    expand = "//*[text()=$name]/ancestor::*[@role='gridcell'][1]//button".replace(
        "$name", repr(finished_study.study_name)
    )
    browser.find_element(By.XPATH, expand).click()
    body = wait_for_text(browser, children[0].info.run_name)
    shown = [run.info.run_name for run in children if run.info.run_name in body]
    assert len(shown) == len(children) == 10
    for run in pruned:  # told from a completed trial by its name, in the table itself
        epoch = run.data.tags[PRUNED_AT_TAG]
        assert run.info.run_name.endswith(f"(pruned at epoch {epoch})") and run.info.run_name in body
    screenshot(browser, "ui-parent-and-trials.png")


def test_a_trials_page_shows_its_per_epoch_curves_before_its_final_values(browser, mlflow_server):
    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("vae-sweep")
    complete = client.search_runs([experiment.experiment_id], "tags.`optuna.trial_state` = 'COMPLETE'")
    run = complete[0]
    browser.get(run_page(mlflow_server, experiment.experiment_id, run.info.run_id, "model-metrics"))
    lines = lines_of(wait_for_text(browser, "train_loss"))  # a chart of the first row
    titles = [line for line in lines if line in EPOCH_METRICS or line in FINAL_METRICS]
    assert titles, lines
    # Charts below the window may not be drawn yet: every curve drawn comes before any final value.
    first_final = next((i for i, title in enumerate(titles) if title in FINAL_METRICS), len(titles))
    assert first_final > 0 and not set(titles[first_final:]) & set(EPOCH_METRICS), titles
    screenshot(browser, "ui-trial-metrics.png")


def test_compare_page_lines_up_technique_tags_and_metrics(browser, mlflow_server):
    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("vae-sweep")
    complete = client.search_runs([experiment.experiment_id], "tags.`optuna.trial_state` = 'COMPLETE'")
    ids = [run.info.run_id for run in complete]
    query = urllib.parse.urlencode({"runs": json.dumps(ids), "experiments": json.dumps([experiment.experiment_id])})
    browser.get(f"{mlflow_server}/#/compare-runs?{query}&{TRAINING_VIEW}")
    body = wait_for_text(browser, TECHNIQUE_TAGS[-1])
    # The metrics table draws its first rows only (alphabetical: a final value, then the curves).
    for name in (*TECHNIQUE_TAGS, "active_units", epoch_key("train_loss"), "optimizer.lr"):
        assert name in body, name
    for run in complete:
        assert run.data.tags["technique.optimizer"] in body
    screenshot(browser, "ui-compare-trials.png")


def test_group_by_a_technique_draws_one_curve_per_option(browser, mlflow_server):
    """docs/compare.md's recipe in MLflow's own UI: Group by technique.optimizer, then the chart
    view, gives one val_loss curve per optimizer (the group's mean, its range as a band)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("vae-sweep")
    children = client.search_runs([experiment.experiment_id], "tags.`mlflow.parentRunId` != ''")
    optimizers = {run.data.tags["technique.optimizer"] for run in children}
    browser.get(experiment_page(mlflow_server, experiment.experiment_id))
    wait_for_text(browser, "Group by")
    browser.find_element(By.XPATH, "//*[text()='Group by']/ancestor::button[1]").click()
    wait_for_text(browser, "technique.optimizer", timeout=10)
    browser.find_element(By.XPATH, "//*[text()='technique.optimizer']").click()
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
    browser.find_element(By.XPATH, "//input[@name='runs-view-mode'][@value='CHART']/ancestor::label[1]").click()
    search = browser.find_element(By.XPATH, "//input[@placeholder='Search metric charts']")
    search.send_keys("val_loss")
    legend = f"({epoch_key('val_loss')})"
    body = wait_for_text(browser, legend)
    assert {line.removesuffix(f" {legend}") for line in lines_of(body) if line.endswith(legend)} >= optimizers
    screenshot(browser, "ui-group-by-optimizer.png")


def test_compare_and_reproduce_read_a_study_through_a_tracking_server(mlflow_server, finished_study, tmp_path):
    """The reporting commands work against a tracking server as against the SQLite file."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server}
    compare = subprocess.run(
        ["vae-compare", finished_study.study_name, "--storage", finished_study.storage, "--format", "json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert compare.returncode == 0, compare.stderr
    report = json.loads(compare.stdout)
    assert report and finished_study.study_name in json.dumps(report)
    reproduce = subprocess.run(
        ["vae-reproduce", "--study", finished_study.study_name, "--best", "--no-track"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert reproduce.returncode == 0, reproduce.stderr
    assert "Verdict: identical" in reproduce.stdout
