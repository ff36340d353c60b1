from __future__ import annotations

import gzip
import hashlib
import struct
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy
import pytest
import torch
from omegaconf import OmegaConf
from sklearn.datasets import load_digits

from vae_sweep.errors import ConfigError, DataError
from vae_sweep.train import data, idx
from vae_sweep.train.data import (
    IDX_TEST_FILE,
    IDX_TRAIN_FILE,
    Binarize,
    DataSplits,
    Digits,
    IdxImages,
    Synthetic,
    read_idx_images,
)
from vae_sweep.train.specs import parse_spec

CONF_DATA = Path(__file__).resolve().parents[2] / "conf" / "data"


def write_idx(path: Path, images: torch.Tensor, magic: int = 0x00000803, drop_bytes: int = 0) -> Path:
    """Write uint8 ``(n, rows, cols)`` images as a gz IDX file, optionally with a wrong magic or cut short."""
    n, rows, cols = images.shape
    payload = struct.pack(">IIII", magic, n, rows, cols) + images.numpy().tobytes()
    path.write_bytes(gzip.compress(payload[: len(payload) - drop_bytes]))
    return path


def random_images(n: int, side: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, side, side), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def rows_as_set(x: torch.Tensor) -> set[tuple[float, ...]]:
    return {tuple(row.tolist()) for row in x.flatten(1)}


# --- digits -------------------------------------------------------------------------------


def test_digits_split_sizes_shapes_and_range() -> None:
    splits = Digits().load()
    assert (len(splits.train), len(splits.val), len(splits.test)) == (1259, 179, 359)
    assert splits.image_shape == (1, 8, 8) and splits.sample_shape == (1, 8, 8)
    assert splits.input_dim == 64
    for x in (splits.train, splits.val, splits.test):
        assert x.dtype == torch.float32
        assert x.shape[1:] == (1, 8, 8)
        assert x.min() >= 0.0 and x.max() <= 1.0
    assert splits.train.max() == 1.0  # scaled by 16, not by 255


def test_digits_splits_partition_the_data_set() -> None:
    splits = Digits().load()
    pooled = Counter(map(tuple, torch.cat([splits.train, splits.val, splits.test]).flatten(1).tolist()))
    original = Counter(map(tuple, (torch.as_tensor(load_digits().data, dtype=torch.float32) / 16).tolist()))
    assert pooled == original  # every image in exactly one split (as a multiset: digits has duplicates)


def test_digits_pixels_are_scikit_learns_in_its_order_without_importing_it() -> None:
    """The bundled file read directly equals ``load_digits().data`` row by row, so splits made
    before and after the change are the same; and reading it imports no scikit-learn."""
    assert numpy.array_equal(data.digits_pixels(), load_digits().data)
    script = "import sys; from vae_sweep.train.data import Digits; Digits().load(); print('sklearn' in sys.modules)"
    imported = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert imported.strip() == "False"


def test_digits_pixels_ask_scikit_learn_when_its_file_is_not_where_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data.importlib.util, "find_spec", lambda name: None)
    assert numpy.array_equal(data.digits_pixels(), load_digits().data)


def test_digits_split_is_deterministic_per_seed() -> None:
    a, b = Digits(split_seed=3).load(), Digits(split_seed=3).load()
    other = Digits(split_seed=4).load()
    assert torch.equal(a.train, b.train) and torch.equal(a.val, b.val) and torch.equal(a.test, b.test)
    assert not torch.equal(a.val, other.val)


def test_static_binarization_is_zero_one_and_deterministic() -> None:
    a = Digits(binarize=Binarize.static, split_seed=1).load()
    b = Digits(binarize=Binarize.static, split_seed=1).load()
    for x, y in ((a.train, b.train), (a.val, b.val), (a.test, b.test)):
        assert set(x.unique().tolist()) == {0.0, 1.0}
        assert torch.equal(x, y)
    generator = torch.Generator().manual_seed(0)
    assert torch.equal(a.train_epoch(generator), a.train_epoch(generator))


def test_dynamic_binarization_resamples_train_but_fixes_val_and_test() -> None:
    splits = Digits(binarize=Binarize.dynamic).load()
    assert set(splits.train.unique().tolist()) - {0.0, 1.0}, "train stays grayscale"
    generator = torch.Generator().manual_seed(0)
    first, second = splits.train_epoch(generator), splits.train_epoch(generator)
    assert set(first.unique().tolist()) == {0.0, 1.0}
    assert not torch.equal(first, second)
    for x in (splits.val, splits.test):
        assert set(x.unique().tolist()) == {0.0, 1.0}
    again = Digits(binarize=Binarize.dynamic).load()
    assert torch.equal(splits.val, again.val) and torch.equal(splits.test, again.test)


