"""Get a generator ready for export: a copy in inference mode with a fixed signature.

Truncation is an input of the exported graph (`trunc`, float32 (N,), one factor per sample): the generator
applies it itself (z scaled for z-GANs, w pulled to its tracked average for mapping networks), so an
exported model truncates exactly as `G(z, c, trunc=...)` does in PyTorch. A model trained on physical
conditions takes them as `cond`, float32 (N, K) in physical units, normalised inside the graph.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from astrogan.conditions import CondSpec
from astrogan.models.layers import bake_spectral_norm


class ExportWrapper(nn.Module):
    """A generator with the export signature: `forward(z, trunc)` (unconditional), `forward(z, c, trunc)`
    (class-conditional) or `forward(z, cond, trunc)` (physical conditions) -> images clamped to [-1, 1],
    exactly what the sampler draws.

    `z` float32 (N, z_dim), `c` int64 (N,), `cond` float32 (N, K), `trunc` float32 (N,). `prepare_generator`
    returns the subclass that matches the generator; this base class only holds what they share.
    """

    def __init__(self, G: nn.Module) -> None:
        super().__init__()
        self.G = G
        spec: Any = G  # plain int attributes every generator has (nn.Module's __getattr__ types them loosely)
        self.z_dim = int(spec.z_dim)
        self.num_classes = int(getattr(G, "num_classes", 0) or 0)
        self.image_size = int(spec.image_size)
        self.channels = int(spec.channels)
        self.conditional = self.num_classes > 0  # class labels `c`
        cond_spec = getattr(G, "cond_spec", None)
        self.cond_spec: CondSpec | None = cond_spec if isinstance(cond_spec, CondSpec) else None


class UnconditionalExportWrapper(ExportWrapper):
    """`forward(z, trunc)` -> images in [-1, 1]."""

    def forward(self, z: torch.Tensor, trunc: torch.Tensor) -> torch.Tensor:
        return self.G(z, None, trunc=trunc).clamp(-1.0, 1.0)


class ConditionalExportWrapper(ExportWrapper):
    """`forward(z, c, trunc)` -> images in [-1, 1]."""

    def forward(self, z: torch.Tensor, c: torch.Tensor, trunc: torch.Tensor) -> torch.Tensor:
        return self.G(z, c, trunc=trunc).clamp(-1.0, 1.0)


class CondExportWrapper(ExportWrapper):
    """`forward(z, cond, trunc)` -> images in [-1, 1]; `cond` in physical units (the graph normalises it)."""

    def forward(self, z: torch.Tensor, cond: torch.Tensor, trunc: torch.Tensor) -> torch.Tensor:
        return self.G(z, cond, trunc=trunc).clamp(-1.0, 1.0)


def prepare_generator(G: nn.Module) -> ExportWrapper:
    """A detached copy of `G` in eval() mode: batch norm uses its running statistics, noise injection its
    fixed buffers, spectral norm its stored vectors (no power iteration), and no augmentation runs.

    Spectral norm is baked: each parametrized weight is replaced by the weight forward() uses in eval(),
    so the graph holds plain convs (ONNX has no `vdot`).
    """
    G = copy.deepcopy(G).cpu().float().eval().requires_grad_(False)
    bake_spectral_norm(G)  # safe on the copy: the caller's generator keeps its parametrizations
    wrapper: ExportWrapper
    if isinstance(getattr(G, "cond_spec", None), CondSpec):
        wrapper = CondExportWrapper(G)
    elif int(getattr(G, "num_classes", 0) or 0) > 0:
        wrapper = ConditionalExportWrapper(G)
    else:
        wrapper = UnconditionalExportWrapper(G)
    return wrapper.eval()


def dummy_inputs(wrapper: ExportWrapper, *, batch: int = 2) -> tuple[torch.Tensor, ...]:
    """Example inputs for tracing, in forward's order: `(z, trunc)`, `(z, c, trunc)` or `(z, cond, trunc)`.

    A batch of >1 so that no size-1 dimension gets baked in, and a truncation (1.0, 0.7, ...) and conditions
    (a quarter and three quarters into the trained range, ...) that differ per row, so that nothing about
    them is constant-folded.
    """
    z = torch.randn(batch, wrapper.z_dim, generator=torch.Generator().manual_seed(0))
    trunc = torch.tensor([1.0, 0.7], dtype=torch.float32).repeat((batch + 1) // 2)[:batch]
    if wrapper.cond_spec is not None:
        low, high = torch.tensor(wrapper.cond_spec.low), torch.tensor(wrapper.cond_spec.high)
        frac = torch.tensor([0.25, 0.75]).repeat((batch + 1) // 2)[:batch, None]
        return z, (low + frac * (high - low)).float(), trunc
    if wrapper.conditional:
        return z, torch.arange(batch, dtype=torch.int64) % wrapper.num_classes, trunc
    return z, trunc
