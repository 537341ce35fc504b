"""Post-processing: model output in [-1, 1] to uint8 pictures and PNG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from astrogan.imaging import to_uint8
from astrogan.utils.atomic import atomic_path

__all__ = ["save_png", "to_pil", "to_uint8"]


def to_pil(image_hwc: np.ndarray) -> Image.Image:
    """uint8 (H, W, C) with C in {1, 3} -> PIL image."""
    if image_hwc.ndim == 3 and image_hwc.shape[2] == 1:
        return Image.fromarray(image_hwc[:, :, 0], mode="L")
    if image_hwc.ndim == 3 and image_hwc.shape[2] != 3:
        image_hwc = image_hwc[:, :, :3]  # science data with many bands: show the first three
    return Image.fromarray(image_hwc)


def save_png(image_hwc: np.ndarray, path: str | Path) -> Path:
    """Write one uint8 (H, W, C) picture atomically."""
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        to_pil(image_hwc).save(tmp, format="PNG")
    return path
