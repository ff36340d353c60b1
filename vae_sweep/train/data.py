"""Data sets as float tensors in [0, 1], split once into train / val / test.

Everything lives in memory, on the training device, as ``(n, channels, height, width)`` images
(or ``(n, d)`` vectors): the data sets fit, and a trainer that indexes a tensor with a
permutation is much faster than a ``DataLoader``. Splits and binarization are seeded by
``split_seed`` so two runs with the same config see the same data.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path

import numpy as np
import torch

from vae_sweep.errors import DataError, require
from vae_sweep.train.idx import CHECKSUMS, IDX_TEST_FILE, IDX_TRAIN_FILE, MIRRORS, ensure_idx_files, read_idx_images
from vae_sweep.train.specs import register


class Binarize(str, Enum):
    """How grayscale pixels become the 0/1 targets a Bernoulli likelihood assumes."""

    none = "none"
    static = "static"  # sampled once at load
    dynamic = "dynamic"  # training images resampled every epoch


@dataclass(frozen=True)
class DataSplits:
    """Train / val / test as float32 tensors of one sample shape, values in [0, 1]: images
    ``(n, channels, height, width)`` or vectors ``(n, d)``."""

    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    binarize: Binarize

    def __post_init__(self) -> None:
        shape = self.sample_shape
        if len(shape) not in (1, 3) or min(shape, default=0) < 1:
            raise DataError(f"samples have shape {shape}; expected (channels, height, width) images or (d,) vectors")
        for split in ("train", "val", "test"):
            tensor = getattr(self, split)
            if tuple(tensor.shape[1:]) != shape or tensor.shape[0] == 0:
                raise DataError(
                    f"{split} split has shape {tuple(tensor.shape)}, expected (n >= 1, {', '.join(map(str, shape))})"
                )
            if tensor.dtype != torch.float32:
                raise DataError(f"{split} split is {tensor.dtype}, expected torch.float32")
            low, high = tensor.aminmax()
            if low < 0 or high > 1:
                raise DataError(f"{split} split has values in [{low:.4g}, {high:.4g}], expected [0, 1]")

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """What one example looks like: ``(channels, height, width)`` or ``(d,)``."""
        return tuple(self.train.shape[1:])

    @property
    def image_shape(self) -> tuple[int, int, int] | None:
        """``(channels, height, width)`` for pictures, or None for vectors."""
        shape = self.sample_shape
        return shape if len(shape) == 3 else None

    @property
    def input_dim(self) -> int:
        """Values per example (pixels times channels): what bits per dimension divide by."""
        return self.train[0].numel()

    def to(self, device: torch.device | str) -> DataSplits:
        return replace(self, train=self.train.to(device), val=self.val.to(device), test=self.test.to(device))

    def train_epoch(self, generator: torch.Generator) -> torch.Tensor:
        """The training data for one epoch; ``generator`` must live on the data's device.

        Dynamic binarization draws fresh 0/1 images every epoch, which regularizes the
        model (the usual protocol for binarized MNIST in the VAE literature).
        """
        if self.binarize is Binarize.dynamic:
            return torch.bernoulli(self.train, generator=generator)
        return self.train


class KeptData:
    """The last data set a run loaded, kept for the next run of this process that asks for the
    same one (the same spec, every field equal): a sweep's worker trains trial after trial on one
    data set, which it loaded again for each (digits 20 ms, MNIST's files or an image folder of
    thousands of pictures seconds). Off until ``keep()``: the sweep's workers turn it on, while a
    single run, or a notebook that changes its files between runs, loads them each time."""

    def __init__(self) -> None:
        self.keeping = False
        self.key: str | None = None
        self.splits: DataSplits | None = None

    def keep(self) -> None:
        self.keeping = True

    def stop(self) -> None:
        """Keep nothing from now on, as in a new process; the kept splits are let go."""
        self.keeping, self.key, self.splits = False, None, None

    def load(self, spec: DataSpec) -> DataSplits:
        """``spec.load()``, or the splits it gave last time. Nothing changes them in place: the
        trainer draws new tensors for binarized epochs and moves copies to other devices."""
        if not self.keeping:
            return spec.load()
        key = f"{type(spec).__module__}.{type(spec).__qualname__}:{spec!r}"
        if key != self.key:
            self.key, self.splits = None, None  # the old data set goes before the new one comes
            self.splits, self.key = spec.load(), key
        return self.splits


KEPT = KeptData()


def _make_splits(
    train: torch.Tensor,
    val: torch.Tensor,
    test: torch.Tensor,
    binarize: Binarize,
    generator: torch.Generator,
) -> DataSplits:
    """Binarize once where the mode asks for it: static -> all splits, dynamic -> val/test only.

    Val and test are fixed 0/1 under dynamic binarization so that validation losses of
    different epochs and runs stay comparable.
    """
    if binarize is Binarize.static:
        train = torch.bernoulli(train, generator=generator)
    if binarize is not Binarize.none:
        val = torch.bernoulli(val, generator=generator)
        test = torch.bernoulli(test, generator=generator)
    return DataSplits(train, val, test, binarize)


def split_by_fractions(
    x: torch.Tensor, val_fraction: float, test_fraction: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A seeded random train / val / test partition of the rows of ``x``."""
    n = x.shape[0]
    n_val = max(1, int(n * val_fraction))
    n_test = max(1, int(n * test_fraction))
    if n - n_val - n_test < 1:
        raise DataError(
            f"{n} samples leave no training data after val_fraction={val_fraction}, test_fraction={test_fraction}"
        )
    order = torch.randperm(n, generator=generator)
    return x[order[n_val + n_test :]], x[order[:n_val]], x[order[n_val : n_val + n_test]]


