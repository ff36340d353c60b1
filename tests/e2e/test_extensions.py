"""examples/custom_vae, installed the way a user installs their own package: its model and data
set, registered through the ``vae_sweep.extensions`` entry point, sweep with two joblib workers
(which import nothing but vae-sweep), compare, and reproduce bit for bit; on a machine without the
package, vae-reproduce says what to install.

The package is built from the repository and installed into a folder of the test's own (``pip
install --target``), put on ``PYTHONPATH`` for the commands, so this environment is left as it was.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from helpers.environment import clean_env
from helpers.run_if import VAE_TRAIN, needs_vae_train
from mlflow import MlflowClient

from vae_sweep import cli

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "custom_vae"
SEARCHPATH = "hydra.searchpath=[pkg://custom_vae.conf]"

pytestmark = [pytest.mark.slow, needs_vae_train]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """custom_vae installed (no dependencies: vae-sweep is already here) into a folder of its own."""
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    shutil.copytree(EXAMPLE, build / "custom_vae", ignore=shutil.ignore_patterns("*.egg-info", "build"))
    install = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
    done = subprocess.run(
        [*install, "--target", str(target), str(build / "custom_vae")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return target


def command(*args: str, cwd: Path, site: Path | None) -> subprocess.CompletedProcess:
    path = [str(site)] if site else []
    env = clean_env(PYTHONPATH=os.pathsep.join([*path, os.environ.get("PYTHONPATH", "")]).strip(os.pathsep))
    return subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_a_package_of_ones_own_sweeps_compares_and_reproduces(site, tmp_path, monkeypatch, capsys):
    swept = command(
        VAE_TRAIN, "-m", SEARCHPATH, "study=custom", "hydra.sweeper.n_trials=2", "hydra.sweeper.plots=[]",
        "trainer.epochs=1", "trainer.num_threads=1", cwd=tmp_path, site=site,
    )  # fmt: skip
    assert swept.returncode == 0, swept.stderr[-3000:]
    study = optuna.load_study(study_name="custom", storage=f"sqlite:///{tmp_path}/optuna.db")
    assert [trial.state.name for trial in study.trials] == ["COMPLETE"] * 2
    spans = sorted((t.datetime_start, t.datetime_complete) for t in study.trials)
    assert any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))  # two workers
    assert "Reproduce: vae-train 'hydra.searchpath=[pkg://custom_vae.conf]' study=custom" in swept.stdout

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("vae-sweep").experiment_id])
    (parent,) = [run for run in runs if run.data.tags.get("vae_sweep.role") == "study"]
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 2 and all(run.info.status == "FINISHED" for run in children)
    for run in children:  # what another machine must install, logged by every worker's runs
        assert run.data.tags["extension.custom_vae.specs"] == "custom-vae==0.1.0"
        assert run.data.params["model._target_"] == "custom_vae.specs.ResidualMLPSpec"

    # vae-compare reads runs and the study, no spec: it runs here, in the test's own process.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    stores = ["--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--storage", f"sqlite:///{tmp_path}/optuna.db"]
    capsys.readouterr()
    assert cli.compare(["custom", *stores]) == 0
    assert "model.width" in capsys.readouterr().out  # the extension's own parameter, ranked by importance

    reproduced = command(shutil.which("vae-reproduce"), "--study", "custom", "--best", cwd=tmp_path, site=site)
    assert reproduced.returncode == 0, reproduced.stdout + reproduced.stderr
    assert "Verdict: identical (every final metric and every weight bit for bit)" in reproduced.stdout

    # This test process never imports custom_vae: it stands for a machine where it is not installed.
    assert cli.reproduce(["--study", "custom", "--best", stores[0], stores[1]]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("was trained with extension(s) not installed here: custom_vae.specs (pip install custom-vae==0.1.0)")
    )
