"""DCGAN (Radford et al. 2016, "Unsupervised representation learning with deep convolutional GANs").

Dense layer to 4x4 features, strided transposed convs doubling the resolution, tanh output; a strided-conv
discriminator with BatchNorm, LeakyReLU(0.2) and dropout. Class-conditional when num_classes > 0: the
generator concatenates a learned class embedding to z and the discriminator adds a projection term
(Miyato & Koyama 2018, "cGANs with projection discriminator"), the Galaxy10 conditional-GAN setup.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from astrogan.models.layers import ArchConfig, check_labels, init_weights, truncate_z
from astrogan.utils.errors import UserError


@dataclasses.dataclass(frozen=True)
class DCGANConfig(ArchConfig):
    """DCGAN hyper-parameters. Width: G has 4*ngf channels at 4x4 (256 by default), halving per doubling;
    D has ndf channels after its first conv, doubling per halving up to 8*ndf."""

    ARCH = "dcgan"
    MIN_IMAGE_SIZE = 16
    MAX_IMAGE_SIZE = 256

    image_size: int = 64
    channels: int = 3
    z_dim: int = 100
    num_classes: int = 0
    ngf: int = 64
    ndf: int = 64
    embed_dim: int = 32
    dropout: float = 0.25

    def validate(self) -> None:
        super().validate()
        for name in ("ngf", "ndf", "embed_dim"):
            if getattr(self, name) < 1:
                raise UserError(f"dcgan config {name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"dcgan config dropout must be in [0, 1), got {self.dropout}")

    def g_channels(self) -> list[int]:
        """G feature channels at 4, 8, ..., image_size/2 px."""
        floor = min(16, self.ngf)
        n = int(math.log2(self.image_size)) - 2
        return [max((self.ngf * 4) >> i, floor) for i in range(n)]

    def d_channels(self) -> list[int]:
        """D feature channels at image_size/2, ..., 4 px."""
        n = int(math.log2(self.image_size)) - 2
        return [min(self.ndf << i, self.ndf * 8) for i in range(n)]


class Generator(nn.Module):
    """z (N, z_dim) [+ labels c (N,)] -> images (N, channels, image_size, image_size) in [-1, 1]."""

    arch = "dcgan"

    def __init__(self, cfg: DCGANConfig) -> None:
        super().__init__()
        cfg.validate()
        self.config = cfg
        self.z_dim, self.num_classes = cfg.z_dim, cfg.num_classes
        self.image_size, self.channels = cfg.image_size, cfg.channels
        chs = cfg.g_channels()
        in_dim = cfg.z_dim
        self.embed: nn.Embedding | None = None
        if cfg.num_classes > 0:
            self.embed = nn.Embedding(cfg.num_classes, cfg.embed_dim)
            in_dim += cfg.embed_dim
        self.fc = nn.Linear(in_dim, chs[0] * 16, bias=False)
        self.fc_norm = nn.Sequential(nn.BatchNorm2d(chs[0]), nn.LeakyReLU(0.2))
        blocks: list[nn.Module] = []
        for c_in, c_out in zip(chs[:-1], chs[1:], strict=True):
            blocks += [
                nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.LeakyReLU(0.2),
            ]
        blocks += [nn.ConvTranspose2d(chs[-1], cfg.channels, 4, 2, 1), nn.Tanh()]
        self.blocks = nn.Sequential(*blocks)
        init_weights(self)

    def forward(
        self, z: torch.Tensor, c: torch.Tensor | None = None, *, trunc: float | torch.Tensor = 1.0
    ) -> torch.Tensor:
        # Range check only outside training: it reads labels back from the device.
        check_labels(
            c, num_classes=self.num_classes, batch=z.shape[0], arch=self.arch, check_range=not self.training
        )
        z = truncate_z(z, trunc)
        if self.embed is not None and c is not None:
            z = torch.cat([z, self.embed(c).to(z.dtype)], dim=1)
        x = self.fc(z).view(z.shape[0], -1, 4, 4)
        return self.blocks(self.fc_norm(x))


class Discriminator(nn.Module):
    """images (N, channels, S, S) [+ labels c (N,)] -> one real/fake logit per image (N,)."""

    arch = "dcgan"

    def __init__(self, cfg: DCGANConfig) -> None:
        super().__init__()
        cfg.validate()
        self.config = cfg
        self.num_classes = cfg.num_classes
        chs = cfg.d_channels()
        layers: list[nn.Module] = [
            nn.Conv2d(cfg.channels, chs[0], 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Dropout(cfg.dropout),
        ]
        for c_in, c_out in zip(chs[:-1], chs[1:], strict=True):
            layers += [
                nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.LeakyReLU(0.2),
                nn.Dropout(cfg.dropout),
            ]
        self.features = nn.Sequential(*layers)
        feat_dim = chs[-1] * 16
        self.out = nn.Linear(feat_dim, 1)
        # Projection term <embed(c), phi(x)>: labels enter the logit directly (Miyato & Koyama 2018).
        self.embed = nn.Embedding(cfg.num_classes, feat_dim) if cfg.num_classes > 0 else None
        init_weights(self)
        if self.embed is not None:
            nn.init.normal_(self.embed.weight, 0.0, 0.02)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        h = self.features(x).flatten(1)
        logit = self.out(h).squeeze(1)
        check_labels(c, num_classes=self.num_classes, batch=x.shape[0], arch=self.arch, check_range=False)
        if self.embed is not None and c is not None:
            logit = logit + (self.embed(c).to(h.dtype) * h).sum(dim=1)
        return logit


def build_generator(cfg: DCGANConfig) -> Generator:
    """Validated DCGAN generator."""
    return Generator(cfg)


def build_discriminator(cfg: DCGANConfig) -> Discriminator:
    """Validated DCGAN discriminator."""
    return Discriminator(cfg)
