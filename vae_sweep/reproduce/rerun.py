"""Re-running a logged config: the same training, as a new MLflow run tagged
``reproduced_from=<run id>`` in the store the user pointed at (or untracked with ``--no-track``).

Before anything trains, a run that did not train to the end is refused (it has no final metrics
or weights to compare with), and the original's torch thread count is matched when its config
left it to the machine, since another count sums floats in another order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from mlflow.entities import Run
from omegaconf import OmegaConf

from vae_sweep.errors import UsageError
from vae_sweep.names import (
    FAILURE_REASON_ATTR,
    FINAL_METRICS,
    NEWER_FINAL_METRICS,
    PRUNED_AT_TAG,
    REPRODUCED_FROM_TAG,
    by_metric_name,
)
from vae_sweep.reproduce.diff import TIMING_METRICS
from vae_sweep.reproduce.logged import literal
from vae_sweep.track.run import THREADS_TAG
from vae_sweep.track.training import train_and_track
from vae_sweep.train.config import NoTracking, parse_run_config
from vae_sweep.train.specs import target_of

PROG = "vae-reproduce"


@dataclass
class Reproduction:
    metrics: dict[str, float]
    state_dict: dict[str, torch.Tensor]
    run_id: str | None  # the new MLflow run; None with --no-track


def rerun(config: Mapping[str, Any], original_run_id: str, *, tracking_uri: str, track: bool) -> Reproduction:
    """Train ``config`` again, as a new run in ``tracking_uri`` (same experiment) or untracked."""
    config = dict(literal(config))
    if track and "uri" in config["tracking"]:
        config["tracking"] = {**config["tracking"], "uri": tracking_uri}  # the store the user pointed at
    else:
        config["tracking"] = {"_target_": target_of(NoTracking), "name": NoTracking.name}
    cfg = OmegaConf.create(config)
    parse_run_config(cfg).trainer.resolve_device()  # a CUDA run on a machine without one: refused before a run exists
    started: list[str] = []
    result = train_and_track(cfg, tags={REPRODUCED_FROM_TAG: original_run_id}, on_run_start=started.append)
    state = {name: tensor.detach().cpu() for name, tensor in result.model.state_dict().items()}
    return Reproduction(dict(result.metrics), state, started[0] if started else None)


def match_threads(config: Mapping[str, Any], tags: Mapping[str, str]) -> None:
    """Train with the original's thread count when its config left it to the machine (a sweep
    worker, for one, shares the cores): another count sums floats in another order."""
    if config["trainer"].get("num_threads") is None and THREADS_TAG in tags:
        torch.set_num_threads(int(tags[THREADS_TAG]))
        print(f"Using {tags[THREADS_TAG]} torch threads, as the original run did")


def refuse_unfinished(run: Run) -> None:
    """Only a run that trained to the end has final metrics and weights to compare with."""
    run_id, tags = run.info.run_id, run.data.tags
    hint = f"pick a COMPLETE trial, or print its command with: {PROG} {run_id} --print-command"
    if PRUNED_AT_TAG in tags:
        raise UsageError(
            f"run {run_id} was pruned at epoch {tags['pruned_at_epoch']}: it has no final metrics or "
            f"weights to compare with; {hint}"
        )
    if run.info.status != "FINISHED":
        reason = f" ({tags[FAILURE_REASON_ATTR]})" if FAILURE_REASON_ATTR in tags else ""
        raise UsageError(f"run {run_id} is {run.info.status}{reason}, not FINISHED; {hint}")
    expected = [name for name in FINAL_METRICS if name not in (*TIMING_METRICS, *NEWER_FINAL_METRICS)]
    missing = [name for name in expected if name not in by_metric_name(run.data.metrics)]
    if missing:
        raise UsageError(f"run {run_id} has no final {', '.join(missing)}: nothing to compare with; {hint}")
