"""DCGAN (Radford et al. 2016, "Unsupervised representation learning with deep convolutional GANs").

Dense layer to 4x4 features, strided transposed convs doubling the resolution, tanh output; a strided-conv
discriminator with BatchNorm, LeakyReLU(0.2) and dropout (layers.ByteDropout: the same maths, faster on a
CPU). Class-conditional when num_classes > 0: the generator concatenates a learned class embedding to z and
the discriminator adds a projection term (Miyato & Koyama 2018, "cGANs with projection discriminator"), the
Galaxy10 conditional-GAN setup.
Conditioned on continuous physical parameters when `cond` is set: the same two paths with a linear map of
the normalised conditions in place of the class embedding. With `noise` on, G adds learned per-pixel noise
after every transposed conv (StyleGAN's noise inputs, Karras et al. 2019), one weight per colour at the output.
Off by default: on the demo's data (a sky with pixel noise ~5 grey levels) training turned every noise weight down
to ~0.001 even when the output's started at the sky's level, before or after the tanh; the fakes' sky stays
painted from z, smoother from pixel to pixel than the reals' (1.5-1.8 grey levels against 5).
With `output_upsample="bilinear"` the last doubling is a bilinear upsample and a 3x3 conv: no checkerboard on the
output pixels, whose star-shaped cores made the demo's fakes asymmetric (the demo's setting; see demo.run).
With `cond_bn` on (conditional models), every BatchNorm of G takes its scale and shift from the condition's
embedding (conditional BatchNorm, de Vries et al. 2017; the SNGAN/BigGAN generators): the condition reaches
every resolution instead of only the 4x4 input.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from astrogan.conditions import CondSpec
from astrogan.models.layers import (
    ArchConfig,
    ByteDropout,
    CondNormalize,
    NoiseInjection,
    NoiseModeMixin,
    check_labels,
    init_weights,
    truncate_z,
)
from astrogan.utils.errors import UserError

OUTPUT_UPSAMPLES = ("transpose", "bilinear")


@dataclasses.dataclass(frozen=True)
class DCGANConfig(ArchConfig):
    """DCGAN hyper-parameters. Width: G has 4*ngf channels at 4x4 (256 by default), halving per doubling;
    D has ndf channels after its first conv, doubling per halving up to 8*ndf. `cond` is a
    `CondSpec.to_dict()` for a model conditioned on continuous physical parameters (exclusive with classes)."""

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
    cond: dict | None = None
    noise: bool = False  # per-pixel noise inputs in G (fixed buffers in eval(): see layers.NoiseInjection)
    cond_bn: bool = False  # conditional BatchNorm in G (needs classes or physical conditions)
    # G's last doubling (to the output pixels): "transpose" (4x4 stride-2 transposed conv, the paper's) or "bilinear"
    # (bilinear upsample + 3x3 conv: no checkerboard on the pixels; see the module docstring for what it measured).
    output_upsample: str = "transpose"

    def validate(self) -> None:
        super().validate()
        for name in ("ngf", "ndf", "embed_dim"):
            if getattr(self, name) < 1:
                raise UserError(f"dcgan config {name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"dcgan config dropout must be in [0, 1), got {self.dropout}")
        if self.output_upsample not in OUTPUT_UPSAMPLES:
            raise UserError(
                f"dcgan config output_upsample must be one of {', '.join(OUTPUT_UPSAMPLES)}, "
                f"got {self.output_upsample!r}"
            )

    def g_channels(self) -> list[int]:
        """G feature channels at 4, 8, ..., image_size/2 px."""
        floor = min(16, self.ngf)
        n = int(math.log2(self.image_size)) - 2
        return [max((self.ngf * 4) >> i, floor) for i in range(n)]

    def d_channels(self) -> list[int]:
        """D feature channels at image_size/2, ..., 4 px."""
        n = int(math.log2(self.image_size)) - 2
        return [min(self.ndf << i, self.ndf * 8) for i in range(n)]


def _conditioning(
    cfg: DCGANConfig, out_dim: int
) -> tuple[nn.Embedding | nn.Linear | None, CondNormalize | None]:
    """The embedding of c into `out_dim` features: nn.Embedding for classes, or a normaliser + nn.Linear for
    physical conditions (no bias: a constant would not depend on c); (None, None) when unconditional."""
    spec = cfg.cond_spec()
    if spec is not None:
        return nn.Linear(spec.dim, out_dim, bias=False), CondNormalize(spec)
    if cfg.num_classes > 0:
        return nn.Embedding(cfg.num_classes, out_dim), None
    return None, None


def _to_output(c_in: int, channels: int, how: str) -> list[nn.Module]:
    """G's last doubling, (N, c_in, S, S) -> (N, channels, 2S, 2S): a transposed conv, or bilinear + 3x3 conv."""
    # A 4x4 stride-2 transposed conv overlaps unevenly: a checkerboard on the pixels (Odena et al. 2016).
    if how == "bilinear":
        return [
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(c_in, channels, 3, 1, 1),
        ]
    return [nn.ConvTranspose2d(c_in, channels, 4, 2, 1)]


