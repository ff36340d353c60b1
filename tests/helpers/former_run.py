"""The run vae-sweep logged at commit 8bd6269 (tests/reproduce/fixtures/layout_v1_run), put back
into an MLflow store: a real logged run for vae-reproduce to read, without training one first."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from mlflow import MlflowClient

FIXTURE = Path(__file__).resolve().parents[1] / "reproduce" / "fixtures" / "layout_v1_run"


def log_former_run(uri: str, config_text: str | None = None) -> str:
    """The fixture as the MLflow run it came from: FINISHED, with its artifacts where vae-sweep
    logs them; ``config_text`` replaces its config.yaml (a tampered or edited one)."""
    logged = json.loads((FIXTURE / "run.json").read_text())
    client = MlflowClient(uri)
    experiment = client.create_experiment("vae-sweep")
    run = client.create_run(experiment, tags=logged["tags"])
    run_id = run.info.run_id
    for key, value in logged["params"].items():
        client.log_param(run_id, key, value)
    for key, value in logged["metrics"].items():
        client.log_metric(run_id, key, value)
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "config.yaml"
        config.write_text(config_text if config_text is not None else (FIXTURE / "config.yaml").read_text())
        client.log_artifact(run_id, str(config))
    client.log_artifact(run_id, str(FIXTURE / "state_dict.pt"), artifact_path="model")
    client.set_terminated(run_id, "FINISHED")
    return run_id
