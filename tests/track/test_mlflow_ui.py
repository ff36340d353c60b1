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


def test_experiment_page_groups_the_trials_under_the_study_run(browser, mlflow_server, finished_study):
    from selenium.webdriver.common.by import By

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("vae-sweep")
    children = client.search_runs([experiment.experiment_id], "tags.`mlflow.parentRunId` != ''")
    browser.get(f"{mlflow_server}/#/experiments/{experiment.experiment_id}/runs")
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
    screenshot(browser, "ui-parent-and-trials.png")


def test_compare_page_lines_up_technique_tags_and_metrics(browser, mlflow_server):
    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("vae-sweep")
    complete = client.search_runs([experiment.experiment_id], "tags.`optuna.trial_state` = 'COMPLETE'")
    ids = [run.info.run_id for run in complete]
    query = urllib.parse.urlencode({"runs": json.dumps(ids), "experiments": json.dumps([experiment.experiment_id])})
    browser.get(f"{mlflow_server}/#/compare-runs?{query}")
    body = wait_for_text(browser, TECHNIQUE_TAGS[-1])
    for name in (*TECHNIQUE_TAGS, "val_loss", "test_iwae", "optimizer.lr"):
        assert name in body, name
    for run in complete:
        assert run.data.tags["technique.optimizer"] in body
    screenshot(browser, "ui-compare-trials.png")


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
