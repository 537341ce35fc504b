"""The torch-free imaging floor (NumPy only): values <-> pixels, grids, slerp, file hashes, the export I/O contract."""

from __future__ import annotations

import hashlib
import math
import os
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

__all__ = [
    "CLASS_INPUT",
    "COND_INPUT",
    "IMAGE_OUTPUT",
    "LATENT_INPUT",
    "META_KEY",
    "TO_UINT8_RULE",
    "TRUNC_INPUT",
    "make_grid",
    "model_to_unit",
    "sha256_file",
    "slerp",
    "to_uint8",
    "trunc_rows",
    "uint8_to_unit",
    "unit_to_uint8",
]

# The mapping from model output to pixels, in words (written into exported model cards).
TO_UINT8_RULE = "round((x + 1) * 127.5), clipped to 0..255"

# The exported generator's I/O contract, shared by the exporters (`export`) and the torch-free runner
# (`web.onnx_generator`): input/argument names, the output name and the ONNX metadata entry holding model.json.
LATENT_INPUT = "z"  # float32 (N, z_dim)
CLASS_INPUT = "c"  # int64 (N,), class-conditional models only
COND_INPUT = "cond"  # float32 (N, K), physical conditions in their units (models trained with --cond only)
TRUNC_INPUT = "trunc"  # float32 (N,), one truncation factor per row (see `trunc_rows`)
IMAGE_OUTPUT = "images"  # float32 (N, C, H, W) in [-1, 1]
META_KEY = "astrogan"


def to_uint8(images: ArrayLike) -> np.ndarray:
    """Model output, float `(N, C, H, W)` in [-1, 1] -> uint8 `(N, H, W, C)` via round((x + 1) * 127.5), clipped.

    The one mapping from model output to pixels: the PyTorch sampler and the ONNX server both use it, so
    seed N draws identical pixels in either. Rounding is half to even (`np.rint`) in float32.
    """
    x = np.rint((np.asarray(images, dtype=np.float32) + 1.0) * 127.5)
    return np.clip(x, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1).copy()


def trunc_rows(trunc: ArrayLike, n: int) -> np.ndarray:
    """Truncation as an exported graph takes it: float32 `(n,)`, one factor per row (a number is repeated)."""
    t = np.asarray(trunc, dtype=np.float32).reshape(-1)
    if t.size == 1:
        return np.full(n, t[0], dtype=np.float32)
    if t.shape != (n,):
        raise ValueError(f"trunc must be a number or have shape ({n},), got shape {np.shape(trunc)}")
    return np.ascontiguousarray(t)


def model_to_unit(x: ArrayLike) -> np.ndarray:
    """Model values in [-1, 1] -> [0, 1] (`(x + 1) / 2`, dtype kept), as float science data are stored."""
    return (np.asarray(x) + 1) / 2


def unit_to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Float [0, 1] -> uint8 [0, 255] via round(x * 255) in float64, clipped; uint8 passes through unchanged."""
    if pixels.dtype == np.uint8:
        return pixels
    return np.clip(np.rint(pixels.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)


def uint8_to_unit(pixels: np.ndarray, dtype: DTypeLike = np.float32) -> np.ndarray:
    """uint8 [0, 255] -> float [0, 1] (`x / 255` computed in `dtype`)."""
    return pixels.astype(dtype) / 255.0


def make_grid(
    images: ArrayLike,
    *,
    ncols: int | None = None,
    pad_px: int = 2,
    pad_value: float = 0,
    scale: int = 1,
    border: bool = True,
    dtype: DTypeLike = np.uint8,
) -> np.ndarray:
    """Tile `(N, H, W, C)` pictures row-major into one `(H', W', C)` sheet with `pad_px` gaps of `pad_value`.

    `ncols` defaults to ceil(sqrt(N)) (square-ish); rows follow. With `border` the gaps also frame the
    sheet (`rows*(H+pad) + pad` high, tiles at `pad + r*(H+pad)`); without it each tile has its gap after
    it only (`rows*(H+pad)`, tiles at `r*(H+pad)`). `scale` > 1 enlarges the tiles by pixel repeat. The
    sheet has `dtype` (uint8 pictures by default; pass a float dtype for display images).
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"make_grid wants (N, H, W, C), got shape {images.shape}")
    n, h, w, c = images.shape
    ncols = ncols or max(1, math.ceil(math.sqrt(n)))
    nrows = math.ceil(n / ncols)
    if scale > 1:
        images = images.repeat(scale, axis=1).repeat(scale, axis=2)
        h, w = h * scale, w * scale
    lead = pad_px if border else 0
    shape = (nrows * (h + pad_px) + lead, ncols * (w + pad_px) + lead, c)
    sheet = np.full(shape, pad_value, dtype=dtype)
    for i in range(n):
        r, col = divmod(i, ncols)
        y, x = lead + r * (h + pad_px), lead + col * (w + pad_px)
        sheet[y : y + h, x : x + w] = images[i]
    return sheet


def slerp(a: ArrayLike, b: ArrayLike, t: ArrayLike) -> np.ndarray:
    """Spherical interpolation between latents `a`, `b` (z_dim,) at fractions `t` (S,) -> float32 `(S, z_dim)`.

    Computed in float64; nearly parallel latents (angle < 1e-6) take the straight line.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    tt = np.asarray(t, dtype=np.float64)[:, None]
    cos = float(np.dot(a, b) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))
    omega = np.arccos(np.clip(cos, -1.0, 1.0))
    if omega < 1e-6:  # nearly parallel: the straight line is the great circle
        out = (1 - tt) * a + tt * b
    else:
        out = (np.sin((1 - tt) * omega) * a + np.sin(tt * omega) * b) / np.sin(omega)
    return out.astype(np.float32)


def sha256_file(path: str | os.PathLike[Any], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in `chunk`-byte blocks (1 MiB by default)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
