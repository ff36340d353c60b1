"""The model contract, and the catalog's MLP VAE: an MLP encoder with separate mean and
log-variance heads, and an MLP decoder (the convolutional ones are in ``conv``).

A model option names a ``ModelSpec`` (a registered dataclass) whose ``build(input_shape)``
returns a ``VAEModule``: ``encode(x) -> (mu, log_var)`` and ``decode(z) -> decoded`` on inputs of
shape ``(n, *input_shape)`` in [0, 1], images ``(channels, height, width)`` or vectors ``(d,)``.
The training loop gives every such model the same objective and metrics (the ELBO's
reconstruction and KL, the IWAE bound, bits per dimension, active units, pictures);
docs/extending.md walks through writing one.

The source article derived ``z_mean`` and ``z_log_var`` from the same layer output; here
they are two independent linear heads, as in Kingma & Welling (2014).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from enum import Enum

import torch
from torch import nn

from vae_sweep.errors import require
from vae_sweep.train.specs import register


class Activation(str, Enum):
    relu = "relu"
    leaky_relu = "leaky_relu"
    prelu = "prelu"
    elu = "elu"
    gelu = "gelu"
    silu = "silu"
    tanh = "tanh"
    softplus = "softplus"


class Normalization(str, Enum):
    none = "none"
    batchnorm = "batchnorm"
    layernorm = "layernorm"


class Likelihood(str, Enum):
    """p(x|z) per value: Bernoulli (binary or binarized pixels), a Gaussian, or a logistic
    discretized to 256 levels (Salimans et al., 2017, PixelCNN++), for 8-bit gray or RGB images."""

    bernoulli = "bernoulli"
    gaussian = "gaussian"
    discretized_logistic = "discretized_logistic"
    auto = "auto"  # a model option's choice: Bernoulli for gray images, discretized logistic for RGB


@dataclass
class ModelSpec:
    """Fields every model option has; a subclass adds its architecture and implements ``build``."""

    name: str = ""
    latent_dim: int = 32

    def __post_init__(self) -> None:
        require(self.latent_dim >= 1, "latent_dim", f"must be >= 1, got {self.latent_dim}")

    def build(self, input_shape: tuple[int, ...]) -> VAEModule:
        raise NotImplementedError(f"{type(self).__name__} does not implement build(input_shape)")


class VAEModule(nn.Module):
    """What the training loop needs of a model; subclasses implement ``encode`` and ``decode``.

    ``likelihood`` says what the decoder's output is: Bernoulli logits (the default), or the
    mean in [0, 1] of a Gaussian or a discretized logistic, whose log scale (standard deviation
    for the Gaussian) ``output_log_scale`` gives; ``mean_image`` turns it into pixels.
    """

    latent_dim: int
    likelihood: Likelihood = Likelihood.bernoulli

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(n, *input_shape)`` -> the posterior's mean and log-variance, each ``(n, latent_dim)``."""
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(n, latent_dim)`` -> ``(n, *input_shape)``: Bernoulli logits, or the likelihood's mean."""
        raise NotImplementedError

    def output_log_scale(self) -> torch.Tensor | None:
        """The continuous likelihoods' log scale, broadcastable to ``input_shape``; None for Bernoulli."""
        return None

    def mean_image(self, decoded: torch.Tensor) -> torch.Tensor:
        """Pixel means in [0, 1] from the decoder output, for pictures."""
        return torch.sigmoid(decoded) if self.likelihood is Likelihood.bernoulli else decoded

    @staticmethod
    def reparameterize(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
        return mu + torch.randn_like(mu) * torch.exp(0.5 * log_var)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, log_var = self.encode(x)
        return self.decode(self.reparameterize(mu, log_var)), mu, log_var


def check_model(model: nn.Module, input_shape: tuple[int, ...], *, key: str = "model") -> None:
    """Refuse a model that does not keep the contract, on two zero inputs, before any training."""
    require(
        isinstance(model, VAEModule),
        key,
        f"build() must return a vae_sweep.train.VAEModule, got {type(model).__name__}",
    )
    name = type(model).__name__
    latent = getattr(model, "latent_dim", None)
    require(isinstance(latent, int) and latent >= 1, key, f"{name}.latent_dim must be an int >= 1, got {latent!r}")
    require(
        isinstance(model.likelihood, Likelihood) and model.likelihood is not Likelihood.auto,
        key,
        f"{name}.likelihood must be a vae_sweep.train.Likelihood other than auto, got {model.likelihood!r}",
    )
    continuous = model.likelihood is not Likelihood.bernoulli
    require(
        continuous == (model.output_log_scale() is not None),
        key,
        f"{name}: output_log_scale() must return "
        f"{'a tensor' if continuous else 'None'} for likelihood {model.likelihood.value}",
    )
    x = torch.zeros(2, *input_shape, device=next(model.parameters()).device)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        mu, log_var = model.encode(x)
        decoded = model.decode(mu)
    model.train(was_training)
    shown = ", ".join(map(str, input_shape))
    for part, value, shape in (
        ("encode()'s mu", mu, (2, latent)),
        ("encode()'s log_var", log_var, (2, latent)),
        ("decode()", decoded, (2, *input_shape)),
    ):
        require(
            tuple(value.shape) == shape,
            key,
            f"{name}: {part} has shape {tuple(value.shape)}, expected {shape} for inputs (2, {shown})",
        )


@register
@dataclass
class MLPVAESpec(ModelSpec):
    """Architecture of an MLP VAE; the input size comes from the data, not from here."""

    name: str = "mlp"
    encoder_hidden: list[int] = field(default_factory=lambda: [128, 64])
    decoder_hidden: list[int] = field(default_factory=lambda: [256, 128, 64])
    latent_dim: int = 32
    activation: Activation = Activation.relu
    leaky_relu_slope: float = 0.01
    encoder_norm: Normalization = Normalization.none
    decoder_norm: Normalization = Normalization.none
    encoder_dropout: float = 0.0
    decoder_dropout: float = 0.0
    likelihood: Likelihood = Likelihood.bernoulli
    # Gaussian likelihood: a fixed standard deviation (the discretized logistic's initial scale),
    # or a learned one per output value (always learned for the discretized logistic).
    gaussian_std: float = 1.0
    learn_variance: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("encoder_hidden", "decoder_hidden"):
            sizes = getattr(self, key)
            require(all(size >= 1 for size in sizes), key, f"layer sizes must be >= 1, got {list(sizes)}")
        check_technique_fields(self)

    def build(self, input_shape: tuple[int, ...]) -> VAE:
        return VAE(self, input_shape)


def check_technique_fields(spec: ModelSpec) -> None:
    """The ranges of the technique and likelihood fields that the catalog's MLP and conv specs share."""
    for key in ("encoder_dropout", "decoder_dropout"):
        rate = getattr(spec, key)
        require(0.0 <= rate < 1.0, key, f"must be in [0, 1), got {rate}")
    require(spec.leaky_relu_slope >= 0, "leaky_relu_slope", f"must be >= 0, got {spec.leaky_relu_slope}")
    require(spec.gaussian_std > 0, "gaussian_std", f"must be > 0, got {spec.gaussian_std}")
    require(
        not spec.learn_variance or spec.likelihood is Likelihood.gaussian,
        "learn_variance",
        "only applies to likelihood=gaussian",
    )


def make_activation(kind: Activation, leaky_relu_slope: float, width: int) -> nn.Module:
    """The activation ``kind``; PReLU learns one slope per unit (or channel) of ``width``."""
    if kind is Activation.leaky_relu:
        return nn.LeakyReLU(leaky_relu_slope)
    if kind is Activation.prelu:
        return nn.PReLU(width)
    simple: dict[Activation, type[nn.Module]] = {
        Activation.relu: nn.ReLU,
        Activation.elu: nn.ELU,
        Activation.gelu: nn.GELU,
        Activation.silu: nn.SiLU,
        Activation.tanh: nn.Tanh,
        Activation.softplus: nn.Softplus,
    }
    return simple[kind]()


def make_norm(kind: Normalization, width: int) -> nn.Module | None:
    if kind is Normalization.batchnorm:
        return nn.BatchNorm1d(width)
    if kind is Normalization.layernorm:
        return nn.LayerNorm(width)
    return None


def mlp(spec: MLPVAESpec, sizes: list[int], norm: Normalization, dropout: float) -> nn.Sequential:
    """Hidden blocks Linear -> [norm] -> activation -> [dropout] between consecutive ``sizes``."""
    layers: list[nn.Module] = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        layers.append(nn.Linear(fan_in, fan_out))
        norm_layer = make_norm(norm, fan_out)
        if norm_layer is not None:
            layers.append(norm_layer)
        layers.append(make_activation(spec.activation, spec.leaky_relu_slope, fan_out))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def resolve_likelihood(likelihood: Likelihood, input_shape: tuple[int, ...]) -> Likelihood:
    """``auto``: the discretized logistic for RGB images, Bernoulli for gray ones and vectors."""
    if likelihood is not Likelihood.auto:
        return likelihood
    rgb = len(input_shape) == 3 and input_shape[0] == 3
    return Likelihood.discretized_logistic if rgb else Likelihood.bernoulli


def output_scale(
    module: nn.Module, likelihood: Likelihood, shape: tuple[int, ...], initial_std: float, learned: bool
) -> None:
    """Give ``module`` the log scale its likelihood needs, per output value: a parameter
    ``log_std`` when learned (always for the discretized logistic), a buffer ``fixed_log_std``
    otherwise, nothing for Bernoulli."""
    if likelihood is Likelihood.bernoulli:
        return
    initial = torch.full(shape, math.log(initial_std))
    if learned or likelihood is Likelihood.discretized_logistic:
        module.log_std = nn.Parameter(initial)
    else:
        module.register_buffer("fixed_log_std", initial)


def scale_of(module: nn.Module) -> torch.Tensor | None:
    """The log scale ``output_scale`` gave ``module``, or None."""
    for name in ("log_std", "fixed_log_std"):
        if hasattr(module, name):
            return getattr(module, name)
    return None


class VAE(VAEModule):
    """q(z|x) = N(mu(x), diag exp(log_var(x))), p(z) = N(0, I), p(x|z) as ``spec.likelihood``.

    Images are flattened on the way in and reshaped on the way out."""

    def __init__(self, spec: MLPVAESpec, input_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.spec = spec
        self.input_shape = tuple(input_shape)
        input_dim = math.prod(input_shape)
        self.latent_dim = spec.latent_dim
        self.likelihood = resolve_likelihood(spec.likelihood, self.input_shape)
        encoder_sizes = [input_dim, *spec.encoder_hidden]
        decoder_sizes = [spec.latent_dim, *spec.decoder_hidden]
        self.encoder = mlp(spec, encoder_sizes, spec.encoder_norm, spec.encoder_dropout)
        self.mu_head = nn.Linear(encoder_sizes[-1], spec.latent_dim)
        self.log_var_head = nn.Linear(encoder_sizes[-1], spec.latent_dim)
        self.decoder = mlp(spec, decoder_sizes, spec.decoder_norm, spec.decoder_dropout)
        self.output = nn.Linear(decoder_sizes[-1], input_dim)
        output_scale(self, self.likelihood, self.input_shape, spec.gaussian_std, spec.learn_variance)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.encoder(x.flatten(1))
        return self.mu_head(hidden), self.log_var_head(hidden)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits, or the likelihood's mean (in [0, 1] through a sigmoid)."""
        out = self.output(self.decoder(z)).view(-1, *self.input_shape)
        return out if self.likelihood is Likelihood.bernoulli else torch.sigmoid(out)

    def output_log_scale(self) -> torch.Tensor | None:
        return scale_of(self)
