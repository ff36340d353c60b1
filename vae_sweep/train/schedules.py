"""Learning-rate schedules from config, on top of ``torch.optim.lr_scheduler``.

Each option file in ``conf/scheduler`` names one spec class here. ``LRSchedule`` runs an
optional linear warm-up, then the chosen scheduler at its own granularity: per epoch
(exponential, step, cosine, plateau) or per batch (cyclic, one-cycle).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar

import torch
from torch.optim import lr_scheduler

from vae_sweep.errors import require
from vae_sweep.train.specs import register


class Interval(str, Enum):
    epoch = "epoch"
    step = "step"


@dataclass
class SchedulerSpec:
    """``warmup_epochs`` of linear warm-up (from ~0 to the optimizer's lr) run before any schedule."""

    name: str = ""
    warmup_epochs: float = 0.0
    interval: ClassVar[Interval] = Interval.epoch

    def __post_init__(self) -> None:
        require(self.warmup_epochs >= 0, "warmup_epochs", f"must be >= 0, got {self.warmup_epochs}")

    def build(self, optimizer: torch.optim.Optimizer, *, steps: int, steps_per_epoch: int) -> Any:
        """The torch scheduler for the ``steps`` (batches) left after warm-up; None keeps the lr constant."""
        return None


@register
@dataclass
class Constant(SchedulerSpec):
    name: str = "constant"


@register
@dataclass
class Exponential(SchedulerSpec):
    name: str = "exponential"
    gamma: float = 0.95  # per epoch

    def __post_init__(self) -> None:
        super().__post_init__()
        require(0 < self.gamma <= 1, "gamma", f"must be in (0, 1], got {self.gamma}")

    def build(self, optimizer: torch.optim.Optimizer, *, steps: int, steps_per_epoch: int) -> Any:
        return lr_scheduler.ExponentialLR(optimizer, gamma=self.gamma)


@register
@dataclass
class Step(SchedulerSpec):
    name: str = "step"
    step_size: int = 10  # epochs
    gamma: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.step_size >= 1, "step_size", f"must be >= 1, got {self.step_size}")
        require(0 < self.gamma <= 1, "gamma", f"must be in (0, 1], got {self.gamma}")

    def build(self, optimizer: torch.optim.Optimizer, *, steps: int, steps_per_epoch: int) -> Any:
        return lr_scheduler.StepLR(optimizer, step_size=self.step_size, gamma=self.gamma)


@register
@dataclass
class Cosine(SchedulerSpec):
    """Cosine annealing to ``eta_min`` over the epochs left after warm-up (Loshchilov & Hutter, 2017)."""

    name: str = "cosine"
    eta_min: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.eta_min >= 0, "eta_min", f"must be >= 0, got {self.eta_min}")

    def build(self, optimizer: torch.optim.Optimizer, *, steps: int, steps_per_epoch: int) -> Any:
        return lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(1, math.ceil(steps / steps_per_epoch)), eta_min=self.eta_min
        )


class CyclicMode(str, Enum):
    triangular = "triangular"
    triangular2 = "triangular2"
    exp_range = "exp_range"


@register
@dataclass
class Cyclic(SchedulerSpec):
    """Cyclical learning rates (Smith, 2017) between the optimizer's lr and lr * max_lr_factor."""

    name: str = "cyclic"
    max_lr_factor: float = 10.0
    cycle_epochs: float = 4.0  # one full up-and-down cycle
    mode: CyclicMode = CyclicMode.triangular
    gamma: float = 1.0  # exp_range: amplitude scale per batch
    interval: ClassVar[Interval] = Interval.step

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.max_lr_factor > 1, "max_lr_factor", f"must be > 1, got {self.max_lr_factor}")
        require(self.cycle_epochs > 0, "cycle_epochs", f"must be > 0, got {self.cycle_epochs}")
        require(0 < self.gamma <= 1, "gamma", f"must be in (0, 1], got {self.gamma}")

    def build(self, optimizer: torch.optim.Optimizer, *, steps: int, steps_per_epoch: int) -> Any:
        base = [group["lr"] for group in optimizer.param_groups]
        half_cycle = max(1, round(self.cycle_epochs * steps_per_epoch / 2))
        return lr_scheduler.CyclicLR(
            optimizer,
            base_lr=base,
            max_lr=[lr * self.max_lr_factor for lr in base],
            step_size_up=half_cycle,
            mode=self.mode.value,
            gamma=self.gamma,
            cycle_momentum=False,
        )