def test_no_binarization_returns_train_as_is() -> None:
    splits = Digits().load()
    assert splits.train_epoch(torch.Generator()) is splits.train


# --- kept between runs ----------------------------------------------------------------------


def counting_loads(monkeypatch: pytest.MonkeyPatch) -> list[Synthetic]:
    loads: list[Synthetic] = []
    original = Synthetic.load

    def load(spec: Synthetic) -> DataSplits:
        loads.append(spec)
        return original(spec)

    monkeypatch.setattr(Synthetic, "load", load)
    return loads


def test_a_kept_data_set_is_loaded_once_for_runs_that_ask_for_the_same_one(monkeypatch: pytest.MonkeyPatch) -> None:
    loads = counting_loads(monkeypatch)
    kept = data.KeptData()
    small, other = Synthetic(n_samples=50, side=4), Synthetic(n_samples=50, side=4, split_seed=1)
    assert kept.load(small) is not kept.load(small) and len(loads) == 2  # not kept before keep()
    kept.keep()
    first = kept.load(small)
    assert kept.load(Synthetic(n_samples=50, side=4)) is first and len(loads) == 3  # equal specs: kept
    assert not torch.equal(kept.load(other).val, first.val) and len(loads) == 4  # one field differs
    assert kept.load(small) is not first and len(loads) == 5  # only the last one is kept
    kept.stop()
    assert kept.load(small) is not kept.load(small) and len(loads) == 7


def test_a_sweeps_worker_loads_its_data_set_once_for_all_its_trials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from helpers.in_process import vae_train

    loads = counting_loads(monkeypatch)
    outcome = vae_train(
        tmp_path,
        [
            "-m",
            "study=quick",
            "debug=tiny",
            "tracking=none",
            "hydra.sweeper.n_trials=3",
            "hydra.sweeper.pruner.name=none",
            f"hydra.sweeper.storage=sqlite:///{tmp_path}/optuna.db",
        ],
        capsys,
    )
    assert outcome.code == 0, outcome.err[-2000:]
    assert "3 COMPLETE" in outcome.out
    assert len(loads) == 1  # one worker, in this process (n_jobs=1), three trials
    assert not data.KEPT.keeping  # and a run after it loads afresh, as a new process would


# --- IDX reader ----------------------------------------------------------------------------


def test_read_idx_round_trips_gz_and_plain(tmp_path: Path) -> None:
    images = random_images(5, side=3)
    path = write_idx(tmp_path / "images.gz", images)
    loaded = read_idx_images(path, hashlib.sha256(path.read_bytes()).hexdigest())
    assert loaded.dtype == torch.uint8
    assert torch.equal(loaded, images)
    plain = tmp_path / "images"
    plain.write_bytes(gzip.decompress(path.read_bytes()))
    assert torch.equal(read_idx_images(plain), images)


def test_read_idx_rejects_wrong_magic(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "labels.gz", random_images(2), magic=0x00000801)
    with pytest.raises(DataError, match=r"magic number 0x00000801, expected 0x00000803"):
        read_idx_images(path)


def test_read_idx_rejects_truncated_payload(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "short.gz", random_images(3, side=4), drop_bytes=5)
    with pytest.raises(DataError, match=r"3 x 4 x 4 = 48 bytes of pixels, but the file holds 43"):
        read_idx_images(path)


def test_read_idx_rejects_cut_gzip_stream(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "cut.gz", random_images(3))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match="not a readable gzip file"):
        read_idx_images(path)


def test_read_idx_checksum_mismatch_names_file_hashes_and_switch(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "images.gz", random_images(2))
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(DataError) as info:
        read_idx_images(path, "0" * 64)
    message = str(info.value)
    assert str(path) in message and "0" * 64 in message and actual in message
    assert "data.verify_checksum=false" in message


# --- IdxImages -----------------------------------------------------------------------------


def write_idx_folder(root: Path, n_train: int = 30, n_test: int = 7, side: int = 4) -> torch.Tensor:
    root.mkdir(parents=True, exist_ok=True)
    train = random_images(n_train, side, seed=1)
    write_idx(root / IDX_TRAIN_FILE, train)
    write_idx(root / IDX_TEST_FILE, random_images(n_test, side, seed=2))
    return train


def test_idx_images_loads_splits_from_files(tmp_path: Path) -> None:
    train_images = write_idx_folder(tmp_path)
    spec = IdxImages(root=str(tmp_path), download=False, verify_checksum=False, val_size=10)
    splits = spec.load()
    assert (len(splits.train), len(splits.val), len(splits.test)) == (20, 10, 7)
    assert splits.image_shape == (1, 4, 4) and splits.input_dim == 16
    assert splits.train.dtype == torch.float32
    pooled = torch.cat([splits.train, splits.val]) * 255
    assert rows_as_set(pooled.round()) == rows_as_set(train_images.reshape(30, -1).float())
    assert torch.equal(splits.val, spec.load().val)
    assert not torch.equal(splits.val, replace(spec, split_seed=1).load().val)


