"""Image grids: many uint8 pictures tiled into one sheet (the one definition is `astrogan.imaging.make_grid`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from astrogan.imaging import make_grid
from astrogan.utils.atomic import atomic_path

__all__ = ["make_grid", "save_cond_sheet"]


def save_cond_sheet(
    path: str | Path,
    images: np.ndarray,
    axes: Sequence[tuple[str, np.ndarray]],
    *,
    seeds: Sequence[int],
    units: dict[str, str] | None = None,
) -> None:
    """A condition sheet as a labelled PNG: `images` uint8 (rows*cols, H, W, C) row-major.

    The first axis's values label the columns; the second axis's (two-axis sheets) or the seeds
    (one-axis sheets, one galaxy per row) label the rows.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    units = units or {}
    cols = len(axes[0][1])
    rows = len(images) // cols
    _, h, w, c = images.shape
    pad = 2
    sheet = make_grid(images, ncols=cols, pad_px=pad, pad_value=255, border=True)
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * cols, 0.8 + 0.9 * rows), dpi=110)
    ax.imshow(sheet[..., 0] if c == 1 else sheet[..., :3], cmap="gray" if c == 1 else None)
    centres_x = [pad + i * (w + pad) + w / 2 for i in range(cols)]
    centres_y = [pad + i * (h + pad) + h / 2 for i in range(rows)]

    def label(name: str) -> str:
        return f"{name} [{units[name]}]" if units.get(name) else name

    ax.set_xticks(centres_x, [f"{v:.3g}" for v in axes[0][1]], fontsize=8)
    ax.set_xlabel(label(axes[0][0]))
    if len(axes) == 2:
        ax.set_yticks(centres_y, [f"{v:.3g}" for v in axes[1][1]], fontsize=8)
        ax.set_ylabel(label(axes[1][0]))
        ax.set_title(f"seed {seeds[0]}", fontsize=9)
    else:
        ax.set_yticks(centres_y, [str(s) for s in seeds[::cols]], fontsize=8)
        ax.set_ylabel("seed")
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.tight_layout()
    with atomic_path(Path(path), suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
