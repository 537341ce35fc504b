"""Test helper: a multi-band science dataset written straight through the build's writer and artifact code.

Until `dataset build --bands` lands, the multi-band tests make their datasets here: float32 fluxes in FITS
order `(N, B, Y, X)` -> the one flip -> a dataset-wide `BandStretch` -> images.h5 (float32 in [0, 1], NHWC,
image order) by `H5Writer`, and a manifest with `science` = `ScienceSpec.to_dict()`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from astrogan.data import artifact
from astrogan.data.writer import H5Writer
from astrogan.science import BandStretch, ScienceSpec, fits_to_image_order
from astrogan.utils.atomic import write_json

BANDS5 = ("u", "g", "r", "i", "z")


def blob_flux(num: int, size: int, *, num_bands: int = 5, seed: int = 0) -> np.ndarray:
    """Gaussian blobs, a different brightness per band, on a faint sky: float32 `(N, B, Y, X)` (FITS order)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    out = np.empty((num, num_bands, size, size), np.float32)
    for i in range(num):
        cy, cx = rng.uniform(size * 0.3, size * 0.7, 2)
        sig = rng.uniform(size * 0.08, size * 0.2)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sig**2))
        sed = rng.uniform(0.5, 1.5, num_bands) * np.linspace(1.0, 3.0, num_bands)  # redder = brighter
        out[i] = (
            blob[None] * sed[:, None, None] * 50.0 + rng.normal(0.5, 0.05, (num_bands, size, size))
        ).astype(np.float32)
    return out


def write_science_dataset(
    out: Path,
    flux_fits_order: np.ndarray,
    *,
    bands: Sequence[str] = BANDS5,
    stretch: BandStretch | None = None,
    kind: str = "asinh",
    bunit: str = "nJy",
    pixel_scale_arcsec: float = 0.2,
    labels: Sequence[int] | None = None,
    label_names: Sequence[str] | None = None,
) -> ScienceSpec:
    """Write `out/` (manifest.json + images.h5) from fluxes `(N, B, Y, X)` in FITS order; returns its spec.

    `stretch` defaults to `BandStretch.fit(flux, kind=kind)` over all images (the dataset-wide stretch).
    """
    flux = np.asarray(flux_fits_order, dtype=np.float32)
    n, b, size, _ = flux.shape
    bands = tuple(bands)[:b]
    stretch = stretch or BandStretch.fit(flux, kind=kind)
    spec = ScienceSpec(bands=bands, stretch=stretch, bunit=bunit, pixel_scale_arcsec=pixel_scale_arcsec)
    stored = stretch.forward(fits_to_image_order(flux)).transpose(0, 2, 3, 1)  # (N, H, W, B) image order
    out.mkdir(parents=True, exist_ok=True)
    writer = H5Writer(
        out / artifact.IMAGES_FILE, sizes=(size,), channels=b, dtype="float32", labelled=labels is not None
    )
    meta_row = ("stamp", 0, 0, size, 0, size, size, "", np.nan, np.nan, "stamp.fits", "", "", -1, -1)
    for i in range(n):
        label = None if labels is None else int(labels[i])
        writer.append({size: stored[i]}, label=label, meta=(f"stamp-{i}", *meta_row[1:]))
    digests = writer.finish(list(label_names) if label_names else None)
    params = {"schema": artifact.SCHEMA_NAME, "science": spec.to_dict(), "test_helper": True}
    manifest = {
        "schema": artifact.SCHEMA_NAME,
        "schema_version": artifact.SCHEMA_VERSION,
        "content_hash": artifact.content_hash(params, digests),
        "num_images": n,
        "image_size": size,
        "image_sizes": [size],
        "datasets": {str(size): artifact.dataset_name(size, size)},
        "channels": b,
        "dtype": "float32",
        "value_range": artifact.value_range("float32"),
        "layout": "NHWC, rows top to bottom",
        "label_names": list(label_names) if label_names else None,
        "num_classes": len(label_names) if label_names else 0,
        artifact.COND_MANIFEST_KEY: None,
        "stretch": None,
        "science": spec.to_dict(),
        "sources": [],
    }
    write_json(out / artifact.MANIFEST_FILE, manifest)
    return spec
