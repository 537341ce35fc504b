"""Evaluation protocols: the metric conventions of Holzschuh et al. (2022), MNRAS 515, 652 (arXiv:2203.11956).

``--protocol astrogan`` is astrogan's own evaluation; ``--protocol holzschuh2022`` computes FID/KID, the power
spectrum comparison and the morphology distances the way Holzschuh, O'Riordan, Vegetti, Rodriguez-Gomez &
Thuerey (2022) did, so that numbers can be put beside their Table 2. This module holds only the conventions
(image mapping, frequency partitions, distances); the measurements themselves come from `inception`,
`spectrum` and `morphology`. NumPy and matplotlib only.

Sources. [P] the paper (only its abstract was readable here); [C] the authors' code,
github.com/Akanota/galaxies-metrics-denoising (commit fe27191: ``metrics/metric_utils.py``,
``metrics/radially_averaged_power_spectrum.py``, ``metrics/morphological_properties.py``,
``notebooks/utils.py``, ``notebooks/metrics.ipynb``, which points to Section 4.1.2 of [P] for the power
spectrum); [S] a third-party summary of [P] that reproduces the rows of Table 2. [O] marks our own choice.

FID/KID images (`holzschuh_fid_images`):
- [C] each image is min-max normalised on its own (per image, per band: (x - min) / (max - min)), mapped
  through matplotlib's ``magma`` colour map, RGB kept, times 255 and truncated to uint8 (``toRGB``); the
  features come from the StyleGAN2-ADA TorchScript copy of the 2015 Inception (same network as astrogan's
  ``inception``), with the images first resized to 256x256; FID uses the biased (1/N) covariance.
- [C] multi-band data (SKIRT: g, r, i, z) used ONE band, index 1 (r); single-band data (COSMOS, Sérsic)
  used that band. `holzschuh_band` says which. We return every band so that a caller can also report
  per-band values; the paper's number is the one for ``holzschuh_band(C, "fid")``.
- [O] a constant image (max == min) maps to magma's first colour (the authors' code divides by zero and
  matplotlib paints the NaNs black); non-finite pixels are ignored for min/max and get the first colour.

Power spectrum (`holzschuh_spectrum_bins`, `holzschuh_spectrum_distance`):
- [C] the spectrum is the azimuthal average of |FFT| / (H W) of band 1 (r; or the only band), i.e. an
  AMPLITUDE spectrum; values are compared as log10. astrogan's `spectrum.radial_spectrum` gives power
  |FFT|^2 / (H W) with the mean removed, so we compare 0.5 log10(power), which differs from the authors'
  log10 amplitude only by a constant for equal image sizes and so has the same Wasserstein distance [O].
- [C] the frequencies from 0 to the maximum frequency are split into 15 "modes": mode 0 is the zero
  frequency alone and modes 1-14 are intervals whose widths are proportional to 1 / (difference of the
  logs of 15 linearly spaced points from 1/1024 to f_max), laid on a grid of 181 = floor(128 sqrt 2)
  radial bins. This "logarithmic" construction gives narrow intervals at low and wide ones at high
  frequency, with edges at (0, 2, 5, 9, 16, 24, 34, 46, 60, 76, 93, 113, 134, 157, 181) / 181 of
  f_max (the notebook prints exactly these); they are NOT geometrically spaced.
- [C] within a mode, the values of every radial bin of every image are pooled and the 1D Wasserstein
  distance (W1) between the real and generated distributions of log10 values is taken (via a 1000-bin
  histogram on [-5, 4] and POT's ``emd_1d``); the reported figure is the mean over the 15 modes.
- [O] f_max is the Nyquist frequency of the image (the authors' ``max_frequency = 0.5 / pixel size``), so
  `holzschuh_spectrum_bins` returns the 15 edges of modes 1-14 in cycles/px. Mode 0 (the image mean)
  cannot be compared: ``radial_spectrum`` removes the mean. Our mean is over the 14 intervals, with exact
  sample W1 instead of the histogram; an interval with no frequency of the image (small images) is NaN
  and left out of the mean.
- [C] caveat: in the released code ``powerspectra_to_partition`` refills every mode list with the value of
  the radial bin of the same index, so the distances it printed (and very likely those in Table 2) are
  for the integer wavenumbers k = 0..14 cycles per image, not the intervals. ``variant="released_code"``
  reproduces that (k = 1..14; k = 0 is again unavailable).

Morphology (`HOLZSCHUH_MORPHOLOGY_PROPERTIES`, `holzschuh_morphology_distance`):
- [C] statmorph on band index 2 (i; or the only band) after the authors' per-data-set preprocessing
  (segmap from photutils at 1.5 sigma, smoothed; SKIRT convolved with a FWHM 3 px PSF and given noise).
- [P]/[S] per-property 1D Wasserstein distances between the real and generated distributions, and their
  average. Properties named by [P]/[S]: asymmetry, smoothness, concentration, Gini, M20, half-light
  radius, Sérsic index, orientation, ellipticity ([C] plots ``rhalf_circ``, ``orientation_centroid``,
  ``ellipticity_centroid``). Mapped to astrogan's names; the half-light radius is ``r50`` (statmorph's
  r50 rather than ``rhalf_circ``, whose total flux is measured differently) [O].
- [C] before the histograms the notebook drops galaxies with sersic_n > 10, |asymmetry| > 1, smoothness
  outside [-0.05, 0.2] or rhalf_circ > 60 px (``HOLZSCHUH_OUTLIER_CUTS``; on by default [O]: whether
  Table 2 used them is not stated).
- [O] normalisation: not found. Table 2 puts properties in pixels and in [0, 1] on one scale, so some
  per-property normalisation was used; we standardise each property by the real set's mean and standard
  deviation, as astrogan's `distances` module does. NaNs are dropped per property.
- [S] the abstract's "average Wasserstein distance" (7.19e-2 Sérsic, 5.98e-2 COSMOS) matches the mean of
  Table 2's morphology average and power-spectrum average ((11.89 + 2.50) / 2 and (6.72 + 5.24) / 2, in
  units of 1e-2), so it is not a morphology-only figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np

PROTOCOLS: tuple[str, ...] = ("astrogan", "holzschuh2022")

#: Properties compared by Holzschuh et al. (2022), in astrogan's morphology names.
HOLZSCHUH_MORPHOLOGY_PROPERTIES: tuple[str, ...] = (
    "asymmetry",
    "smoothness",
    "concentration",
    "gini",
    "m20",
    "r50",
    "sersic_n",
    "orientation",
    "ellipticity",
)

#: Inclusive (low, high) bounds of the authors' outlier cuts; a galaxy outside any of them is dropped.
HOLZSCHUH_OUTLIER_CUTS: dict[str, tuple[float, float]] = {
    "sersic_n": (-np.inf, 10.0),
    "asymmetry": (-1.0, 1.0),
    "smoothness": (-0.05, 0.2),
    "r50": (-np.inf, 60.0),  # pixels, for their 256-px images
}

NUM_SPECTRUM_INTERVALS = 14  # modes 1..14 of the paper's 15; mode 0 is the zero frequency
_RADIAL_GRID = 181  # floor(128 * sqrt(2)): the authors' number of radial bins
_LOG_FLOOR_POWER = 1e-20  # as spectrum._log_power
_REL_TOL = 1e-9


def validate_protocol(protocol: str) -> str:
    """Return `protocol` if it is one of `PROTOCOLS`, else raise ValueError naming the choices."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown evaluation protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    return protocol


