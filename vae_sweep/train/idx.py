"""MNIST-family IDX image files: read and checked against their header (a truncated download
fails here, not as a reshape error later), and downloaded once into a folder with their published
SHA-256 (``downloads.fetch_file``).
"""

from __future__ import annotations

import gzip
import struct
import zlib
from http.client import HTTPException
from pathlib import Path

import numpy as np
import torch

from vae_sweep.errors import DataError
from vae_sweep.train.downloads import check_sha256, fetch_file

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


def read_idx_images(path: Path, expected_sha256: str | None = None) -> torch.Tensor:
    """Read an IDX image file (gz or plain) into a uint8 ``(n, rows, cols)`` tensor.

    The header is checked against the payload so a truncated download fails here with
    a clear message instead of as a reshape error (or silently short data) later.
    """
    raw = Path(path).read_bytes()
    check_sha256(path, raw, expected_sha256)
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


def ensure_idx_files(folder: Path, name: str, download: bool, verify_checksum: bool) -> None:
    """Download the missing IDX files of data set ``name`` into ``folder``, or say how to get them."""
    missing = [file for file in IDX_FILES if not (folder / file).is_file()]
    if not missing:
        return
    reason = "data.download=false"
    if download:
        try:
            for file in missing:
                expected = CHECKSUMS[name][file] if verify_checksum else None
                fetch_file(MIRRORS[name] + file, folder / file, expected)
            return
        except (OSError, HTTPException) as error:  # URLError, timeouts, cut connections, a read-only folder
            reason = f"download failed: {error}"
            missing = [file for file in IDX_FILES if not (folder / file).is_file()]
    raise DataError(
        f"{name}: missing {', '.join(missing)} in {folder} ({reason}). "
        f"Download {' and '.join(MIRRORS[name] + file for file in missing)} and put them in {folder}"
    )
