"""The VAE objective as small pure functions, in nats per example.

loss = reconstruction + KL is the negative ELBO (Kingma & Welling, 2014); the IWAE bound
(Burda et al., 2015) is tighter and is reported on the test set, also in bits per dimension.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from vae_sweep.train.models import Likelihood, VAEModule

LOG_2PI = math.log(2 * math.pi)
PIXEL_LEVELS = 256  # 8-bit images: what the discretized logistic and bits per dimension assume


def gaussian_kl(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(log_var)) || N(0, 1)) per latent dimension, shape (batch, latent)."""
    return 0.5 * (mu.pow(2) + log_var.exp() - 1.0 - log_var)


def reconstruction_nll(
    decoded: torch.Tensor, x: torch.Tensor, likelihood: Likelihood, log_scale: torch.Tensor | None
) -> torch.Tensor:
    """-log p(x|z) summed over every value of an example, shape (batch,).

    Bernoulli takes ``decoded`` as logits; the Gaussian and the discretized logistic take it as
    their mean and ``log_scale`` as the log of their standard deviation or scale.
    """
    if likelihood is Likelihood.bernoulli:
        nll = F.binary_cross_entropy_with_logits(decoded, x, reduction="none")
    elif likelihood is Likelihood.gaussian:
        squared = ((x - decoded) * torch.exp(-log_scale)).pow(2)
        nll = 0.5 * squared + log_scale + 0.5 * LOG_2PI
    else:
        nll = -discretized_logistic_log_prob(x, decoded, log_scale)
    return nll.flatten(1).sum(-1)