def holzschuh_band(num_bands: int, metric: str) -> int:
    """Band index the authors measured `metric` on: 'fid'/'kid'/'spectrum' -> 1 (r), 'morphology' -> 2 (i).

    Their multi-band data were SDSS g, r, i, z; a single band is used as it is (index 0). With 2 bands the
    morphology band is clamped to the last one.
    """
    if num_bands < 1:
        raise ValueError(f"num_bands must be >= 1, got {num_bands}")
    index = {"fid": 1, "kid": 1, "spectrum": 1, "morphology": 2}
    if metric not in index:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(index)}")
    return 0 if num_bands == 1 else min(index[metric], num_bands - 1)


# ---------------------------------------------------------------------------------------------- FID/KID


def _magma_lut() -> np.ndarray:
    """magma's 256 colours as uint8 RGB, truncated like ``cmap(x)[..., :3] * 255`` cast to uint8."""
    cmap = matplotlib.colormaps["magma"]
    return (cmap(np.arange(cmap.N))[:, :3] * 255).astype(np.uint8)


def holzschuh_fid_images(images: np.ndarray) -> list[np.ndarray]:
    """Images `(N,H,W[,C])` uint8 or float -> one uint8 `(N,H,W,3)` magma rendering per band.

    Each image and band is min-max normalised on its own, then coloured with matplotlib's magma exactly as
    ``Colormap.__call__`` bins floats (index floor(256 t), t == 1 -> 255). Constant images get the first
    colour. Feed ``out[holzschuh_band(C, "fid")]`` to the Inception network for the paper's number.
    """
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4:
        raise ValueError(f"expected images of shape (N,H,W) or (N,H,W,C), got {arr.shape}")
    if arr.dtype.kind not in "uif":
        raise TypeError(f"expected integer or float images, got dtype {arr.dtype}")
    lut = _magma_lut()
    n_colours = lut.shape[0]
    out = []
    for b in range(arr.shape[-1]):
        x = arr[..., b].astype(np.float64)
        finite = np.isfinite(x)
        lo = np.where(finite, x, np.inf).min(axis=(1, 2), keepdims=True)
        hi = np.where(finite, x, -np.inf).max(axis=(1, 2), keepdims=True)
        span = hi - lo
        ok = np.isfinite(span) & (span > 0)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            t = (x - np.where(ok, lo, 0.0)) / np.where(ok, span, 1.0) * n_colours
        t = np.where(ok & finite, t, 0.0)
        t[t == n_colours] = n_colours - 1
        idx = np.clip(t.astype(np.intp), 0, n_colours - 1)
        out.append(lut[idx])
    return out


