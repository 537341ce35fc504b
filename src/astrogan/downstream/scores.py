"""Per-image restoration scores on the unit scale: MSE, PSNR and SSIM (Wang et al. 2004), batched in torch."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from astrogan.downstream.degrade import Box

SSIM_WINDOW_PX = 11  # Wang et al. 2004: an 11x11 Gaussian window of sigma 1.5, K1 = 0.01, K2 = 0.03
SSIM_SIGMA_PX = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
DATA_RANGE = 1.0  # the unit scale


def crop(x: torch.Tensor, box: Box) -> torch.Tensor:
    """`(N, C, H, W)` restricted to box (y0, y1, x0, x1)."""
    y0, y1, x0, x1 = box
    return x[..., y0:y1, x0:x1]


def mse(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image `(N,)` over bands and pixels."""
    return (pred.float() - truth.float()).pow(2).flatten(1).mean(1)


def psnr(mse_values: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image `(N,)` for a data range of 1: 10 log10(1 / MSE)."""
    return 10.0 * torch.log10(DATA_RANGE**2 / mse_values.clamp_min(1e-12))


def _window(size: int, device: torch.device) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * SSIM_SIGMA_PX**2))
    g = (g / g.sum()).to(torch.float32)
    return (g[:, None] * g[None, :]).to(device)


def ssim(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Mean SSIM per image `(N,)`, averaged over bands and over the positions where the window fits.

    The Gaussian-weighted form of Wang et al. 2004 (as `skimage.metrics.structural_similarity(...,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1)`), with the window
    narrowed to the image where it is smaller than 11 px.
    """
    n, c, h, w = pred.shape
    size = min(SSIM_WINDOW_PX, h - (1 - h % 2), w - (1 - w % 2))
    win = _window(size, pred.device).expand(c, 1, size, size)
    x, y = pred.float(), truth.float()

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, win, groups=c)

    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cxy = blur(x * y) - mx * my
    c1, c2 = (SSIM_K1 * DATA_RANGE) ** 2, (SSIM_K2 * DATA_RANGE) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)


def summarise(values: list[float]) -> tuple[float, float]:
    """(mean, standard deviation with ddof=1; 0 for a single value) of a list of numbers."""
    m = sum(values) / len(values)
    if len(values) < 2:
        return m, 0.0
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))
