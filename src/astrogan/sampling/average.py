"""The average of many generated images (the APOD project's "average of 1,000 fakes")."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from astrogan.sampling.generator import Generator
from astrogan.utils.seeds import check_batch_size


def average_image(
    gen: Generator,
    *,
    num: int = 1000,
    seed: int = 0,
    trunc: float = 1.0,
    batch_size: int = 64,
    on_batch: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Mean of `num` images from seeds seed..seed+num-1 as a uint8 picture (H, W, C), drawn as `gen` draws.

    Pictures: the mean pixel in float64, rounded. A science run: the mean FLUX per band (what a stack of
    the images would hold), stretched back and drawn as a composite (or one band) like any generated image.
    """
    batch_size = check_batch_size(batch_size)  # it strides the seeds here, before the generator sees it
    spec = gen.science
    total = torch.zeros(gen.channels, gen.image_size, gen.image_size, dtype=torch.float64)
    for i in range(0, num, batch_size):
        seeds = list(range(seed + i, seed + min(num, i + batch_size)))
        imgs = gen.generate_tensor(seeds, trunc=trunc, batch_size=batch_size)
        if spec is None:
            total += ((imgs.double() + 1) * 127.5).sum(0)
        else:
            total += torch.from_numpy(gen.flux_of(imgs).astype(np.float64)).sum(0)
        if on_batch:
            on_batch(len(seeds))
    mean = total / max(num, 1)
    if spec is None:
        pixels = mean.clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        band = gen.view.band
        return pixels if band is None else pixels[..., int(band) : int(band) + 1]
    # Back through the stretch to model values, so the mean is drawn exactly as a generated image would be.
    values = spec.stretch.forward(mean.numpy()[None]).astype(np.float64) * 2.0 - 1.0
    return gen.pictures(values.astype(np.float32))[0]
