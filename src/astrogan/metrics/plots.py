"""Plot helpers the metrics share: matplotlib (Agg) on demand, images for display, image grids."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from astrogan.imaging import make_grid


def pyplot():  # noqa: ANN201
    """matplotlib.pyplot on the Agg backend (imported only when a report draws)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def display(images: np.ndarray) -> np.ndarray:
    """(N,H,W,C) uint8/float -> (N,H,W,3 or 1) float in [0,1] for imshow (first three bands)."""
    x = images.astype(np.float64) / 255.0 if images.dtype == np.uint8 else images.astype(np.float64)
    if images.dtype != np.uint8:  # float science data: stretch the 0.5-99.5 percentiles to the screen
        lo, hi = np.percentile(x, [0.5, 99.5])
        x = np.clip((x - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
    if x.shape[-1] > 3:
        x = x[..., :3]
    if x.shape[-1] == 2:
        x = x[..., :1]
    return x


def image_grid(images: np.ndarray, *, num: int = 64) -> np.ndarray:
    """Tile the first `num` images into one square-ish grid `(rows*H, cols*W, C)` with 2-px gaps."""
    return make_grid(display(images[:num]), pad_px=2, pad_value=1.0, border=False, dtype=np.float64)


def imshow(ax, img: np.ndarray) -> None:  # noqa: ANN001
    """Show one display image `(H,W,1|3)` on `ax`, grey for one band, without axes."""
    ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None)
    ax.axis("off")


def save_grid(path: Path, images: np.ndarray, title: str) -> None:
    """A titled PNG grid of the first 64 images."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    imshow(ax, image_grid(images))
    ax.set_title(title)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
