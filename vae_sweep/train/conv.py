"""The catalog's convolutional VAEs for ``(channels, height, width)`` images: ``conv``, a
strided-conv encoder and transposed-conv decoder with the MLPs' technique options, and
``resnet``, the residual encoder and decoder of van den Oord et al. (2017).

Both end the encoder in linear heads for a vector latent (``latent_dim``), so they keep the
model contract of ``models``: the same objective, metrics and pictures as any other model.
Each stride-2 layer halves the image (rounding down); the decoder's transposed convolutions
add back the pixel an odd size lost, so any size in, the same size out: 28x28 (MNIST) and 32x32
(CIFAR-10) alike.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, field

import torch
from torch import nn

from vae_sweep.errors import require
from vae_sweep.train.models import (
    Activation,
    Likelihood,
    ModelSpec,
    Normalization,
    VAEModule,
    check_technique_fields,
    make_activation,
    output_scale,
    resolve_likelihood,
    scale_of,
)
from vae_sweep.train.specs import register

KERNEL, STRIDE, PADDING = 4, 2, 1  # each layer halves an even size exactly (DCGAN's choice)


def halved_sizes(side: int, layers: int) -> list[int]:
    """The side of the feature maps after each of ``layers`` stride-2 convolutions, input first.

    >>> halved_sizes(28, 3), halved_sizes(32, 3)
    ([28, 14, 7, 3], [32, 16, 8, 4])
    """
    sizes = [side]
    for _ in range(layers):
        sizes.append((sizes[-1] + 2 * PADDING - KERNEL) // STRIDE + 1)
    return sizes


def upsampling(fan_in: int, fan_out: int, size_in: tuple[int, int], size_out: tuple[int, int]) -> nn.ConvTranspose2d:
    """A stride-2 transposed convolution from feature maps of ``size_in`` (height, width) to
    exactly ``size_out``: the output padding puts back the row or column an odd size lost."""
    lost = tuple(
        out - ((side - 1) * STRIDE - 2 * PADDING + KERNEL) for side, out in zip(size_in, size_out, strict=True)
    )
    return nn.ConvTranspose2d(fan_in, fan_out, KERNEL, STRIDE, PADDING, output_padding=lost)


def feature_norm(kind: Normalization, channels: int) -> nn.Module | None:
    """Batch norm over feature maps, or layer norm over each example's (channels, height, width)."""
    if kind is Normalization.batchnorm:
        return nn.BatchNorm2d(channels)
    if kind is Normalization.layernorm:
        return nn.GroupNorm(1, channels)  # one group: normalizes each example over all its features
    return None


def spatial_dropout(rate: float) -> list[nn.Module]:
    """Dropout of whole feature maps (Tompson et al., 2015), or nothing at rate 0."""
    return [nn.Dropout2d(rate)] if rate > 0 else []


@dataclass
class ImageModelSpec(ModelSpec):
    """Fields the convolutional models share: what follows each layer, and the likelihood."""

    activation: Activation = Activation.relu
    leaky_relu_slope: float = 0.01
    encoder_norm: Normalization = Normalization.none
    decoder_norm: Normalization = Normalization.none
    encoder_dropout: float = 0.0  # spatial dropout: whole feature maps (Tompson et al., 2015)
    decoder_dropout: float = 0.0
    likelihood: Likelihood = Likelihood.auto
    gaussian_std: float = 0.1  # a continuous likelihood's fixed (or initial) scale, in [0, 1] pixel units
    learn_variance: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        check_technique_fields(self)

    def block(self, layer: nn.Module, channels: int, norm: Normalization, dropout: float) -> list[nn.Module]:
        """``layer`` -> [norm] -> activation -> [spatial dropout]."""
        parts = [layer, feature_norm(norm, channels), make_activation(self.activation, self.leaky_relu_slope, channels)]
        return [part for part in parts if part is not None] + spatial_dropout(dropout)

    def feature_sizes(self, input_shape: tuple[int, ...], layers: int) -> list[tuple[int, int]]:
        """(height, width) of the images and of the feature maps after each of ``layers``
        halvings, or one line saying why these images do not fit."""
        require(
            len(input_shape) == 3,
            "model",
            f"{self.name} needs (channels, height, width) images, got samples of shape {tuple(input_shape)}",
        )
        _, height, width = input_shape
        sizes = list(zip(halved_sizes(height, layers), halved_sizes(width, layers), strict=True))
        require(
            min(sizes[-1]) >= 1,
            "model",
            f"{layers} stride-2 layers shrink {height}x{width} images to nothing; use fewer",
        )
        return sizes


class ImageVAE(VAEModule):
    """Encoder features -> linear heads -> z -> linear -> feature maps -> decoder -> image."""

    def __init__(
        self, spec: ImageModelSpec, input_shape: tuple[int, ...], encoder: nn.Module, decoder: nn.Module
    ) -> None:
        super().__init__()
        self.latent_dim = spec.latent_dim
        self.likelihood = resolve_likelihood(spec.likelihood, tuple(input_shape))
        self.encoder, self.decoder = encoder, decoder
        with torch.no_grad():  # the size of the encoder's features, from a dry run
            features = encoder.eval()(torch.zeros(1, *input_shape))
        self.feature_shape = tuple(features.shape[1:])
        flat = features.numel()
        self.mu_head = nn.Linear(flat, spec.latent_dim)
        self.log_var_head = nn.Linear(flat, spec.latent_dim)
        self.project = nn.Sequential(
            nn.Linear(spec.latent_dim, flat), make_activation(spec.activation, spec.leaky_relu_slope, flat)
        )
        output_scale(self, self.likelihood, tuple(input_shape), spec.gaussian_std, spec.learn_variance)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.encoder(x).flatten(1)
        return self.mu_head(features), self.log_var_head(features)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        out = self.decoder(self.project(z).view(-1, *self.feature_shape))
        return out if self.likelihood is Likelihood.bernoulli else torch.sigmoid(out)

    def output_log_scale(self) -> torch.Tensor | None:
        return scale_of(self)


