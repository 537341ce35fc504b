"""Get a generator ready for export: a copy in inference mode with a fixed signature."""

from __future__ import annotations

import copy

import torch
from torch import nn

from astrogan.models.layers import bake_spectral_norm


class ExportWrapper(nn.Module):
    """`forward(z)` or `forward(z, c)` -> images clamped to [-1, 1], exactly what the sampler draws."""

    def __init__(self, G: nn.Module) -> None:
        super().__init__()
        self.G = G
        self.z_dim = int(G.z_dim)
        self.num_classes = int(getattr(G, "num_classes", 0) or 0)
        self.image_size = int(G.image_size)
        self.channels = int(G.channels)
        self.conditional = self.num_classes > 0

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.G(z, c).clamp(-1.0, 1.0)


def prepare_generator(G: nn.Module) -> ExportWrapper:
    """A detached copy of `G` in eval() mode: batch norm uses its running statistics, noise injection its
    fixed buffers, spectral norm its stored vectors (no power iteration), and no augmentation runs.

    Spectral norm is baked: each parametrized weight is replaced by the weight forward() uses in eval(),
    so the graph holds plain convs (ONNX has no `vdot`).
    """
    G = copy.deepcopy(G).cpu().float().eval().requires_grad_(False)
    bake_spectral_norm(G)  # safe on the copy: the caller's generator keeps its parametrizations
    return ExportWrapper(G).eval()


def dummy_inputs(wrapper: ExportWrapper, *, batch: int = 2) -> tuple[torch.Tensor, ...]:
    """Example inputs for tracing (a batch of >1 so that no size-1 dimension gets baked in)."""
    z = torch.randn(batch, wrapper.z_dim, generator=torch.Generator().manual_seed(0))
    if wrapper.conditional:
        return z, torch.arange(batch, dtype=torch.int64) % wrapper.num_classes
    return (z,)