@register
@dataclass
class OneCycle(SchedulerSpec):
    """One-cycle policy (Smith & Topin, 2019); the optimizer's lr is the peak."""

    name: str = "onecycle"
    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    interval: ClassVar[Interval] = Interval.step

    def __post_init__(self) -> None:
        super().__post_init__()
        require(0 < self.pct_start < 1, "pct_start", f"must be in (0, 1), got {self.pct_start}")
        require(self.div_factor >= 1, "div_factor", f"must be >= 1, got {self.div_factor}")
        require(self.final_div_factor >= 1, "final_div_factor", f"must be >= 1, got {self.final_div_factor}")

    def build(self, optimizer: torch.optim.Optimizer, *, steps: int, steps_per_epoch: int) -> Any:
        return lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=[group["lr"] for group in optimizer.param_groups],
            total_steps=max(2, steps),
            pct_start=self.pct_start,
            div_factor=self.div_factor,
            final_div_factor=self.final_div_factor,
            cycle_momentum=False,
        )


@register
@dataclass
class Plateau(SchedulerSpec):
    """Multiply the lr by ``factor`` when ``val_loss`` stops improving for ``patience`` evaluations."""

    name: str = "plateau"
    factor: float = 0.5
    patience: int = 3
    threshold: float = 1e-4
    min_lr: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        require(0 < self.factor < 1, "factor", f"must be in (0, 1), got {self.factor}")
        require(self.patience >= 0, "patience", f"must be >= 0, got {self.patience}")
        require(self.min_lr >= 0, "min_lr", f"must be >= 0, got {self.min_lr}")

    def build(self, optimizer: torch.optim.Optimizer, *, steps: int, steps_per_epoch: int) -> Any:
        return lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=self.factor, patience=self.patience, threshold=self.threshold, min_lr=self.min_lr
        )


class LRSchedule:
    """Linear warm-up for ``spec.warmup_epochs``, then ``spec``'s scheduler at its interval."""

    def __init__(self, spec: SchedulerSpec, optimizer: torch.optim.Optimizer, *, epochs: int, steps_per_epoch: int):
        self.spec = spec
        self.optimizer = optimizer
        self.warmup_steps = round(spec.warmup_epochs * steps_per_epoch)
        # The main scheduler is built first: cyclic and one-cycle set the lr absolutely, and the
        # warm-up then scales whatever lr they start from.
        self.main = spec.build(
            optimizer, steps=max(1, epochs * steps_per_epoch - self.warmup_steps), steps_per_epoch=steps_per_epoch
        )
        self.warmup = (
            lr_scheduler.LinearLR(optimizer, start_factor=1.0 / (self.warmup_steps + 1), total_iters=self.warmup_steps)
            if self.warmup_steps
            else None
        )
        self.steps_done = 0

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def after_batch(self) -> None:
        self.steps_done += 1
        if self.warmup is not None and self.steps_done <= self.warmup_steps:
            self.warmup.step()
        elif self.main is not None and self.spec.interval is Interval.step:
            self.main.step()

    def state_dict(self) -> dict:
        """For checkpoints: where the warm-up and the main scheduler are."""
        return {
            "steps_done": self.steps_done,
            "warmup": self.warmup.state_dict() if self.warmup is not None else None,
            "main": self.main.state_dict() if self.main is not None else None,
        }

    def load_state_dict(self, state: dict) -> None:
        self.steps_done = state["steps_done"]
        if self.warmup is not None:
            self.warmup.load_state_dict(state["warmup"])
        if self.main is not None:
            self.main.load_state_dict(state["main"])

    def after_epoch(self, val_loss: float | None) -> None:
        """``val_loss`` is None on epochs without evaluation; a plateau schedule then waits."""
        if self.main is None or self.spec.interval is not Interval.epoch or self.steps_done <= self.warmup_steps:
            return
        if isinstance(self.main, lr_scheduler.ReduceLROnPlateau):
            if val_loss is not None:
                self.main.step(val_loss)
        else:
            self.main.step()
