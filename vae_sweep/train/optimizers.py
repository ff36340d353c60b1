"""Optimizers from config, on top of ``torch.optim``: each option file in ``conf/optimizer``
names one spec class here, which holds its optimizer's own arguments under their torch names."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from vae_sweep.errors import require
from vae_sweep.train.specs import register


@dataclass
class OptimizerSpec:
    """Common fields; subclasses add their optimizer's own arguments under its torch names."""

    name: str = ""
    lr: float = 1e-3
    torch_class: ClassVar[type[torch.optim.Optimizer]]

    def __post_init__(self) -> None:
        require(self.lr > 0, "lr", f"must be > 0, got {self.lr}")

    def build(self, params: Iterable[torch.nn.Parameter], weight_decay: float | None) -> torch.optim.Optimizer:
        """``weight_decay=None`` keeps the optimizer's own default (0, or 0.01 for AdamW)."""
        kwargs: dict[str, Any] = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "name"}
        if "betas" in kwargs:
            kwargs["betas"] = tuple(kwargs["betas"])
        if weight_decay is not None:
            kwargs["weight_decay"] = weight_decay
        return self.torch_class(params, **kwargs)


def require_unit_interval(value: float, key: str, *, closed_low: bool = True) -> None:
    ok = (0.0 <= value < 1.0) if closed_low else (0.0 < value < 1.0)
    require(ok, key, f"must be in {'[' if closed_low else '('}0, 1), got {value}")


@register
@dataclass
class SGD(OptimizerSpec):
    """Plain, momentum and Nesterov SGD (three option files, one class)."""

    name: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.0
    dampening: float = 0.0
    nesterov: bool = False
    torch_class: ClassVar = torch.optim.SGD

    def __post_init__(self) -> None:
        super().__post_init__()
        require_unit_interval(self.momentum, "momentum")
        require_unit_interval(self.dampening, "dampening")
        require(
            not self.nesterov or (self.momentum > 0 and self.dampening == 0),
            "nesterov",
            f"needs momentum > 0 and dampening = 0, got momentum={self.momentum}, dampening={self.dampening}",
        )


@register
@dataclass
class Adagrad(OptimizerSpec):
    name: str = "adagrad"
    lr: float = 0.01
    lr_decay: float = 0.0
    initial_accumulator_value: float = 0.0
    eps: float = 1e-10
    torch_class: ClassVar = torch.optim.Adagrad

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.lr_decay >= 0, "lr_decay", f"must be >= 0, got {self.lr_decay}")
        require(self.eps > 0, "eps", f"must be > 0, got {self.eps}")


@register
@dataclass
class Adadelta(OptimizerSpec):
    name: str = "adadelta"
    lr: float = 1.0
    rho: float = 0.9
    eps: float = 1e-6
    torch_class: ClassVar = torch.optim.Adadelta

    def __post_init__(self) -> None:
        super().__post_init__()
        require(0.0 < self.rho <= 1.0, "rho", f"must be in (0, 1], got {self.rho}")
        require(self.eps > 0, "eps", f"must be > 0, got {self.eps}")


@register
@dataclass
class RMSprop(OptimizerSpec):
    name: str = "rmsprop"
    lr: float = 1e-3
    alpha: float = 0.99
    eps: float = 1e-8
    momentum: float = 0.0
    centered: bool = False
    torch_class: ClassVar = torch.optim.RMSprop

    def __post_init__(self) -> None:
        super().__post_init__()
        require_unit_interval(self.alpha, "alpha")
        require_unit_interval(self.momentum, "momentum")
        require(self.eps > 0, "eps", f"must be > 0, got {self.eps}")


@register
@dataclass
class Adam(OptimizerSpec):
    name: str = "adam"
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    amsgrad: bool = False
    torch_class: ClassVar = torch.optim.Adam

    def __post_init__(self) -> None:
        super().__post_init__()
        require(len(self.betas) == 2, "betas", f"must be two numbers, got {list(self.betas)}")
        for index, beta in enumerate(self.betas):
            require_unit_interval(beta, f"betas[{index}]")
        require(self.eps > 0, "eps", f"must be > 0, got {self.eps}")


@register
@dataclass
class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019); default decay 0.01."""

    name: str = "adamw"
    torch_class: ClassVar = torch.optim.AdamW
