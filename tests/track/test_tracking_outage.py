"""A tracking server that stops answering, or goes away, in the middle of a sweep (issue 6, fault 4).

Unit level: an ``MlflowRun`` whose store fails keeps training, tries once more at the end and
names what it could not log. End to end: a real ``mlflow server`` is frozen (SIGSTOP) while a
sweep logs to it, thawed, and later killed for good; every trial still reaches Optuna.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from helpers.mlflow_server import free_port, mlflow_server
from helpers.tiny import TINY_SWEEP
from mlflow.tracking import MlflowClient

from vae_sweep.names import epoch_key
from vae_sweep.sweep.trial_link import RUN_ID_ATTR
from vae_sweep.track.run import TRACKING, MlflowRun, client_for
from vae_sweep.train.config import MlflowTracking
from vae_sweep.train.loop import train

EPOCHS = 8
N_TRIALS = 7
TIMEOUT_S = 300
# What a sweep says when its tracking server fails: in a trial's run, when a trial starts, after it.
WARNINGS = ("failed while logging", "this trial trains without an MLflow run", "could not record trial")


def test_a_store_that_fails_mid_run_never_stops_training_and_names_what_was_lost(
    tiny_config, monkeypatch, caplog
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    spec = MlflowTracking(uri=dead, flush_seconds=0)
    run = MlflowRun(client_for(dead), "0123456789abcdef", spec)
    config = tiny_config()
    with caplog.at_level(logging.WARNING, logger="vae_sweep.track.run"):
        result = train(config, [run])
        run.finish(result)
    assert len(result.history) == config.trainer.epochs  # training went on after the first failure
    first, last = caplog.records[0].getMessage(), caplog.records[-1].getMessage()
    assert f"MLflow store {dead} failed while logging metrics of run 0123456789abcdef" in first
    assert "training goes on" in first
    for lost in ("model/state_dict.pt", "reconstructions.png", "prior_samples.png", "the end of the run (FINISHED)"):
        assert lost in last, last
    assert re.search(r"\d+ metric values", last), last  # kept queued, tried again at the end, then given up
    # One warning when the store fails and one at the end: not one per epoch.
    assert len(caplog.records) == 2


def test_a_store_that_recovers_before_the_run_ends_gets_everything(tiny_config, tmp_path) -> None:
    """Calls put off while the store failed are made at the end; nothing is lost, nothing doubled."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = client_for(uri)
    run_id = client.create_run(client.create_experiment("outage", str(tmp_path / "artifacts"))).info.run_id
    run = MlflowRun(client, run_id, MlflowTracking(uri=uri, flush_seconds=0))
    run.failures[TRACKING] = "OSError: the disk was gone for a moment"  # as after a failed call: later calls wait
    config = tiny_config()
    result = train(config, [run])
    run.finish(result)
    finished = client.get_run(run_id)
    assert finished.info.status == "FINISHED"
    history = client.get_metric_history(run_id, epoch_key("train_loss"))
    assert sorted(m.step for m in history) == list(range(1, config.trainer.epochs + 1))
    artifacts = {a.path for a in client.list_artifacts(run_id)} | {
        a.path for a in client.list_artifacts(run_id, "model")
    }
    assert {"reconstructions.png", "prior_samples.png", "model/state_dict.pt"} <= artifacts


def completed(storage: str) -> int:
    try:
        study = optuna.load_study(study_name="outage", storage=storage)
    except KeyError:  # not created yet
        return 0
    return sum(t.state is optuna.trial.TrialState.COMPLETE for t in study.get_trials(deepcopy=False))


def wait_for(condition, sweep: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not condition():
        assert sweep.poll() is None or condition(), f"the sweep ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.mark.slow
def test_a_sweep_survives_its_tracking_server_freezing_and_dying(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    output = tmp_path / "sweep.log"
    with mlflow_server(f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "server") as server:
        command = [
            sys.executable, "-c", "from vae_sweep.cli import train_app; train_app()", "-m", *TINY_SWEEP,
            f"trainer.epochs={EPOCHS}", "tracking.flush_seconds=0", f"tracking.uri={server.url}",
            "hydra/sweeper=vae_sweep", "hydra/launcher=joblib", "hydra.sweeper.study_name=outage",
            f"hydra.sweeper.storage={storage}", f"hydra.sweeper.n_trials={N_TRIALS}", "hydra.sweeper.n_jobs=1",
            "hydra.sweeper.sampler.seed=0", "optimizer.lr=tag(log, interval(1e-3, 1e-2))",
        ]  # fmt: skip
        # A frozen server holds each call until MLflow's timeout: keep the test's retries short.
        env = {**os.environ, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "2"}
        with output.open("w") as log:
            sweep = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: completed(storage) >= 1, sweep, "the first trial")
            server.signal(signal.SIGSTOP)  # answers nothing, connections hang
            wait_for(lambda: any(w in output.read_text() for w in WARNINGS), sweep, "a warning about MLflow")
            server.signal(signal.SIGCONT)
            frozen_until = completed(storage)
            # The first trial to end after the thaw may have started while the server was frozen (and
            # trained untracked): two more make sure two whole runs were logged after the thaw.
            wait_for(lambda: completed(storage) >= frozen_until + 3, sweep, "three trials after the thaw")
            server.stop()  # gone for good
            assert sweep.wait(timeout=TIMEOUT_S) == 0, output.read_text()[-5000:]
        finally:
            if sweep.poll() is None:
                sweep.kill()
        text = output.read_text()
        trials = optuna.load_study(study_name="outage", storage=storage).get_trials()
        assert [t.state.name for t in trials] == ["COMPLETE"] * N_TRIALS, text[-5000:]
        assert "Traceback" not in text, text[-5000:]
        assert "could not record trial" in text  # the study's progress, after the server died
        server.start()  # back up, to read what reached it
        client = MlflowClient(tracking_uri=server.url)
        fully_logged = 0
        for trial in trials:
            run_id = trial.user_attrs.get(RUN_ID_ATTR)
            if run_id is None:  # the trial started while the server was gone: trained untracked
                continue
            run = client.get_run(run_id)
            epochs = len(client.get_metric_history(run_id, epoch_key("train_loss")))
            if run.info.status == "FINISHED" and epochs == EPOCHS:
                fully_logged += 1
            else:  # whatever a run lacks, the sweep's output said so, naming the run
                assert re.search(rf"could not log to MLflow store \S+ for run {run_id}", text), (run_id, text[-5000:])
        assert fully_logged >= 3  # before the freeze, and after the thaw
        assert "this trial trains without an MLflow run" in text
