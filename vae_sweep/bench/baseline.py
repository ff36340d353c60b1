"""The reference: a VAE training loop written the usual way, as pytorch/examples ``vae/main.py`` does.

It is deliberately not optimised (a ``DataLoader`` over a ``TensorDataset``, ``loss.item()`` every
step), because the benchmark asks whether our trainer beats what a user would write by hand.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class ExampleVAE(nn.Module):
    """pytorch/examples' VAE, with the sizes as arguments: in-hidden-latent, sigmoid output."""

    def __init__(self, input_dim: int, hidden: int, latent: int) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.fc1 = nn.Linear(input_dim, hidden)
        self.fc21 = nn.Linear(hidden, latent)
        self.fc22 = nn.Linear(hidden, latent)
        self.fc3 = nn.Linear(latent, hidden)
        self.fc4 = nn.Linear(hidden, input_dim)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        std = torch.exp(0.5 * logvar)
        return mu + torch.randn_like(std) * std

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z))))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x.view(-1, self.input_dim))
        return self.decode(self.reparameterize(mu, logvar)), mu, logvar


class ExampleConvVAE(nn.Module):
    """The same loop's model for images, as DCGAN-style VAEs are usually written: stride-2 4x4
    convolutions down, linear heads to the latent, a linear layer and transposed convolutions
    back up, a sigmoid output. ``model=conv``'s layers, without its technique options."""

    def __init__(self, channels: Sequence[int], latent: int, side: int) -> None:
        super().__init__()
        down: list[nn.Module] = []
        for fan_in, fan_out in zip([1, *channels], channels, strict=False):
            down += [nn.Conv2d(fan_in, fan_out, 4, 2, 1), nn.ReLU()]
        self.encoder = nn.Sequential(*down)
        small = side // 2 ** len(channels)  # even sides halve exactly (28 -> 14 -> 7)
        self.feature_shape = (channels[-1], small, small)
        flat = channels[-1] * small * small
        self.fc_mu, self.fc_logvar = nn.Linear(flat, latent), nn.Linear(flat, latent)
        self.fc_up = nn.Linear(latent, flat)
        up: list[nn.Module] = []
        for fan_in, fan_out in zip(channels[::-1], channels[::-1][1:], strict=False):
            up += [nn.ConvTranspose2d(fan_in, fan_out, 4, 2, 1), nn.ReLU()]
        self.decoder = nn.Sequential(*up, nn.ConvTranspose2d(channels[0], 1, 4, 2, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.encoder(x).flatten(1)
        mu, logvar = self.fc_mu(h), self.fc_logvar(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return torch.sigmoid(self.decoder(F.relu(self.fc_up(z)).view(-1, *self.feature_shape))), mu, logvar


def example_loss(recon_x: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """BCE summed over pixels and batch plus the analytic KL (Kingma & Welling, 2014, appendix B)."""
    bce = F.binary_cross_entropy(recon_x, x.view_as(recon_x), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def plain_samples_per_sec(
    train: torch.Tensor,
    build: Callable[[], nn.Module],
    *,
    batch_size: int,
    epochs: int,
    seed: int = 0,
    device: str = "cpu",
) -> float:
    """Train the model ``build()`` makes (``ExampleVAE``, ``ExampleConvVAE``) on ``train``
    (Adam, lr 1e-3) and return training samples per second.

    Only the epochs are timed (loader iteration included, as it is part of the usual loop);
    building the model and data set is not, matching what our trainer's ``samples_per_sec`` counts.
    On a GPU each batch is copied to it, as pytorch/examples does (``data.to(device)``).
    """
    torch.manual_seed(seed)
    model = build().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(train), batch_size=batch_size, shuffle=True)
    model.train()
    started = time.perf_counter()
    for _ in range(epochs):
        train_loss = 0.0
        for (batch,) in loader:
            data = batch.to(device)
            optimizer.zero_grad()
            recon_batch, mu, logvar = model(data)
            loss = example_loss(recon_batch, data, mu, logvar)
            loss.backward()
            train_loss += loss.item()  # a host sync every step, as in pytorch/examples
            optimizer.step()
    if device != "cpu":
        torch.cuda.synchronize()
    return train.shape[0] * epochs / (time.perf_counter() - started)
