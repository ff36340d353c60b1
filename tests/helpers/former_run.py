"""The run vae-sweep logged at commit 8bd6269 (tests/reproduce/fixtures/layout_v1_run), put back
into an MLflow store: a real logged run for vae-reproduce to read, without training one first."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from mlflow import MlflowClient

FIXTURE = Path(__file__).resolve().parents[1] / "reproduce" / "fixtures" / "layout_v1_run"

# The fixture was trained on another machine: math libraries pick their kernels by CPU, and their
# sums round differently in the last bits (2.2e-7 on an AMD EPYC), so a reproduction of it is
# bit for bit only on a CPU like that one, and within this tolerance on any other.
CROSS_CPU_TOLERANCE = "1e-5"


def reproduced_alike(out: str) -> bool:
    """Whether vae-reproduce's report ``out`` says identical, or within CROSS_CPU_TOLERANCE."""
    return "Verdict: identical" in out or "Verdict: within tolerance (largest relative difference" in out


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
