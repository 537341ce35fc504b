"""Galaxy10 DECaLS (Leung & Bovy, astroNN): read the HDF5 file with h5py alone, in chunks, labels kept."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from astrogan.utils.errors import UserError

DOWNLOAD_URL = "https://zenodo.org/records/10845026"
FILE_NAME = "Galaxy10_DECals.h5"
CREDIT = "Galaxy10 DECaLS (Leung & Bovy, astroNN); images DESI Legacy Imaging Surveys; labels Galaxy Zoo"

# Index = the `ans` label in the file.
CLASS_NAMES = (
    "Disturbed",
    "Merging",
    "Round Smooth",
    "In-between Round Smooth",
    "Cigar Shaped Smooth",
    "Barred Spiral",
    "Unbarred Tight Spiral",
    "Unbarred Loose Spiral",
    "Edge-on without Bulge",
    "Edge-on with Bulge",
)


def check_file(path: str | os.PathLike[str]) -> tuple[int, tuple[int, ...]]:
    """Check the file's layout; returns (num_images, image shape (H, W, C)); else UserError."""
    import h5py

    p = Path(path)
    if not p.is_file():
        raise UserError(
            f"no Galaxy10 file at {p}: download {FILE_NAME} from {DOWNLOAD_URL} "
            "and pass its path to --galaxy10"
        )
    try:
        with h5py.File(p, "r") as fh:
            if "images" not in fh or "ans" not in fh:
                raise UserError(
                    f"{p} is not a Galaxy10 file (needs datasets 'images' and 'ans'); get it from "
                    f"{DOWNLOAD_URL}"
                )
            images, labels = fh["images"], fh["ans"]
            if images.ndim != 4 or images.shape[-1] not in (1, 3) or images.dtype != np.uint8:
                raise UserError(
                    f"{p}: 'images' should be uint8 (N, H, W, 3), found {images.dtype} {images.shape}"
                )
            if labels.shape != (images.shape[0],):
                raise UserError(f"{p}: 'ans' has shape {labels.shape}, expected ({images.shape[0]},)")
            return int(images.shape[0]), tuple(int(s) for s in images.shape[1:])
    except OSError as exc:
        raise UserError(
            f"cannot read {p} as HDF5 ({' '.join(str(exc).split())}); re-download it from {DOWNLOAD_URL}"
        ) from None


def iter_chunks(
    path: str | os.PathLike[str], *, chunk_size: int = 256
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield (start, images uint8 (n, H, W, C), labels int64 (n,)) in chunks (the real file is 2.7 GB)."""
    import h5py

    num_images, _ = check_file(path)
    with h5py.File(path, "r") as fh:
        images, labels = fh["images"], fh["ans"]
        for start in range(0, num_images, chunk_size):
            stop = min(start + chunk_size, num_images)
            lab = np.asarray(labels[start:stop]).astype(np.int64)
            if lab.size and (lab.min() < 0 or lab.max() >= len(CLASS_NAMES)):
                raise UserError(f"{path}: labels outside 0..{len(CLASS_NAMES) - 1} near index {start}")
            yield start, np.asarray(images[start:stop]), lab
