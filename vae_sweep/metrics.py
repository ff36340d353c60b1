"""Metric names: a contract with MLflow logging, sweeps and comparison reports. Never rename."""

from __future__ import annotations

# Logged once per epoch with step = epoch. Losses are in nats per example: loss = recon + kl
# is the negative ELBO, recon the negative log-likelihood term, kl the analytic KL.
EPOCH_METRICS = ("train_loss", "train_recon", "train_kl", "val_loss", "val_recon", "val_kl", "lr", "beta")

# Logged once at the end of a run.
FINAL_METRICS = (
    "test_loss",
    "test_recon",
    "test_kl",
    "test_iwae",  # negative k-sample IWAE bound (Burda et al., 2015); never above test_loss
    "active_units",  # latent dims whose posterior mean varies over the test set (Cov > 0.01)
    "samples_per_sec",
    "train_seconds",
)

OBJECTIVES = EPOCH_METRICS[:6] + FINAL_METRICS[:5]