def require_limit_above(limit: int | None, val_size: int) -> None:
    """``data.limit`` (first N training images, or None: all) must leave images to train on."""
    if limit is not None:
        require(limit > val_size, "limit", f"must exceed val_size={val_size} so training images remain, got {limit}")


def data_folder(root: str | None, name: str) -> Path:
    """Where a downloaded data set lives: ``root``, or $VAE_SWEEP_DATA/<name> (data/<name> when
    the variable is unset, as the option files say)."""
    folder = root if root is not None else Path(os.environ.get("VAE_SWEEP_DATA", "data")) / name
    return Path(folder).expanduser().resolve()


def require_fractions(val_fraction: float, test_fraction: float) -> None:
    require(0.0 < val_fraction < 1.0, "val_fraction", f"must be in (0, 1), got {val_fraction}")
    require(0.0 < test_fraction < 1.0, "test_fraction", f"must be in (0, 1), got {test_fraction}")
    require(
        val_fraction + test_fraction < 1.0,
        "test_fraction",
        f"val_fraction + test_fraction must be < 1 to leave training data, got {val_fraction} + {test_fraction}",
    )


@dataclass
class DataSpec:
    """Fields every data set shares; subclasses implement ``load``."""

    name: str
    binarize: Binarize = Binarize.none
    split_seed: int = 0

    def __post_init__(self) -> None:
        require(
            0 <= self.split_seed < 2**63,
            "split_seed",
            f"must be in [0, 2**63 - 1] (a torch generator's seed), got {self.split_seed}",
        )

    def load(self) -> DataSplits:
        raise NotImplementedError(f"{type(self).__name__} does not implement load()")

    def check(self) -> None:
        """Raise ``DataError`` now if ``load`` would: files missing (downloaded here when allowed),
        corrupt or failing their checksum. Data made in memory has nothing to check."""

    def generator(self) -> torch.Generator:
        """The generator, seeded by ``split_seed``, that makes (where it is made) and splits the data."""
        return torch.Generator().manual_seed(self.split_seed)

    def split(
        self,
        images: torch.Tensor,
        generator: torch.Generator,
        *,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
    ) -> DataSplits:
        """Train / val / test from one float32 tensor in [0, 1], ``(n, channels, height, width)``
        or ``(n, d)``: a seeded random partition, binarized as ``binarize`` says. For a data set of
        one's own (docs/extending.md)."""
        train, val, test = split_by_fractions(images, val_fraction, test_fraction, generator)
        return self.splits(train, val, test, generator)

    def splits(
        self, train: torch.Tensor, val: torch.Tensor, test: torch.Tensor, generator: torch.Generator
    ) -> DataSplits:
        """Splits a data set already has (a published test file), binarized as ``binarize`` says."""
        return _make_splits(train, val, test, self.binarize, generator)


