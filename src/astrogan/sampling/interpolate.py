"""Latent interpolation: slerp walks in z (linear in w for mapping-network families) and the APOD sheet."""

from __future__ import annotations

import numpy as np
import torch

from astrogan.imaging import make_grid, slerp
from astrogan.sampling.generator import Generator


def interpolation_sheet(
    gen: Generator, *, rows: int = 8, steps: int = 8, seed: int = 0, trunc: float = 1.0, batch_size: int = 32
) -> np.ndarray:
    """A sheet whose columns walk from a start image (top row) to an end image (bottom row).

    `rows` columns-pairs are drawn from seeds seed..seed+2*rows-1; each column has `steps` images, the first
    and last being the endpoints (like the original APOD project's sheet). Returns uint8 (H', W', C), drawn
    as `gen.pictures` draws (a colour composite for a multi-band run).
    """
    starts = list(range(seed, seed + rows))
    ends = list(range(seed + rows, seed + 2 * rows))
    walk = _walk(gen, starts, ends, steps=steps, trunc=trunc, batch_size=batch_size)  # (rows, steps, ...)
    images = gen.pictures(walk.transpose(0, 1).reshape(steps * rows, *walk.shape[2:]))
    return make_grid(images, ncols=rows)  # row-major: each sheet row is one step


def interpolation_frames(
    gen: Generator, seed_from: int, seed_to: int, *, steps: int = 16, trunc: float = 1.0
) -> np.ndarray:
    """The walk between two seeds: uint8 (steps, H, W, C), drawn as `gen.pictures` draws."""
    return gen.pictures(_walk(gen, [seed_from], [seed_to], steps=steps, trunc=trunc)[0])


def _walk(
    gen: Generator, starts: list[int], ends: list[int], *, steps: int, trunc: float, batch_size: int = 32
) -> torch.Tensor:
    """Images along the walks starts[i] -> ends[i]: float32 (len(starts), steps, C, H, W) in [-1, 1].

    z-families walk on the sphere in z (slerp; z ~ N(0, I) lives near a shell); mapping families walk
    linearly in w, where StyleGAN's latent space is meant to be flat (Karras et al. 2019, sec. 4.2).
    The labels are the start seeds' labels.
    """
    za, zb = gen.latents(starts), gen.latents(ends)
    c = gen.labels_for(starts, None)
    rows = len(starts)
    c_all = None if c is None else c.repeat_interleave(steps, dim=0)  # row r's label (or conditions) repeated
    if gen.has_mapping:
        wa, wb = gen.to_w(za, c, trunc=trunc), gen.to_w(zb, c, trunc=trunc)  # (rows, num_ws, w_dim)
        tt = torch.linspace(0, 1, steps, device=za.device).view(1, -1, 1, 1)
        ws = wa.unsqueeze(1) * (1 - tt) + wb.unsqueeze(1) * tt  # (rows, steps, num_ws, w_dim)
        pa, pb = gen.prior_params(za, c), gen.prior_params(zb, c)  # a Sérsic prior walks with w: (rows, 5)
        prior = None
        if pa is not None and pb is not None:
            t2 = tt.view(1, -1, 1)
            prior = (pa.unsqueeze(1) * (1 - t2) + pb.unsqueeze(1) * t2).reshape(rows * steps, -1)
        imgs = gen.synthesize_ws(ws.reshape(rows * steps, *ws.shape[2:]), prior=prior, batch_size=batch_size)
    else:
        # imaging.slerp walks one pair (D,) -> (steps, D); stack the rows' walks: (rows * steps, D)
        t = np.linspace(0.0, 1.0, steps)
        walks = [slerp(a, b, t) for a, b in zip(za.cpu().numpy(), zb.cpu().numpy(), strict=True)]
        z = torch.from_numpy(np.concatenate(walks)).to(za.device)
        imgs = gen.synthesize(z, c_all, trunc=trunc, batch_size=batch_size)
    return imgs.reshape(rows, steps, *imgs.shape[1:])
