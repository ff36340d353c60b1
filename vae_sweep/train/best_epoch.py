"""Which epoch a run ends with: early stopping on a monitored loss, and the best epoch's weights.

The loop's counterpart of Keras' ``EarlyStopping(monitor, min_delta, patience,
restore_best_weights)`` and Lightning's ``EarlyStopping`` with a best-model checkpoint. Lower is
better for every monitor (they are losses). Patience counts the epochs the monitor was measured
in: with ``trainer.eval_every=k`` and a validation monitor, one check every k epochs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

# Per-epoch losses an early stop may watch: validation ones (measured every eval_every epochs)
# or training ones (every epoch).
MONITORS = ("val_loss", "val_recon", "val_kl", "train_loss", "train_recon", "train_kl")


@dataclass
class BestEpoch:
    """The best value of ``monitor`` so far, its epoch, and with ``keep_weights`` a copy of that
    epoch's weights; ``update`` says when ``patience`` checks passed without a better one."""

    monitor: str
    patience: int | None
    min_delta: float
    keep_weights: bool
    value: float = math.inf
    epoch: int = 0
    checks_since: int = 0
    weights: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    def update(self, epoch: int, metrics: dict[str, float], model: torch.nn.Module | None = None) -> bool:
        """Take epoch ``epoch``'s metrics; True when training should stop after it."""
        value = metrics.get(self.monitor)
        if value is None:  # not measured this epoch (validation every eval_every epochs)
            return False
        if value < self.value - self.min_delta:
            self.value, self.epoch, self.checks_since = value, epoch, 0
            if self.keep_weights and model is not None:
                self.weights = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
        else:
            self.checks_since += 1
        return self.patience is not None and self.checks_since >= self.patience

    def why_stopped(self) -> str:
        return (
            f"{self.monitor} has not improved by more than {self.min_delta:g} for {self.checks_since} check(s)"
            f" (best {self.value:.4f}, epoch {self.epoch})"
        )

    def replay(self, history: list[dict[str, float]]) -> None:
        """The state after the epochs of a resumed run's ``history`` (weights come from its checkpoint)."""
        for epoch, metrics in enumerate(history, start=1):
            self.update(epoch, metrics)

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps: the best weights (the rest is replayed from the history)."""
        return {"weights": self.weights} if self.weights is not None else {}

    def restore(self, state: dict[str, Any]) -> None:
        self.weights = state.get("weights")