def test_idx_images_limit_uses_first_training_images(tmp_path: Path) -> None:
    train_images = write_idx_folder(tmp_path)
    splits = IdxImages(root=str(tmp_path), download=False, verify_checksum=False, val_size=4, limit=12).load()
    assert len(splits.train) + len(splits.val) == 12
    pooled = (torch.cat([splits.train, splits.val]) * 255).round()
    assert rows_as_set(pooled) == rows_as_set(train_images[:12].reshape(12, -1).float())


def test_idx_images_checks_published_checksum_by_default(tmp_path: Path) -> None:
    write_idx_folder(tmp_path)
    with pytest.raises(DataError, match=r"data\.verify_checksum=false") as info:
        IdxImages(root=str(tmp_path), download=False, val_size=10).load()
    assert idx.CHECKSUMS["mnist"][IDX_TRAIN_FILE] in str(info.value)


def test_idx_images_val_size_too_large_is_clear(tmp_path: Path) -> None:
    write_idx_folder(tmp_path)
    with pytest.raises(DataError, match=r"data.val_size=30 must be smaller than the 30 training images"):
        IdxImages(root=str(tmp_path), download=False, verify_checksum=False, val_size=30).load()


def test_missing_files_without_download_name_file_folder_and_url(tmp_path: Path) -> None:
    folder = tmp_path / "fmnist"
    folder.mkdir()
    write_idx(folder / IDX_TRAIN_FILE, random_images(20))
    with pytest.raises(DataError) as info:
        IdxImages(name="fashion_mnist", root=str(folder), download=False, val_size=5).load()
    message = str(info.value)
    assert IDX_TEST_FILE in message and IDX_TRAIN_FILE not in message
    assert str(folder.resolve()) in message
    assert idx.MIRRORS["fashion_mnist"] + IDX_TEST_FILE in message


def test_failed_download_is_clear_and_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(idx.MIRRORS, "mnist", "http://127.0.0.1:9/")
    folder = tmp_path / "mnist"
    with pytest.raises(DataError, match="download failed") as info:
        IdxImages(root=str(folder), download=True, val_size=5).load()
    message = str(info.value)
    assert IDX_TRAIN_FILE in message and IDX_TEST_FILE in message
    assert str(folder.resolve()) in message and f"http://127.0.0.1:9/{IDX_TRAIN_FILE}" in message
    assert list(folder.iterdir()) == []


def test_partial_download_keeps_good_file_and_names_only_the_missing_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    write_idx(mirror / IDX_TRAIN_FILE, random_images(20))
    monkeypatch.setitem(idx.MIRRORS, "mnist", mirror.as_uri() + "/")
    folder = tmp_path / "cache"
    with pytest.raises(DataError, match="download failed") as info:
        IdxImages(root=str(folder), verify_checksum=False, val_size=5).load()
    assert f"missing {IDX_TEST_FILE} in" in str(info.value)
    assert [p.name for p in folder.iterdir()] == [IDX_TRAIN_FILE]


def test_download_with_wrong_checksum_is_discarded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = tmp_path / "mirror"
    write_idx_folder(mirror)
    monkeypatch.setitem(idx.MIRRORS, "mnist", mirror.as_uri() + "/")
    folder = tmp_path / "cache"
    with pytest.raises(DataError, match="SHA-256 mismatch") as info:
        IdxImages(root=str(folder), val_size=5).load()
    assert idx.CHECKSUMS["mnist"][IDX_TRAIN_FILE] in str(info.value)
    assert list(folder.iterdir()) == []


def test_download_moves_files_into_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = tmp_path / "mirror"
    write_idx_folder(mirror)
    monkeypatch.setitem(idx.MIRRORS, "mnist", mirror.as_uri() + "/")
    folder = tmp_path / "cache"
    splits = IdxImages(root=str(folder), verify_checksum=False, val_size=5).load()
    assert len(splits.train) == 25
    assert sorted(p.name for p in folder.iterdir()) == sorted([IDX_TRAIN_FILE, IDX_TEST_FILE])
    assert (folder / IDX_TRAIN_FILE).read_bytes() == (mirror / IDX_TRAIN_FILE).read_bytes()


def test_root_defaults_to_data_env_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAE_SWEEP_DATA", str(tmp_path))
    assert IdxImages(name="fashion_mnist").folder == tmp_path.resolve() / "fashion_mnist"


# --- synthetic -----------------------------------------------------------------------------