def discretized_logistic_log_prob(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log P(x) per value of a logistic(mean, scale) discretized to 256 bins over [0, 1]
    (Salimans et al., 2017, "PixelCNN++", eq. 2): the mass of x's bin, with the edge bins
    reaching to -inf and +inf so that the 256 masses sum to one.

    The mass is computed in log space on the tail the bin lies in, so that it stays exact
    where a difference of two CDF values would round to zero (a sharp logistic far from x).

    >>> x = torch.arange(256.0) / 255
    >>> round(float(discretized_logistic_log_prob(x, torch.full_like(x, 0.3), torch.tensor(-2.0)).exp().sum()), 5)
    1.0
    """
    half_bin = 0.5 / (PIXEL_LEVELS - 1)
    inverse_scale = torch.exp(-log_scale)
    centered = x - mean
    upper = inverse_scale * (centered + half_bin)
    lower = inverse_scale * (centered - half_bin)
    # P(lower < u < upper) = sigmoid(upper) - sigmoid(lower) = sigmoid(-lower) - sigmoid(-upper):
    # take the side where both are small, P = a - b = a (1 - b / a), all in logs.
    below = centered <= 0
    log_a = F.logsigmoid(torch.where(below, upper, -lower))
    log_b = F.logsigmoid(torch.where(below, lower, -upper))
    inner = log_a + log1mexp(log_b - log_a)
    first_bin = F.logsigmoid(upper)  # everything below the first bin's top
    last_bin = F.logsigmoid(-lower)  # everything above the last bin's bottom
    return torch.where(x < half_bin, first_bin, torch.where(x > 1 - half_bin, last_bin, inner))


def log1mexp(a: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(a)) for a < 0, accurate at both ends (Maechler, 2012)."""
    return torch.where(a > -math.log(2), torch.log(-torch.expm1(a)), torch.log1p(-torch.exp(a)))


def bits_per_dim(nats: float, values: int, likelihood: Likelihood) -> float:
    """A per-example negative log-likelihood in nats as bits per value (the image literature's unit).

    Bernoulli and the discretized logistic give probabilities, so this is ``nats / (values ln 2)``.
    A Gaussian gives a density over [0, 1]; counted against 8-bit pixels (uniform
    dequantization, Theis et al., 2016) each value adds ``log2 256 = 8`` bits.

    >>> bits_per_dim(784 * math.log(2), 784, Likelihood.bernoulli)
    1.0
    >>> bits_per_dim(0.0, 3072, Likelihood.gaussian)
    8.0
    """
    offset = math.log2(PIXEL_LEVELS) if likelihood is Likelihood.gaussian else 0.0
    return nats / (values * math.log(2)) + offset


def free_bits_kl(kl_per_dim: torch.Tensor, free_bits: float) -> torch.Tensor:
    """Batch KL with each latent dimension's batch mean clamped below at ``free_bits`` nats.

    Kingma et al. (2016), "Improved variational inference with inverse autoregressive
    flow", eq. (15): dimensions under the threshold get no gradient pushing them to collapse.
    """
    return torch.clamp(kl_per_dim.mean(0), min=free_bits).sum()


def training_objective(
    recon: torch.Tensor, kl_per_dim: torch.Tensor, *, beta: float, free_bits: float = 0.0
) -> torch.Tensor:
    """The whole objective a batch minimises, one number: mean reconstruction NLL plus ``beta``
    times the KL term, the way pytorch/examples' ``loss_function`` is the VAE's whole loss.

    ``beta`` weights the KL (Higgins et al., 2017; an annealing schedule sets it per batch); with
    ``free_bits > 0`` each latent dimension's batch-mean KL counts at least that many nats
    (``free_bits_kl``), otherwise the KL is the batch mean of its sum over dimensions. With
    ``beta=1`` and no free bits this is the negative ELBO.

    >>> recon, kl = torch.tensor([2.0, 4.0]), torch.tensor([[0.5, 0.0], [1.5, 0.0]])
    >>> float(training_objective(recon, kl, beta=1.0))  # 3 + 1
    4.0
    >>> float(training_objective(recon, kl, beta=0.5, free_bits=0.25))  # 3 + 0.5 * (1 + 0.25)
    3.625
    """
    kl_term = free_bits_kl(kl_per_dim, free_bits) if free_bits > 0 else kl_per_dim.sum(-1).mean()
    return recon.mean() + beta * kl_term


def linear_warmup(progress: float, warmup_epochs: float) -> float:
    """KL weight rising linearly from 0 to 1 over ``warmup_epochs`` (Bowman et al., 2016)."""
    if warmup_epochs <= 0:
        return 1.0
    return min(1.0, progress / warmup_epochs)


def cyclical_annealing(progress: float, total_epochs: float, cycles: int, ramp_fraction: float) -> float:
    """Cyclical KL annealing (Fu et al., 2019): ``cycles`` ramps 0 -> 1, each over
    ``ramp_fraction`` of its cycle, then held at 1 for the rest of the cycle.

    A cycle spans the progress interval (start, end]: the end of a cycle (the trainer passes
    the progress after each batch) still belongs to it, at full weight, not to the next one.
    """
    if progress >= total_epochs:
        return 1.0
    period = total_epochs / cycles
    position = (progress % period) / period
    if position == 0.0 and progress > 0:
        position = 1.0
    return min(1.0, position / ramp_fraction)


def negative_elbo_terms(model: VAEModule, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One-sample reconstruction NLL (batch,), analytic KL per dim (batch, latent), and mu."""
    decoded, mu, log_var = model(x)
    recon = reconstruction_nll(decoded, x, model.likelihood, model.output_log_scale())
    return recon, gaussian_kl(mu, log_var), mu


def importance_samples(model: VAEModule, x: torch.Tensor, samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For ``samples`` draws z_i ~ q(z|x): log p(x|z_i) and log p(z_i) - log q(z_i|x), each (samples, batch).

    Their sum is the log importance weight; the first alone gives a k-sample reconstruction term.
    """
    mu, log_var = model.encode(x)
    std = torch.exp(0.5 * log_var)
    eps = torch.randn((samples, *mu.shape), dtype=mu.dtype, device=mu.device)
    z = mu + eps * std
    log_q = (-0.5 * eps.pow(2) - 0.5 * log_var - 0.5 * LOG_2PI).sum(-1)
    log_prior = (-0.5 * z.pow(2) - 0.5 * LOG_2PI).sum(-1)
    decoded = model.decode(z.reshape(-1, mu.shape[-1]))
    targets = x.expand(samples, *x.shape).reshape(decoded.shape)
    log_likelihood = -reconstruction_nll(decoded, targets, model.likelihood, model.output_log_scale())
    return log_likelihood.view(samples, x.shape[0]), log_prior - log_q


def iwae_bound(log_weights: torch.Tensor) -> torch.Tensor:
    """log (1/k sum_i w_i) per example: the k-sample importance-weighted lower bound on log p(x)."""
    return torch.logsumexp(log_weights, dim=0) - math.log(log_weights.shape[0])
