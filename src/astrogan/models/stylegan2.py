"""StyleGAN2 (Karras et al. 2020, "Analyzing and improving the image quality of StyleGAN") in plain PyTorch.

Mapping network z [+ class label or physical conditions] -> w with a tracked average for truncation;
synthesis from a learned 4x4 constant through weight-demodulated modulated convs (one grouped conv per
layer), per-pixel noise and summed ToRGB skip outputs; a residual discriminator with minibatch standard
deviation and, with labels or conditions, a projection output. Equalized learning rate throughout and
[1,3,3,1] FIR resampling. Written from the paper (the NVlabs code's licence forbids copying); no custom ops,
so it runs on CPUs and exports to ONNX.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from astrogan.conditions import CondSpec
from astrogan.models.layers import ArchConfig, CondNormalize, NoiseInjection, NoiseModeMixin, check_labels
from astrogan.models.sersic_prior import PRIOR_KINDS, SersicPrior, lock, parse_prior_psf, prior_columns
from astrogan.utils.errors import UserError
from astrogan.utils.seeds import latents_for_seeds

_SQRT2 = math.sqrt(2.0)
_ARCH = "stylegan2"
RESIDUAL_INIT = 0.1  # prior_residual: the ToRGB weights' start, as a fraction of their usual scale
_POSITIVE = ("w_dim", "mapping_layers", "channel_base", "channel_max", "mbstd_group", "mbstd_channels")
Trunc = float | torch.Tensor  # truncation psi: a number, or per sample (N,) / (1,) (an ONNX input)


@dataclasses.dataclass(frozen=True)
class StyleGAN2Config(ArchConfig):
    """StyleGAN2 hyper-parameters (the paper's config F by default, at 64 px).

    Channels at r px: min(channel_base // r, channel_max) in both networks. embed_dim 0 means w_dim (label
    or condition embedding size); cmap_dim 0 means D's channels at 4x4 (projection size). `cond` is a
    `CondSpec.to_dict()` for a model conditioned on continuous physical parameters (exclusive with classes).
    `cond_prior` "sersic" feeds the synthesis the analytic Sérsic profile of the asked parameters
    (models.sersic_prior); it needs `cond` with a Sérsic index and a half-light radius in pixels. "" or
    "none": no prior (`train` turns it on for new runs on such conditions unless told "none").
    `prior_psf` (`moffat:fwhm_px=2,beta=3`, pixels at image_size) and `prior_truncate` (in r_e; 0: not cut)
    draw the template as the data was drawn; "" blurs it with a learned Gaussian instead (the default).
    `prior_residual` starts the image as the template itself (in a peak-white linear stretch) with the
    synthesis a small learned residual on it, instead of the template at gain 0, and gives each image its
    own gain and offset of the template from its w. `prior_lock` removes from what the synthesis draws on the
    template its components along the directions that move a Sérsic fit's conditioned parameters
    (`SersicPrior.render_locked`): to first order the image measures as asked, whatever the synthesis adds.
    """

    ARCH = _ARCH
    MIN_IMAGE_SIZE = 16
    MAX_IMAGE_SIZE = 1024

    image_size: int = 64
    channels: int = 3
    z_dim: int = 512
    w_dim: int = 512
    num_classes: int = 0
    mapping_layers: int = 8
    mapping_lr_mult: float = 0.01
    channel_base: int = 16384
    channel_max: int = 512
    mbstd_group: int = 4
    mbstd_channels: int = 1
    w_avg_beta: float = 0.995
    embed_dim: int = 0
    cmap_dim: int = 0
    cond: dict | None = None
    cond_prior: str = ""
    prior_psf: str = ""
    prior_truncate: float = 0.0
    prior_residual: bool = False
    prior_lock: bool = False

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.cond_prior, str) or self.cond_prior not in PRIOR_KINDS:
            raise UserError(
                f"stylegan2 config cond_prior must be one of {', '.join(repr(k) for k in PRIOR_KINDS)}, "
                f"got {self.cond_prior!r}"
            )
        spec = self.cond_spec()
        if (
            self.cond_prior == "sersic" and spec is not None
        ):  # without a spec yet (train's early check): at build time
            prior_columns(list(spec.names))
        if not isinstance(self.prior_psf, str):
            raise UserError(f"stylegan2 config prior_psf must be a PSF spec string, got {self.prior_psf!r}")
        parse_prior_psf(self.prior_psf)
        for name in ("prior_residual", "prior_lock"):
            if not isinstance(getattr(self, name), bool):
                raise UserError(f"stylegan2 config {name} must be true or false, got {getattr(self, name)!r}")
        if self.prior_truncate and not self.prior_truncate > 1.0:
            raise UserError(
                f"stylegan2 config prior_truncate is in half-light radii and must be > 1 (0: not cut), "
                f"got {self.prior_truncate}"
            )
        for name in _POSITIVE:
            if getattr(self, name) < 1:
                raise UserError(f"stylegan2 config {name} must be >= 1, got {getattr(self, name)}")
        for name in ("embed_dim", "cmap_dim"):
            if getattr(self, name) < 0:
                raise UserError(f"stylegan2 config {name} must be >= 0 (0 = auto), got {getattr(self, name)}")
        if not self.mapping_lr_mult > 0:
            raise UserError(f"stylegan2 config mapping_lr_mult must be > 0, got {self.mapping_lr_mult}")
        if not 0.0 <= self.w_avg_beta < 1.0:
            raise UserError(f"stylegan2 config w_avg_beta must be in [0, 1), got {self.w_avg_beta}")
        if self.channel_base < self.image_size:
            raise UserError(
                f"stylegan2 config channel_base ({self.channel_base}) must be >= image_size ({self.image_size})"
            )
        if self.ch(4) % self.mbstd_channels:
            raise UserError(
                f"stylegan2 config mbstd_channels ({self.mbstd_channels}) must divide the 4x4 width {self.ch(4)}"
            )

    def ch(self, res: int) -> int:
        """Feature channels at `res` px (both networks)."""
        return min(self.channel_base // res, self.channel_max)

    def num_ws(self) -> int:
        """Number of w vectors synthesis takes: one per modulated conv plus the last ToRGB (18 at 1024 px)."""
        return 2 * int(math.log2(self.image_size)) - 2

    def label_dim(self) -> int:
        """Size of the label (or condition) embedding."""
        return self.embed_dim or self.w_dim

    def conditional(self) -> bool:
        """True when the networks take a `c`: class labels or physical conditions."""
        return self.num_classes > 0 or self.cond is not None


# ---------------------------------------------------------------------------------------------------------
# Equalized-learning-rate layers and FIR resampling


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    # Gain sqrt(2) keeps the activations' second moment at 1 layer after layer (He et al. 2015).
    return F.leaky_relu(x, 0.2) * _SQRT2


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale each row to unit mean square: (N, D) -> (N, D)."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


def fir_kernel(channels: int) -> torch.Tensor:
    """The normalised 2-D [1,3,3,1] filter, one copy per channel for a depthwise conv: (channels, 1, 4, 4).

    Built for a known channel count (not from x.shape) so an exported graph has a constant kernel.
    """
    f = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = torch.outer(f, f)
    return (k / k.sum()).expand(channels, 1, 4, 4).contiguous()


def _blur(
    x: torch.Tensor, fir: torch.Tensor, *, pad: int, gain: float = 1.0, stride: int = 1
) -> torch.Tensor:
    return F.conv2d(x, (fir * gain).to(x.dtype), stride=stride, padding=pad, groups=fir.shape[0])


def upsample_2x(x: torch.Tensor, fir: torch.Tensor) -> torch.Tensor:
    """[1,3,3,1] FIR upsampling (zero insertion + filter, i.e. bilinear): (N, C, H, W) -> (N, C, 2H, 2W).

    `fir` is fir_kernel(C). A transposed stride-2 conv: each output pixel gets two taps of four per axis.
    """
    return F.conv_transpose2d(x, (fir * 4.0).to(x.dtype), stride=2, padding=1, groups=fir.shape[0])


def downsample_2x(x: torch.Tensor, fir: torch.Tensor) -> torch.Tensor:
    """[1,3,3,1] FIR filter then drop every other pixel: (N, C, H, W) -> (N, C, H/2, W/2)."""
    return _blur(x, fir, pad=1, stride=2)


class FullyConnected(nn.Module):
    """Equalized-lr dense layer: weights stored N(0,1)/lr_mult, scaled by lr_mult/sqrt(in) at run time.

    (N, in) -> (N, out). The stored scale makes Adam's step size the same for every layer; lr_mult < 1
    slows the layer down (the mapping network uses 0.01).
    """

    def __init__(
        self, in_f: int, out_f: int, *, lr_mult: float = 1.0, bias_init: float = 0.0, lrelu: bool = False
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_f, in_f) / lr_mult)
        self.bias = nn.Parameter(torch.full((out_f,), float(bias_init) / lr_mult))
        self.weight_gain, self.lr_mult, self.lrelu = lr_mult / math.sqrt(in_f), lr_mult, lrelu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.lr_mult)
        return _lrelu(x) if self.lrelu else x


class EqualConv2d(nn.Module):
    """Equalized-lr conv, 'same' padding, optional lrelu; with `down`, FIR blur then stride 2.

    (N, in, H, W) -> (N, out, H, W), or (N, out, H/2, W/2) with `down`.
    """

    fir: torch.Tensor

    def __init__(
        self, in_ch: int, out_ch: int, k: int, *, bias: bool = True, lrelu: bool = True, down: bool = False
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, k, k))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_ch * k * k)
        self.kernel, self.lrelu, self.down = k, lrelu, down
        self.register_buffer("fir", fir_kernel(in_ch), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * self.weight_gain
        if self.down:  # blur padded so that the strided conv lands on the centres of the output pixels
            x = F.conv2d(_blur(x, self.fir, pad=(self.kernel + 1) // 2), w, self.bias, stride=2)
        else:
            x = F.conv2d(x, w, self.bias, padding=self.kernel // 2)
        return _lrelu(x) if self.lrelu else x


def _tracing() -> bool:
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


class ModulatedConv2d(nn.Module):
    """The paper's modulated conv: weight scaled per sample by styles, then (with `demodulate`) renormalised
    to unit L2 norm per output channel, so unit-variance inputs give unit-variance outputs.

    forward(x (N, in, H, W), styles (N, in)) -> (N, out, H, W), or (N, out, 2H, 2W) with `up` (transposed
    stride-2 conv then [1,3,3,1] blur). On CUDA it runs as one grouped conv (batch folded into groups);
    on the CPU (where the grouped form measured 1.5-1.7x slower) and while tracing (ONNX, TorchScript: a
    conv's group count is fixed in a graph and the batch must stay dynamic) as the equivalent
    scale-inputs / shared conv / scale-outputs form. `fused` True/False forces one form; None is auto.
    """

    fir: torch.Tensor

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int, *, demodulate: bool = True, up: bool = False
    ) -> None:
        super().__init__()
        assert not up or kernel == 3, "the upsampling layout assumes 3x3 kernels"
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.weight_gain = 1.0 / math.sqrt(in_ch * kernel * kernel)
        self.demodulate, self.up = demodulate, up
        self.fused: bool | None = None
        self.register_buffer("fir", fir_kernel(out_ch), persistent=False)

    def forward(self, x: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
        w = self.weight * self.weight_gain  # (O, I, k, k)
        styles = styles.to(x.dtype)
        if (x.is_cuda if self.fused is None else self.fused) and not _tracing():
            return self._grouped(x, styles, w)
        x = x * styles[:, :, None, None]
        if self.up:
            x = F.conv_transpose2d(x, w.transpose(0, 1), stride=2)
        else:
            x = F.conv2d(x, w, padding=w.shape[-1] // 2)
        if self.demodulate:  # sum over (i, k) of (w[o,i,k] s[i])^2 = s^2 @ (sum_k w^2)^T
            d = (styles.square() @ w.square().sum(dim=(2, 3)).t() + 1e-8).rsqrt()
            x = x * d[:, :, None, None]
        return _blur(x, self.fir, pad=1, gain=4.0) if self.up else x

    def _grouped(self, x: torch.Tensor, styles: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        n, _, h, wd = x.shape
        o, i, k, _ = w.shape
        w = w[None] * styles[:, None, :, None, None]  # (N, O, I, k, k)
        if self.demodulate:
            w = w * (w.square().sum(dim=(2, 3, 4), keepdim=True) + 1e-8).rsqrt()
        x = x.reshape(1, -1, h, wd)
        if self.up:
            # Transposed conv gives 2H+1 px; the x4-gain blur with padding 1 brings it to 2H, pixel-centred.
            x = F.conv_transpose2d(x, w.transpose(1, 2).reshape(-1, o, k, k), stride=2, groups=n)
            return _blur(x.reshape(n, o, 2 * h + 1, 2 * wd + 1), self.fir, pad=1, gain=4.0)
        x = F.conv2d(x, w.reshape(-1, i, k, k), padding=k // 2, groups=n)
        return x.reshape(n, o, h, wd)


# ---------------------------------------------------------------------------------------------------------
# Generator


def _mlp(in_dim: int, out_dim: int, *, num_layers: int, lr_mult: float) -> nn.Sequential:
    dims = [in_dim] + [out_dim] * num_layers
    return nn.Sequential(
        *[FullyConnected(a, b, lr_mult=lr_mult, lrelu=True) for a, b in zip(dims[:-1], dims[1:], strict=True)]
    )


def _embedding(cfg: StyleGAN2Config) -> tuple[nn.Module | None, CondNormalize | None]:
    """The label embedding (nn.Embedding) or the condition embedding (normaliser + dense layer), or Nones.

    The condition path is stylegan2-ada's continuous `c_dim` one, on normalised conditions. Its bias starts
    random, not zero: the embedding goes through normalize_2nd_moment, and a zero-bias linear map of c
    would then only see c's direction (for one condition, only which side of the mean it lies on).
    """
    spec = cfg.cond_spec()
    if spec is not None:
        embed = FullyConnected(spec.dim, cfg.label_dim())
        with torch.no_grad():
            embed.bias.normal_()
        return embed, CondNormalize(spec)
    if cfg.num_classes > 0:
        return nn.Embedding(cfg.num_classes, cfg.label_dim()), None
    return None, None


class _Conditioned(nn.Module):
    """The embedding of `c` shared by the mapping network and the discriminator: (N,) labels or (N, K)
    physical conditions -> normalize_2nd_moment(embed(c)) (N, label_dim)."""

    cond_spec: CondSpec | None

    def _init_embedding(self, cfg: StyleGAN2Config) -> None:
        self.num_classes, self.cond_spec = cfg.num_classes, cfg.cond_spec()
        self.cond_dim = self.cond_spec.dim if self.cond_spec is not None else 0
        self.embed, self.cond_norm = _embedding(cfg)

    def _embed_c(self, c: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        assert self.embed is not None
        y = self.embed(self.cond_norm(c) if self.cond_norm is not None else c)
        return normalize_2nd_moment(y.to(dtype))


class MappingNetwork(_Conditioned):
    """z (N, z_dim) [+ c: labels (N,) or conditions (N, K)] -> ws (N, num_ws, w_dim), every row the same w
    (the loss mixes styles). Conditions are in physical units; they are normalised inside.

    Keeps `w_avg` (w_dim,), a running mean of w updated only when asked to in train(); truncation moves each
    w towards a centre: ws = centre + trunc * (ws - centre), trunc a float or a tensor of shape (N,) or (1,).
    The centre is `w_avg` for an unconditional model; for a conditional one it is each sample's own
    condition's centre, the mean w over NUM_CENTRE_LATENTS fixed latents at that condition, so a low psi
    gives the typical image *of that condition* instead of forgetting it (w_avg averages every condition).
    """

    NUM_CENTRE_LATENTS = 64
    _CENTRE_SEED = 1_000_000  # the fixed latents are seeds 1e6.. (apart from the seeds users ask for)

    w_avg: torch.Tensor
    centre_z: torch.Tensor

    def __init__(self, cfg: StyleGAN2Config) -> None:
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws = cfg.z_dim, cfg.w_dim, cfg.num_ws()
        self.w_avg_beta = cfg.w_avg_beta
        self._init_embedding(cfg)
        in_dim = cfg.z_dim + (cfg.label_dim() if self.embed is not None else 0)
        self.net = _mlp(in_dim, cfg.w_dim, num_layers=cfg.mapping_layers, lr_mult=cfg.mapping_lr_mult)
        self.register_buffer("w_avg", torch.zeros(cfg.w_dim))
        if self.embed is not None:  # not saved: fixed by the seeds, so older checkpoints load unchanged
            seeds = range(self._CENTRE_SEED, self._CENTRE_SEED + self.NUM_CENTRE_LATENTS)
            z = torch.from_numpy(latents_for_seeds(seeds, cfg.z_dim)).to(device="cpu")
            self.register_buffer("centre_z", z, persistent=False)

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        *,
        trunc: Trunc = 1.0,
        update_w_avg: bool = False,
    ) -> torch.Tensor:
        # Range check only outside training: it reads labels back from the device.
        check_labels(
            c,
            num_classes=self.num_classes,
            batch=z.shape[0],
            arch=_ARCH,
            check_range=not self.training,
            cond=self.cond_spec,
        )
        x = normalize_2nd_moment(z)
        y = None
        if self.embed is not None and c is not None:
            y = self._embed_c(c, x.dtype)
            x = torch.cat([x, y], dim=1)
        w = self.net(x)
        if update_w_avg and self.training:
            with torch.no_grad():
                self.w_avg.copy_(self.w_avg.lerp(w.detach().float().mean(dim=0), 1.0 - self.w_avg_beta))
        ws = w.unsqueeze(1).repeat(1, self.num_ws, 1)  # repeat, not expand: callers may write into rows
        if isinstance(trunc, torch.Tensor):
            if trunc.dim() > 1 or trunc.numel() not in (1, z.shape[0]):
                raise UserError(
                    f"trunc must be a number or have shape ({z.shape[0]},), got {tuple(trunc.shape)}"
                )
            trunc = trunc.to(ws.dtype).reshape(-1, 1, 1)
        elif trunc == 1.0:  # exactly the untruncated ws (no rounding from the lerp)
            return ws
        centre = self.w_avg.to(ws.dtype) if y is None else self._centre(y).unsqueeze(1)
        return centre + trunc * (ws - centre)

    def _centre(self, y: torch.Tensor) -> torch.Tensor:
        """Each sample's condition centre: mean w over the fixed latents at its embedded condition y (N, E)
        -> (N, w_dim). Written with expand/reshape (no repeat_interleave) so it exports with a dynamic batch."""
        n, m = y.shape[0], self.centre_z.shape[0]
        zc = normalize_2nd_moment(self.centre_z.to(device=y.device, dtype=y.dtype))
        x = torch.cat(
            [zc.unsqueeze(0).expand(n, m, zc.shape[1]), y.unsqueeze(1).expand(n, m, y.shape[1])], dim=2
        )
        return self.net(x.reshape(n * m, -1)).reshape(n, m, -1).mean(dim=1)


class SynthesisLayer(nn.Module):
    """Style affine, modulated 3x3 conv (x2 up with `up`), noise, bias, lrelu: (N, in, h, w) -> (N, out, r, r)."""

    def __init__(self, in_ch: int, out_ch: int, *, w_dim: int, res: int, up: bool, seed: int) -> None:
        super().__init__()
        self.affine = FullyConnected(w_dim, in_ch, bias_init=1.0)  # styles start at 1: plain convs
        self.conv = ModulatedConv2d(in_ch, out_ch, 3, up=up)
        self.noise = NoiseInjection(res, seed=seed)
        self.bias = nn.Parameter(torch.zeros(out_ch))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        x = self.noise(self.conv(x, self.affine(w)))
        return _lrelu(x + self.bias.to(x.dtype)[None, :, None, None])


class ToRGB(nn.Module):
    """Style affine, modulated 1x1 conv without demodulation, bias; linear: (N, in, r, r) -> (N, C, r, r)."""

    def __init__(self, in_ch: int, out_ch: int, *, w_dim: int) -> None:
        super().__init__()
        self.affine = FullyConnected(w_dim, in_ch, bias_init=1.0)
        self.conv = ModulatedConv2d(in_ch, out_ch, 1, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(out_ch))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, self.affine(w)) + self.bias.to(x.dtype)[None, :, None, None]


class SynthesisBlock(nn.Module):
    """One resolution: upsampling conv (none at 4x4), conv, ToRGB added to the upsampled image so far.

    forward(x (N, in, r/2, r/2), img (N, C, r/2, r/2) or None, ws (N, num_w, w_dim)) -> (x, img) at r px;
    num_w = 2 at 4x4, else 3.
    """

    fir: torch.Tensor

    def __init__(self, cfg: StyleGAN2Config, res: int) -> None:
        super().__init__()
        in_ch, out_ch = cfg.ch(max(res // 2, 4)), cfg.ch(res)
        kw = {"w_dim": cfg.w_dim, "res": res}
        self.conv0 = SynthesisLayer(in_ch, out_ch, up=True, seed=10 * res, **kw) if res > 4 else None
        self.conv1 = SynthesisLayer(out_ch, out_ch, up=False, seed=10 * res + 1, **kw)
        self.torgb = ToRGB(out_ch, cfg.channels, w_dim=cfg.w_dim)
        # the Sérsic prior's template, projected to this block's features (models.sersic_prior)
        self.prior_in = (
            EqualConv2d(1, out_ch, 1, bias=False, lrelu=False) if cfg.cond_prior == "sersic" else None
        )
        self.register_buffer("fir", fir_kernel(cfg.channels), persistent=False)

    def forward(
        self,
        x: torch.Tensor,
        img: torch.Tensor | None,
        ws: torch.Tensor,
        template: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.conv0 is not None:
            x = self.conv0(x, ws[:, 0])
        if self.prior_in is not None and template is not None:
            x = x + self.prior_in(template)
        x = self.conv1(x, ws[:, -2])
        y = self.torgb(x, ws[:, -1])
        return x, (y if img is None else upsample_2x(img, self.fir) + y)


class SynthesisNetwork(nn.Module):
    """ws (N, num_ws, w_dim) -> images (N, channels, S, S), linear output (samplers clamp to [-1, 1]).

    Uses ws[:, j] for: 4x4 conv j=0, ToRGB 1; then for the k-th doubling conv0 2k-1, conv1 2k, ToRGB 2k+1
    (a block's ToRGB shares its w with the next block's first conv, as in the paper's code release).
    """

    def __init__(self, cfg: StyleGAN2Config) -> None:
        super().__init__()
        self.w_dim, self.num_ws, self.image_size = cfg.w_dim, cfg.num_ws(), cfg.image_size
        self.const = nn.Parameter(torch.randn(cfg.ch(4), 4, 4))
        sizes = [2**k for k in range(2, int(math.log2(cfg.image_size)) + 1)]
        self.blocks = nn.ModuleList([SynthesisBlock(cfg, r) for r in sizes])
        self.prior: SersicPrior | None = None
        self.prior_style: FullyConnected | None = None
        if cfg.cond_prior == "sersic":
            spec = cfg.cond_spec()
            if spec is None:
                raise UserError(
                    "stylegan2 config cond_prior 'sersic' needs a model conditioned on physical parameters "
                    "(train with --cond sersic_n,half_light_radius_px,...)"
                )
            self.prior = SersicPrior(spec.names, cfg.image_size, cfg.prior_psf, cfg.prior_truncate)
            # the template straight into the image too, per channel, starting at 0 (learned from the data;
            # starting at 1 measured worse: drawn n's Spearman 0.856 against 0.902 at 52 kimg)
            self.prior_gain = nn.Parameter(torch.zeros(cfg.channels))
            # prior_residual: each image's own gain and offset on top, from its last w (a stamp's brightness
            # over its noisy peak and sky varies with its signal-to-noise), starting at none
            if cfg.prior_residual:
                self.prior_style = FullyConnected(cfg.w_dim, 2 * cfg.channels)
                self._start_as_residual()
        else:
            for name in ("prior_residual", "prior_lock"):
                if getattr(cfg, name):
                    raise UserError(
                        f"stylegan2 config {name} needs the Sérsic prior (cond_prior 'sersic', conditions with "
                        "a Sérsic index and a half-light radius in px)"
                    )
        self.locked = cfg.prior_lock

    def _start_as_residual(self) -> None:
        """Start with the template as the whole image and the synthesis as a small residual on it.

        A template at 1 on the peak, stretched linearly with white at the peak as Sérsic stamps are built,
        is 2 * template - 1 in the model's [-1, 1]: gain 2, and -1 from the top ToRGB's bias. The ToRGB
        weights start at RESIDUAL_INIT of their usual scale (as ReZero/Fixup start a residual branch small),
        so the first steps refine the profile instead of painting over it. All of it stays learnable."""
        with torch.no_grad():
            self.prior_gain.fill_(2.0)
            assert self.prior_style is not None
            self.prior_style.weight.zero_()
            blocks = [b for b in self.blocks if isinstance(b, SynthesisBlock)]
            blocks[-1].torgb.bias.fill_(-1.0)
            for block in blocks:
                block.torgb.conv.weight.mul_(RESIDUAL_INIT)

    def forward(self, ws: torch.Tensor, prior: torch.Tensor | None = None) -> torch.Tensor:
        """`prior`: the Sérsic prior's parameters (N, 5) (Generator.prior_params), for a model with one."""
        if ws.dim() != 3 or tuple(ws.shape[1:]) != (self.num_ws, self.w_dim):
            raise UserError(f"ws must have shape (N, {self.num_ws}, {self.w_dim}), got {tuple(ws.shape)}")
        template, basis = None, None
        if self.prior is not None:
            if prior is None or tuple(prior.shape) != (ws.shape[0], 5):
                got = None if prior is None else tuple(prior.shape)
                raise UserError(f"this generator draws on a Sérsic prior: pass prior (N, 5), got {got}")
            # locked: the template comes with its basis, from the same convolution
            template, basis = (
                self.prior.render_locked(prior) if self.locked else (self.prior.render(prior), None)
            )
            template = template.to(ws.dtype)
        x = self.const.to(ws.dtype).unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
        img: torch.Tensor | None = None
        for k, block in enumerate(self.blocks):  # the k-th block uses ws[:, 2k-1 : 2k+2] (2 w's at 4x4)
            f = self.image_size // (4 * 2**k)  # the template pooled to this block's size
            t = None if template is None else (template if f == 1 else F.avg_pool2d(template, f))
            x, img = block(x, img, ws[:, max(2 * k - 1, 0) : 2 * k + 2], t)
        assert img is not None
        if template is None:
            return img
        if self.locked:  # what the synthesis adds cannot move the asked parameters (to first order)
            assert basis is not None
            img = lock(img, basis)
        return img + self._direct(ws, template.to(img.dtype))

    def _direct(self, ws: torch.Tensor, template: torch.Tensor) -> torch.Tensor:
        """The template's own share of the image (N, C, S, S): gain * template, plus each image's gain and
        offset with prior_residual."""
        gain = self.prior_gain.to(template.dtype)[None, :, None, None]
        if self.prior_style is None:
            return gain * template
        style = self.prior_style(ws[:, -1]).to(template.dtype)[:, :, None, None]  # (N, 2C, 1, 1)
        c = gain.shape[1]
        return (gain + style[:, :c]) * template + style[:, c:]

    def prior_share(self, ws: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        """What forward(ws, prior) adds straight from the Sérsic template (N, C, S, S): the image minus it is
        what the synthesis draws on top (the residual). A model with the prior only."""
        assert self.prior is not None, "prior_share needs a generator with the Sérsic prior"
        return self._direct(ws, self.prior.render(prior).to(ws.dtype))


class Generator(NoiseModeMixin, nn.Module):
    """z (N, z_dim) [+ c: labels (N,) or physical conditions (N, K)] -> images (N, channels, S, S), roughly
    in [-1, 1].

    = synthesis(mapping(z, c, trunc=trunc)). `noise_mode` ("auto", "random", "const", "none") as in
    layers.NoiseInjection: auto is random in train() and fixed buffers in eval(), so an eval sample depends
    on its latent alone, never on its batch.
    """

    arch = _ARCH

    def __init__(self, cfg: StyleGAN2Config) -> None:
        super().__init__()
        cfg.validate()
        self.config = cfg
        self.z_dim, self.w_dim, self.num_ws = cfg.z_dim, cfg.w_dim, cfg.num_ws()
        self.num_classes, self.image_size, self.channels = cfg.num_classes, cfg.image_size, cfg.channels
        self.mapping = MappingNetwork(cfg)
        self.synthesis = SynthesisNetwork(cfg)
        self.cond_spec: CondSpec | None = self.mapping.cond_spec
        self.cond_dim = self.mapping.cond_dim

    @property
    def fused_modconv(self) -> bool | None:
        """True: each modulated conv runs as one grouped conv; False: scale, shared conv, scale (same maths);
        None: grouped on CUDA only."""
        modes = {m.fused for m in self.modules() if isinstance(m, ModulatedConv2d)}
        return modes.pop() if len(modes) == 1 else None

    @fused_modconv.setter
    def fused_modconv(self, fused: bool | None) -> None:
        for m in self.modules():
            if isinstance(m, ModulatedConv2d):
                m.fused = None if fused is None else bool(fused)

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        *,
        trunc: Trunc = 1.0,
        update_w_avg: bool = False,
    ) -> torch.Tensor:
        ws = self.mapping(z, c, trunc=trunc, update_w_avg=update_w_avg)
        return self.synthesis(ws, self.prior_params(z, c))

    def prior_params(self, z: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor | None:
        """The Sérsic prior's parameters (N, 5) for these latents and conditions, or None without a prior."""
        prior = self.synthesis.prior
        if prior is None or c is None:
            return None
        return prior.params(z, c)


# ---------------------------------------------------------------------------------------------------------
# Discriminator


def minibatch_stddev(x: torch.Tensor, *, group: int, num_channels: int) -> torch.Tensor:
    """Append the std over groups of samples, averaged over features, as `num_channels` maps (Karras 2018).

    The group size is the largest divisor of N that is <= `group`, so every batch size works.
    (N, C, H, W) -> (N, C + num_channels, H, W).
    """
    n, c, h, w = x.shape
    g = next(d for d in range(min(group, n), 0, -1) if n % d == 0)
    y = x.float().reshape(g, -1, num_channels, c // num_channels, h, w)  # sample i is in group i % (n/g)
    y = (y - y.mean(dim=0)).square().mean(dim=0).add(1e-8).sqrt()  # (n/g, F, c/F, H, W)
    y = y.mean(dim=(2, 3, 4)).reshape(-1, num_channels, 1, 1).repeat(g, 1, h, w)
    return torch.cat([x, y.to(x.dtype)], dim=1)


class DiscriminatorBlock(nn.Module):
    """Residual block: conv3x3, conv3x3 down, plus a 1x1 downsampled skip, summed / sqrt(2).

    (N, in, r, r) -> (N, out, r/2, r/2); the 1/sqrt(2) keeps the sum's variance that of one branch.
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv0 = EqualConv2d(in_ch, in_ch, 3)
        self.conv1 = EqualConv2d(in_ch, out_ch, 3, down=True)
        self.skip = EqualConv2d(in_ch, out_ch, 1, bias=False, lrelu=False, down=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.skip(x) + self.conv1(self.conv0(x))) * (1.0 / _SQRT2)


class Discriminator(_Conditioned):
    """images (N, channels, S, S) [+ c: labels (N,) or physical conditions (N, K)] -> one logit per image (N,).

    FromRGB, residual blocks down to 4x4, then minibatch std, conv, dense, output. With labels or conditions,
    a projection: logit = <out, cmap(c)> / sqrt(cmap_dim), cmap from the embedding of c through an MLP.
    """

    arch = _ARCH

    def __init__(self, cfg: StyleGAN2Config) -> None:
        super().__init__()
        cfg.validate()
        self.config = cfg
        self.image_size, self.channels = cfg.image_size, cfg.channels
        self.mbstd_group, self.mbstd_channels = cfg.mbstd_group, cfg.mbstd_channels
        S, ch = cfg.image_size, cfg.ch
        self.from_rgb = EqualConv2d(cfg.channels, ch(S), 1)
        sizes = [2**k for k in range(int(math.log2(S)), 2, -1)]
        self.blocks = nn.Sequential(*[DiscriminatorBlock(ch(r), ch(r // 2)) for r in sizes])
        self.conv = EqualConv2d(ch(4) + cfg.mbstd_channels, ch(4), 3)
        self.fc = FullyConnected(ch(4) * 16, ch(4), lrelu=True)
        self.cmap_dim = (cfg.cmap_dim or ch(4)) if cfg.conditional() else 0
        self.out = FullyConnected(ch(4), max(self.cmap_dim, 1))
        self._init_embedding(cfg)  # after the trunk: class-conditional weights draw as they always did
        self.cmap: nn.Sequential | None = None
        if cfg.conditional():
            self.cmap = _mlp(
                cfg.label_dim(), self.cmap_dim, num_layers=cfg.mapping_layers, lr_mult=cfg.mapping_lr_mult
            )

    def forward(
        self, x: torch.Tensor, c: torch.Tensor | None = None, *, c_other: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits (N,); with `c_other` (conditions for the same images), (2, N): rows for c and c_other,
        from one pass through the trunk (the loss's mismatch term)."""
        S = self.image_size
        if tuple(x.shape[1:]) != (self.channels, S, S):
            raise UserError(
                f"discriminator expects images (N, {self.channels}, {S}, {S}), got {tuple(x.shape)}"
            )
        check_labels(
            c,
            num_classes=self.num_classes,
            batch=x.shape[0],
            arch=_ARCH,
            check_range=False,
            cond=self.cond_spec,
        )
        h = self.blocks(self.from_rgb(x))
        h = self.conv(minibatch_stddev(h, group=self.mbstd_group, num_channels=self.mbstd_channels))
        out = self.out(self.fc(h.flatten(1)))
        if self.embed is None or self.cmap is None or c is None:
            return out.squeeze(1)
        cc = c if c_other is None else torch.stack([c, c_other])  # (N, ...) or (2, N, ...)
        cmap = self.cmap(self._embed_c(cc.flatten(0, 1) if c_other is not None else cc, out.dtype))
        if c_other is not None:
            cmap = cmap.view(2, x.shape[0], -1)
        return (out * cmap).sum(dim=-1) / math.sqrt(self.cmap_dim)


def build_generator(cfg: StyleGAN2Config) -> Generator:
    """Validated StyleGAN2 generator."""
    return Generator(cfg)


def build_discriminator(cfg: StyleGAN2Config) -> Discriminator:
    """Validated StyleGAN2 discriminator."""
    return Discriminator(cfg)
