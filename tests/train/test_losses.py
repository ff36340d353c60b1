"""The VAE objective's pure functions against closed forms and torch.distributions."""

from __future__ import annotations

import math
from collections.abc import Callable

import mpmath
import pytest
import torch
from torch.distributions import Bernoulli, Normal, kl_divergence

from vae_sweep.train.config import RunConfig
from vae_sweep.train.loop import train
from vae_sweep.train.losses import (
    cyclical_annealing,
    free_bits_kl,
    gaussian_kl,
    importance_samples,
    iwae_bound,
    linear_warmup,
    reconstruction_nll,
)
from vae_sweep.train.models import Likelihood, MLPVAESpec
from vae_sweep.train.regularization import Annealing, RegularizationSpec


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- analytic KL and reconstruction ----------------------------------------------------------


def test_gaussian_kl_matches_torch_distributions() -> None:
    g = generator()
    mu = torch.randn(16, 5, generator=g, dtype=torch.float64) * 2
    log_var = torch.randn(16, 5, generator=g, dtype=torch.float64) * 1.5
    expected = kl_divergence(Normal(mu, torch.exp(0.5 * log_var)), Normal(0.0, 1.0))
    kl = gaussian_kl(mu, log_var)
    assert kl.shape == (16, 5)
    torch.testing.assert_close(kl, expected)
    torch.testing.assert_close(kl.sum(-1), expected.sum(-1))


def test_gaussian_kl_is_zero_only_at_the_prior() -> None:
    zeros = torch.zeros(3, 4)
    assert torch.equal(gaussian_kl(zeros, zeros), zeros)
    assert (gaussian_kl(zeros + 0.1, zeros) > 0).all()


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "grayscale"])
def test_bernoulli_nll_matches_torch_distributions(binary: bool) -> None:
    g = generator(1)
    logits = torch.randn(8, 20, generator=g, dtype=torch.float64) * 3
    x = torch.rand(8, 20, generator=g, dtype=torch.float64)
    if binary:
        x = torch.bernoulli(x, generator=g)
    expected = -Bernoulli(logits=logits, validate_args=binary).log_prob(x).sum(-1)
    nll = reconstruction_nll(logits, x, Likelihood.bernoulli, None)
    assert nll.shape == (8,)
    torch.testing.assert_close(nll, expected)


@pytest.mark.parametrize("shape", [(20,), (2, 2, 5)], ids=["vectors", "images"])
def test_gaussian_nll_matches_torch_distributions(shape: tuple[int, ...]) -> None:
    g = generator(2)
    mean = torch.rand(8, *shape, generator=g, dtype=torch.float64)
    x = torch.rand(8, *shape, generator=g, dtype=torch.float64)
    log_std = torch.randn(shape, generator=g, dtype=torch.float64)  # one per value, as the model has
    expected = -Normal(mean, torch.exp(log_std)).log_prob(x).flatten(1).sum(-1)
    nll = reconstruction_nll(mean, x, Likelihood.gaussian, log_std)
    assert nll.shape == (8,)  # summed over every value of an example
    torch.testing.assert_close(nll, expected)


# --- free bits -------------------------------------------------------------------------------


def test_free_bits_above_threshold_is_the_plain_kl() -> None:
    kl = torch.rand(10, 6, generator=generator(3), dtype=torch.float64) + 1.0  # every dim >= 1 nat
    torch.testing.assert_close(free_bits_kl(kl, 0.5), kl.sum(-1).mean())
    torch.testing.assert_close(free_bits_kl(kl, 0.0), kl.sum(-1).mean())


def test_free_bits_below_threshold_is_constant_without_gradient() -> None:
    kl = (torch.rand(10, 6, generator=generator(4), dtype=torch.float64) * 0.1).requires_grad_()
    value = free_bits_kl(kl, 2.0)
    torch.testing.assert_close(value, torch.tensor(6 * 2.0, dtype=torch.float64))
    value.backward()
    assert torch.equal(kl.grad, torch.zeros_like(kl))


def test_free_bits_clamps_batch_means_per_dimension() -> None:
    # Dim 0: mean 0.5 over the batch although one example is below the threshold; dim 1: mean
    # 0.1 (clamped); dim 2: mean 3. Clamping per example instead would give 0.7 for dim 0.
    kl = torch.tensor([[0.0, 0.1, 2.0], [1.0, 0.1, 4.0]], dtype=torch.float64, requires_grad=True)
    value = free_bits_kl(kl, 0.4)
    torch.testing.assert_close(value, torch.tensor(0.5 + 0.4 + 3.0, dtype=torch.float64))
    value.backward()
    expected_grad = torch.tensor([[0.5, 0.0, 0.5], [0.5, 0.0, 0.5]], dtype=torch.float64)
    torch.testing.assert_close(kl.grad, expected_grad)


