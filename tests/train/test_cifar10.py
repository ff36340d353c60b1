"""data=cifar10: a miniature of the published archive, in its real layout, written by the tests."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import struct
import tarfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from vae_sweep.errors import ConfigError, DataError
from vae_sweep.train import Cifar10, cifar10
from vae_sweep.train.cifar10 import ARCHIVE, ARCHIVE_SHA256, EXTRACTED, TEST_BATCH, TRAIN_BATCHES, URL
from vae_sweep.train.config import parse_run_config
from vae_sweep.train.specs import parse_spec

CONF_DATA = Path(__file__).resolve().parents[2] / "conf" / "data"
PER_BATCH = 4  # training images in each of the five batches (the real ones hold 10,000)
N_TEST = 3


class Python2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 strings and names numpy 1's array function, byte for byte the way
    the published batches were written (Python 2, protocol 2), so they load as the real ones do."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_python2_str(self, obj: bytes) -> None:
        size = len(obj)
        opcode = pickle.SHORT_BINSTRING + bytes([size]) if size < 256 else pickle.BINSTRING + struct.pack("<i", size)
        self.write(opcode + obj)
        self.memoize(obj)

    dispatch[bytes] = save_python2_str


def python2_pickle(obj: object) -> bytes:
    buffer = io.BytesIO()
    Python2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def batch(pixels: np.ndarray, label: bytes) -> dict[bytes, object]:
    """A batch dict as in the archive: uint8 (n, 3072) rows, labels, file names."""
    n = len(pixels)
    return {
        b"batch_label": label,
        b"labels": [i % 10 for i in range(n)],
        b"data": pixels,
        b"filenames": [b"image_%d.png" % i for i in range(n)],
    }


def miniature() -> dict[str, np.ndarray]:
    """Seeded pixels for five small training batches and a test batch; row i of the training
    images starts with the value i, so each can be told apart."""
    rng = np.random.default_rng(0)
    rows = {name: rng.integers(0, 256, (PER_BATCH, 3072), dtype=np.uint8) for name in TRAIN_BATCHES}
    for i, name in enumerate(TRAIN_BATCHES):
        rows[name][:, 0] = np.arange(i * PER_BATCH, (i + 1) * PER_BATCH)
    rows[TEST_BATCH] = rng.integers(0, 256, (N_TEST, 3072), dtype=np.uint8)
    return rows


def batch_files(rows: dict[str, np.ndarray]) -> dict[str, bytes]:
    """The archive's files: the pickled batches plus the two others it holds (not read)."""
    files = {name: python2_pickle(batch(pixels, name.encode())) for name, pixels in rows.items()}
    return {**files, "batches.meta": python2_pickle({b"label_names": [b"airplane"]}), "readme.html": b"<html>"}


