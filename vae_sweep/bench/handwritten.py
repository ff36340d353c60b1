"""The script a user would write instead of adopting vae-sweep: plain Optuna + MLflow.

It is to run beside ``vae-train -m study=quick`` (the same search space:
optimizer in adam / rmsprop / momentum and a log-uniform learning rate; the same model,
``seed_mlp``'s 64-128-64-32 encoder and 32-256-128-64-64 decoder; the same digits split sizes
and batch size), each from a fresh folder with new SQLite stores, as whole processes. It is
written the way the Optuna and MLflow docs write it: ``study.optimize`` with a TPE sampler,
a parent run and ``mlflow.start_run(nested=True)`` per trial, parameters, one ``log_metric``
call per metric per epoch, the final test loss, the weights as an artifact. It imports nothing
of ours, so it is run by path (``python vae_sweep/bench/handwritten.py``), never as a module of
the package. Row 8 of ``python -m vae_sweep.bench`` runs it beside ours (``versus_script.py``).

Each trial logs ``train_seconds`` as ours do (from the first epoch's start to the last one's
end, validation and the epoch metrics included), so that the benchmark tells the wall time
beyond training of both the same way, and ``log_seconds``, the part of it its ``log_metric``
calls took, so that it can tell what a trial's bookkeeping costs in all (ours only queue the
epoch's metrics inside that window, and send them after it).

    python vae_sweep/bench/handwritten.py --trials 10 --epochs 20
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import mlflow
import optuna
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn


class VAE(nn.Module):
    """seed_mlp: ReLU MLPs, a Gaussian posterior, Bernoulli pixels."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU())
        self.mu, self.log_var = nn.Linear(64, 32), nn.Linear(64, 32)
        self.decoder = nn.Sequential(
            nn.Linear(32, 256),
            nn.ReLU(),
            nn.Linear(256, 128),
            nn.ReLU(),
            nn.Linear(128, 64),
            nn.ReLU(),
            nn.Linear(64, 64),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        mu, log_var = self.mu(h), self.log_var(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * log_var)
        return self.decoder(z), mu, log_var


def losses(model: VAE, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reconstruction and KL, each summed over the batch."""
    logits, mu, log_var = model(x)
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    kl = -0.5 * torch.sum(1 + log_var - mu.pow(2) - log_var.exp())
    return recon, kl


def load_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = torch.tensor(load_digits().data / 16.0, dtype=torch.float32)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    n_val, n_test = int(len(x) * 0.1), int(len(x) * 0.2)
    return x[order[n_val + n_test :]], x[order[:n_val]], x[order[n_val : n_val + n_test]]


@torch.no_grad()
def evaluate(model: VAE, x: torch.Tensor) -> tuple[float, float]:
    model.eval()
    recon, kl = losses(model, x)
    return recon.item() / len(x), kl.item() / len(x)


def make_objective(epochs: int):
    train, val, test = load_data()

    def objective(trial: optuna.Trial) -> float:
        name = trial.suggest_categorical("optimizer", ["adam", "rmsprop", "momentum"])
        lr = trial.suggest_float("lr", 1e-4, 1e-2, log=True)
        with mlflow.start_run(run_name=f"trial-{trial.number}", nested=True):
            mlflow.log_params({"optimizer": name, "lr": lr, "epochs": epochs})
            torch.manual_seed(0)
            model = VAE()
            if name == "momentum":
                optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
            else:
                optimizer = {"adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop}[name](model.parameters(), lr=lr)
            started, log_seconds = time.perf_counter(), 0.0
            for epoch in range(1, epochs + 1):
                model.train()
                recon_sum = kl_sum = 0.0
                for batch in train[torch.randperm(len(train))].split(32):
                    optimizer.zero_grad()
                    recon, kl = losses(model, batch)
                    ((recon + kl) / len(batch)).backward()
                    optimizer.step()
                    recon_sum, kl_sum = recon_sum + recon.item(), kl_sum + kl.item()
                val_recon, val_kl = evaluate(model, val)
                logging_started = time.perf_counter()
                mlflow.log_metric("train_loss", (recon_sum + kl_sum) / len(train), step=epoch)
                mlflow.log_metric("val_loss", val_recon + val_kl, step=epoch)
                mlflow.log_metric("val_recon", val_recon, step=epoch)
                mlflow.log_metric("val_kl", val_kl, step=epoch)
                log_seconds += time.perf_counter() - logging_started
            mlflow.log_metric("train_seconds", time.perf_counter() - started)
            mlflow.log_metric("log_seconds", log_seconds)
            test_recon, test_kl = evaluate(model, test)
            mlflow.log_metric("test_loss", test_recon + test_kl)
            with tempfile.TemporaryDirectory() as folder:
                torch.save(model.state_dict(), Path(folder) / "state_dict.pt")
                mlflow.log_artifact(str(Path(folder) / "state_dict.pt"), "model")
        return val_recon + val_kl

    return objective


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    mlflow.set_tracking_uri("sqlite:///mlflow.db")
    mlflow.set_experiment("handwritten")
    study = optuna.create_study(
        study_name="handwritten",
        storage="sqlite:///optuna.db",
        sampler=optuna.samplers.TPESampler(seed=0),
        load_if_exists=True,
    )
    with mlflow.start_run(run_name="handwritten"):
        study.optimize(make_objective(args.epochs), n_trials=args.trials)
        mlflow.log_params(study.best_params)
        mlflow.log_metric("best_val_loss", study.best_value)
    print(f"Best value {study.best_value:.4f}: {study.best_params}")


if __name__ == "__main__":
    main()