class _Conditioned(nn.Module):
    """`c` -> its embedding, for both networks: labels (N,) or physical conditions (N, K) -> (N, out_dim)."""

    embed: nn.Embedding | nn.Linear | None
    cond_norm: CondNormalize | None
    cond_spec: CondSpec | None

    def _init_conditioning(self, cfg: DCGANConfig, out_dim: int) -> None:
        self.num_classes, self.cond_spec = cfg.num_classes, cfg.cond_spec()
        self.cond_dim = self.cond_spec.dim if self.cond_spec is not None else 0
        self.embed, self.cond_norm = _conditioning(cfg, out_dim)

    def _check(self, c: torch.Tensor | None, batch: int, *, check_range: bool) -> None:
        check_labels(
            c,
            num_classes=self.num_classes,
            batch=batch,
            arch="dcgan",
            check_range=check_range,
            cond=self.cond_spec,
        )

    def _embed_c(self, c: torch.Tensor) -> torch.Tensor:
        assert self.embed is not None
        return self.embed(self.cond_norm(c) if self.cond_norm is not None else c)


class CondBatchNorm2d(nn.Module):
    """BatchNorm without its own affine; scale 1 + gain(e) and shift bias(e) from the condition embedding e.

    x (N, C, H, W), e (N, E) -> (N, C, H, W)."""

    def __init__(self, channels: int, embed_dim: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Linear(embed_dim, channels)
        self.bias = nn.Linear(embed_dim, channels)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        gain, bias = self.gain(e).to(x.dtype), self.bias(e).to(x.dtype)
        return self.bn(x) * (1.0 + gain[:, :, None, None]) + bias[:, :, None, None]


class Generator(NoiseModeMixin, _Conditioned):
    """z (N, z_dim) [+ c: labels (N,) or physical conditions (N, K)] -> images (N, channels, S, S) in [-1, 1].

    Conditions are in physical units; they are normalised inside with the spec's mean/std.
    """

    arch = "dcgan"

    def __init__(self, cfg: DCGANConfig) -> None:
        super().__init__()
        cfg.validate()
        self.config = cfg
        self.z_dim = cfg.z_dim
        self.image_size, self.channels = cfg.image_size, cfg.channels
        chs = cfg.g_channels()
        self._init_conditioning(cfg, cfg.embed_dim)
        in_dim = cfg.z_dim + (cfg.embed_dim if self.embed is not None else 0)
        if cfg.cond_bn and self.embed is None:  # here, not in validate(): the run sets classes/cond later
            raise UserError(
                "dcgan config cond_bn needs a conditional model: train with --num-classes or --cond"
            )
        self.fc = nn.Linear(in_dim, chs[0] * 16, bias=False)
        self.cond_bn = bool(cfg.cond_bn)
        bn = (lambda ch: CondBatchNorm2d(ch, cfg.embed_dim)) if cfg.cond_bn else nn.BatchNorm2d  # noqa: E731
        self.fc_norm = nn.Sequential(bn(chs[0]), nn.LeakyReLU(0.2))
        blocks: list[nn.Module] = []
        noise = lambda res, ch=1: [NoiseInjection(res, seed=res, channels=ch)] if cfg.noise else []  # noqa: E731
        for i, (c_in, c_out) in enumerate(zip(chs[:-1], chs[1:], strict=True)):
            blocks += [
                nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),
                *noise(8 << i),
                bn(c_out),
                nn.LeakyReLU(0.2),
            ]
        blocks += [
            *_to_output(chs[-1], cfg.channels, cfg.output_upsample),
            *noise(cfg.image_size, cfg.channels),
            nn.Tanh(),
        ]
        self.blocks = nn.Sequential(*blocks)
        init_weights(self)
        if self.cond_norm is not None and isinstance(self.embed, nn.Linear):
            # Unit-variance features for unit-variance conditions, like the class embedding's N(0, 1) rows
            # (init_weights' N(0, 0.02) would leave the conditions a whisper beside z).
            nn.init.normal_(self.embed.weight, 0.0, 1.0 / math.sqrt(self.embed.in_features))

    def forward(
        self, z: torch.Tensor, c: torch.Tensor | None = None, *, trunc: float | torch.Tensor = 1.0
    ) -> torch.Tensor:
        # Range check only outside training: it reads labels back from the device.
        self._check(c, z.shape[0], check_range=not self.training)
        z = truncate_z(z, trunc)  # z only: truncation must not move the conditions
        e = self._embed_c(c).to(z.dtype) if self.embed is not None and c is not None else None
        if e is not None:
            z = torch.cat([z, e], dim=1)
        x = self.fc(z).view(z.shape[0], -1, 4, 4)
        if not self.cond_bn:
            return self.blocks(self.fc_norm(x))
        assert e is not None  # cond_bn models are conditional: _check refused a missing c
        for m in [*self.fc_norm, *self.blocks]:
            x = m(x, e) if isinstance(m, CondBatchNorm2d) else m(x)
        return x