# --- KL weight schedules ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("progress", "expected"),
    [(0.0, 0.0), (1.0, 0.25), (2.0, 0.5), (4.0, 1.0), (7.5, 1.0)],
)
def test_linear_warmup_closed_form(progress: float, expected: float) -> None:
    assert linear_warmup(progress, 4.0) == pytest.approx(expected)


def test_linear_warmup_without_warmup_is_full_weight() -> None:
    assert linear_warmup(0.0, 0.0) == 1.0


# 40 epochs, 4 cycles of 10 epochs, each ramping over its first half (5 epochs), then held at 1.
@pytest.mark.parametrize(
    ("progress", "expected"),
    [
        (0.0, 0.0),  # start
        (2.5, 0.5),  # middle of the first ramp
        (5.0, 1.0),  # end of the ramp
        (8.0, 1.0),  # held for the rest of the cycle
        (10.0, 1.0),  # the end of a cycle still belongs to it
        (10.5, 0.1),  # just after the second cycle starts
        (12.5, 0.5),  # middle of the second ramp
        (32.5, 0.5),  # middle of the last ramp
        (37.5, 1.0),  # held to the end of the last cycle
        (40.0, 1.0),  # end of training
        (41.0, 1.0),
    ],
)
def test_cyclical_annealing_closed_form(progress: float, expected: float) -> None:
    assert cyclical_annealing(progress, 40.0, 4, 0.5) == pytest.approx(expected)


def test_cyclical_annealing_full_ramp() -> None:
    # ramp_fraction=1: a saw tooth, 0 -> 1 over each whole cycle.
    values = [cyclical_annealing(p, 6.0, 3, 1.0) for p in (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)]
    assert values == pytest.approx([0.25, 0.5, 0.75, 1.0, 0.25, 0.5])


@pytest.mark.parametrize(
    ("annealing", "progress", "expected"),
    [
        (Annealing.none, 0.0, 3.0),
        (Annealing.linear, 1.0, 0.75),  # 3 * 1/4
        (Annealing.linear, 9.0, 3.0),
        (Annealing.cyclical, 2.5, 1.5),  # 3 * (2.5 epochs into a 10-epoch cycle ramping over 5)
    ],
)
def test_kl_weight_scales_the_schedule_by_beta(annealing: Annealing, progress: float, expected: float) -> None:
    spec = RegularizationSpec(beta=3.0, kl_annealing=annealing, warmup_epochs=4.0, cycles=4, ramp_fraction=0.5)
    assert spec.kl_weight(progress, 40) == pytest.approx(expected)


# --- IWAE bound ------------------------------------------------------------------------------


def test_iwae_bound_is_log_mean_exp_and_above_the_mean_log_weight() -> None:
    log_w = torch.randn(7, 50, generator=generator(5), dtype=torch.float64) * 3
    bound = iwae_bound(log_w)
    assert bound.shape == (50,)
    torch.testing.assert_close(bound, torch.log(torch.exp(log_w).mean(0)))
    assert (bound >= log_w.mean(0)).all()  # Jensen, for the same samples
    assert (bound <= log_w.max(0).values).all()


def test_iwae_bound_with_one_sample_is_the_log_weight() -> None:
    log_w = torch.randn(1, 50, generator=generator(6))
    torch.testing.assert_close(iwae_bound(log_w), log_w[0])


def test_iwae_bound_is_stable_for_tiny_weights() -> None:
    log_w = torch.full((500, 3), -2000.0)  # exp underflows in float32
    torch.testing.assert_close(iwae_bound(log_w), log_w[0])


