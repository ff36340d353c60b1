"""Data sets as float tensors in [0, 1], split once into train / val / test.

Everything lives in memory as ``(n, d)`` tensors: the data sets are small, and a trainer
that indexes a tensor with a permutation is much faster than a ``DataLoader``. Splits and
binarization are seeded by ``split_seed`` so two runs with the same config see the same data.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass, replace
from enum import Enum
from http.client import HTTPException
from pathlib import Path

import numpy as np
import torch

from vae_sweep.errors import DataError, require
from vae_sweep.specs import register

# The files a VAE needs (labels are not); both data sets use the same names.
IDX_TRAIN_FILE = "train-images-idx3-ubyte.gz"
IDX_TEST_FILE = "t10k-images-idx3-ubyte.gz"
IDX_FILES = (IDX_TRAIN_FILE, IDX_TEST_FILE)
IDX_IMAGE_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions

MIRRORS: dict[str, str] = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion_mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
}

# SHA-256 of the published gz files, as listed in tensorflow-datasets' url_checksums.
CHECKSUMS: dict[str, dict[str, str]] = {
    "mnist": {
        IDX_TRAIN_FILE: "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        IDX_TEST_FILE: "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    },
    "fashion_mnist": {
        IDX_TRAIN_FILE: "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        IDX_TEST_FILE: "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    },
}

_DOWNLOAD_TIMEOUT_S = 60


class Binarize(str, Enum):
    """How grayscale pixels become the 0/1 targets a Bernoulli likelihood assumes."""

    none = "none"
    static = "static"  # sampled once at load
    dynamic = "dynamic"  # training images resampled every epoch


@dataclass(frozen=True)
class DataSplits:
    """Train / val / test as float32 ``(n, d)`` tensors with values in [0, 1]."""

    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    image_shape: tuple[int, int]
    binarize: Binarize

    def __post_init__(self) -> None:
        dim = self.image_shape[0] * self.image_shape[1]
        for split in ("train", "val", "test"):
            shape = tuple(getattr(self, split).shape)
            if len(shape) != 2 or shape[1] != dim or shape[0] == 0:
                raise DataError(
                    f"{split} split has shape {shape}, expected (n >= 1, {dim}) for images {self.image_shape}"
                )

    @property
    def input_dim(self) -> int:
        return self.train.shape[1]

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


def _make_splits(
    train: torch.Tensor,
    val: torch.Tensor,
    test: torch.Tensor,
    image_shape: tuple[int, int],
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
    return DataSplits(train, val, test, image_shape, binarize)


def _split_by_fractions(
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


def _require_fractions(val_fraction: float, test_fraction: float) -> None:
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

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.split_seed)


@register
@dataclass
class Digits(DataSpec):
    """scikit-learn's bundled 8x8 digits (1797 images): no download, trains in seconds."""

    name: str = "digits"
    val_fraction: float = 0.1
    test_fraction: float = 0.2

    def __post_init__(self) -> None:
        super().__post_init__()
        _require_fractions(self.val_fraction, self.test_fraction)

    def load(self) -> DataSplits:
        from sklearn.datasets import load_digits  # slow import, only needed here

        pixels = torch.as_tensor(load_digits().data, dtype=torch.float32) / 16.0
        generator = self._generator()
        train, val, test = _split_by_fractions(pixels, self.val_fraction, self.test_fraction, generator)
        return _make_splits(train, val, test, (8, 8), self.binarize, generator)


