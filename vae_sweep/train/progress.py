"""What a single run shows while it trains and when it ends.

Per epoch (``trainer.progress``): a tqdm bar on a terminal, a line per epoch otherwise (a log
file, CI, a notebook's captured output), or nothing. A sweep's trials print one line each from
the sweeper instead (``vae_sweep.sweep.worker``), not twenty lines per trial.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)
PROGRESS = ("auto", "bar", "lines", "off")


def epoch_summary(metrics: Mapping[str, float]) -> str:
    """``train 27.41 | val 27.10 (recon 21.32, KL 5.78) | lr 1.0e-03``; val only on epochs that validated.

    >>> epoch_summary({"train_loss": 27.41, "val_loss": 27.1, "val_recon": 21.32, "val_kl": 5.78, "lr": 0.001})
    'train 27.41 | val 27.10 (recon 21.32, KL 5.78) | lr 1.0e-03'
    """
    parts = [f"train {metrics['train_loss']:.2f}"]
    if "val_loss" in metrics:
        parts.append(f"val {metrics['val_loss']:.2f} (recon {metrics['val_recon']:.2f}, KL {metrics['val_kl']:.2f})")
    if "lr" in metrics:
        parts.append(f"lr {metrics['lr']:.1e}")
    return " | ".join(parts)


class EpochProgress:
    """An epoch callback: ``epoch k/N`` with the losses, the learning rate and seconds per epoch."""

    def __init__(self, epochs: int, mode: str = "auto") -> None:
        self.epochs = epochs
        self.epoch_started = time.perf_counter()
        self.bar = None
        if mode == "bar" or (mode == "auto" and sys.stderr.isatty()):
            from tqdm import tqdm

            self.bar = tqdm(total=epochs, unit="epoch", dynamic_ncols=True, file=sys.stderr)

    def on_resume(self, epoch: int, history: list[dict[str, float]]) -> None:
        if self.bar is not None:
            self.bar.update(epoch)

    def on_epoch_start(self, epoch: int) -> None:
        self.epoch_started = time.perf_counter()

    def on_train_end(self, epochs: int) -> None:
        if self.bar is not None:
            self.bar.close()

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        seconds = time.perf_counter() - self.epoch_started  # training and validating this epoch
        if self.bar is not None:
            self.bar.set_postfix_str(epoch_summary(metrics), refresh=False)
            self.bar.update(1)
            return
        log.info("epoch %d/%d | %s | %.2f s/epoch", epoch, self.epochs, epoch_summary(metrics), seconds)


def run_summary(metrics: Mapping[str, float], objectives: Mapping[str, float], run_id: str | None, where: str) -> str:
    """What a finished single run says: its objective(s) and id, the test metrics, where to look.

    >>> print(run_summary({"test_loss": 27.4, "test_recon": 21.1, "test_kl": 6.3, "test_iwae": 26.9,
    ...     "test_bpd": 2.71, "active_units": 12, "train_seconds": 12.4}, {"val_loss": 27.212}, "3f2a", "mlflow ui"))
    Run 3f2a FINISHED after 12.4s of training: val_loss = 27.2120
    Test:      loss 27.40 (recon 21.10, KL 6.30) | iwae 26.90 | 2.71 bits/dim | 12 active units
    MLflow:    mlflow ui
    """
    values = ", ".join(f"{name} = {value:.4f}" for name, value in objectives.items())
    lines = [f"Run {run_id or '(not tracked)'} FINISHED after {metrics['train_seconds']:.1f}s of training: {values}"]
    lines.append(
        f"Test:      loss {metrics['test_loss']:.2f} (recon {metrics['test_recon']:.2f}, KL {metrics['test_kl']:.2f})"
        f" | iwae {metrics['test_iwae']:.2f} | {metrics['test_bpd']:.2f} bits/dim"
        f" | {int(metrics['active_units'])} active units"
    )
    trained, tested = metrics.get("epochs_trained"), metrics.get("test_epoch")
    if tested is not None and tested != trained:
        lines.append(f"Weights:   epoch {int(tested)}'s, the best of {int(trained)} trained (trainer.restore_best)")
    lines.append(f"MLflow:    {where}")
    return "\n".join(lines)
