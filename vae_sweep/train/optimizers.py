"""Optimizers from config, on top of ``torch.optim``: each option file in ``conf/optimizer``
names one spec class here, which holds its optimizer's own arguments under their torch names.

SGD, Adagrad, Adam and AdamW also take torch's ``fused``: one kernel updates every parameter,
where the default implementation runs several per parameter tensor (on CPU, a 784-400-20 MLP
trains about 20% faster). The option files ask for it where the device has it (``fused: null``);
a config without the key, such as one logged before it existed, trains as it did then.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from vae_sweep.errors import ConfigError, require
from vae_sweep.train.specs import register


@dataclass
class OptimizerSpec:
    """Common fields; subclasses add their optimizer's own arguments under its torch names."""

    name: str = ""
    lr: float = 1e-3
    torch_class: ClassVar[type[torch.optim.Optimizer]]

    def __post_init__(self) -> None:
        require(self.lr > 0, "lr", f"must be > 0, got {self.lr}")

    def build(self, params: Iterable[nn.Parameter], weight_decay: float | None) -> torch.optim.Optimizer:
        """``weight_decay=None`` keeps the optimizer's own default (0, or 0.01 for AdamW)."""
        params = list(params)
        kwargs: dict[str, Any] = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "name"}
        if "betas" in kwargs:
            kwargs["betas"] = tuple(kwargs["betas"])
        if "fused" in kwargs:
            kwargs["fused"] = fused_choice(kwargs["fused"], self.torch_class, params)
        if weight_decay is not None:
            kwargs["weight_decay"] = weight_decay
        return self.torch_class(params, **kwargs)


def fused_choice(wanted: bool | None, torch_class: type[torch.optim.Optimizer], params: list[nn.Parameter]) -> bool:
    """``fused``: null takes the fused kernel where torch has one for every parameter's device and
    dtype; true insists on it, refused here (not at the first step) where there is none."""
    if wanted is False:
        return False
    available = all(has_fused_kernel(torch_class, p.device, p.dtype) for p in params)
    if wanted and not available:
        kinds = sorted({f"{p.device.type} {p.dtype}".replace("torch.", "") for p in params})
        raise ConfigError(
            "optimizer.fused",
            f"torch {torch.__version__} has no fused {torch_class.__name__} for {', '.join(kinds)} parameters; "
            "use null (fused where available) or false",
        )
    return available


@functools.cache
def has_fused_kernel(torch_class: type[torch.optim.Optimizer], device: torch.device, dtype: torch.dtype) -> bool:
    """Whether ``torch_class(fused=True)`` steps a parameter of this device and dtype: torch checks
    only at the first step, so one step on a one-element tensor asks, once per process."""
    probe = torch.zeros(1, device=device, dtype=dtype, requires_grad=True)
    probe.grad = torch.zeros_like(probe)
    try:
        torch_class([probe], lr=0.0, fused=True).step()
    except (RuntimeError, TypeError):  # no kernel for the device or dtype; a torch without the argument
        return False
    return True


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
    fused: bool | None = False
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
    fused: bool | None = False
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
    fused: bool | None = False
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
