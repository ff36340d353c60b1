"""Checkpoints: everything the training loop needs to go on after an epoch as if it never stopped.

Model, optimizer and learning-rate schedule, every random number generator the loop draws from
(torch's global one, the batch-order generator, CUDA's, numpy's and Python's), the epochs'
metrics so far, the training time, and with ``trainer.restore_best`` the best epoch's weights.
With ``trainer.deterministic=true`` on the CPU, a run resumed from epoch k ends with the same
metrics and weights as one that never stopped.

A checkpoint is written to a temporary file and renamed into place, so a kill mid-write leaves
the previous checkpoint whole. It loads with ``torch.load(weights_only=True)``: tensors,
numbers, strings, lists and dicts only, never code. It names the run config it belongs to, and
one written for another config is not used.
"""

from __future__ import annotations

import hashlib
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vae_sweep.train.best_epoch import BestEpoch

FORMAT_VERSION = 1


def fingerprint(config: Any) -> str:
    """What a checkpoint must match to be resumed: the run's specs except where it is tracked."""
    described = {name: repr(value) for name, value in vars(config).items() if name != "tracking"}
    return hashlib.sha256(repr(sorted(described.items())).encode()).hexdigest()[:16]


@dataclass
class Checkpoint:
    """A loaded checkpoint: ``restore`` puts it into a freshly built model, optimizer and schedule."""

    epoch: int
    history: list[dict[str, float]]
    train_time: float
    state: dict[str, Any]

    def restore(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        schedule: Any,
        generator: torch.Generator,
        best: BestEpoch,
    ) -> None:
        model.load_state_dict(self.state["model"])
        optimizer.load_state_dict(self.state["optimizer"])
        schedule.load_state_dict(self.state["schedule"])
        generator.set_state(self.state["rng"]["generator"])
        set_rng_states(self.state["rng"])
        best.replay(self.history)
        best.restore(self.state.get("best", {}))


def save_checkpoint(
    path: Path,
    *,
    config_fingerprint: str,
    epoch: int,
    history: list[dict[str, float]],
    train_time: float,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: Any,
    generator: torch.Generator,
    best: BestEpoch,
) -> None:
    state = {
        "format": FORMAT_VERSION,
        "fingerprint": config_fingerprint,
        "epoch": epoch,
        "history": history,
        "train_time": train_time,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "rng": {"generator": generator.get_state(), **rng_states()},
        "best": best.state(),  # the best epoch's weights, with restore_best
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(state, temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def load_checkpoint(path: Path, config_fingerprint: str) -> tuple[Checkpoint | None, str]:
    """The checkpoint at ``path`` and "", or None and why it cannot be used."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        return None, f"no checkpoint at {path}"
    except Exception as error:  # truncated, not a torch file, refused by weights_only
        return None, f"{path} is not a readable checkpoint ({type(error).__name__}: {error})"
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        return None, f"{path} is not a vae-sweep checkpoint of format {FORMAT_VERSION}"
    if state.get("fingerprint") != config_fingerprint:
        return None, f"{path} was written for another config"
    return Checkpoint(int(state["epoch"]), list(state["history"]), float(state["train_time"]), state), ""


def rng_states() -> dict[str, Any]:
    numpy_state = np.random.get_state()
    python_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "numpy": {
            "keys": torch.from_numpy(numpy_state[1].astype(np.int64)),
            "position": int(numpy_state[2]),
            "has_gauss": int(numpy_state[3]),
            "cached_gaussian": float(numpy_state[4]),
        },
        "python": {"version": python_state[0], "state": list(python_state[1]), "gauss": python_state[2]},
    }


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"]:
        torch.cuda.set_rng_state_all(states["cuda"])
    numpy_state = states["numpy"]
    np.random.set_state(
        (
            "MT19937",
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    python_state = states["python"]
    random.setstate((python_state["version"], tuple(python_state["state"]), python_state["gauss"]))
