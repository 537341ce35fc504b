"""Image grids: many uint8 pictures tiled into one sheet."""

from __future__ import annotations

import math

import numpy as np


def make_grid(
    images: np.ndarray, *, ncols: int | None = None, pad_px: int = 2, pad_value: int = 0, scale: int = 1
) -> np.ndarray:
    """Tile uint8 (N, H, W, C) into one uint8 (rows*H', cols*W', C) sheet; `scale` enlarges by pixel repeat."""
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"make_grid wants (N, H, W, C), got shape {images.shape}")
    n, h, w, c = images.shape
    ncols = ncols or max(1, int(math.ceil(math.sqrt(n))))
    nrows = int(math.ceil(n / ncols))
    if scale > 1:
        images = images.repeat(scale, axis=1).repeat(scale, axis=2)
        h, w = h * scale, w * scale
    sheet = np.full((nrows * (h + pad_px) + pad_px, ncols * (w + pad_px) + pad_px, c), pad_value, np.uint8)
    for i in range(n):
        r, col = divmod(i, ncols)
        y, x = pad_px + r * (h + pad_px), pad_px + col * (w + pad_px)
        sheet[y : y + h, x : x + w] = images[i]
    return sheet