def test_synthetic_shape_range_and_determinism() -> None:
    spec = Synthetic(n_samples=500, side=6, latent_factors=3, split_seed=2)
    splits = spec.load()
    assert (len(splits.train), len(splits.val), len(splits.test)) == (350, 50, 100)
    assert splits.image_shape == (1, 6, 6) and splits.input_dim == 36
    for x in (splits.train, splits.val, splits.test):
        assert x.dtype == torch.float32 and x.min() >= 0.0 and x.max() <= 1.0
    assert splits.train.std() > 0.1  # not a constant image
    assert torch.equal(splits.train, spec.load().train)
    assert not torch.equal(splits.train, Synthetic(n_samples=500, side=6, latent_factors=3, split_seed=3).load().train)


def test_synthetic_is_low_rank() -> None:
    splits = Synthetic(n_samples=400, side=8, latent_factors=5).load()
    logits = torch.logit(splits.train.flatten(1).double())
    singular = torch.linalg.svdvals(logits - logits.mean(0))
    assert singular[5] < 1e-2 * singular[4]  # 5 factors, up to float32 rounding of the pixels


def test_synthetic_full_mnist_size_is_fast() -> None:
    splits = Synthetic(n_samples=60000).load()
    assert splits.train.shape == (42000, 1, 28, 28)


# --- spec validation and option files ------------------------------------------------------


def test_bad_fraction_names_full_key() -> None:
    with pytest.raises(ConfigError) as info:
        parse_spec({"_target_": "vae_sweep.train.data.Digits", "name": "digits", "val_fraction": 1.5}, "data")
    assert str(info.value).startswith("data.val_fraction")
    assert "1.5" in str(info.value)


def test_fractions_must_leave_training_data() -> None:
    with pytest.raises(ConfigError, match=r"0\.6 \+ 0\.5") as info:
        parse_spec({"_target_": "vae_sweep.train.data.Synthetic", "val_fraction": 0.6, "test_fraction": 0.5}, "data")
    assert str(info.value).startswith("data.test_fraction")


def test_unknown_binarize_names_full_key() -> None:
    with pytest.raises(ConfigError) as info:
        parse_spec({"_target_": "vae_sweep.train.data.Digits", "name": "digits", "binarize": "sometimes"}, "data")
    assert str(info.value).startswith("data.binarize")


@pytest.mark.parametrize(
    ("node", "key"),
    [
        ({"_target_": "vae_sweep.train.data.IdxImages", "name": "cifar"}, "data.name"),
        ({"_target_": "vae_sweep.train.data.IdxImages", "val_size": 0}, "data.val_size"),
        ({"_target_": "vae_sweep.train.data.IdxImages", "val_size": 100, "limit": 100}, "data.limit"),
        ({"_target_": "vae_sweep.train.data.Synthetic", "side": 1}, "data.side"),
        ({"_target_": "vae_sweep.train.data.Digits", "split_seed": -1}, "data.split_seed"),
    ],
)
def test_range_checks_name_their_key(node: dict, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_spec(node, "data")
    assert str(info.value).startswith(key + ":")


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("digits", Digits()),
        ("synthetic", Synthetic()),
        ("mnist", IdxImages(name="mnist", root="{data}/mnist")),
        ("fashion_mnist", IdxImages(name="fashion_mnist", root="{data}/fashion_mnist")),
    ],
)
def test_option_files_parse_to_the_class_defaults(
    option: str, expected: data.DataSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VAE_SWEEP_DATA", str(tmp_path))
    spec = parse_spec(OmegaConf.load(CONF_DATA / f"{option}.yaml"), "data")
    if isinstance(expected, IdxImages):
        expected = replace(expected, root=expected.root.format(data=tmp_path))
    assert spec == expected


# --- the data contract ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("train", "message"),
    [
        (torch.full((4, 1, 3, 3), 255.0), "train split has values in [255, 255], expected [0, 1]"),
        (torch.zeros(4, 1, 3, 3, dtype=torch.float64), "train split is torch.float64, expected torch.float32"),
        (torch.zeros(4, 1, 3, 4), "val split has shape (2, 1, 3, 3), expected (n >= 1, 1, 3, 4)"),  # train decides
        (torch.zeros(4, 3, 3), "samples have shape (3, 3); expected (channels, height, width) images or (d,) vectors"),
    ],
    ids=["pixels-0-255", "float64", "another-shape", "no-channel"],
)
def test_splits_that_break_the_data_contract_are_refused_in_one_line(train, message) -> None:
    good = torch.zeros(2, 1, 3, 3)
    with pytest.raises(DataError) as refused:
        DataSplits(train, good if train.dim() == 4 else torch.zeros(2, 3, 3), good, Binarize.none)
    assert str(refused.value) == message


def test_vectors_are_data_too_without_pictures() -> None:
    vectors = torch.rand(5, 7)
    splits = DataSplits(vectors, vectors[:2], vectors[:2], Binarize.none)
    assert splits.sample_shape == (7,) and splits.image_shape is None and splits.input_dim == 7