@register
@dataclass
class Synthetic(DataSpec):
    """Seeded low-rank images ``sigmoid(W z + b)``: structure a VAE can learn, any size, no files."""

    name: str = "synthetic"
    n_samples: int = 2000
    side: int = 28
    latent_factors: int = 10
    val_fraction: float = 0.1
    test_fraction: float = 0.2

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.n_samples >= 10, "n_samples", f"must be >= 10, got {self.n_samples}")
        require(self.side >= 2, "side", f"must be >= 2, got {self.side}")
        require(self.latent_factors >= 1, "latent_factors", f"must be >= 1, got {self.latent_factors}")
        _require_fractions(self.val_fraction, self.test_fraction)

    def load(self) -> DataSplits:
        generator = self._generator()
        dim = self.side * self.side
        # Scaled so that W z has standard deviation 2: pixels spread over (0, 1), many near 0 or 1.
        weights = torch.randn(dim, self.latent_factors, generator=generator) * (2.0 / self.latent_factors**0.5)
        bias = torch.randn(dim, generator=generator)
        z = torch.randn(self.n_samples, self.latent_factors, generator=generator)
        pixels = torch.sigmoid(torch.addmm(bias, z, weights.T))
        train, val, test = _split_by_fractions(pixels, self.val_fraction, self.test_fraction, generator)
        return _make_splits(train, val, test, (self.side, self.side), self.binarize, generator)


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
        if self.limit is not None:
            require(
                self.limit > self.val_size,
                "limit",
                f"must exceed val_size={self.val_size} so training images remain, got {self.limit}",
            )

    @property
    def folder(self) -> Path:
        root = self.root if self.root is not None else Path(os.environ.get("VAE_SWEEP_DATA", "data")) / self.name
        return Path(root).expanduser().resolve()

    def check(self) -> None:
        self._read_files()

    def _read_files(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The training (cut to ``limit``) and test images as uint8 ``(n, rows, cols)``, every file checked."""
        folder = self.folder
        _ensure_idx_files(folder, self.name, self.download, self.verify_checksum)
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
        generator = self._generator()
        order = torch.randperm(train_file.shape[0], generator=generator)
        pixels = _to_unit_rows(train_file)
        rows, cols = test_file.shape[1:]
        return _make_splits(
            pixels[order[self.val_size :]],
            pixels[order[: self.val_size]],
            _to_unit_rows(test_file),
            (rows, cols),
            self.binarize,
            generator,
        )


def _to_unit_rows(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``(n, rows, cols)`` -> float32 ``(n, rows * cols)`` in [0, 1]."""
    return images.reshape(images.shape[0], -1).to(torch.float32).div_(255.0)


def read_idx_images(path: Path, expected_sha256: str | None = None) -> torch.Tensor:
    """Read an IDX image file (gz or plain) into a uint8 ``(n, rows, cols)`` tensor.

    The header is checked against the payload so a truncated download fails here with
    a clear message instead of as a reshape error (or silently short data) later.
    """
    raw = Path(path).read_bytes()
    if expected_sha256 is not None and (actual := hashlib.sha256(raw).hexdigest()) != expected_sha256:
        raise DataError(
            f"{path}: SHA-256 mismatch: expected {expected_sha256}, got {actual}. Delete the file so that it is "
            "downloaded again, or, if it is a re-packed copy of the same images, set data.verify_checksum=false"
        )
    try:
        payload = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"{path}: not a readable gzip file ({error}); delete it and download it again") from None
    if len(payload) < 16:
        raise DataError(f"{path}: {len(payload)} bytes is too short for an IDX header (16 bytes)")
    magic, count, rows, cols = struct.unpack(">IIII", payload[:16])
    if magic != IDX_IMAGE_MAGIC:
        raise DataError(
            f"{path}: not an IDX image file: magic number 0x{magic:08x}, expected 0x{IDX_IMAGE_MAGIC:08x} "
            "(unsigned bytes, 3 dimensions)"
        )
    expected_bytes = count * rows * cols
    actual_bytes = len(payload) - 16
    if actual_bytes != expected_bytes:
        raise DataError(
            f"{path}: header promises {count} x {rows} x {cols} = {expected_bytes} bytes of pixels, "
            f"but the file holds {actual_bytes} (truncated or corrupt); delete it and download it again"
        )
    pixels = np.frombuffer(payload, dtype=np.uint8, offset=16).reshape(count, rows, cols)
    return torch.from_numpy(pixels.copy())  # copy: frombuffer over bytes is read-only


def _ensure_idx_files(folder: Path, name: str, download: bool, verify_checksum: bool) -> None:
    """Download the missing IDX files of data set ``name`` into ``folder``, or say how to get them."""
    missing = [file for file in IDX_FILES if not (folder / file).is_file()]
    if not missing:
        return
    reason = "data.download=false"
    if download:
        try:
            for file in missing:
                expected = CHECKSUMS[name][file] if verify_checksum else None
                _download(MIRRORS[name] + file, folder / file, expected)
            return
        except (OSError, HTTPException) as error:  # URLError, timeouts, cut connections, a read-only folder
            reason = f"download failed: {error}"
            missing = [file for file in IDX_FILES if not (folder / file).is_file()]
    raise DataError(
        f"{name}: missing {', '.join(missing)} in {folder} ({reason}). "
        f"Download {' and '.join(MIRRORS[name] + file for file in missing)} and put them in {folder}"
    )


def _download(url: str, target: Path, expected_sha256: str | None) -> None:
    """Fetch ``url`` into a temporary file next to ``target`` and move it into place only when complete."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", suffix=".part", delete=False) as tmp:
        partial = Path(tmp.name)
        try:
            digest = hashlib.sha256()
            with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response:
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    tmp.write(chunk)
            if expected_sha256 is not None and (actual := digest.hexdigest()) != expected_sha256:
                raise DataError(
                    f"{url}: SHA-256 mismatch: expected {expected_sha256}, got {actual}; the download was discarded. "
                    "If the mirror serves a re-packed copy of the same images, set data.verify_checksum=false"
                )
        except BaseException:
            tmp.close()
            partial.unlink(missing_ok=True)
            raise
    os.replace(partial, target)
