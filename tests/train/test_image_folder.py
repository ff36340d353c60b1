"""data=image_folder: a folder of PNG / JPEG pictures the tests draw themselves."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from vae_sweep.errors import ConfigError, DataError
from vae_sweep.train import ImageFolder
from vae_sweep.train.config import parse_run_config
from vae_sweep.train.data import Binarize
from vae_sweep.train.image_folder import ColorMode, image_files
from vae_sweep.train.loop import train
from vae_sweep.train.specs import parse_spec

CONF_DATA = Path(__file__).resolve().parents[2] / "conf" / "data"


def colour(index: int) -> tuple[int, int, int]:
    """A distinct RGB colour per index, so each picture can be told apart after the split."""
    return (index * 7 % 256, index * 13 % 256, 255 - index * 5 % 256)


def draw_solid(folder: Path, count: int, size: tuple[int, int] = (12, 9)) -> list[tuple[int, int, int]]:
    """``count`` solid-colour PNGs ``00.png``, ``01.png``, ... (``size`` is Pillow's width, height)."""
    folder.mkdir(parents=True, exist_ok=True)
    colours = [colour(i) for i in range(count)]
    for i, rgb in enumerate(colours):
        Image.new("RGB", size, rgb).save(folder / f"{i:02d}.png")
    return colours


def solid_colours(images: torch.Tensor) -> Counter:
    """Each solid image's colour in 0..255 (asserting it is solid), counted."""
    pixels = (images * 255).round().to(torch.int64)
    first = pixels[:, :, :1, :1]
    assert torch.equal(pixels, first.expand_as(pixels)), "a solid picture came back with more than one colour"
    return Counter(tuple(image.flatten().tolist()) for image in first)


def all_splits(spec: ImageFolder) -> torch.Tensor:
    splits = spec.load()
    return torch.cat([splits.train, splits.val, splits.test])


# --- what comes back -------------------------------------------------------------------------


def test_rgb_pictures_keep_their_colours_at_the_requested_size(tmp_path: Path) -> None:
    colours = draw_solid(tmp_path, 10)
    splits = ImageFolder(root=str(tmp_path)).load()
    assert (len(splits.train), len(splits.val), len(splits.test)) == (7, 1, 2)
    for x in (splits.train, splits.val, splits.test):
        assert x.dtype == torch.float32 and x.shape[1:] == (3, 32, 32)
        assert x.min() >= 0.0 and x.max() <= 1.0
    assert solid_colours(torch.cat([splits.train, splits.val, splits.test])) == Counter(colours)


def test_gray_mode_gives_one_channel_of_pillows_luma(tmp_path: Path) -> None:
    colours = draw_solid(tmp_path, 10)
    images = all_splits(ImageFolder(root=str(tmp_path), mode=ColorMode.gray, size=[4, 5]))
    assert images.shape[1:] == (1, 4, 5)
    luma = Counter((round((299 * r + 587 * g + 114 * b) / 1000),) for r, g, b in colours)  # ITU-R 601-2, as "L"
    assert solid_colours(images) == luma


def test_size_is_height_then_width(tmp_path: Path) -> None:
    """A picture 20 wide and 40 high, white on top: resized to [4, 6], the top half stays white
    (bilinear blurs the rows next to the edge, and nothing across the columns)."""
    top_white = np.zeros((40, 20), dtype=np.uint8)
    top_white[:20] = 255
    for i in range(3):
        Image.fromarray(top_white).save(tmp_path / f"{i}.png")
    images = all_splits(ImageFolder(root=str(tmp_path), mode=ColorMode.gray, size=[4, 6]))
    assert images.shape == (3, 1, 4, 6)
    assert torch.equal(images, images[:, :, :, :1].expand_as(images))  # every row one shade
    rows = images[0, 0, :, 0].tolist()
    assert rows[0] == 1.0 and rows[1] > 0.5 > rows[2] and rows[3] == 0.0


def test_jpeg_and_palette_pictures_are_read_too(tmp_path: Path) -> None:
    Image.new("RGB", (8, 8), (200, 40, 90)).save(tmp_path / "a.JPG", quality=95)
    Image.new("RGB", (8, 8), (10, 250, 30)).convert("P").save(tmp_path / "b.png")
    Image.new("RGBA", (8, 8), (60, 70, 80, 128)).save(tmp_path / "c.png")
    images = (all_splits(ImageFolder(root=str(tmp_path), size=[8, 8])) * 255).round()
    means = sorted(tuple(image.mean(dim=(1, 2)).tolist()) for image in images)
    expected = sorted([(200, 40, 90), (10, 250, 30), (60, 70, 80)])  # RGBA: the alpha channel is dropped
    assert np.allclose(means, expected, atol=3)  # JPEG is lossy; PNG exact


# --- which files, in which order -----------------------------------------------------------------


def test_files_are_found_recursively_case_insensitively_in_path_order(tmp_path: Path) -> None:
    for name in ("b/X.PNG", "a.JPG", "a/z.jpeg", "a/y.png", ".hidden/h.png", "a/._y.png", "notes.txt", "c.gif"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "folder.png").mkdir()
    found = [path.relative_to(tmp_path).as_posix() for path in image_files(tmp_path)]
    assert found == ["a.JPG", "a/y.png", "a/z.jpeg", "b/X.PNG"]  # "." sorts before "/"; hidden ones skipped


def test_split_partitions_the_pictures_and_is_seeded(tmp_path: Path) -> None:
    colours = draw_solid(tmp_path, 20)
    spec = ImageFolder(root=str(tmp_path), size=[2, 2], split_seed=5)
    splits = spec.load()
    parts = [solid_colours(x) for x in (splits.train, splits.val, splits.test)]
    assert [sum(part.values()) for part in parts] == [14, 2, 4]
    assert sum(parts, Counter()) == Counter(colours)  # every picture in exactly one split
    again = spec.load()
    assert torch.equal(splits.val, again.val) and torch.equal(splits.test, again.test)
    other = replace(spec, split_seed=6).load()
    assert not torch.equal(torch.cat([splits.val, splits.test]), torch.cat([other.val, other.test]))


def test_limit_keeps_the_first_files_in_sorted_order(tmp_path: Path) -> None:
    colours = draw_solid(tmp_path, 12)
    images = all_splits(ImageFolder(root=str(tmp_path), size=[2, 2], limit=5))
    assert solid_colours(images) == Counter(colours[:5])


def test_binarize_applies_as_in_other_data_sets(tmp_path: Path) -> None:
    draw_solid(tmp_path, 10)
    splits = ImageFolder(root=str(tmp_path), size=[4, 4], binarize=Binarize.static).load()
    assert set(torch.cat([splits.train, splits.val, splits.test]).unique().tolist()) <= {0.0, 1.0}


# --- refusals ----------------------------------------------------------------------------------


def test_missing_folder_is_refused_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data\.root=.*missing is not a folder; set data\.root"):
        ImageFolder(root=str(tmp_path / "missing")).check()


def test_folder_without_pictures_is_refused(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("no pictures here")
    with pytest.raises(DataError, match=r"holds no \.png, \.jpg or \.jpeg files \(subfolders searched too\)"):
        ImageFolder(root=str(tmp_path)).check()


def test_unreadable_picture_is_refused_by_check_naming_the_file(tmp_path: Path) -> None:
    draw_solid(tmp_path, 5)
    (tmp_path / "03.png").write_bytes(b"<html>not found</html>")
    for step in (ImageFolder(root=str(tmp_path)).check, ImageFolder(root=str(tmp_path)).load):
        with pytest.raises(DataError, match="not a readable image") as info:
            step()
        assert str(tmp_path / "03.png") in str(info.value)


def test_picture_cut_short_passes_the_header_check_and_fails_load_naming_it(tmp_path: Path) -> None:
    draw_solid(tmp_path, 4)
    noisy = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)  # incompressible pixels
    Image.fromarray(noisy).save(tmp_path / "cut.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "cut.png").read_bytes()[:600])
    spec = ImageFolder(root=str(tmp_path))
    spec.check()  # headers only: cheap on a folder of 50,000 pictures
    with pytest.raises(DataError, match="not a readable image") as info:
        spec.load()
    assert str(tmp_path / "cut.png") in str(info.value)


def test_sixteen_bit_picture_is_refused_rather_than_clipped(tmp_path: Path) -> None:
    draw_solid(tmp_path, 4)
    Image.fromarray(np.full((4, 4), 40000, dtype=np.uint16)).save(tmp_path / "deep.png")
    with pytest.raises(DataError, match=r"deep\.png: Pillow mode 'I;16' \(over 8 bits a channel\)"):
        ImageFolder(root=str(tmp_path)).check()


@pytest.mark.parametrize(("count", "limit"), [(2, None), (9, 5)])
def test_too_few_pictures_for_three_splits_are_refused(tmp_path: Path, count: int, limit: int | None) -> None:
    """Val takes int(0.85 n) and test at least one: 2 pictures, or the first 5 of 9, leave none to train on."""
    draw_solid(tmp_path, count)
    spec = ImageFolder(root=str(tmp_path), limit=limit, val_fraction=0.85, test_fraction=0.1)
    limited = "" if limit is None else f" (data.limit={limit})"
    for step in (spec.check, spec.load):
        with pytest.raises(DataError) as info:
            step()
        assert f"data.root={tmp_path.resolve()}: too few images{limited} for train, val and test splits" in str(
            info.value
        )
    if limit is not None:
        replace(spec, limit=None).check()  # all 9 are enough


# --- config --------------------------------------------------------------------------------------


def test_option_file_parses_to_the_class_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAE_SWEEP_DATA", str(tmp_path))
    spec = parse_spec(OmegaConf.load(CONF_DATA / "image_folder.yaml"), "data")
    assert spec == ImageFolder(root=f"{tmp_path}/images")


def test_root_expands_the_home_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert ImageFolder(root="~/pictures").folder == tmp_path.resolve() / "pictures"


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({}, "data.root"),
        ({"root": ""}, "data.root"),
        ({"root": "x", "mode": "cmyk"}, "data.mode"),
        ({"root": "x", "size": [32]}, "data.size"),
        ({"root": "x", "size": [0, 8]}, "data.size"),
        ({"root": "x", "size": 32}, "data.size"),
        ({"root": "x", "limit": 2}, "data.limit"),
        ({"root": "x", "val_fraction": 0.0}, "data.val_fraction"),
    ],
)
def test_bad_values_name_their_key(values: dict, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_spec({"_target_": "vae_sweep.train.image_folder.ImageFolder", **values}, "data")
    assert str(info.value).startswith(key + ":")


def test_composed_run_trains_a_conv_vae_on_the_folder(tmp_path: Path, compose_config: Callable) -> None:
    draw_solid(tmp_path, 20)
    config = parse_run_config(
        compose_config(
            "data=image_folder",
            f"data.root={tmp_path}",
            "data.size=[8,8]",
            "model=conv",
            "model.channels=[4]",
            "model.latent_dim=2",
            "trainer.epochs=1",
            "trainer.iwae_samples=2",
            "trainer.num_threads=1",
            "tracking=none",
        )
    )
    assert config.data == ImageFolder(root=str(tmp_path), size=[8, 8])
    config.data.check()
    result = train(config)
    assert result.image_shape == (3, 8, 8)
    assert np.isfinite(result.metrics["test_loss"])
