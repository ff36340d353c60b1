"""``train(config) -> TrainResult``: the training loop, evaluation and test metrics.

Knows nothing of MLflow or Optuna: trackers and pruners plug in as callbacks that see each
epoch's metrics (and may raise to stop the run). Data stays on the device and batches are
drawn by index permutation; losses are summed on the device and read back once per epoch,
so there is no host sync per step.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from vae_sweep.errors import TrainingDiverged
from vae_sweep.train.best_epoch import BestEpoch
from vae_sweep.train.checkpoint import Checkpoint, fingerprint, save_checkpoint
from vae_sweep.train.config import RunConfig, TrainerSpec
from vae_sweep.train.data import KEPT, DataSplits
from vae_sweep.train.losses import (
    bits_per_dim,
    gaussian_kl,
    importance_samples,
    iwae_bound,
    negative_elbo_terms,
    training_objective,
)
from vae_sweep.train.models import VAEModule, check_model
from vae_sweep.train.precision import Precision
from vae_sweep.train.schedules import LRSchedule

log = logging.getLogger(__name__)

# Burda et al. (2015), "Importance Weighted Autoencoders", section 5.2.
ACTIVE_UNIT_THRESHOLD = 0.01
# Nats per example no model of real data comes near (8 bits for each dimension of a 10-megapixel
# image is 6e7): a loss beyond it is weights that blew up, finite but as diverged as a NaN. Left
# as finite numbers, one such run (1e25 nats) was the mean of a whole option's replicates.
EXPLODED_NATS = 1e12
LOSS_TERMS = ("_loss", "_recon", "_kl", "_iwae")
EVAL_ROWS = 8192  # rows per evaluation chunk (examples x importance samples), bounds memory


class EpochCallback(Protocol):
    """What a callback must have; it may also have ``on_epoch_start(epoch)``, ``on_checkpoint(epoch,
    path)``, called after a checkpoint was saved, ``on_resume(epoch, history)``, called once
    when training goes on from a checkpoint with the epochs' metrics up to it, and
    ``on_train_start(model, data)``, called once before the first epoch with the model and the
    data splits on the device: to read (a tracker logs the data set, and draws ``reconstruct``
    pictures at epoch ends), never to change, nor to draw random numbers from torch's generator;
    and ``on_train_end(epochs)``, called once the last epoch trained (early stopping may end
    training before ``trainer.epochs``)."""

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        """Called after every epoch; raising stops training (a pruner does so)."""


@dataclass
class TrainResult:
    metrics: dict[str, float]  # the last epoch's metrics and the final ones
    history: list[dict[str, float]]
    model: VAEModule
    test_inputs: torch.Tensor  # (image_count, *sample_shape) on the CPU, with their reconstructions
    reconstructions: torch.Tensor
    prior_samples: torch.Tensor
    image_shape: tuple[int, int, int] | None  # (channels, height, width); None: vectors, no pictures


@contextlib.contextmanager
def torch_settings(trainer: TrainerSpec) -> Iterator[None]:
    """Seed every RNG and set determinism and threads for one run, restoring them afterwards
    (several runs share a process in a multirun)."""
    previous = (torch.are_deterministic_algorithms_enabled(), torch.get_num_threads())
    random.seed(trainer.seed)
    np.random.seed(trainer.seed)
    torch.manual_seed(trainer.seed)
    if trainer.deterministic:  # cuBLAS needs a fixed workspace to be deterministic on CUDA
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(trainer.deterministic)
    if trainer.num_threads is not None:
        torch.set_num_threads(trainer.num_threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0])
        torch.set_num_threads(previous[1])


def train(
    config: RunConfig,
    callbacks: Sequence[EpochCallback] = (),
    *,
    checkpoint: Path | None = None,
    resume: Checkpoint | None = None,
) -> TrainResult:
    """Train one VAE as ``config`` says; raises ``TrainingDiverged`` on a NaN/inf loss.

    With ``checkpoint``, the state is saved there every ``trainer.checkpoint_every`` epochs;
    with ``resume`` (loaded from such a file), training goes on after its epoch."""
    trainer = config.trainer
    device = trainer.resolve_device()
    with torch_settings(trainer):
        data = KEPT.load(config.data).to(device)
        model = config.model.build(data.sample_shape).to(device)
        check_model(model, data.sample_shape)  # a model of one's own that breaks the contract: one line, now
        if trainer.compile:
            model.compile()  # in place: the training step's forward pass; encode/decode run as written
        optimizer = config.optimizer.build(model.parameters(), config.regularization.weight_decay)
        n_train = data.train.shape[0]
        batches = batch_bounds(n_train, trainer.batch_size)
        schedule = LRSchedule(config.scheduler, optimizer, epochs=trainer.epochs, steps_per_epoch=len(batches))
        generator = torch.Generator(device=device).manual_seed(trainer.seed)
        precision = Precision(trainer.precision, device)
        history: list[dict[str, float]] = []
        train_time = 0.0
        first_epoch = 1
        best = BestEpoch(trainer.monitor, trainer.patience, trainer.min_delta, keep_weights=trainer.restore_best)
        if resume is not None:
            resume.restore(model, optimizer, schedule, generator, best)
            history, train_time, first_epoch = list(resume.history), resume.train_time, resume.epoch + 1
            for callback in callbacks:
                if hasattr(callback, "on_resume"):
                    callback.on_resume(resume.epoch, history)
        for callback in callbacks:
            if hasattr(callback, "on_train_start"):
                callback.on_train_start(model, data)
        config_fingerprint = fingerprint(config)
        started = time.perf_counter() - train_time
        for epoch in range(first_epoch, trainer.epochs + 1):
            for callback in callbacks:
                if hasattr(callback, "on_epoch_start"):
                    callback.on_epoch_start(epoch)
            epoch_start = time.perf_counter()
            metrics = train_epoch(model, optimizer, schedule, config, data, batches, generator, epoch, precision)
            train_time += time.perf_counter() - epoch_start
            if epoch % trainer.eval_every == 0 or epoch == trainer.epochs:
                metrics.update(prefixed("val", evaluate_elbo(model, data.val)))
            check_finite(metrics, epoch)
            schedule.after_epoch(metrics.get("val_loss"))
            history.append(metrics)
            for callback in callbacks:
                callback.on_epoch_end(epoch, metrics)
            stop = best.update(epoch, metrics, model)
            if checkpoint is not None and checkpoint_due(trainer, epoch) and not stop:
                save_checkpoint(
                    checkpoint,
                    config_fingerprint=config_fingerprint,
                    epoch=epoch,
                    history=history,
                    train_time=train_time,
                    model=model,
                    optimizer=optimizer,
                    schedule=schedule,
                    generator=generator,
                    best=best,
                )
                for callback in callbacks:
                    if hasattr(callback, "on_checkpoint"):
                        callback.on_checkpoint(epoch, checkpoint)
            if stop:
                log.info("early stop after epoch %d: %s", epoch, best.why_stopped())
                break
        train_seconds = time.perf_counter() - started
        for callback in callbacks:
            if hasattr(callback, "on_train_end"):
                callback.on_train_end(len(history))
        tested = len(history)  # the last epoch trained, or with restore_best the best one
        if best.weights is not None:
            model.load_state_dict(best.weights)
            tested = best.epoch
        final = test_metrics(model, data.test, trainer.iwae_samples)
        check_finite(final, tested)
        final["test_bpd"] = bits_per_dim(final["test_iwae"], data.input_dim, model.likelihood)
        final["samples_per_sec"] = n_train * len(history) / train_time
        final["train_seconds"] = train_seconds
        final["epochs_trained"] = float(len(history))
        final["test_epoch"] = float(tested)
        return TrainResult(
            metrics={**history[tested - 1], **final},
            history=history,
            model=model,
            image_shape=data.image_shape,
            **pictures(model, data.test, trainer.image_count),
        )


def checkpoint_due(trainer: TrainerSpec, epoch: int) -> bool:
    """Every ``checkpoint_every`` epochs, but not after the last: the finished run is the result."""
    return bool(trainer.checkpoint_every) and epoch % trainer.checkpoint_every == 0 and epoch < trainer.epochs


def batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """(start, end) of each batch; a last batch of one example is dropped (batch norm needs two)."""
    bounds = [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds.pop()
    return bounds


def train_epoch(
    model: VAEModule,
    optimizer: torch.optim.Optimizer,
    schedule: LRSchedule,
    config: RunConfig,
    data: DataSplits,
    batches: list[tuple[int, int]],
    generator: torch.Generator,
    epoch: int,
    precision: Precision,
) -> dict[str, float]:
    regularization = config.regularization
    model.train()
    inputs = data.train_epoch(generator)
    order = torch.randperm(inputs.shape[0], generator=generator, device=inputs.device)
    sums = torch.zeros(2, device=inputs.device)  # reconstruction, KL: summed over examples
    examples = 0
    beta = regularization.kl_weight(epoch - 1, config.trainer.epochs)
    for index, (start, end) in enumerate(batches):
        x = inputs.index_select(0, order[start:end])  # the same rows as inputs[...], several times faster
        with precision.autocast():
            recon, kl_per_dim, _ = negative_elbo_terms(model, x)
            beta = regularization.kl_weight(epoch - 1 + (index + 1) / len(batches), config.trainer.epochs)
            objective = training_objective(recon, kl_per_dim, beta=beta, free_bits=regularization.free_bits)
        optimizer.zero_grad(set_to_none=True)
        precision.step(objective, optimizer, model, regularization.grad_clip_norm)
        schedule.after_batch()
        sums += torch.stack((recon.detach().sum(), kl_per_dim.detach().sum()))
        examples += end - start
    recon_mean, kl_mean = (sums / examples).tolist()
    return {
        "train_loss": recon_mean + kl_mean,
        "train_recon": recon_mean,
        "train_kl": kl_mean,
        "lr": schedule.lr,
        "beta": beta,
    }


def chunks(x: torch.Tensor, rows: int) -> Iterator[torch.Tensor]:
    for start in range(0, x.shape[0], max(1, rows)):
        yield x[start : start + max(1, rows)]


@torch.no_grad()
def evaluate_elbo(model: VAEModule, x: torch.Tensor) -> dict[str, float]:
    """Negative ELBO (one posterior sample, analytic KL) averaged over ``x``, in eval mode, and
    how the latent space is used: active units and the spread of the KL over latent dimensions
    (a collapsing posterior shows as KL and active units falling to 0, epoch by epoch)."""
    model.eval()
    sums = torch.zeros(2, device=x.device)
    kl_sums = torch.zeros(model.latent_dim, device=x.device)  # per latent dimension
    means = []
    for batch in chunks(x, EVAL_ROWS):
        recon, kl_per_dim, mu = negative_elbo_terms(model, batch)
        sums += torch.stack((recon.sum(), kl_per_dim.sum()))
        kl_sums += kl_per_dim.sum(0)
        means.append(mu)
    recon_mean, kl_mean = (sums / x.shape[0]).tolist()
    quantiles = torch.quantile(kl_sums / x.shape[0], torch.tensor([0.0, 0.5, 1.0], device=x.device))
    kl_min, kl_median, kl_max = quantiles.tolist()
    return {
        "loss": recon_mean + kl_mean,
        "recon": recon_mean,
        "kl": kl_mean,
        "active_units": active_units(torch.cat(means)),
        "kl_dim_min": kl_min,
        "kl_dim_median": kl_median,
        "kl_dim_max": kl_max,
    }


def active_units(means: torch.Tensor) -> float:
    """Latent dimensions whose posterior mean varies over the examples (variance above
    ``ACTIVE_UNIT_THRESHOLD``): the units the decoder can read anything from."""
    return float((means.var(dim=0) > ACTIVE_UNIT_THRESHOLD).sum().item())


@torch.no_grad()
def test_metrics(model: VAEModule, x: torch.Tensor, samples: int) -> dict[str, float]:
    """Test negative ELBO (reconstruction averaged over ``samples`` posterior draws, analytic
    KL), the negative ``samples``-sample IWAE bound, and the number of active units."""
    model.eval()
    sums = torch.zeros(3, device=x.device)
    means = []
    for batch in chunks(x, EVAL_ROWS // samples):
        mu, log_var = model.encode(batch)
        log_likelihood, log_prior_ratio = importance_samples(model, batch, samples)
        sums += torch.stack(
            (
                -log_likelihood.mean(0).sum(),
                gaussian_kl(mu, log_var).sum(),
                -iwae_bound(log_likelihood + log_prior_ratio).sum(),
            )
        )
        means.append(mu)
    recon, kl, iwae = (sums / x.shape[0]).tolist()
    return {
        "test_loss": recon + kl,
        "test_recon": recon,
        "test_kl": kl,
        "test_iwae": iwae,
        "active_units": active_units(torch.cat(means)),
    }


@torch.no_grad()
def pictures(model: VAEModule, x: torch.Tensor, count: int) -> dict[str, torch.Tensor]:
    """The first ``count`` test inputs with their reconstructions (posterior means) and
    ``count`` samples from the prior, as pixel means on the CPU."""
    model.eval()
    inputs = x[:count]
    reconstructions = reconstruct(model, inputs)
    z = torch.randn(count, model.latent_dim, device=x.device)
    return {
        "test_inputs": inputs.cpu(),
        "reconstructions": reconstructions,
        "prior_samples": model.mean_image(model.decode(z)).cpu(),
    }


@torch.no_grad()
def reconstruct(model: VAEModule, x: torch.Tensor) -> torch.Tensor:
    """Reconstructions of ``x`` from their posterior means, as pixel means on the CPU, in eval
    mode; the model's mode is left as it was and no random number is drawn, so calling this
    between epochs changes nothing of the training."""
    training = model.training
    model.eval()
    try:
        mu, _ = model.encode(x)
        return model.mean_image(model.decode(mu)).cpu()
    finally:
        model.train(training)


def prefixed(prefix: str, metrics: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}_{name}": value for name, value in metrics.items()}


def check_finite(metrics: dict[str, float], epoch: int) -> None:
    """A non-finite metric, or a loss term beyond ``EXPLODED_NATS``, is a diverged run."""
    bad = sorted(name for name, value in metrics.items() if not math.isfinite(value))
    if bad:
        raise TrainingDiverged("nan_loss", epoch, detail=f"non-finite {', '.join(bad)}", metrics=metrics)
    exploded = sorted(name for name, value in metrics.items() if name.endswith(LOSS_TERMS) and value > EXPLODED_NATS)
    if exploded:
        values = ", ".join(f"{name} {metrics[name]:.3g}" for name in exploded)
        raise TrainingDiverged("nan_loss", epoch, detail=f"exploded: {values} > {EXPLODED_NATS:g}", metrics=metrics)
