"""Runs logged before per-epoch metrics moved under ``epoch/`` read back like the runs of today."""

from __future__ import annotations

import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from vae_sweep.names import by_metric_name, epoch_key
from vae_sweep.track.history import metric_history


@pytest.mark.parametrize("key", ["val_loss", epoch_key("val_loss")], ids=["logged before", "logged today"])
def test_a_runs_curve_and_latest_values_read_the_same_whichever_key_it_was_logged_under(tmp_path, key):
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    run_id = client.create_run(client.create_experiment("e", artifact_location=str(tmp_path / "a"))).info.run_id
    curve = [Metric(key, 30.0 - step, 0, step) for step in (1, 2, 3)]
    client.log_batch(run_id, metrics=[*curve, Metric("test_loss", 26.5, 0, 3)])

    assert [(m.step, m.value) for m in metric_history(client, run_id, "val_loss")] == [(1, 29.0), (2, 28.0), (3, 27.0)]
    assert by_metric_name(client.get_run(run_id).data.metrics) == {"val_loss": 27.0, "test_loss": 26.5}
