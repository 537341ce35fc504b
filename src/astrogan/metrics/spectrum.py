"""2D power spectra, azimuthal averages, per-bin comparison (Holzschuh et al. 2022, MNRAS 515, 652)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import wasserstein_distance


def to_float_images(images: np.ndarray) -> np.ndarray:
    """`(N,H,W[,C])` uint8 or float -> float64 `(N,H,W,C)` (uint8 scaled to [0, 1])."""
    arr = np.asarray(images)
    out = arr.astype(np.float64) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float64)
    if out.ndim == 3:
        out = out[..., None]
    if out.ndim != 4:
        raise ValueError(f"expected images of shape (N,H,W) or (N,H,W,C), got {arr.shape}")
    return out


def power_spectrum_2d(images: np.ndarray) -> np.ndarray:
    """Per-image, per-band 2D power |FFT|^2 / (H W) with zero frequency centred: `(N,C,H,W)`.

    The mean of each image and band is removed first, so the DC term carries no brightness.
    """
    x = to_float_images(images)
    x = np.moveaxis(x, -1, 1)
    x = x - x.mean(axis=(2, 3), keepdims=True)
    h, w = x.shape[2:]
    f = np.fft.fftshift(np.fft.fft2(x), axes=(2, 3))
    return (np.abs(f) ** 2) / (h * w)


def radial_bins(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer radial bin of every frequency of an `(H,W)` shifted spectrum and bin frequencies (cycles/px).

    Bin k holds frequencies with round(|f| * min(H, W)) == k, for k = 1 .. min(H, W)//2 (0 is DC).
    """
    fy = np.fft.fftshift(np.fft.fftfreq(h))
    fx = np.fft.fftshift(np.fft.fftfreq(w))
    rad = np.hypot(fy[:, None], fx[None, :]) * min(h, w)
    k = np.rint(rad).astype(np.int64)
    num_bins = min(h, w) // 2
    return k, np.arange(1, num_bins + 1) / min(h, w)


def radial_spectrum(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Azimuthally averaged power: images `(N,H,W[,C])` -> (freqs (K,) cycles/px, power (N,C,K))."""
    p = power_spectrum_2d(images)
    n, c, h, w = p.shape
    k, freqs = radial_bins(h, w)
    num = freqs.size
    idx = k.ravel()
    sel = (idx >= 1) & (idx <= num)
    counts = np.bincount(idx[sel] - 1, minlength=num).astype(np.float64)
    flat = p.reshape(n * c, h * w)[:, sel]
    # One bincount for all images: offset each image's bins by its row number.
    rows = np.repeat(np.arange(n * c), sel.sum())
    cols = np.tile(idx[sel] - 1, n * c)
    sums = np.bincount(rows * num + cols, weights=flat.ravel(), minlength=n * c * num).reshape(n * c, num)
    return freqs, (sums / counts).reshape(n, c, num)


@dataclass
class SpectrumComparison:
    """Real vs generated 1D spectra: freqs (K,), means (C,K), ratio (C,K), per-bin W1 of log10 power (C,K)."""

    freqs: np.ndarray
    mean_real: np.ndarray
    mean_fake: np.ndarray
    ratio: np.ndarray
    w1: np.ndarray

    def summary(self, prefix: str = "spectrum") -> dict[str, float]:
        """Scalar figures: mean W1 over bins and bands, mean |log10 ratio|."""
        return {
            f"{prefix}_w1_mean": float(np.mean(self.w1)),
            f"{prefix}_log_ratio_mean_abs": float(np.mean(np.abs(np.log10(self.ratio)))),
        }


def _log_power(spec: np.ndarray) -> np.ndarray:
    return np.log10(np.maximum(spec, 1e-20))


def compare_spectra(real_spec: np.ndarray, fake_spec: np.ndarray, freqs: np.ndarray) -> SpectrumComparison:
    """Compare radial spectra `(N1,C,K)` and `(N2,C,K)`: mean ratio fake/real and per-bin 1D Wasserstein.

    The Wasserstein distance is taken between the distributions of log10 power in each bin and band,
    as in Holzschuh et al. (2022).
    """
    if real_spec.shape[1:] != fake_spec.shape[1:]:
        raise ValueError(f"spectra differ in bands/bins: {real_spec.shape[1:]} vs {fake_spec.shape[1:]}")
    mr, mf = real_spec.mean(axis=0), fake_spec.mean(axis=0)
    lr, lf = _log_power(real_spec), _log_power(fake_spec)
    c, k = mr.shape
    w1 = np.array([[wasserstein_distance(lr[:, b, j], lf[:, b, j]) for j in range(k)] for b in range(c)])
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(mr > 0, mf / mr, np.nan)
    return SpectrumComparison(freqs=freqs, mean_real=mr, mean_fake=mf, ratio=ratio, w1=w1)
