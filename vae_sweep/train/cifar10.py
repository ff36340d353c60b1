"""CIFAR-10 (Krizhevsky, 2009): 50,000 training and 10,000 test images, 32x32 RGB, from the
python version's archive ``cifar-10-python.tar.gz``, read straight from the tar.gz (or from the
``cifar-10-batches-py/`` folder it unpacks to) and downloaded once into ``root``.

Its batches are pickles, and a plain unpickler runs whatever a file names; they are read by
``BatchUnpickler``, which builds numpy arrays and nothing else, so a foreign or tampered file is
refused, naming it, instead of run.
"""

from __future__ import annotations

import codecs
import io
import pickle
import tarfile
import zlib
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import IO

import numpy as np
import torch

from vae_sweep.errors import DataError, require
from vae_sweep.train.data import DataSpec, DataSplits, data_folder, require_limit_above, unit_images
from vae_sweep.train.downloads import check_sha256, fetch_file
from vae_sweep.train.specs import register

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE = "cifar-10-python.tar.gz"
# SHA-256 of the published archive (170,498,071 bytes), as tensorflow-datasets' url_checksums and
# Keras' cifar10.load_data (its file_hash) list it.
ARCHIVE_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
EXTRACTED = "cifar-10-batches-py"  # the archive's one folder
TRAIN_BATCHES = tuple(f"data_batch_{number}" for number in range(1, 6))
TEST_BATCH = "test_batch"
TRAIN_IMAGES = 50000
IMAGE_SHAPE = (3, 32, 32)  # each row of a batch: the red, green and blue 32x32 planes, row-major
PIXELS = 3 * 32 * 32

# What unpickling a batch may build: the calls numpy's own pickles of uint8 arrays make, nothing else.
_RECONSTRUCT = np.zeros(0).__reduce__()[0]  # numpy's array-rebuilding function, wherever this numpy keeps it
SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,  # named so by numpy 1, as in the published archive
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,  # named so by numpy 2
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,  # how Python 3 writes bytes at protocol 2 (a re-pickled copy)
}

# What a broken pickle raises on the way: a cut stream, a bad opcode or memo key, a call with bad arguments.
PICKLE_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, LookupError, AttributeError, OverflowError)


class BatchUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR-10 batch allowing only ``SAFE_GLOBALS``; Python 2 wrote the archive, so
    its strings come back as bytes (``encoding="bytes"``, the keys ``b"data"``, ``b"labels"``)."""

    def __init__(self, file: IO[bytes], where: str) -> None:
        super().__init__(file, encoding="bytes")
        self.where = where

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in SAFE_GLOBALS:
            raise DataError(
                f"{self.where}: refused to unpickle {module}.{name}: a CIFAR-10 batch holds only numpy arrays, "
                "so this file is not one or was tampered with; delete it and download the archive again"
            )
        return SAFE_GLOBALS[(module, name)]


@register
@dataclass
class Cifar10(DataSpec):
    """CIFAR-10 from ``root``: the training batches less ``val_size`` images (a seeded
    permutation) to train on, and the published 10,000-image test batch as the test split."""

    name: str = "cifar10"
    # None: $VAE_SWEEP_DATA/cifar10, or data/cifar10 when the variable is unset (as in the YAML).
    root: str | None = None
    download: bool = True
    verify_checksum: bool = True  # the archive's SHA-256; an extracted folder has none published
    val_size: int = 5000
    limit: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        require(
            1 <= self.val_size < TRAIN_IMAGES,
            "val_size",
            f"must be in [1, {TRAIN_IMAGES - 1}] (CIFAR-10 has {TRAIN_IMAGES} training images), got {self.val_size}",
        )
        require_limit_above(self.limit, self.val_size)

    @property
    def folder(self) -> Path:
        return data_folder(self.root, self.name)

    def check(self) -> None:
        self._read_images()

    def load(self) -> DataSplits:
        train, test = self._read_images()
        generator = self.generator()
        order = torch.randperm(train.shape[0], generator=generator)
        pixels = unit_images(train)
        return self.splits(pixels[order[self.val_size :]], pixels[order[: self.val_size]], unit_images(test), generator)

    def _read_images(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The training (cut to ``limit``) and test images as uint8 ``(n, 3, 32, 32)``, every batch checked."""
        folder = self.folder
        archive, extracted = folder / ARCHIVE, folder / EXTRACTED
        if not archive.is_file() and not extracted.is_dir():
            self._download(folder)
        if archive.is_file():
            where, batches = str(archive), read_archive(archive, ARCHIVE_SHA256 if self.verify_checksum else None)
        else:
            where, batches = str(extracted), read_extracted(extracted)
        train = np.concatenate([batches[name] for name in TRAIN_BATCHES])[: self.limit]
        if train.shape[0] <= self.val_size:
            raise DataError(
                f"data.val_size={self.val_size} must be smaller than the {train.shape[0]} training images "
                f"in {where} (after data.limit={self.limit})"
            )
        return _images(train), _images(batches[TEST_BATCH])

    def _download(self, folder: Path) -> None:
        """Fetch the archive into ``folder``, or say where to get it."""
        reason = "data.download=false"
        if self.download:
            try:
                fetch_file(URL, folder / ARCHIVE, ARCHIVE_SHA256 if self.verify_checksum else None)
                return
            except (OSError, HTTPException) as error:  # URLError, timeouts, cut connections, a read-only folder
                reason = f"download failed: {error}"
        raise DataError(
            f"cifar10: neither {ARCHIVE} nor {EXTRACTED}/ is in {folder} ({reason}). "
            f"Download {URL} and put it in {folder}"
        )


