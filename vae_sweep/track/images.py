"""Image grids for the run's pictures, as uint8 arrays, and as PNG files (no figure drawn)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from mlflow.tracking.multimedia import convert_to_pil_image

MIN_TILE_PIXELS = 56  # small images (8x8 digits) are enlarged to at least this many pixels a side


def image_grid(rows: list[torch.Tensor], image_shape: tuple[int, int, int], padding: int = 2) -> np.ndarray:
    """Tile ``rows`` (each ``(n, channels, height, width)`` in [0, 1]) into one uint8 image:
    ``(H, W)`` grayscale for one channel, ``(H, W, 3)`` RGB for three."""
    channels, height, width = image_shape
    scale = max(1, MIN_TILE_PIXELS // max(height, width))
    columns = max(row.shape[0] for row in rows)
    tile_h, tile_w = height * scale + padding, width * scale + padding
    grid = np.full((len(rows) * tile_h + padding, columns * tile_w + padding, channels), 255, dtype=np.uint8)
    for r, row in enumerate(rows):
        images = row.detach().clamp(0, 1).reshape(-1, channels, height, width).permute(0, 2, 3, 1)
        pixels = (images.numpy() * 255).round().astype(np.uint8)
        for c, image in enumerate(pixels):
            top, left = padding + r * tile_h, padding + c * tile_w
            enlarged = image.repeat(scale, axis=0).repeat(scale, axis=1)
            grid[top : top + height * scale, left : left + width * scale] = enlarged
    return grid[..., 0] if channels == 1 else grid


def epoch_image_due(epoch: int, every: int, last: int | None) -> bool:
    """Stepped pictures every ``every`` epochs (0: never) and after the ``last``.

    >>> [e for e in range(1, 13) if epoch_image_due(e, 5, 12)], epoch_image_due(12, 0, 12)
    ([5, 10, 12], False)
    """
    return every > 0 and (epoch % every == 0 or epoch == last)


def write_png(image: np.ndarray, path: Path) -> Path:
    """``image`` (an ``image_grid``) as a PNG file, converted as ``MlflowClient.log_image`` does."""
    convert_to_pil_image(image).save(path)
    return path