class Discriminator(_Conditioned):
    """images (N, channels, S, S) [+ c: labels (N,) or physical conditions (N, K)] -> one logit per image (N,)."""

    arch = "dcgan"

    def __init__(self, cfg: DCGANConfig) -> None:
        super().__init__()
        cfg.validate()
        self.config = cfg
        chs = cfg.d_channels()
        layers: list[nn.Module] = [
            nn.Conv2d(cfg.channels, chs[0], 4, 2, 1),
            nn.LeakyReLU(0.2),
            ByteDropout(cfg.dropout),
        ]
        for c_in, c_out in zip(chs[:-1], chs[1:], strict=True):
            layers += [
                nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.LeakyReLU(0.2),
                ByteDropout(cfg.dropout),
            ]
        self.features = nn.Sequential(*layers)
        feat_dim = chs[-1] * 16
        self.out = nn.Linear(feat_dim, 1)
        # Projection term <embed(c), phi(x)>: labels or conditions enter the logit directly (Miyato & Koyama 2018).
        self._init_conditioning(cfg, feat_dim)
        init_weights(self)
        if self.embed is not None:
            nn.init.normal_(self.embed.weight, 0.0, 0.02)

    def forward(
        self, x: torch.Tensor, c: torch.Tensor | None = None, *, c_other: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits (N,); with `c_other` (conditions for the same images), (2, N): rows for c and c_other,
        from one pass through the trunk (the loss's mismatch term)."""
        h = self.features(x).flatten(1)
        logit = self.out(h).squeeze(1)
        self._check(c, x.shape[0], check_range=False)
        if self.embed is None or c is None:
            return logit
        if c_other is None:
            return logit + (self._embed_c(c).to(h.dtype) * h).sum(dim=1)
        e = self._embed_c(torch.stack([c, c_other])).to(h.dtype)  # (2, N, F)
        return logit + (e * h).sum(dim=2)


def build_generator(cfg: DCGANConfig) -> Generator:
    """Validated DCGAN generator."""
    return Generator(cfg)


def build_discriminator(cfg: DCGANConfig) -> Discriminator:
    """Validated DCGAN discriminator."""
    return Discriminator(cfg)