def write_archive(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(folder / ARCHIVE, "w:gz") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(f"{EXTRACTED}/{name}")
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return folder / ARCHIVE


def write_extracted(folder: Path, files: dict[str, bytes]) -> Path:
    (folder / EXTRACTED).mkdir(parents=True)
    for name, content in files.items():
        (folder / EXTRACTED / name).write_bytes(content)
    return folder / EXTRACTED


def as_images(rows: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rows).reshape(-1, 3, 32, 32)


def training_rows(rows: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([rows[name] for name in TRAIN_BATCHES])


def row_set(images: torch.Tensor) -> set[bytes]:
    return {bytes(image) for image in (images * 255).round().to(torch.uint8).flatten(1).numpy()}


def unchecked(folder: Path, **fields: object) -> Cifar10:
    """The spec for a miniature (whose SHA-256 is not the published one), never downloading."""
    return Cifar10(root=str(folder), download=False, verify_checksum=False, **{"val_size": 5, **fields})


# --- reading -------------------------------------------------------------------------------------


def test_archive_loads_as_rgb_images_with_its_test_batch(tmp_path: Path) -> None:
    rows = miniature()
    write_archive(tmp_path, batch_files(rows))
    splits = unchecked(tmp_path).load()
    assert (len(splits.train), len(splits.val), len(splits.test)) == (15, 5, 3)
    for x in (splits.train, splits.val, splits.test):
        assert x.dtype == torch.float32 and x.shape[1:] == (3, 32, 32)
        assert x.min() >= 0.0 and x.max() <= 1.0
    # Each row is the red, green and blue 32x32 planes, row-major; the test batch keeps its order.
    assert torch.equal((splits.test * 255).round().to(torch.uint8), as_images(rows[TEST_BATCH]))
    assert torch.equal(splits.test[0, 1, 0, 0] * 255, torch.tensor(float(rows[TEST_BATCH][0, 1024])))
    pooled = torch.cat([splits.train, splits.val])
    assert row_set(pooled) == row_set(as_images(training_rows(rows)).float() / 255)  # train + val: all 20


def test_extracted_folder_gives_the_same_splits_as_the_archive(tmp_path: Path) -> None:
    files = batch_files(miniature())
    write_archive(tmp_path / "packed", files)
    write_extracted(tmp_path / "unpacked", files)
    packed, unpacked = unchecked(tmp_path / "packed").load(), unchecked(tmp_path / "unpacked").load()
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(packed, split), getattr(unpacked, split))


def test_validation_split_is_seeded(tmp_path: Path) -> None:
    write_archive(tmp_path, batch_files(miniature()))
    spec = unchecked(tmp_path, split_seed=3)
    first, again, other = spec.load(), spec.load(), replace(spec, split_seed=4).load()
    assert torch.equal(first.val, again.val) and torch.equal(first.train, again.train)
    assert not torch.equal(first.val, other.val)
    assert torch.equal(first.test, other.test)  # the published test batch, whatever the seed


def test_limit_uses_the_first_training_images_across_batches(tmp_path: Path) -> None:
    rows = miniature()
    write_archive(tmp_path, batch_files(rows))
    splits = unchecked(tmp_path, val_size=2, limit=6).load()  # batch 1 and half of batch 2
    assert (len(splits.train), len(splits.val)) == (4, 2)
    first_six = as_images(training_rows(rows)[:6]).float() / 255
    assert row_set(torch.cat([splits.train, splits.val])) == row_set(first_six)


def test_a_batch_repickled_by_python_3_loads_too(tmp_path: Path) -> None:
    """Python 3 writes bytes at protocol 2 through ``_codecs.encode``, which is allowed."""
    rows = miniature()
    files = {name: pickle.dumps(batch(pixels, name.encode()), protocol=2) for name, pixels in rows.items()}
    write_extracted(tmp_path, files)
    splits = unchecked(tmp_path).load()
    assert torch.equal((splits.test * 255).round().to(torch.uint8), as_images(rows[TEST_BATCH]))


def test_option_file_parses_to_the_class_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAE_SWEEP_DATA", str(tmp_path))
    spec = parse_spec(OmegaConf.load(CONF_DATA / "cifar10.yaml"), "data")
    assert spec == Cifar10(root=f"{tmp_path}/cifar10")
    assert Cifar10().folder == tmp_path.resolve() / "cifar10"  # root=None: the same rule


def test_composed_config_reads_the_archive(tmp_path: Path, compose_config: Callable) -> None:
    write_archive(tmp_path, batch_files(miniature()))
    config = parse_run_config(
        compose_config(
            "data=cifar10", f"data.root={tmp_path}", "data.verify_checksum=false", "data.val_size=4", "tracking=none"
        )
    )
    assert config.data == Cifar10(root=str(tmp_path), verify_checksum=False, val_size=4)
    config.data.check()
    assert config.data.load().image_shape == (3, 32, 32)


# --- checksums and downloads ---------------------------------------------------------------------


def test_archive_is_checked_against_the_published_sha256(tmp_path: Path) -> None:
    archive = write_archive(tmp_path, batch_files(miniature()))
    with pytest.raises(DataError) as info:
        Cifar10(root=str(tmp_path), download=False, val_size=5).check()
    message = str(info.value)
    assert str(archive) in message and ARCHIVE_SHA256 in message
    assert hashlib.sha256(archive.read_bytes()).hexdigest() in message
    assert "data.verify_checksum=false" in message


def test_missing_data_without_download_names_the_url_and_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        Cifar10(root=str(tmp_path / "cache"), download=False).check()
    message = str(info.value)
    assert "(data.download=false)" in message and URL in message
    assert str((tmp_path / "cache").resolve()) in message and EXTRACTED in message


def test_download_fetches_the_archive_into_place_and_checks_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = write_archive(tmp_path / "mirror", batch_files(miniature()))
    monkeypatch.setattr(cifar10, "URL", mirror.as_uri())
    monkeypatch.setattr(cifar10, "ARCHIVE_SHA256", hashlib.sha256(mirror.read_bytes()).hexdigest())
    folder = tmp_path / "cache"
    splits = Cifar10(root=str(folder), val_size=5).load()
    assert len(splits.train) == 15
    assert [path.name for path in folder.iterdir()] == [ARCHIVE]
    assert (folder / ARCHIVE).read_bytes() == mirror.read_bytes()


def test_download_failing_its_checksum_is_discarded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = write_archive(tmp_path / "mirror", batch_files(miniature()))
    monkeypatch.setattr(cifar10, "URL", mirror.as_uri())
    folder = tmp_path / "cache"
    with pytest.raises(DataError, match=f"SHA-256 mismatch: expected {ARCHIVE_SHA256}"):
        Cifar10(root=str(folder), val_size=5).check()
    assert list(folder.iterdir()) == []


def test_failed_download_is_clear_and_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cifar10, "URL", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    folder = tmp_path / "cache"
    with pytest.raises(DataError, match="download failed") as info:
        Cifar10(root=str(folder)).check()
    assert "Download http://127.0.0.1:9/cifar-10-python.tar.gz and put it in" in str(info.value)
    assert list(folder.iterdir()) == []


# --- refusals ------------------------------------------------------------------------------------


class RunsACommand:
    """What a malicious pickle holds: unpickling it calls ``os.system``."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple:
        return (os.system, (self.command,))


@pytest.mark.parametrize("layout", ["archive", "extracted"])
def test_a_pickle_that_runs_code_is_refused_naming_the_file(tmp_path: Path, layout: str) -> None:
    marker = tmp_path / "ran"
    files = batch_files(miniature())
    files["data_batch_3"] = pickle.dumps({b"data": RunsACommand(f"touch {marker}")}, protocol=2)
    if layout == "archive":
        where = f"{write_archive(tmp_path / 'data', files)}:{EXTRACTED}/data_batch_3"
    else:
        where = str(write_extracted(tmp_path / "data", files) / "data_batch_3")
    with pytest.raises(DataError) as info:
        unchecked(tmp_path / "data").check()
    assert str(info.value).startswith(f"{where}: refused to unpickle {os.system.__module__}.system")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "shown"),
    [
        (python2_pickle(batch(np.zeros((2, 3072), np.uint8), b"x"))[:-40], "not a readable CIFAR-10 batch"),
        (python2_pickle({b"labels": [1]}), r"expected a dict whose b'data' is uint8 pixels .* got NoneType"),
        (python2_pickle({b"data": np.zeros((2, 1024), np.uint8)}), r"of shape \(n, 3072\), got uint8 \(2, 1024\)"),
        (python2_pickle([1, 2]), "expected a dict"),
    ],
)
def test_a_batch_that_is_not_one_is_refused_naming_it(tmp_path: Path, content: bytes, shown: str) -> None:
    files = batch_files(miniature())
    files[TEST_BATCH] = content
    folder = write_extracted(tmp_path, files)
    with pytest.raises(DataError, match=shown) as info:
        unchecked(tmp_path).check()
    assert str(info.value).startswith(str(folder / TEST_BATCH))


def test_a_missing_batch_is_named(tmp_path: Path) -> None:
    files = batch_files(miniature())
    del files["data_batch_5"]
    archive = write_archive(tmp_path, files)
    with pytest.raises(DataError, match=r"no data_batch_5 in it") as info:
        unchecked(tmp_path).check()
    assert str(info.value).startswith(str(archive))


def test_an_archive_that_is_not_a_tar_gz_is_refused(tmp_path: Path) -> None:
    (tmp_path / ARCHIVE).write_bytes(b"<html>503 Service Unavailable</html>")
    with pytest.raises(DataError, match=r"not a readable tar\.gz archive \(.*\); delete it and download it again"):
        unchecked(tmp_path).check()


def test_val_size_must_leave_training_images(tmp_path: Path) -> None:
    write_archive(tmp_path, batch_files(miniature()))
    with pytest.raises(DataError, match=r"data.val_size=20 must be smaller than the 20 training images"):
        unchecked(tmp_path, val_size=20).check()


@pytest.mark.parametrize(
    ("values", "key"),
    [({"val_size": 0}, "data.val_size"), ({"val_size": 50000}, "data.val_size"), ({"limit": 5000}, "data.limit")],
)
def test_bad_values_name_their_key(values: dict, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_spec({"_target_": "vae_sweep.train.cifar10.Cifar10", **values}, "data")
    assert str(info.value).startswith(key + ":")
