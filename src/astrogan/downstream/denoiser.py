"""The denoiser of Holzschuh et al. 2022: a full-resolution residual CNN (5x5 convolutions, 32 channels, 5 blocks)."""

from __future__ import annotations

import torch
from torch import nn


class ResidualBlock(nn.Module):
    """x + conv(relu(conv(x))), both convolutions `kernel_px` wide, `width` channels, at full resolution."""

    def __init__(self, width: int, *, kernel_px: int = 5) -> None:
        super().__init__()
        pad = kernel_px // 2
        self.conv1 = nn.Conv2d(width, width, kernel_px, padding=pad)
        self.conv2 = nn.Conv2d(width, width, kernel_px, padding=pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(torch.relu(self.conv1(x)))


class Denoiser(nn.Module):
    """Degraded `(N, C, H, W)` -> restored `(N, C, H, W)`, any H and W (no down-sampling anywhere).

    A 5x5 head to `width` channels, `num_blocks` residual blocks, a 5x5 tail back to C bands, and a global
    skip: the network predicts the correction to its input, which is zero for an undegraded image.
    """

    def __init__(self, channels: int, *, width: int = 32, num_blocks: int = 5, kernel_px: int = 5) -> None:
        super().__init__()
        pad = kernel_px // 2
        self.head = nn.Conv2d(channels, width, kernel_px, padding=pad)
        self.blocks = nn.Sequential(*(ResidualBlock(width, kernel_px=kernel_px) for _ in range(num_blocks)))
        self.tail = nn.Conv2d(width, channels, kernel_px, padding=pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.tail(torch.relu(self.blocks(torch.relu(self.head(x)))))