def read_archive(path: Path, expected_sha256: str | None) -> dict[str, np.ndarray]:
    """Every batch of the tar.gz at ``path``, read from memory (nothing is extracted to disk)."""
    raw = path.read_bytes()
    check_sha256(path, raw, expected_sha256)
    batches = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as archive:
            for member in archive:
                folder, _, name = member.name.rpartition("/")
                if folder == EXTRACTED and name in (*TRAIN_BATCHES, TEST_BATCH) and member.isfile():
                    batches[name] = read_batch(archive.extractfile(member), f"{path}:{member.name}")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise DataError(f"{path}: not a readable tar.gz archive ({error}); delete it and download it again") from None
    return _require_every_batch(batches, path)


def read_extracted(folder: Path) -> dict[str, np.ndarray]:
    """Every batch in the unpacked archive's ``folder``."""
    batches = {}
    for name in (*TRAIN_BATCHES, TEST_BATCH):
        if (folder / name).is_file():
            with open(folder / name, "rb") as file:
                batches[name] = read_batch(file, str(folder / name))
    return _require_every_batch(batches, folder)


def read_batch(file: IO[bytes], where: str) -> np.ndarray:
    """One batch's pixels, uint8 ``(n, 3072)``; ``where`` names the file in every refusal."""
    try:
        batch = BatchUnpickler(file, where).load()
    except PICKLE_ERRORS as error:
        raise DataError(f"{where}: not a readable CIFAR-10 batch ({type(error).__name__}: {error})") from None
    pixels = batch.get(b"data") if isinstance(batch, dict) else None
    if not (isinstance(pixels, np.ndarray) and pixels.dtype == np.uint8 and pixels.shape[1:] == (PIXELS,)):
        found = f"{pixels.dtype} {pixels.shape}" if isinstance(pixels, np.ndarray) else type(pixels).__name__
        raise DataError(f"{where}: expected a dict whose b'data' is uint8 pixels of shape (n, {PIXELS}), got {found}")
    return pixels


def _require_every_batch(batches: dict[str, np.ndarray], where: Path) -> dict[str, np.ndarray]:
    missing = [name for name in (*TRAIN_BATCHES, TEST_BATCH) if name not in batches]
    if missing:
        raise DataError(
            f"{where}: no {', '.join(missing)} in it, so it is not (all of) CIFAR-10's python version; "
            f"delete it and download {URL} again"
        )
    return batches


def _images(rows: np.ndarray) -> torch.Tensor:
    """Batch rows, uint8 ``(n, 3072)``, as ``(n, 3, 32, 32)`` images."""
    return torch.from_numpy(np.ascontiguousarray(rows)).reshape(-1, *IMAGE_SHAPE)
