"""Mixed precision for training steps: ``trainer.precision`` 32 (float32, the default: every
step exactly as without this module), bf16 (bfloat16 autocast, no scaler needed) or 16-mixed
(float16 autocast with a gradient scaler, CUDA only). Evaluation stays float32, so reported
metrics mean the same at every precision."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


class Precision:
    def __init__(self, setting: str, device: torch.device) -> None:
        self.setting = setting
        self.device = device
        self.scaler = torch.amp.GradScaler(device.type) if setting == "16-mixed" else None

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """The forward pass and the objective of one batch."""
        if self.setting == "32":
            yield
            return
        dtype = torch.bfloat16 if self.setting == "bf16" else torch.float16
        with torch.autocast(device_type=self.device.type, dtype=dtype):
            yield

    def step(
        self, objective: torch.Tensor, optimizer: torch.optim.Optimizer, model: torch.nn.Module, clip: float | None
    ) -> None:
        """Backward, optional clipping of the true (unscaled) gradients, and the optimizer step."""
        if self.scaler is None:
            objective.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()
            return
        self.scaler.scale(objective).backward()
        if clip is not None:
            self.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        self.scaler.step(optimizer)  # skipped when the scaled gradients overflowed
        self.scaler.update()
