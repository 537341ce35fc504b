"""The average of many generated images (the APOD project's "average of 1,000 fakes")."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from astrogan.sampling.generator import Generator


def average_image(
    gen: Generator,
    *,
    num: int = 1000,
    seed: int = 0,
    trunc: float = 1.0,
    batch_size: int = 64,
    on_batch: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Mean of `num` images from seeds seed..seed+num-1, in float64 then to uint8 (H, W, C)."""
    total = torch.zeros(gen.channels, gen.image_size, gen.image_size, dtype=torch.float64)
    for i in range(0, num, batch_size):
        seeds = list(range(seed + i, seed + min(num, i + batch_size)))
        imgs = gen.generate_tensor(seeds, trunc=trunc, batch_size=batch_size)
        total += ((imgs.double() + 1) * 127.5).sum(0)
        if on_batch:
            on_batch(len(seeds))
    mean = (total / max(num, 1)).clamp(0, 255).round().to(torch.uint8)
    return mean.permute(1, 2, 0).numpy()