@register
@dataclass
class ConvVAESpec(ImageModelSpec):
    """One stride-2 4x4 convolution per entry of ``channels`` (28x28 -> 14 -> 7 with two), the
    decoder their mirror image in transposed convolutions."""

    name: str = "conv"
    channels: list[int] = field(default_factory=lambda: [32, 64])
    latent_dim: int = 32

    def __post_init__(self) -> None:
        super().__post_init__()
        require(len(self.channels) >= 1, "channels", "needs at least one convolution layer")
        require(all(c >= 1 for c in self.channels), "channels", f"must all be >= 1, got {list(self.channels)}")

    def build(self, input_shape: tuple[int, ...]) -> ImageVAE:
        sizes = self.feature_sizes(input_shape, len(self.channels))
        widths = [input_shape[0], *self.channels]
        encoder: list[nn.Module] = []
        for fan_in, fan_out in itertools.pairwise(widths):
            conv = nn.Conv2d(fan_in, fan_out, KERNEL, STRIDE, PADDING)
            encoder += self.block(conv, fan_out, self.encoder_norm, self.encoder_dropout)
        decoder: list[nn.Module] = []
        for layer in range(len(self.channels), 0, -1):  # back up: the feature maps of layer -> layer - 1
            up = upsampling(widths[layer], widths[layer - 1], sizes[layer], sizes[layer - 1])
            decoder += (
                [up] if layer == 1 else self.block(up, widths[layer - 1], self.decoder_norm, self.decoder_dropout)
            )
        return ImageVAE(self, input_shape, nn.Sequential(*encoder), nn.Sequential(*decoder))


class Residual(nn.Module):
    """x + conv1x1(activation(conv3x3(activation(x)))): van den Oord et al.'s residual block."""

    def __init__(self, spec: ResNetVAESpec, norm: Normalization) -> None:
        super().__init__()
        parts = [
            make_activation(spec.activation, spec.leaky_relu_slope, spec.channels),
            nn.Conv2d(spec.channels, spec.residual_channels, 3, padding=1),
            feature_norm(norm, spec.residual_channels),
            make_activation(spec.activation, spec.leaky_relu_slope, spec.residual_channels),
            nn.Conv2d(spec.residual_channels, spec.channels, 1),
        ]
        self.body = nn.Sequential(*(part for part in parts if part is not None))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


@register
@dataclass
class ResNetVAESpec(ImageModelSpec):
    """The encoder and decoder of van den Oord et al. (2017), "Neural Discrete Representation
    Learning" (VQ-VAE), section 4.1: ``downsamplings`` stride-2 4x4 convolutions, then
    ``residual_blocks`` residual 3x3 blocks (ReLU, 3x3 conv, ReLU, 1x1 conv), all with
    ``channels`` hidden units; the decoder the residual blocks, then transposed convolutions.
    Here the features end in a Gaussian latent vector rather than a codebook."""

    name: str = "resnet"
    channels: int = 256
    residual_channels: int = 256
    residual_blocks: int = 2
    downsamplings: int = 2
    latent_dim: int = 64

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("channels", "residual_channels", "downsamplings"):
            require(getattr(self, key) >= 1, key, f"must be >= 1, got {getattr(self, key)}")
        require(self.residual_blocks >= 0, "residual_blocks", f"must be >= 0, got {self.residual_blocks}")

    def build(self, input_shape: tuple[int, ...]) -> ImageVAE:
        sizes = self.feature_sizes(input_shape, self.downsamplings)
        width = self.channels
        act = functools.partial(make_activation, self.activation, self.leaky_relu_slope, width)
        encoder: list[nn.Module] = []
        for layer in range(self.downsamplings):
            fan_in = input_shape[0] if layer == 0 else width
            encoder += self.block(nn.Conv2d(fan_in, width, KERNEL, STRIDE, PADDING), width, self.encoder_norm, 0.0)
        encoder += [nn.Conv2d(width, width, 3, padding=1)]
        encoder += [Residual(self, self.encoder_norm) for _ in range(self.residual_blocks)]
        encoder += [act(), *spatial_dropout(self.encoder_dropout)]
        decoder: list[nn.Module] = [nn.Conv2d(width, width, 3, padding=1)]
        decoder += [Residual(self, self.decoder_norm) for _ in range(self.residual_blocks)]
        decoder += [act(), *spatial_dropout(self.decoder_dropout)]
        for layer in range(self.downsamplings, 0, -1):
            fan_out = input_shape[0] if layer == 1 else width
            up = upsampling(width, fan_out, sizes[layer], sizes[layer - 1])
            decoder += [up] if layer == 1 else self.block(up, width, self.decoder_norm, 0.0)
        return ImageVAE(self, input_shape, nn.Sequential(*encoder), nn.Sequential(*decoder))
