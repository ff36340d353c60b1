"""What a metric's number means: its unit and, where it has one, which way is better.

Every axis and every report line that names a metric goes through ``label``, so a plot never
says "lower is better" of a quantity where lower is not simply better: the KL term near 0 is
posterior collapse (no latent unit carries information), not a good model, so KL is labelled
without a direction. Units follow ``vae_sweep.names``: losses are nats per example.

Example:
    >>> label("val_loss")
    'val_loss (nats per example, lower is better)'
    >>> label("test_kl")
    'test_kl (nats per example)'
"""

from __future__ import annotations

NATS = "nats per example"
UNITS = {
    "test_bpd": "bits per dim",
    "active_units": "latent dims",
    "samples_per_sec": "examples/s",
    "train_seconds": "s",
}
LOWER_IS_BETTER = ("_loss", "_recon", "_iwae", "_bpd", "train_seconds")
HIGHER_IS_BETTER = ("samples_per_sec",)


def unit(metric: str) -> str | None:
    """``nats per example`` for the ELBO's terms, the unit of the other known metrics, else None."""
    if metric in UNITS:
        return UNITS[metric]
    if metric.endswith(("_loss", "_recon", "_kl", "_iwae")):
        return NATS
    return None


def direction(metric: str) -> str | None:
    """``lower is better`` / ``higher is better`` where that holds whatever the model; None for
    the KL (near 0 is collapse), active units (more is not always better), lr, beta, ..."""
    if metric.endswith(LOWER_IS_BETTER):
        return "lower is better"
    if metric.endswith(HIGHER_IS_BETTER):
        return "higher is better"
    return None


def label(metric: str, *, at_epoch: int | None = None) -> str:
    """``val_loss (nats per example, lower is better)``; ``at epoch N`` after the name when given."""
    name = f"{metric} at epoch {at_epoch}" if at_epoch is not None else metric
    details = [part for part in (unit(metric), direction(metric)) if part]
    return f"{name} ({', '.join(details)})" if details else name
