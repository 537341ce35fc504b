"""Shared test setup: quiet progress bars, few threads, and paths to the real data in ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("ASTROGAN_QUIET", "1")
os.environ.setdefault("OMP_NUM_THREADS", "2")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data`; tests that need it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not beside this checkout")
    return SHARED_DATA


def _blob_images(num: int, size: int, seed: int):
    """Gaussian blobs ("galaxies") of random position, width and colour on a black sky: uint8 (N, H, W, 3)."""
    import numpy as np

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


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 32-image dataset artifact of blob galaxies at 16 and 32 px, built with the real builder."""
    from PIL import Image

    from astrogan.data.build import BuildOptions, build_dataset

    root = tmp_path_factory.mktemp("tinyds")
    raw = root / "raw"
    raw.mkdir()
    for i, img in enumerate(_blob_images(32, 48, seed=1)):
        Image.fromarray(img).save(raw / f"blob-{i:03d}.png")
    out = root / "ds"
    build_dataset([raw], out, options=BuildOptions(image_sizes=(32, 16), min_size_px=16), show_progress=False)
    return out