def exact_nll(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """-log p(x) of a model with one latent dimension by quadrature over z in [-10, 10]."""
    z = torch.linspace(-10.0, 10.0, 2001).unsqueeze(-1)
    log_likelihood = Bernoulli(logits=model.decode(z).unsqueeze(1)).log_prob(x).sum(-1)  # (grid, batch)
    log_prior = Normal(0.0, 1.0).log_prob(z)  # (grid, 1)
    return -(torch.logsumexp(log_likelihood + log_prior, dim=0) + math.log(20.0 / 2000))


@torch.no_grad()
def test_iwae_tightens_with_k_towards_the_exact_likelihood() -> None:
    torch.manual_seed(0)
    model = MLPVAESpec(encoder_hidden=[32], decoder_hidden=[32], latent_dim=1).build((64,)).eval()
    x = torch.bernoulli(torch.full((1000, 64), 0.3), generator=generator(7))
    nll = {}
    for k in (1, 50, 500):
        log_likelihood, log_ratio = importance_samples(model, x, k)
        assert log_likelihood.shape == log_ratio.shape == (k, 1000)
        nll[k] = -iwae_bound(log_likelihood + log_ratio).mean().item()
    exact = exact_nll(model, x).mean().item()
    assert nll[1] > nll[50]
    assert nll[1] > nll[500]
    # Every bound is an upper bound on -log p(x) (up to sampling noise, ~1e-3 here), and k=500
    # closes nearly all of the k=1 gap on this one-dimensional posterior.
    assert nll[50] > exact - 0.02 and nll[500] > exact - 0.02
    assert abs(nll[500] - exact) < 0.1 * (nll[1] - exact)


@torch.no_grad()
def test_importance_log_ratio_averages_to_minus_the_analytic_kl() -> None:
    torch.manual_seed(1)
    model = MLPVAESpec(encoder_hidden=[16], decoder_hidden=[16], latent_dim=3).build((10,)).eval()
    x = torch.rand(4, 10, generator=generator(8))
    mu, log_var = model.encode(x)
    _, log_ratio = importance_samples(model, x, 20000)
    # E_q[log p(z) - log q(z|x)] = -KL(q || p); the Monte Carlo error is ~0.01 nats here.
    torch.testing.assert_close(log_ratio.mean(0), -gaussian_kl(mu, log_var).sum(-1), atol=0.05, rtol=0)


def test_trained_run_reports_iwae_no_worse_than_the_elbo(tiny_config: Callable[..., RunConfig]) -> None:
    result = train(tiny_config("trainer.epochs=3", "trainer.iwae_samples=64"))
    metrics = result.metrics
    assert math.isfinite(metrics["test_iwae"])
    assert metrics["test_iwae"] <= metrics["test_loss"]


def test_discretized_logistic_is_the_mass_of_each_pixels_bin() -> None:
    """Against the bins' CDF differences in 50-digit arithmetic: exact also where float64's
    difference of two CDF values near 1 would round away a mass of 1e-15."""
    mpmath.mp.dps = 50
    g = generator(9)
    x = torch.randint(0, 256, (6, 3, 4, 4), generator=g).double() / 255
    mean = torch.rand(6, 3, 4, 4, generator=g, dtype=torch.float64)
    log_scale = torch.randn(3, 4, 4, generator=g, dtype=torch.float64) - 2  # one per value, as models have

    def log_mass(value: float, mu: float, log_s: float) -> float:
        def cdf(edge: float) -> mpmath.mpf:
            return 1 / (1 + mpmath.exp(-(mpmath.mpf(edge) - mu) / mpmath.exp(log_s)))

        top = 1 if value == 1 else cdf(value + 0.5 / 255)  # the last bin reaches to +inf
        bottom = 0 if value == 0 else cdf(value - 0.5 / 255)  # the first to -inf
        return float(mpmath.log(top - bottom))

    scales = log_scale.expand_as(x)
    expected = torch.tensor(
        [
            log_mass(*values)
            for values in zip(x.flatten().tolist(), mean.flatten().tolist(), scales.flatten().tolist(), strict=True)
        ],
        dtype=torch.float64,
    )
    nll = reconstruction_nll(mean, x, Likelihood.discretized_logistic, log_scale)
    torch.testing.assert_close(nll, -expected.view(6, -1).sum(-1))


def test_discretized_logistic_stays_finite_with_a_tiny_scale_far_from_the_pixel() -> None:
    x = torch.tensor([[0.0, 0.5, 1.0]])
    mean = torch.tensor([[0.9, 0.01, 0.1]], requires_grad=True)
    log_scale = torch.full((3,), -9.0, requires_grad=True)  # scale 1e-4: each bin's mass underflows
    nll = reconstruction_nll(mean, x, Likelihood.discretized_logistic, log_scale)
    nll.sum().backward()
    assert torch.isfinite(nll).all() and nll.item() > 1000
    assert torch.isfinite(mean.grad).all() and torch.isfinite(log_scale.grad).all()
