"""FastGAN (Liu et al. 2021, "Towards faster and stabilized GAN training for high-fidelity few-shot image
synthesis", ICLR 2021): skip-layer excitation, GLU up-blocks with noise injection, spectral norm, and a
self-supervised discriminator with simple decoders that reconstruct real images.

Generalised to 16-1024 px: channel widths come from per-resolution tables scaled by `ngf`/`ndf`; below
64 px (where the paper's 4->64 SLE cannot exist) one SLE goes from 4x4 onto the output resolution in G and
from the top feature map onto 8x8 in D, so tiny test models still exercise every part. The paper's
separate 128 px "small" image for D is made inside D by average pooling (min(128, image_size/2) px), so
the generator returns a single image like every other architecture here.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from astrogan.models.layers import (
    ArchConfig,
    NoiseInjection,
    NoiseModeMixin,
    SkipLayerExcitation,
    batch_norm,
    check_labels,
    sn_conv,
    sn_conv_transpose,
    truncate_z,
)
from astrogan.utils.errors import UserError

# Generator widths per resolution, as multiples of ngf (the paper's table).
_G_MULT = {4: 16, 8: 8, 16: 4, 32: 2, 64: 2, 128: 1, 256: 0.5, 512: 0.25, 1024: 0.125}
_MIN_CH = 4
_REC_MAX = 128  # the paper's decoders reconstruct at 128 px


@dataclasses.dataclass(frozen=True)
class FastGANConfig(ArchConfig):
    """FastGAN hyper-parameters. ngf=ndf=64 is the paper's size; ngf=ndf=16..32 a "small FastGAN" for CPUs."""

    ARCH = "fastgan"
    MIN_IMAGE_SIZE = 16
    MAX_IMAGE_SIZE = 1024

    image_size: int = 256
    channels: int = 3
    z_dim: int = 256
    num_classes: int = 0
    ngf: int = 64
    ndf: int = 64

    def validate(self) -> None:
        super().validate()
        for name in ("ngf", "ndf"):
            if getattr(self, name) < 1:
                raise UserError(f"fastgan config {name} must be >= 1, got {getattr(self, name)}")
        if self.num_classes > 0:
            raise UserError("fastgan is unconditional; use dcgan for class-conditional training")

    def g_ch(self, res: int) -> int:
        """Generator channels at `res` px."""
        return max(int(_G_MULT[res] * self.ngf), _MIN_CH)

    def d_ch(self, res: int) -> int:
        """Discriminator channels at `res` px: 8*ndf at 8x8, halving per doubling (the paper's table)."""
        return max(self.ndf * 64 // res, _MIN_CH)

    def g_sle_pairs(self) -> list[tuple[int, int]]:
        """(from_res, onto_res) SLE links in G: the paper's 4->64 ... 32->512, or 4->image_size below 64."""
        pairs = [(r, 16 * r) for r in (4, 8, 16, 32) if 16 * r <= self.image_size]
        return pairs or [(4, self.image_size)]

    def d_top(self) -> int:
        """Resolution of D's first feature map (the paper brings 512/1024 px inputs down to 256 first)."""
        return min(self.image_size, 256)

    def d_sle_pairs(self) -> list[tuple[int, int]]:
        """(from_res, onto_res) SLE links in D: r -> r/8 (256->32, 128->16, 64->8), or top->8 below 64."""
        top = self.d_top()
        pairs = [(r, r // 8) for r in (256, 128, 64) if r <= top]
        return pairs or [(top, 8)]

    def small_size(self) -> int:
        """Size of the downsampled copy the second D branch sees."""
        return min(_REC_MAX, self.image_size // 2)


def _glu_up(in_ch: int, out_ch: int) -> list[nn.Module]:
    return [
        nn.Upsample(scale_factor=2, mode="nearest"),
        sn_conv(in_ch, out_ch * 2, 3, 1, 1),
        batch_norm(out_ch * 2),
        nn.GLU(1),
    ]


class UpBlock(nn.Module):
    """Nearest x2 upsample, conv3x3, BN, GLU: (N, in, h, w) -> (N, out, 2h, 2w)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.main = nn.Sequential(*_glu_up(in_ch, out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


class UpBlockComp(nn.Module):
    """The paper's heavier up-block: upsample, two (conv3x3, noise injection, BN, GLU) stages."""

    def __init__(self, in_ch: int, out_ch: int, *, res: int) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),
            sn_conv(in_ch, out_ch * 2, 3, 1, 1),
            NoiseInjection(res, seed=10 * res),
            batch_norm(out_ch * 2),
            nn.GLU(1),
            sn_conv(out_ch, out_ch * 2, 3, 1, 1),
            NoiseInjection(res, seed=10 * res + 1),
            batch_norm(out_ch * 2),
            nn.GLU(1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


class Generator(NoiseModeMixin, nn.Module):
    """z (N, z_dim) -> images (N, channels, image_size, image_size) in [-1, 1].

    `noise_mode` ("auto", "random", "const", "none"): auto uses random noise in train() and the fixed
    buffers in eval(), so eval output depends on z alone and each sample is independent of its batch.
    """

    arch = "fastgan"

    def __init__(self, cfg: FastGANConfig) -> None:
        super().__init__()
        cfg.validate()
        self.config = cfg
        self.z_dim, self.num_classes = cfg.z_dim, cfg.num_classes
        self.image_size, self.channels = cfg.image_size, cfg.channels
        self.init = nn.Sequential(
            sn_conv_transpose(cfg.z_dim, cfg.g_ch(4) * 2, 4, 1, 0), batch_norm(cfg.g_ch(4) * 2), nn.GLU(1)
        )
        self.ups = nn.ModuleDict()
        for k in range(3, int(math.log2(cfg.image_size)) + 1):
            res = 2**k
            # The paper alternates: comp blocks at 8, 32, 128, 512; plain ones at 16, 64, 256, 1024.
            if k % 2 == 1:
                self.ups[str(res)] = UpBlockComp(cfg.g_ch(res // 2), cfg.g_ch(res), res=res)
            else:
                self.ups[str(res)] = UpBlock(cfg.g_ch(res // 2), cfg.g_ch(res))
        self.sle = nn.ModuleDict(
            {str(dst): SkipLayerExcitation(cfg.g_ch(src), cfg.g_ch(dst)) for src, dst in cfg.g_sle_pairs()}
        )
        self._sle_src = {dst: src for src, dst in cfg.g_sle_pairs()}
        self.to_rgb = nn.Sequential(sn_conv(cfg.g_ch(cfg.image_size), cfg.channels, 3, 1, 1), nn.Tanh())

    def forward(
        self, z: torch.Tensor, c: torch.Tensor | None = None, *, trunc: float | torch.Tensor = 1.0
    ) -> torch.Tensor:
        check_labels(c, num_classes=0, batch=z.shape[0], arch=self.arch)
        z = truncate_z(z, trunc)
        feats = {4: self.init(z.view(z.shape[0], -1, 1, 1))}
        x = feats[4]
        for key, block in self.ups.items():
            res = int(key)
            x = block(x)
            if res in self._sle_src:
                x = self.sle[key](feats[self._sle_src[res]], x)
            feats[res] = x
        return self.to_rgb(x)


class DownBlock(nn.Module):
    """Strided conv4x4, BN, LeakyReLU(0.2): (N, in, h, w) -> (N, out, h/2, w/2)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.main = nn.Sequential(sn_conv(in_ch, out_ch, 4, 2, 1), batch_norm(out_ch), nn.LeakyReLU(0.2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


class DownBlockComp(nn.Module):
    """The paper's residual down-block: mean of (conv4x4 s2, conv3x3) and (avgpool, conv1x1) paths."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.main = nn.Sequential(
            sn_conv(in_ch, out_ch, 4, 2, 1),
            batch_norm(out_ch),
            nn.LeakyReLU(0.2),
            sn_conv(out_ch, out_ch, 3, 1, 1),
            batch_norm(out_ch),
            nn.LeakyReLU(0.2),
        )
        self.direct = nn.Sequential(
            nn.AvgPool2d(2, 2), sn_conv(in_ch, out_ch, 1, 1, 0), batch_norm(out_ch), nn.LeakyReLU(0.2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.main(x) + self.direct(x)) / 2


class SimpleDecoder(nn.Module):
    """The paper's reconstruction decoder: 8x8 features -> (N, channels, out_size, out_size) in [-1, 1]."""

    def __init__(self, in_ch: int, out_ch: int, *, out_size: int, ndf: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        ch = in_ch
        res = 16
        while res <= out_size:
            nxt = max(ndf * 32 // res, _MIN_CH)
            layers += _glu_up(ch, nxt)
            ch, res = nxt, res * 2
        layers += [sn_conv(ch, out_ch, 3, 1, 1), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


ReconPairs = list[tuple[torch.Tensor, torch.Tensor]]


class Discriminator(nn.Module):
    """images (N, C, S, S) -> logits (N, 50): two 5x5 maps, from the full image and from a downsampled copy.

    With `return_recon=True` (real images only) also returns [(reconstruction, target), ...] for the
    whole image from 8x8 features, a random quarter from 16x16 features, and the small copy.
    """

    arch = "fastgan"

    def __init__(self, cfg: FastGANConfig) -> None:
        super().__init__()
        cfg.validate()
        self.config = cfg
        self.num_classes = 0
        S, nc, top = cfg.image_size, cfg.channels, cfg.d_top()
        ch = cfg.d_ch
        if S == 1024:
            self.from_big = nn.Sequential(
                sn_conv(nc, ch(512), 4, 2, 1), nn.LeakyReLU(0.2),
                sn_conv(ch(512), ch(256), 4, 2, 1), batch_norm(ch(256)), nn.LeakyReLU(0.2),
            )  # fmt: skip
        elif S == 512:
            self.from_big = nn.Sequential(sn_conv(nc, ch(256), 4, 2, 1), nn.LeakyReLU(0.2))
        else:
            self.from_big = nn.Sequential(sn_conv(nc, ch(top), 3, 1, 1), nn.LeakyReLU(0.2))
        self.downs = nn.ModuleDict()
        res = top
        while res > 8:
            self.downs[str(res // 2)] = DownBlockComp(ch(res), ch(res // 2))
            res //= 2
        self._sle_src = {dst: src for src, dst in cfg.d_sle_pairs()}
        self.sle = nn.ModuleDict(
            {str(dst): SkipLayerExcitation(ch(src), ch(dst)) for src, dst in cfg.d_sle_pairs()}
        )
        self.rf_big = nn.Sequential(
            sn_conv(ch(8), ch(8) * 2, 1, 1, 0),
            batch_norm(ch(8) * 2),
            nn.LeakyReLU(0.2),
            sn_conv(ch(8) * 2, 1, 4, 1, 0),
        )

        small = cfg.small_size()
        self.small_size = small

        def ch_s(r: int) -> int:
            return max(ch(r) // 2, _MIN_CH)

        if small > 8:
            layers: list[nn.Module] = [sn_conv(nc, ch_s(small // 2), 4, 2, 1), nn.LeakyReLU(0.2)]
            r = small // 2
            while r > 8:
                layers.append(DownBlock(ch_s(r), ch_s(r // 2)))
                r //= 2
        else:
            layers = [sn_conv(nc, ch_s(8), 3, 1, 1), nn.LeakyReLU(0.2)]
        self.from_small = nn.Sequential(*layers)
        self.rf_small = sn_conv(ch_s(8), 1, 4, 1, 0)

        self.rec_size = min(_REC_MAX, S)
        self.part_size = min(_REC_MAX, S // 2)
        self.decoder_big = SimpleDecoder(ch(8), nc, out_size=self.rec_size, ndf=cfg.ndf)
        self.decoder_part = SimpleDecoder(ch(16), nc, out_size=self.part_size, ndf=cfg.ndf)
        self.decoder_small = SimpleDecoder(ch_s(8), nc, out_size=small, ndf=cfg.ndf)

    def forward(
        self, x: torch.Tensor, c: torch.Tensor | None = None, *, return_recon: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, ReconPairs]:
        check_labels(c, num_classes=0, batch=x.shape[0], arch=self.arch)
        S = x.shape[-1]
        feats = {}
        h = self.from_big(x)
        feats[h.shape[-1]] = h
        for key, block in self.downs.items():
            res = int(key)
            h = block(h)
            if res in self._sle_src:
                h = self.sle[key](feats[self._sle_src[res]], h)
            feats[res] = h
        logits_big = self.rf_big(feats[8]).flatten(1)
        x_small = F.avg_pool2d(x, S // self.small_size) if S != self.small_size else x
        h_small = self.from_small(x_small)
        logits_small = self.rf_small(h_small).flatten(1)
        logits = torch.cat([logits_big, logits_small], dim=1)
        if not return_recon:
            return logits

        # Self-supervision on real images: the paper's three reconstructions (LPIPS there, MSE here).
        rec_big = self.decoder_big(feats[8])
        target_big = F.avg_pool2d(x, S // self.rec_size) if S != self.rec_size else x
        rec_small = self.decoder_small(h_small)
        # One random quarter per batch, from torch's global RNG so resumed runs replay it exactly.
        part = int(torch.randint(0, 4, ()).item())
        fy, fx = (part // 2) * 8, (part % 2) * 8
        rec_part = self.decoder_part(feats[16][:, :, fy : fy + 8, fx : fx + 8])
        half = S // 2
        iy, ix = (part // 2) * half, (part % 2) * half
        crop = x[:, :, iy : iy + half, ix : ix + half]
        target_part = F.avg_pool2d(crop, half // self.part_size) if half != self.part_size else crop
        pairs = [(rec_big, target_big), (rec_part, target_part), (rec_small, x_small)]
        return logits, pairs


def build_generator(cfg: FastGANConfig) -> Generator:
    """Validated FastGAN generator."""
    return Generator(cfg)


def build_discriminator(cfg: FastGANConfig) -> Discriminator:
    """Validated FastGAN discriminator."""
    return Discriminator(cfg)
