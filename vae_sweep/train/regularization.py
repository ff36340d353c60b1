"""Regularization settings: KL weight (beta, annealing), free bits, weight decay, clipping."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from vae_sweep.errors import require
from vae_sweep.train.losses import cyclical_annealing, linear_warmup
from vae_sweep.train.specs import register


class Annealing(str, Enum):
    none = "none"
    linear = "linear"
    cyclical = "cyclical"


@register
@dataclass
class RegularizationSpec:
    name: str = "standard"
    beta: float = 1.0
    kl_annealing: Annealing = Annealing.none
    warmup_epochs: float = 10.0  # linear annealing: epochs until the KL weight reaches beta
    cycles: int = 4  # cyclical annealing: number of 0 -> beta ramps over the whole run
    ramp_fraction: float = 0.5  # cyclical annealing: part of each cycle spent ramping
    free_bits: float = 0.0  # nats per latent dimension; 0 disables
    weight_decay: float | None = None  # None keeps the optimizer's own default (AdamW 0.01, others 0)
    grad_clip_norm: float | None = None  # max global gradient norm; None disables

    def __post_init__(self) -> None:
        require(self.beta >= 0, "beta", f"must be >= 0, got {self.beta}")
        require(self.warmup_epochs > 0, "warmup_epochs", f"must be > 0, got {self.warmup_epochs}")
        require(self.cycles >= 1, "cycles", f"must be >= 1, got {self.cycles}")
        require(0 < self.ramp_fraction <= 1, "ramp_fraction", f"must be in (0, 1], got {self.ramp_fraction}")
        require(self.free_bits >= 0, "free_bits", f"must be >= 0, got {self.free_bits}")
        require(
            self.weight_decay is None or self.weight_decay >= 0,
            "weight_decay",
            f"must be >= 0 or null, got {self.weight_decay}",
        )
        require(
            self.grad_clip_norm is None or self.grad_clip_norm > 0,
            "grad_clip_norm",
            f"must be > 0 or null, got {self.grad_clip_norm}",
        )

    def kl_weight(self, progress: float, total_epochs: int) -> float:
        """The KL term's weight after ``progress`` epochs (fractional) of ``total_epochs``."""
        if self.kl_annealing is Annealing.linear:
            return self.beta * linear_warmup(progress, self.warmup_epochs)
        if self.kl_annealing is Annealing.cyclical:
            return self.beta * cyclical_annealing(progress, total_epochs, self.cycles, self.ramp_fraction)
        return self.beta
