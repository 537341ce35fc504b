"""Exponential moving average of generator weights, with a half-life in images (StyleGAN2's convention)."""

from __future__ import annotations

import torch
from torch import nn


def ema_beta(*, batch_images: int, cur_nimg: int, ema_kimg: float, rampup: float | None) -> float:
    """Decay per step so that the weight of old parameters halves every `ema_kimg` thousand images.

    With `rampup`, the half-life is capped at `rampup * cur_nimg` so early, bad weights fade fast.
    """
    ema_nimg = ema_kimg * 1000.0
    if rampup is not None:
        ema_nimg = min(ema_nimg, cur_nimg * rampup)
    return 0.5 ** (batch_images / max(ema_nimg, 1e-8))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, beta: float) -> None:
    """ema <- beta * ema + (1 - beta) * model for parameters; buffers (BN statistics) are copied."""
    for p_ema, p in zip(ema.parameters(), model.parameters(), strict=True):
        p_ema.lerp_(p.detach(), 1.0 - beta)
    for b_ema, b in zip(ema.buffers(), model.buffers(), strict=True):
        b_ema.copy_(b)
