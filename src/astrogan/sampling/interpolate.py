"""Latent interpolation: spherical (slerp) walks in z and the APOD project's start/between/end sheet."""

from __future__ import annotations

import numpy as np
import torch

from astrogan.imaging import make_grid, to_uint8
from astrogan.sampling.generator import Generator


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between rows of a and b (N, D) at fractions t (T,) -> (N, T, D)."""
    a_n = a / a.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    b_n = b / b.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    omega = torch.acos((a_n * b_n).sum(-1).clamp(-1 + 1e-7, 1 - 1e-7)).unsqueeze(-1)  # (N, 1)
    so = torch.sin(omega)
    t = t.view(1, -1, 1)
    omega, so = omega.unsqueeze(1), so.unsqueeze(1)
    out = (torch.sin((1 - t) * omega) / so) * a.unsqueeze(1) + (torch.sin(t * omega) / so) * b.unsqueeze(1)
    # Nearly parallel vectors: slerp degenerates to lerp.
    lerp = a.unsqueeze(1) * (1 - t) + b.unsqueeze(1) * t
    return torch.where(so.abs() < 1e-6, lerp, out)


def interpolation_sheet(
    gen: Generator, *, rows: int = 8, steps: int = 8, seed: int = 0, trunc: float = 1.0, batch_size: int = 32
) -> np.ndarray:
    """A sheet whose columns walk from a start image (top row) to an end image (bottom row).

    `rows` columns-pairs are drawn from seeds seed..seed+2*rows-1; each column has `steps` images, the first
    and last being the endpoints (like the original APOD project's sheet). Returns uint8 (H', W', C).
    """
    starts = list(range(seed, seed + rows))
    ends = list(range(seed + rows, seed + 2 * rows))
    za, zb = gen.latents(starts, trunc=trunc), gen.latents(ends, trunc=trunc)
    t = torch.linspace(0, 1, steps, device=za.device)
    z = slerp(za, zb, t)  # (rows, steps, D)
    z = z.transpose(0, 1).reshape(steps * rows, -1)  # row-major: each sheet row is one step
    c = gen.labels_for(starts, None)
    c = None if c is None else c.repeat(steps)
    images = to_uint8(gen.synthesize(z, c, batch_size=batch_size).numpy())
    return make_grid(images, ncols=rows)


def interpolation_frames(
    gen: Generator, seed_from: int, seed_to: int, *, steps: int = 16, trunc: float = 1.0
) -> np.ndarray:
    """The slerp walk between two seeds: uint8 (steps, H, W, C)."""
    za, zb = gen.latents([seed_from], trunc=trunc), gen.latents([seed_to], trunc=trunc)
    z = slerp(za, zb, torch.linspace(0, 1, steps, device=za.device))[0]
    c = gen.labels_for([seed_from] * steps, None)
    return to_uint8(gen.synthesize(z, c).numpy())
