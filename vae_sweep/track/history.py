"""A per-epoch metric's history as MLflow holds it, from runs logged before and after per-epoch
metrics moved under ``epoch/`` (``vae_sweep.names.epoch_key``)."""

from __future__ import annotations

from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from vae_sweep.names import epoch_key


def metric_history(client: MlflowClient, run_id: str, name: str) -> list[Metric]:
    """Every logged value of the per-epoch metric ``name`` (``val_loss``) of the run, by step."""
    history = client.get_metric_history(run_id, epoch_key(name))
    return history or client.get_metric_history(run_id, name)