# ------------------------------------------------------------------------------------------ power spectrum


def _authors_interval_fractions() -> np.ndarray:
    """Edges of the paper's 14 frequency intervals as fractions of f_max, rebuilt as the authors built them.

    Interval widths are proportional to 1 / diff(log(linspace(1/1024, f_max, 15))), f_max = 0.5/(0.276/0.7)
    per kpc/h (SKIRT), accumulated on 181 radial bins; a class change at bin i puts the edge at (i + 1).
    """
    f_max = 0.5 / (0.276 / 0.7)
    widths = 1.0 / np.diff(np.log(np.linspace(1.0 / 1024.0, f_max, NUM_SPECTRUM_INTERVALS + 1)))
    bounds = np.cumsum(widths) * (_RADIAL_GRID / widths.sum())
    inner = np.ceil(bounds[:-1]) + 1.0
    return np.concatenate([[0.0], inner, [float(_RADIAL_GRID)]]) / _RADIAL_GRID


def holzschuh_spectrum_bins(size_px: int) -> np.ndarray:
    """The 15 edges (cycles/px) of the paper's 14 non-zero frequency intervals for `size_px` images.

    Edges run from 0 to the largest frequency of ``spectrum.radial_spectrum`` ((size_px // 2) / size_px,
    the Nyquist frequency for even sizes); interval j holds frequencies f with edge[j-1] < f <= edge[j].
    """
    if int(size_px) != size_px or size_px < 2:
        raise ValueError(f"size_px must be an integer >= 2, got {size_px}")
    size_px = int(size_px)
    return _authors_interval_fractions() * ((size_px // 2) / size_px)


def _w1(a: np.ndarray, b: np.ndarray) -> float:
    """1D Wasserstein-1 distance between two samples (the area between their empirical CDFs)."""
    a, b = np.sort(a), np.sort(b)
    both = np.sort(np.concatenate([a, b]))
    deltas = np.diff(both)
    cdf_a = np.searchsorted(a, both[:-1], side="right") / a.size
    cdf_b = np.searchsorted(b, both[:-1], side="right") / b.size
    return float(np.sum(np.abs(cdf_a - cdf_b) * deltas))


def _log_amplitude(power: np.ndarray) -> np.ndarray:
    return 0.5 * np.log10(np.maximum(power, _LOG_FLOOR_POWER))


def _mean_finite(values: Sequence[float]) -> float:
    vals = [v for v in values if np.isfinite(v)]
    return float(np.mean(vals)) if vals else float("nan")


def holzschuh_spectrum_distance(
    real_power: np.ndarray, fake_power: np.ndarray, freqs: np.ndarray, *, variant: str = "intervals"
) -> dict[str, float]:
    """W1 between real and generated log10 amplitude spectra, per frequency interval, and their mean.

    `real_power` `(N,F)` and `fake_power` `(M,F)` are one band of ``radial_spectrum`` power at `freqs`
    `(F,)` (cycles/px, ``k / size``). ``variant="intervals"`` (the paper's description): keys
    ``interval_01`` .. ``interval_14`` pool every value of every image inside each interval of
    `holzschuh_spectrum_bins`. ``variant="released_code"`` (what the authors' code computed): keys
    ``wavenumber_01`` .. ``wavenumber_14``, one integer wavenumber k each. ``mean`` averages the finite ones.
    """
    real = np.asarray(real_power, dtype=np.float64)
    fake = np.asarray(fake_power, dtype=np.float64)
    f = np.asarray(freqs, dtype=np.float64)
    if real.ndim != 2 or fake.ndim != 2 or f.ndim != 1:
        raise ValueError(
            f"expected real (N,F), fake (M,F), freqs (F,); got {real.shape}, {fake.shape}, {f.shape}"
        )
    if real.shape[1] != f.size or fake.shape[1] != f.size:
        raise ValueError(
            f"frequency counts differ: real {real.shape[1]}, fake {fake.shape[1]}, {f.size} freqs"
        )
    if len(real) == 0 or len(fake) == 0:
        raise ValueError("the spectrum distance needs at least one real and one generated image")
    if f.size == 0 or f[0] <= 0 or np.any(np.diff(f) <= 0):
        raise ValueError("freqs must be positive and strictly increasing (radial_spectrum's k / size)")
    size_px = int(round(1.0 / f[0]))
    k = np.rint(f * size_px).astype(np.int64)
    lr, lf = _log_amplitude(real), _log_amplitude(fake)

    def pooled_w1(sel: np.ndarray) -> float:
        return _w1(lr[:, sel].ravel(), lf[:, sel].ravel()) if sel.any() else float("nan")

    out: dict[str, float] = {}
    if variant == "intervals":
        edges = holzschuh_spectrum_bins(size_px)
        for j in range(1, edges.size):
            sel = (f > edges[j - 1] * (1 + _REL_TOL)) & (f <= edges[j] * (1 + _REL_TOL))
            out[f"interval_{j:02d}"] = pooled_w1(sel)
    elif variant == "released_code":
        for j in range(1, NUM_SPECTRUM_INTERVALS + 1):
            out[f"wavenumber_{j:02d}"] = pooled_w1(k == j)
    else:
        raise ValueError(f"unknown variant {variant!r}; choose 'intervals' or 'released_code'")
    out["mean"] = _mean_finite(list(out.values()))
    return out


# ---------------------------------------------------------------------------------------------- morphology


def _keep_mask(values: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    """Galaxies inside every outlier cut (a NaN never removes a galaxy; it is dropped per property later)."""
    keep = np.ones(n, dtype=bool)
    for name, (lo, hi) in HOLZSCHUH_OUTLIER_CUTS.items():
        if name in values:
            v = np.asarray(values[name], dtype=np.float64)
            with np.errstate(invalid="ignore"):
                keep &= ~(np.isfinite(v) & ((v < lo) | (v > hi)))
    return keep


def _as_columns(values: Mapping[str, np.ndarray], names: Sequence[str], side: str) -> dict[str, np.ndarray]:
    missing = [k for k in names if k not in values]
    if missing:
        raise ValueError(f"{side} morphology lacks properties {missing}")
    cols = {k: np.asarray(values[k], dtype=np.float64).ravel() for k in values}
    lengths = {v.size for k, v in cols.items() if k in names or k in HOLZSCHUH_OUTLIER_CUTS}
    if len(lengths) > 1:
        raise ValueError(f"{side} morphology properties have different lengths: {sorted(lengths)}")
    return cols


def holzschuh_morphology_distance(
    real: Mapping[str, np.ndarray],
    fake: Mapping[str, np.ndarray],
    *,
    properties: Sequence[str] = HOLZSCHUH_MORPHOLOGY_PROPERTIES,
    outlier_cuts: bool = True,
) -> dict[str, float]:
    """Per-property W1 of real `(N,)` vs generated `(M,)` values, standardised by the real set; and the mean.

    With `outlier_cuts`, galaxies outside `HOLZSCHUH_OUTLIER_CUTS` are dropped first (on each side); then
    NaNs are dropped per property, each property is scaled by the real mean and standard deviation
    (1 where it is 0), and the W1 is taken. A property with no value on a side is NaN.
    """
    names = tuple(properties)
    r = _as_columns(real, names, "real")
    g = _as_columns(fake, names, "generated")
    if outlier_cuts:
        r_keep = _keep_mask(r, len(r[names[0]])) if names else None
        g_keep = _keep_mask(g, len(g[names[0]])) if names else None
    out: dict[str, float] = {}
    for name in names:
        a, b = r[name], g[name]
        if outlier_cuts:
            a, b = a[r_keep], b[g_keep]
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        if a.size == 0 or b.size == 0:
            out[name] = float("nan")
            continue
        mu, sd = float(a.mean()), float(a.std())
        sd = sd if sd > 0 else 1.0
        out[name] = _w1((a - mu) / sd, (b - mu) / sd)
    out["mean"] = _mean_finite(list(out.values()))
    return out
