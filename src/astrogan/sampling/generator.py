"""Seeded generation from a trained generator: seed N gives the same image alone or in any batch."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from astrogan.models.io import load_generator_module
from astrogan.sampling.post import to_uint8
from astrogan.utils.seeds import labels_for_seeds, latents_for_seeds
from astrogan.utils.torchtools import pick_device


class Generator:
    """A generator ready for inference: `generate(seeds)` -> uint8 (N, H, W, C).

    Latents come from `utils.seeds.latents_for_seeds` (one NumPy PCG64 stream per seed), so the
    torch-free web server and this class agree. Truncation happens inside the network: a family with a
    mapping network (StyleGAN2) pulls w towards its tracked average, a plain z-GAN scales z towards 0.
    """

    def __init__(self, module: nn.Module, meta: dict[str, Any], *, device: torch.device) -> None:
        self.module = module.to(device).eval()
        self.meta = meta
        self.device = device
        self.z_dim = int(module.z_dim)
        self.image_size = int(module.image_size)
        self.channels = int(module.channels)
        self.num_classes = int(getattr(module, "num_classes", 0))

    def latents(self, seeds: Sequence[int]) -> torch.Tensor:
        """float32 (N, z_dim) on the device: one latent per seed."""
        return torch.from_numpy(latents_for_seeds(seeds, self.z_dim)).to(self.device)

    @property
    def has_mapping(self) -> bool:
        """True for families with a mapping network (z -> w), whose walks and truncation live in w."""
        return hasattr(self.module, "mapping") and hasattr(self.module, "synthesis")

    @torch.no_grad()
    def to_w(self, z: torch.Tensor, c: torch.Tensor | None = None, *, trunc: float = 1.0) -> torch.Tensor:
        """Mapped latents ws (N, num_ws, w_dim), truncated towards the tracked w average."""
        return self.module.mapping(z, c, trunc=trunc)

    @torch.no_grad()
    def synthesize_ws(self, ws: torch.Tensor, *, batch_size: int = 32) -> torch.Tensor:
        """Images from mapped latents ws (N, num_ws, w_dim): float32 (N, C, H, W) in [-1, 1] on the CPU."""
        outs = [
            self.module.synthesis(ws[i : i + batch_size]).float().clamp(-1, 1).cpu()
            for i in range(0, ws.shape[0], batch_size)
        ]
        return torch.cat(outs) if outs else torch.empty(0, self.channels, self.image_size, self.image_size)

    def labels_for(self, seeds: Sequence[int], labels: Sequence[int] | int | None) -> torch.Tensor | None:
        """Class labels (N,) for a conditional model: given ones, or `seed % num_classes` by default."""
        values = labels_for_seeds(seeds, self.num_classes, labels)
        return None if values is None else torch.tensor(values, dtype=torch.long, device=self.device)

    @torch.no_grad()
    def synthesize(
        self, z: torch.Tensor, c: torch.Tensor | None = None, *, trunc: float = 1.0, batch_size: int = 32
    ) -> torch.Tensor:
        """Run the network on given latents in batches: float32 (N, C, H, W) in [-1, 1] on the CPU."""
        outs = []
        for i in range(0, z.shape[0], batch_size):
            cc = None if c is None else c[i : i + batch_size]
            outs.append(self.module(z[i : i + batch_size], cc, trunc=trunc).float().clamp(-1, 1).cpu())
        return torch.cat(outs) if outs else torch.empty(0, self.channels, self.image_size, self.image_size)

    def generate_tensor(
        self,
        seeds: Sequence[int],
        *,
        trunc: float = 1.0,
        labels: Sequence[int] | int | None = None,
        batch_size: int = 32,
    ) -> torch.Tensor:
        """float32 (N, C, H, W) in [-1, 1] for the given seeds."""
        return self.synthesize(
            self.latents(seeds), self.labels_for(seeds, labels), trunc=trunc, batch_size=batch_size
        )

    def generate(
        self,
        seeds: Sequence[int],
        *,
        trunc: float = 1.0,
        labels: Sequence[int] | int | None = None,
        batch_size: int = 32,
    ) -> np.ndarray:
        """uint8 (N, H, W, C) pictures for the given seeds."""
        return to_uint8(
            self.generate_tensor(seeds, trunc=trunc, labels=labels, batch_size=batch_size).numpy()
        )


def load_generator(path: str | Path, *, device: str = "auto") -> Generator:
    """Load the EMA generator of a run dir, a checkpoints dir, or a generator.safetensors/.json file."""
    dev = pick_device(device)
    module, meta = load_generator_module(Path(path), device=str(dev))
    return Generator(module, meta, device=dev)
