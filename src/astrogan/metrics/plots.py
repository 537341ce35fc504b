"""Plot helpers the metrics share: matplotlib (Agg) on demand, images for display, image grids."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from astrogan.imaging import make_grid

if TYPE_CHECKING:
    from astrogan.science import ScienceSpec


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


def save_grid(path: Path, images: np.ndarray, title: str, *, science: ScienceSpec | None = None) -> None:
    """A titled PNG grid of the first 64 images; multi-band science data `(N,H,W,B)` in [0, 1] are shown as the
    spec's colour composite (`science.display_uint8`: Lupton et al. 2004 from the fluxes)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    first = images[:64]
    if science is not None and science.num_bands > 1 and first.shape[-1] == science.num_bands:
        from astrogan.science import display_uint8

        unit = first.astype(np.float32) / 255.0 if first.dtype == np.uint8 else first.astype(np.float32)
        first = display_uint8(np.moveaxis(unit, -1, 1) * 2.0 - 1.0, science)
    imshow(ax, image_grid(first))
    ax.set_title(title)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


@dataclass(frozen=True)
class Series:
    """One set of points of a scatter panel: x `(N,)`, y `(N,)`, its legend label and matplotlib colour."""

    x: np.ndarray
    y: np.ndarray
    label: str
    color: str = "C0"


def save_scatter_panels(
    path: Path,
    panels: Sequence[tuple[str, str, str, Sequence[Series]]],
    *,
    identity: bool = True,
    cols: int = 3,
) -> None:
    """A PNG of scatter panels, one per (title, x label, y label, series), with the y = x line if `identity`."""
    plt = pyplot()
    n = max(len(panels), 1)
    cols = min(cols, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.3 * rows), squeeze=False)
    for ax, (title, xlabel, ylabel, series) in zip(axes.ravel(), panels, strict=False):
        for s in series:
            ax.scatter(s.x, s.y, s=9, alpha=0.6, color=s.color, label=f"{s.label} ({s.x.size})", lw=0)
        xs = np.concatenate([np.asarray(s.x, dtype=np.float64) for s in series] or [np.zeros(0)])
        ys = np.concatenate([np.asarray(s.y, dtype=np.float64) for s in series] or [np.zeros(0)])
        xs, ys = xs[np.isfinite(xs)], ys[np.isfinite(ys)]
        if xs.size and ys.size:
            # Axes span the x range and the bulk of y: a few wild values must not squash the rest.
            lo = min(float(xs.min()), float(np.percentile(ys, 2)))
            hi = max(float(xs.max()), float(np.percentile(ys, 98)))
            pad = 0.05 * (hi - lo if hi > lo else 1.0)
            lo, hi = lo - pad, hi + pad
            if identity:
                ax.plot([lo, hi], [lo, hi], color="0.3", lw=0.8, ls="--", label="measured = asked")
            ax.set_xlim(min(lo, float(xs.min())), max(hi, float(xs.max())))
            ax.set_ylim(lo, hi)
            off = int(((ys < lo) | (ys > hi)).sum())
            if off:
                ax.text(0.02, 0.98, f"{off} off the plot", transform=ax.transAxes, fontsize=6, va="top")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="lower right")
    for ax in axes.ravel()[len(panels) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@dataclass(frozen=True)
class HistPanel:
    """One histogram panel: its title and x label, samples `(label, values (N,))` drawn over shared bins
    (non-finite values left out), and vertical lines `(x, label)`."""

    title: str
    xlabel: str
    samples: Sequence[tuple[str, np.ndarray]]
    lines: Sequence[tuple[float, str]] = ()


def save_histogram_panels(
    path: Path, panels: Sequence[HistPanel], *, cols: int = 4, num_bins: int = 30
) -> None:
    """A PNG of density histograms, one panel per `HistPanel`; bins span the 1st-99th percentiles of all samples."""
    plt = pyplot()
    n = max(len(panels), 1)
    cols = min(cols, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.8 * rows), squeeze=False)
    for ax, panel in zip(axes.ravel(), panels, strict=False):
        finite = [np.asarray(v, dtype=np.float64) for _, v in panel.samples]
        finite = [v[np.isfinite(v)] for v in finite]
        both = np.concatenate(finite) if finite else np.zeros(0)
        if both.size:
            lo, hi = np.percentile(both, [1, 99])
            bins = np.linspace(lo, hi if hi > lo else lo + 1, num_bins + 1)
            for (label, _), v in zip(panel.samples, finite, strict=True):
                if not v.size:  # nothing measured on this side: a density of no values is 0/0
                    ax.plot([], [], label=f"{label} (0)")
                    continue
                ax.hist(
                    np.clip(v, bins[0], bins[-1]),
                    bins=bins,
                    density=True,
                    alpha=0.5,
                    label=f"{label} ({v.size})",
                )
        for x, label in panel.lines:
            if np.isfinite(x):
                ax.axvline(x, color="0.2", lw=0.8, ls="--", label=label)
        ax.set_title(panel.title, fontsize=8)
        ax.set_xlabel(panel.xlabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    for ax in axes.ravel()[len(panels) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
