"""Small synthetic pictures for the tests."""

from __future__ import annotations

import numpy as np


def blob_images(num: int, size: int, seed: int) -> np.ndarray:
    """Gaussian blobs ("galaxies") of random position, width and colour on a black sky: uint8 (N, H, W, 3)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    out = np.zeros((num, size, size, 3), np.uint8)
    for i in range(num):
        cy, cx = rng.uniform(size * 0.3, size * 0.7, 2)
        sig = rng.uniform(size * 0.06, size * 0.2)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sig**2))
        colour = rng.uniform(0.5, 1.0, 3)
        out[i] = np.clip(blob[..., None] * colour * 255, 0, 255).astype(np.uint8)
    return out
