"""The mixing loader: each training batch comes whole from the generated set with probability alpha, else the real.

Stateless by design: batch `step` is decided by `SeedSequence([seed, stream, step])` alone (which set,
which images, which noise), so a resumed cell draws exactly the batches an uninterrupted one would, and
cells with the same seed but different alpha share their random numbers (the comparison between alphas is
paired: at alpha 0.2 and 0.4 the same steps, images and noise are drawn wherever both pick the same set).
"""

from __future__ import annotations

import numpy as np
import torch

from astrogan.downstream.config import derive_seed
from astrogan.downstream.degrade import Degradation
from astrogan.downstream.sets import ImageSet

REAL, GENERATED = "real", "generated"
BATCH_STREAM = 1  # SeedSequence([seed, stream, step]) streams of a cell's data seed
NOISE_STREAM = 2


class MixingSampler:
    """Which set and which images batch `step` takes: the generated set with probability `alpha`.

    alpha 0 never picks the generated set and alpha 1 never the real one (u ~ U[0, 1) is compared with
    `u < alpha`). Images are drawn without replacement within a batch (with replacement only when the set
    is smaller than a batch).
    """

    def __init__(
        self, alpha: float, *, num_real: int, num_generated: int, batch_size: int, seed: int
    ) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if alpha < 1 and num_real < 1:
            raise ValueError("alpha < 1 needs real training images")
        if alpha > 0 and num_generated < 1:
            raise ValueError("alpha > 0 needs generated images")
        self.alpha = float(alpha)
        self.num_real, self.num_generated = int(num_real), int(num_generated)
        self.batch_size = int(batch_size)
        self.seed = int(seed)

    def draw(self, step: int) -> tuple[str, np.ndarray]:
        """(set name, positions `(batch_size,)` in that set) for training step `step`."""
        rng = np.random.default_rng(derive_seed(self.seed, BATCH_STREAM, step))
        source = GENERATED if rng.random() < self.alpha else REAL
        n = self.num_generated if source == GENERATED else self.num_real
        return source, rng.choice(n, size=self.batch_size, replace=n < self.batch_size)


class MixingLoader:
    """Training batches `(inputs, truth)` `(B, C, H, W)` on `device`, degraded alike whichever set they came from."""

    def __init__(
        self,
        sampler: MixingSampler,
        *,
        real: ImageSet,
        generated: ImageSet | None,
        degradation: Degradation,
        device: torch.device | str = "cpu",
    ) -> None:
        self.sampler = sampler
        self.sets = {REAL: real, GENERATED: generated}
        self.degradation = degradation
        self.device = torch.device(device)

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        """(degraded input, clean truth, set name) for training step `step`."""
        source, idx = self.sampler.draw(step)
        images = self.sets[source]
        assert images is not None  # the sampler never picks a set it was told is empty
        clean = images.take(idx).to(self.device)
        noise = torch.Generator().manual_seed(derive_seed(self.sampler.seed, NOISE_STREAM, step))
        inputs, truth, _ = self.degradation(clean, generator=noise)
        return inputs, truth, source
