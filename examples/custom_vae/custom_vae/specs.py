"""The extension's spec classes, registered with vae-sweep when this module is imported (the
``vae_sweep.extensions`` entry point in pyproject.toml makes every vae-sweep process do that)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from vae_sweep.errors import require
from vae_sweep.train import DataSpec, DataSplits, ModelSpec, VAEModule, register


class Residual(nn.Module):
    """x + f(x): a block that can learn the identity, so depth does not hurt at the start."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResidualVAE(VAEModule):
    """Encoder and decoder of residual MLP blocks on flattened images; Bernoulli logits out
    (vae-sweep's default likelihood)."""

    def __init__(self, spec: ResidualMLPSpec, input_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.latent_dim = spec.latent_dim
        self.input_shape = input_shape
        input_dim = math.prod(input_shape)
        blocks = [Residual(spec.width) for _ in range(spec.blocks)]
        self.encoder = nn.Sequential(nn.Linear(input_dim, spec.width), *blocks)
        self.heads = nn.Linear(spec.width, 2 * spec.latent_dim)  # mean and log-variance
        decoder_blocks = [Residual(spec.width) for _ in range(spec.blocks)]
        output = nn.Linear(spec.width, input_dim)
        self.decoder = nn.Sequential(nn.Linear(spec.latent_dim, spec.width), *decoder_blocks, output)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_var = self.heads(self.encoder(x.flatten(1))).chunk(2, dim=-1)
        return mu, log_var

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).view(-1, *self.input_shape)


@register
@dataclass
class ResidualMLPSpec(ModelSpec):
    name: str = "residual_mlp"
    latent_dim: int = 8
    width: int = 64
    blocks: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.width >= 1, "width", f"must be >= 1, got {self.width}")
        require(self.blocks >= 0, "blocks", f"must be >= 0, got {self.blocks}")

    def build(self, input_shape: tuple[int, ...]) -> ResidualVAE:
        return ResidualVAE(self, input_shape)


@register
@dataclass
class BarsSpec(DataSpec):
    """Images of random horizontal and vertical bars (the classic "bars" problem), made in memory."""

    name: str = "bars"
    n_samples: int = 600
    side: int = 8
    bar_probability: float = 0.2

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.n_samples >= 10, "n_samples", f"must be >= 10, got {self.n_samples}")
        require(self.side >= 2, "side", f"must be >= 2, got {self.side}")
        require(0 < self.bar_probability < 1, "bar_probability", f"must be in (0, 1), got {self.bar_probability}")

    def load(self) -> DataSplits:
        generator = self.generator()
        rows = torch.rand(self.n_samples, self.side, 1, generator=generator) < self.bar_probability
        columns = torch.rand(self.n_samples, 1, self.side, generator=generator) < self.bar_probability
        images = (rows | columns).to(torch.float32) * 0.9 + 0.05  # in (0, 1): a Bernoulli likelihood is finite
        return self.split(images.unsqueeze(1), generator)  # (n, 1 channel, side, side)