@register
@dataclass
class Digits(DataSpec):
    """scikit-learn's bundled 8x8 digits (1797 images): no download, trains in seconds."""

    name: str = "digits"
    val_fraction: float = 0.1
    test_fraction: float = 0.2

    def __post_init__(self) -> None:
        super().__post_init__()
        require_fractions(self.val_fraction, self.test_fraction)

    def load(self) -> DataSplits:
        pixels = torch.as_tensor(digits_pixels(), dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
        generator = self.generator()
        return self.split(pixels, generator, val_fraction=self.val_fraction, test_fraction=self.test_fraction)


def digits_pixels() -> np.ndarray:
    """``sklearn.datasets.load_digits().data`` (1797 x 64 counts 0-16), read from the file
    scikit-learn ships without importing scikit-learn: that import (SciPy's statistics with it)
    took 1.2 s of a sweep's first trial, about as long as the trial trained."""
    spec = importlib.util.find_spec("sklearn")  # finds the package without running it
    csv = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    if csv is None or not csv.is_file():  # a scikit-learn that moved its data: ask it
        from sklearn.datasets import load_digits

        return load_digits().data
    with gzip.open(csv, "rt", encoding="utf-8") as rows:
        return np.loadtxt(rows, delimiter=",")[:, :-1]  # the last column is the label


@register
@dataclass
class Synthetic(DataSpec):
    """Seeded low-rank images ``sigmoid(W z + b)``: structure a VAE can learn, any size, gray
    or RGB, no files."""

    name: str = "synthetic"
    n_samples: int = 2000
    side: int = 28
    channels: int = 1
    latent_factors: int = 10
    val_fraction: float = 0.1
    test_fraction: float = 0.2

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.n_samples >= 10, "n_samples", f"must be >= 10, got {self.n_samples}")
        require(self.side >= 2, "side", f"must be >= 2, got {self.side}")
        require(self.channels in (1, 3), "channels", f"must be 1 (gray) or 3 (RGB), got {self.channels}")
        require(self.latent_factors >= 1, "latent_factors", f"must be >= 1, got {self.latent_factors}")
        require_fractions(self.val_fraction, self.test_fraction)

    def load(self) -> DataSplits:
        generator = self.generator()
        dim = self.channels * self.side * self.side
        # Scaled so that W z has standard deviation 2: pixels spread over (0, 1), many near 0 or 1.
        weights = torch.randn(dim, self.latent_factors, generator=generator) * (2.0 / self.latent_factors**0.5)
        bias = torch.randn(dim, generator=generator)
        z = torch.randn(self.n_samples, self.latent_factors, generator=generator)
        pixels = torch.sigmoid(torch.addmm(bias, z, weights.T))
        images = pixels.reshape(self.n_samples, self.channels, self.side, self.side)
        return self.split(images, generator, val_fraction=self.val_fraction, test_fraction=self.test_fraction)


@register
@dataclass
class IdxImages(DataSpec):
    """MNIST or Fashion-MNIST (``name``) from the IDX gz files, downloaded once into ``root``."""

    name: str = "mnist"
    # None: $VAE_SWEEP_DATA/<name>, or data/<name> when the variable is unset (as in the YAML).
    root: str | None = None
    download: bool = True
    verify_checksum: bool = True
    val_size: int = 10000
    limit: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.name in MIRRORS, "name", f"must be one of {sorted(MIRRORS)}, got {self.name!r}")
        require(self.val_size >= 1, "val_size", f"must be >= 1, got {self.val_size}")
        require_limit_above(self.limit, self.val_size)

    @property
    def folder(self) -> Path:
        return data_folder(self.root, self.name)

    def check(self) -> None:
        self._read_files()

    def _read_files(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The training (cut to ``limit``) and test images as uint8 ``(n, rows, cols)``, every file checked."""
        folder = self.folder
        ensure_idx_files(folder, self.name, self.download, self.verify_checksum)
        checksums = CHECKSUMS[self.name] if self.verify_checksum else {}
        train_file = read_idx_images(folder / IDX_TRAIN_FILE, checksums.get(IDX_TRAIN_FILE))
        test_file = read_idx_images(folder / IDX_TEST_FILE, checksums.get(IDX_TEST_FILE))
        if self.limit is not None:
            train_file = train_file[: self.limit]
        if train_file.shape[0] <= self.val_size:
            raise DataError(
                f"data.val_size={self.val_size} must be smaller than the {train_file.shape[0]} training images "
                f"in {folder / IDX_TRAIN_FILE} (after data.limit={self.limit})"
            )
        if train_file.shape[1:] != test_file.shape[1:]:
            raise DataError(
                f"{folder}: train images are {tuple(train_file.shape[1:])}, test {tuple(test_file.shape[1:])}"
            )
        return train_file, test_file

    def load(self) -> DataSplits:
        train_file, test_file = self._read_files()
        generator = self.generator()
        order = torch.randperm(train_file.shape[0], generator=generator)
        pixels = unit_images(train_file.unsqueeze(1))
        return self.splits(
            pixels[order[self.val_size :]],
            pixels[order[: self.val_size]],
            unit_images(test_file.unsqueeze(1)),
            generator,
        )


def unit_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float32 in [0, 1], same shape."""
    return images.to(torch.float32).div_(255.0)
