"""FITS I/O: reading 2D/3D HDUs and the per-image stretch (astropy classes via `astrogan.science`)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from astrogan.science import BandStretch, fits_to_image_order
from astrogan.utils.errors import UserError

__all__ = ["fits_to_image_order"]  # re-exported: the one flip lives in astrogan.science

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz", ".fz")
STRETCH_KINDS = ("asinh", "log", "sqrt", "linear")

# Defaults of the stretch: the asinh softening `a` (in units of the white-black range; small `a` lifts faint
# structure more, Lupton et al. 2004 style), the log scale `s`, and the percentiles that set black and white.
DEFAULT_ASINH_A = 0.1
DEFAULT_LOG_SCALE = 1000.0
DEFAULT_BLACK_PERCENTILE = 0.5
DEFAULT_WHITE_PERCENTILE = 99.5


def is_fits_path(path: str | os.PathLike[str]) -> bool:
    """True when the file name ends in a FITS suffix (.fits, .fit, .fts, optionally .gz, or .fz)."""
    name = os.fspath(path).lower()
    return name.endswith(FITS_SUFFIXES)


@dataclass
class FitsData:
    """Pixels of one FITS HDU, still in FITS row order (row 0 is the BOTTOM of the picture).

    `data` is float32 `(B, Y, X)` with non-finite values kept; `mask` is True where a pixel is excluded
    (NaN or inf); `hdu_index` names the HDU that held the data.
    """

    data: np.ndarray
    mask: np.ndarray
    hdu_index: int
    header: dict[str, Any] = field(default_factory=dict)

    @property
    def num_bands(self) -> int:
        return int(self.data.shape[0])


def read_fits(path: str | os.PathLike[str]) -> FitsData:
    """Read the first HDU that holds 2D `(Y, X)` or 3D `(B, Y, X)` data; leading length-1 axes are dropped.

    Raises ValueError (with the reason) for files without image data or with cubes of more than 3 axes.
    """
    from astropy.io import fits  # heavy: import only when a FITS file is read

    with fits.open(os.fspath(path), memmap=False) as hdul:
        for index, hdu in enumerate(hdul):
            if hdu.data is None or not hasattr(hdu.data, "ndim") or hdu.data.dtype.names is not None:
                continue
            arr = np.asarray(hdu.data)
            while arr.ndim > 2 and arr.shape[0] == 1:
                arr = arr[0]
            if arr.ndim == 2:
                arr = arr[None]
            if arr.ndim != 3:
                raise ValueError(
                    f"FITS HDU {index} has {arr.ndim} axes; only 2D or 3D (bands, y, x) are read"
                )
            data = arr.astype(np.float32, copy=True)
            header = {k: v for k, v in hdu.header.items() if k and isinstance(v, (int, float, str, bool))}
            return FitsData(data=data, mask=~np.isfinite(data), hdu_index=index, header=header)
    raise ValueError("no HDU with image data")


def stretch(
    data: np.ndarray,
    kind: str = "asinh",
    *,
    mask: np.ndarray | None = None,
    a: float | None = None,
    black: float | None = None,
    white: float | None = None,
    black_percentile: float = DEFAULT_BLACK_PERCENTILE,
    white_percentile: float = DEFAULT_WHITE_PERCENTILE,
    headroom: float = 1.0,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Map linear flux to display values in [0, 1]; returns (float32 array of `data`'s shape, params).

    x = clip((data - black) / (white - black), 0, 1), black/white taken from percentiles of the finite,
    unmasked pixels (all bands together, so colour balance survives) unless given; a percentile's white is
    moved to black + headroom x (white - black), so that flux up to `headroom` times the percentile's level
    stays below 1 (with white at the peak and headroom 1.25, a linear stretch puts every peak at 0.8, and a
    generator's overshoot of the peak is kept rather than clipped). Then astropy's
      asinh:  y = asinh(x / a) / asinh(1 / a)     (AsinhStretch, a = softening, default 0.1)
      log:    y = log(1 + a x) / log(1 + a)        (LogStretch, a = scale, default 1000)
      sqrt:   y = sqrt(x)                          (SqrtStretch)
      linear: y = x                                (LinearStretch)
    Non-finite or masked pixels become 0 (black). `unstretch(y, params)` undoes it inside [black, white].
    """
    if kind not in STRETCH_KINDS:
        raise UserError(f"unknown stretch {kind!r}: use one of {', '.join(STRETCH_KINDS)}")
    data = np.asarray(data, dtype=np.float32)
    bad = ~np.isfinite(data)
    if mask is not None:
        bad = bad | mask
    good = data[~bad]
    if good.size == 0:
        raise ValueError("no finite pixels to stretch")
    if black is None:
        black = float(np.percentile(good, black_percentile))
    if not (math.isfinite(headroom) and headroom >= 1.0):
        raise UserError(f"the stretch's headroom must be a number >= 1 (1: none), got {headroom}")
    if white is None:
        white = float(np.percentile(good, white_percentile))
        white = black + headroom * (white - black)
    if not white > black:
        # A flat image: keep the transform well defined; the caller flags it.
        white = black + 1.0
    if a is None:
        a = DEFAULT_ASINH_A if kind == "asinh" else DEFAULT_LOG_SCALE if kind == "log" else 1.0
    if kind in ("asinh", "log") and not a > 0:
        raise UserError(f"the {kind} stretch needs a > 0, got {a}")
    params: dict[str, Any] = {
        "kind": kind,
        "a": float(a),
        "black": float(black),
        "white": float(white),
        "black_percentile": float(black_percentile),
        "white_percentile": float(white_percentile),
        "headroom": float(headroom),
    }
    x = np.where(bad, black, data)
    lifted = x if x.ndim >= 3 else x.reshape((1,) * (3 - x.ndim) + x.shape)
    return _band_stretch(params, lifted.shape).forward(lifted).reshape(x.shape), params


def _band_stretch(params: dict[str, Any], shape: tuple[int, ...]) -> BandStretch:
    """The per-image stretch as a `BandStretch` with the same black/white for every band of `shape`."""
    n = shape[-3] if len(shape) >= 3 else 1
    return BandStretch(
        kind=params["kind"],
        a=float(params["a"]),
        black=(float(params["black"]),) * n,
        white=(float(params["white"]),) * n,
    )


def unstretch(y: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """Inverse of `stretch`: display values in [0, 1] back to flux (float32, same shape).

    Exact for flux inside [black, white]; values clipped by the stretch come back as black or white.
    """
    arr = np.asarray(y)
    lifted = arr if arr.ndim >= 3 else arr.reshape((1,) * (3 - arr.ndim) + arr.shape)
    return _band_stretch(params, lifted.shape).inverse(lifted).reshape(arr.shape)
