"""Adaptive discriminator augmentation, ADA (Karras et al. 2020, "Training generative adversarial networks
with limited data"), written from the paper in plain PyTorch.

Pipeline (paper, appendix B; the blit, geom and color groups): each transform hits each sample with
probability `p` (the two general rotations with 1 - sqrt(1 - p), so that at least one happens with `p`):

- blit:  x-flip, 90-degree rotation, integer translation (uniform, up to 1/8 of a side, rounded to pixels);
- geom:  isotropic scaling (lognormal, std 0.2 ln 2), rotation (uniform angle), anisotropic scaling
         (lognormal, std 0.2 ln 2), rotation again, fractional translation (normal, std 1/8 of a side);
- color: brightness (add N(0, 0.2^2)), contrast (lognormal, std 0.5 ln 2), luma flip, hue rotation about the
         luma axis (uniform angle), saturation (lognormal, std ln 2).

The geometric transforms of a sample compose into one 3x3 matrix and one bilinear `F.grid_sample` whose
reflection padding mirrors the image about its edges (however far out a rotation or shift reaches), so a
shifted or rotated field shows more sky rather than a grey wall. As in stylegan2-ada, a sample moved by other
than whole pixels is resampled at twice the resolution between sym6 wavelet filters: at 1x, bilinear would
blur it by up to half a pixel (a PSF-sized source lost a fifth of its peak), and a D that sees blurred reals
and fakes cannot see that the fakes are soft. The colour transforms compose into one
(C + 1) x (C + 1) affine matrix acting on the values as they are in [-1, 1] (contrast and flips are about 0,
the middle of the range, as in the paper). RGB uses the paper's matrices with the luma axis (1, 1, 1)/sqrt(3).
One band is the luma axis alone: brightness, contrast and the luma flip x -> -x, exactly what the RGB
pipeline does to a grey image (hue and saturation leave grey alone). Other band counts get the geometric
part plus per-band brightness and contrast (each band its own offset and gain).

Randomness: every call draws all of a batch's random numbers (two calls on torch's global RNG, on the
input's device) whatever `p` and the enabled transforms, so the RNG stream, and with it a resumed run, does
not depend on `p`, not even at p = 0 (stylegan2-ada skips the draws there; we keep the stream instead).
A sample whose matrices come out exactly the identity (no transform hit it, or only ones that drew their
identity, such as a flip that did not flip) is passed through untouched: p = 0 returns the input itself.

Adaptation: `AdaptiveAugment.update` accumulates sign(D(real)) over `interval` steps, and moves `p` by
sign(r_t - target) * images / (speed_kimg * 1000), so `p` can go from 0 to 1 in `speed_kimg` kimg.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

BLIT = ("xflip", "rotate90", "xint")
GEOM = ("scale", "rotate", "aniso", "xfrac")
COLOR = ("brightness", "contrast", "lumaflip", "hue", "saturation")
TRANSFORMS = BLIT + GEOM + COLOR
PRESETS = {"b": BLIT, "g": GEOM, "c": COLOR}

# One gate (uniform draw compared with p) per transform; the rotation runs twice, around the anisotropy.
GATES = ("xflip", "rotate90", "xint", "scale", "rotate_pre", "aniso", "rotate_post", "xfrac", *COLOR)

XINT_MAX = 0.125  # integer translation: uniform in +-1/8 of the side, rounded to whole pixels
SCALE_STD = 0.2  # isotropic scaling: log2 of the scale ~ N(0, 0.2^2)
ANISO_STD = 0.2  # anisotropic scaling: log2 ~ N(0, 0.2^2)
XFRAC_STD = 0.125  # fractional translation: N(0, (1/8 of the side)^2)
BRIGHTNESS_STD = 0.2
CONTRAST_STD = 0.5  # log2 of the gain
SATURATION_STD = 1.0  # log2 of the chroma gain


def parse_transforms(spec: str | Iterable[str]) -> tuple[str, ...]:
    """Names of the enabled transforms, in pipeline order, from a preset of group letters ("bgc": b = blit,
    g = geom, c = color; "" = none) or an iterable of names from `TRANSFORMS`."""
    if isinstance(spec, str):
        bad = sorted(set(spec) - set(PRESETS))
        if bad:
            raise ValueError(
                f"unknown ADA preset letter(s) {bad} in {spec!r}: combine b (blit), g (geom), c (color), "
                f"or pass a list of transform names from {list(TRANSFORMS)}"
            )
        names = {t for letter in spec for t in PRESETS[letter]}
    else:
        names = set(spec)
        bad = sorted(names - set(TRANSFORMS))
        if bad:
            raise ValueError(f"unknown ADA transform(s) {bad}: choose from {list(TRANSFORMS)}")
    return tuple(t for t in TRANSFORMS if t in names)


def _num_color_params(channels: int) -> int:
    """Brightness/contrast draws per sample: one shared by the bands for 1 and 3 channels, else one per band."""
    return 1 if channels in (1, 3) else channels


def draw_params(
    n: int, *, channels: int, device: torch.device | str | None = None
) -> dict[str, torch.Tensor]:
    """Every random number a batch of `n` samples needs, from two calls on torch's global RNG.

    Returns float32 tensors of shape (n,) unless noted, each at its natural value (identity in brackets):
    gate (n, len(GATES)) uniform in [0, 1); xflip {0, 1} [0]; rotate90 quarter turns {0..3} [0]; xint (n, 2)
    (x, y) fraction of the side [0]; scale [1]; rotate_pre, rotate_post radians [0]; aniso [1]; xfrac (n, 2)
    fraction of the side [0]; brightness (n, B) [0]; contrast (n, B) [1]; lumaflip {0, 1} [0]; hue radians
    [0]; saturation [1]. B is 1 for 1 and 3 channels, else `channels` (per-band).
    """
    nb = _num_color_params(channels)
    g = len(GATES)
    u = torch.rand(n, g + 8, device=device)
    z = torch.randn(n, 5 + 2 * nb, device=device)
    return {
        "gate": u[:, :g],
        "xflip": torch.floor(u[:, g] * 2).clamp(max=1),
        "rotate90": torch.floor(u[:, g + 1] * 4).clamp(max=3),
        "xint": (u[:, g + 2 : g + 4] * 2 - 1) * XINT_MAX,
        "rotate_pre": (u[:, g + 4] * 2 - 1) * math.pi,
        "rotate_post": (u[:, g + 5] * 2 - 1) * math.pi,
        "lumaflip": torch.floor(u[:, g + 6] * 2).clamp(max=1),
        "hue": (u[:, g + 7] * 2 - 1) * math.pi,
        "scale": torch.exp2(z[:, 0] * SCALE_STD),
        "aniso": torch.exp2(z[:, 1] * ANISO_STD),
        "xfrac": z[:, 2:4] * XFRAC_STD,
        "saturation": torch.exp2(z[:, 4] * SATURATION_STD),
        "brightness": z[:, 5 : 5 + nb] * BRIGHTNESS_STD,
        "contrast": torch.exp2(z[:, 5 + nb : 5 + 2 * nb] * CONTRAST_STD),
    }


def _affine2d(
    a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor
) -> torch.Tensor:
    """(N, 3, 3) matrices [[a, b, tx], [c, d, ty], [0, 0, 1]] from (N,) entries."""
    zero, one = torch.zeros_like(a), torch.ones_like(a)
    return torch.stack([a, b, tx, c, d, ty, zero, zero, one], dim=1).view(-1, 3, 3)


def _rotation2d(cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    zero = torch.zeros_like(cos)
    return _affine2d(cos, -sin, sin, cos, zero, zero)


def _scaling2d(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    zero = torch.zeros_like(sx)
    return _affine2d(sx, zero, zero, sy, zero, zero)


def _translation2d(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    one, zero = torch.ones_like(tx), torch.zeros_like(tx)
    return _affine2d(one, zero, zero, one, tx, ty)


def _color_affine(linear: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """(N, C + 1, C + 1) homogeneous colour matrix from a (N, C, C) linear part and a (N, C) offset."""
    n, c = offset.shape
    m = torch.zeros(n, c + 1, c + 1, dtype=offset.dtype, device=offset.device)
    m[:, :c, :c] = linear
    m[:, :c, c] = offset
    m[:, c, c] = 1
    return m


def build_matrices(
    params: Mapping[str, torch.Tensor],
    p: float,
    *,
    channels: int,
    height: int,
    width: int,
    transforms: str | Iterable[str] = TRANSFORMS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The forward geometric (N, 3, 3) and colour (N, C + 1, C + 1) matrices for `draw_params`' output.

    Geometric matrices act on pixel coordinates (x right, y down, origin at the image centre): content at q
    moves to G q. Colour matrices act on (v_1, ..., v_C, 1). A transform that is disabled or whose gate is
    not below its probability contributes an exact identity. `transforms`: as in `parse_transforms`.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"augmentation probability p must lie in [0, 1], got {p}")
    enabled = set(parse_transforms(transforms))
    gate = params["gate"]
    n, device = gate.shape[0], gate.device
    p_rot = 1.0 - math.sqrt(1.0 - p)  # two rotations: P(at least one) = p

    def hit(name: str, prob: float) -> torch.Tensor:
        return gate[:, GATES.index(name)] < prob

    geom = torch.eye(3, device=device).expand(n, 3, 3)

    def then(m: torch.Tensor, mask: torch.Tensor) -> None:
        nonlocal geom
        geom = torch.where(mask[:, None, None], m @ geom, geom)

    if "xflip" in enabled:
        then(_scaling2d(1 - 2 * params["xflip"], torch.ones(n, device=device)), hit("xflip", p))
    if "rotate90" in enabled:
        k = params["rotate90"].long()  # exact cos/sin of quarter turns
        cos = torch.tensor([1.0, 0.0, -1.0, 0.0], device=device)[k]
        sin = torch.tensor([0.0, 1.0, 0.0, -1.0], device=device)[k]
        then(_rotation2d(cos, sin), hit("rotate90", p))
    if "xint" in enabled:
        t = params["xint"]
        then(_translation2d(torch.round(t[:, 0] * width), torch.round(t[:, 1] * height)), hit("xint", p))
    if "scale" in enabled:
        s = params["scale"]
        then(_scaling2d(s, s), hit("scale", p))
    if "rotate" in enabled:
        a = params["rotate_pre"]
        then(_rotation2d(torch.cos(a), torch.sin(a)), hit("rotate_pre", p_rot))
    if "aniso" in enabled:
        s = params["aniso"]
        then(_scaling2d(s, 1 / s), hit("aniso", p))
    if "rotate" in enabled:
        a = params["rotate_post"]
        then(_rotation2d(torch.cos(a), torch.sin(a)), hit("rotate_post", p_rot))
    if "xfrac" in enabled:
        t = params["xfrac"]
        then(_translation2d(t[:, 0] * width, t[:, 1] * height), hit("xfrac", p))

    c = channels
    eye_c = torch.eye(c, device=device).expand(n, c, c)
    zeros_c = torch.zeros(n, c, device=device)
    color = torch.eye(c + 1, device=device).expand(n, c + 1, c + 1)

    def then_color(linear: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor) -> None:
        nonlocal color
        color = torch.where(mask[:, None, None], _color_affine(linear, offset) @ color, color)

    if "brightness" in enabled:
        then_color(eye_c, params["brightness"].expand(n, c), hit("brightness", p))
    if "contrast" in enabled:
        then_color(torch.diag_embed(params["contrast"].expand(n, c)), zeros_c, hit("contrast", p))
    if c in (1, 3):
        v = torch.full((c,), 1 / math.sqrt(c), device=device)
        vv = torch.outer(v, v)  # projector on the luma axis
        if "lumaflip" in enabled:
            f = params["lumaflip"].view(n, 1, 1)
            then_color(eye_c - 2 * f * vv, zeros_c, hit("lumaflip", p))
        if c == 3 and "hue" in enabled:
            a = params["hue"].view(n, 1, 1)
            e = 1 / math.sqrt(3)  # the cross-product matrix of the luma axis
            cross = torch.tensor([[0.0, -e, e], [e, 0.0, -e], [-e, e, 0.0]], device=device)
            rot = vv + torch.cos(a) * (eye_c - vv) + torch.sin(a) * cross  # Rodrigues, about the luma axis
            then_color(rot, zeros_c, hit("hue", p))
        if c == 3 and "saturation" in enabled:
            s = params["saturation"].view(n, 1, 1)
            then_color(vv + s * (eye_c - vv), zeros_c, hit("saturation", p))
    return geom, color


def _is_identity(m: torch.Tensor) -> torch.Tensor:
    """(N,) True where the (N, K, K) matrix is exactly the identity."""
    eye = torch.eye(m.shape[-1], dtype=m.dtype, device=m.device)
    return (m == eye).flatten(1).all(1)


# The orthogonal Daubechies symlet "sym6" low-pass (12 taps, sum sqrt 2): the filter stylegan2-ada resamples its
# geometric augmentations through. Orthogonal: downsampling with it undoes upsampling with it exactly.
SYM6 = (
    0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
    0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
    -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148,
)  # fmt: skip
RESAMPLERS = ("sym6x2", "bilinear")
_PAD = 3  # reflected border pixels at 1x: covers the 12-tap filter's reach at 2x (6 px) with a margin


def _pad_symmetric(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Pad (..., L) by `pad` at both ends, mirrored about the outer pixel edges (the edge pixel repeats): the
    reflection grid_sample makes with align_corners=False, at any resolution."""
    n = x.shape[-1]
    i = torch.arange(-pad, n + pad, device=x.device)
    return x[..., torch.where(i < 0, -i - 1, torch.where(i >= n, 2 * n - i - 1, i))]


@functools.lru_cache(maxsize=16)
def _resample_matrices(n: int, dtype: torch.dtype, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The 1-D 2x up (2n, n) and down (n, 2n) sym6 operators, borders mirrored, as matrices.

    Up: zero insertion, then a convolution with sym6 (gain 2; output j centred on input j / 2 - 1 / 4, the 2x
    grid of align_corners=False); down: the transpose's filter (flipped sym6, unit gain), every other pixel.
    Orthogonal: down(up(x)) = x away from the borders (within 3 px of them the mirroring differs)."""
    f = torch.tensor(SYM6, dtype=torch.float64)
    eye = torch.eye(n, dtype=torch.float64)
    z = torch.zeros(n, 2 * (n + 2 * _PAD), dtype=torch.float64)
    z[:, ::2] = _pad_symmetric(eye, _PAD)  # each basis vector, mirrored, zero-inserted
    z = F.pad(z, (6, 5))  # 12 taps centred at 5.5: output j reads z[j - 6 .. j + 5]
    up = F.conv1d(z[:, None], (f.flip(0) * math.sqrt(2.0)).view(1, 1, -1))[:, 0]  # (n, 2n + 4 PAD)
    up = up[:, 2 * _PAD : 2 * _PAD + 2 * n].T  # (2n, n)
    eye2 = torch.eye(2 * n, dtype=torch.float64)
    down = F.conv1d(_pad_symmetric(eye2, 5)[:, None], (f / math.sqrt(2.0)).view(1, 1, -1), stride=2)[:, 0].T
    return up.to(dtype=dtype, device=device), down.to(dtype=dtype, device=device)


def _separable(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """rows @ x @ cols.T for (N, C, H, W) x, as two plain matmuls (40% faster than broadcast batched ones)."""
    n, c, h, w = x.shape
    y = (x.reshape(-1, w) @ cols.T).reshape(n * c, h, cols.shape[0])
    return (rows @ y).reshape(n, c, rows.shape[0], cols.shape[0])


def _grid_sample(x: torch.Tensor, theta: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    grid = F.affine_grid(theta.to(x.dtype), [x.shape[0], x.shape[1], *size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _is_blit(m: torch.Tensor) -> torch.Tensor:
    """(N,) True where the (N, 3, 3) pixel-space matrix only moves whole pixels: a signed permutation of the
    axes (flips, quarter turns) and a whole-pixel shift, which 1x bilinear resamples exactly."""
    lin, shift = m[:, :2, :2], m[:, :2, 2]
    signed_perm = ((lin.abs() < 1e-6) | ((lin.abs() - 1).abs() < 1e-6)).flatten(1).all(1)
    signed_perm &= ((lin.abs() > 0.5).sum(1) == 1).all(1)
    return signed_perm & ((shift - shift.round()).abs() < 1e-4).all(1)


def apply_geometric(x: torch.Tensor, matrix: torch.Tensor, *, resample: str = "sym6x2") -> torch.Tensor:
    """Resample `x` (N, C, H, W) under the forward pixel-space matrices (N, 3, 3) of `build_matrices`.

    With reflection about the image edges outside it. `resample` "sym6x2" (stylegan2-ada's way): upsample 2x
    through the sym6 wavelet low-pass, bilinear at 2x, back down through it, so a fractional shift or a rotation
    keeps the picture's sharpness; "bilinear": bilinear at 1x, which blurs by up to half a pixel (a random
    sub-pixel offset averages neighbours: ~0.4 px rms), softening the reals and fakes D sees. Samples with an
    exact identity matrix are passed through untouched (all of them: `x` itself is returned).
    """
    if resample not in RESAMPLERS:
        raise ValueError(f"unknown ADA resampling {resample!r}: choose from {RESAMPLERS}")
    keep = _is_identity(matrix)
    if bool(keep.all()):
        return x
    n, c, h, w = x.shape
    # Invert [[a, b, tx], [c, d, ty]]: grid_sample asks, for each output pixel, where to read the input.
    a, b, tx = matrix[:, 0, 0], matrix[:, 0, 1], matrix[:, 0, 2]
    cc, d, ty = matrix[:, 1, 0], matrix[:, 1, 1], matrix[:, 1, 2]
    det = a * d - b * cc
    ia, ib, ic, id_ = d / det, -b / det, -cc / det, a / det
    itx, ity = -(ia * tx + ib * ty), -(ic * tx + id_ * ty)
    # From centred pixels to grid_sample's [-1, 1] (align_corners=False: +-1 are the outer pixel edges).
    theta = torch.stack([ia, ib * h / w, itx * 2 / w, ic * w / h, id_, ity * 2 / h], dim=1).view(n, 2, 3)
    out = _grid_sample(x, theta, (h, w))  # exact for flips, quarter turns and whole-pixel shifts
    if resample == "sym6x2":
        # Only the other samples go through 2x: grid_sample's [-1, 1] spans the picture at any resolution, so
        # theta serves at 2x unchanged; the 1-D operators as matrices cost a few matmuls (a grouped 12-tap
        # convolution cost 15x the bilinear).
        sub = (~(keep | _is_blit(matrix))).nonzero().flatten()
        if len(sub):
            up_h, down_h = _resample_matrices(h, x.dtype, str(x.device))
            up_w, down_w = _resample_matrices(w, x.dtype, str(x.device))
            up = _separable(x.index_select(0, sub), up_h, up_w)
            out = out.index_copy(
                0,
                sub,
                _separable(_grid_sample(up, theta.index_select(0, sub), (2 * h, 2 * w)), down_h, down_w),
            )
    return torch.where(keep.view(n, 1, 1, 1), x, out)


def apply_color(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Map each pixel's values (v_1..v_C, 1) of `x` (N, C, H, W) through (N, C + 1, C + 1) matrices;
    samples with an exact identity matrix are passed through untouched (all of them: `x` itself)."""
    keep = _is_identity(matrix)
    if bool(keep.all()):
        return x
    n, c = x.shape[:2]
    m = matrix.to(x.dtype)
    out = torch.einsum("nij,njhw->nihw", m[:, :c, :c], x) + m[:, :c, c, None, None]
    return torch.where(keep.view(n, 1, 1, 1), x, out)


def ada_augment(
    x: torch.Tensor, p: float, *, transforms: str | Iterable[str] = TRANSFORMS, resample: str = "sym6x2"
) -> torch.Tensor:
    """Augment `x` (N, C, H, W) in [-1, 1] with the ADA pipeline at strength `p`: same shape and dtype,
    differentiable in `x`; every call draws the same random numbers whatever `p` (`resample`: apply_geometric's)."""
    if x.dim() != 4:
        raise ValueError(f"expected images (N, C, H, W), got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    # Under mixed precision, matrices composed in half precision would shift pixels: keep x's own dtype.
    with torch.autocast(x.device.type, enabled=False):
        params = draw_params(n, channels=c, device=x.device)
        geom, color = build_matrices(params, p, channels=c, height=h, width=w, transforms=transforms)
        return apply_color(apply_geometric(x, geom, resample=resample), color)


class AdaptiveAugment:
    """ADA as an `Augment`: the pipeline at strength `p`, and `p` steered so that E[sign(D(real))] ~ target.

    `transforms` (a preset such as "bgc" or a list of names from `TRANSFORMS`), when given, replaces the
    `geometric` (blit + geom) and `color` switches. `fixed=True` keeps `p` constant (r_t is still measured).
    `resample`: how moved samples are resampled (`apply_geometric`).
    """

    name = "ada"

    def __init__(
        self,
        channels: int,
        *,
        p: float = 0.0,
        target: float = 0.6,
        interval: int = 4,
        speed_kimg: float = 500.0,
        fixed: bool = False,
        geometric: bool = True,
        color: bool = True,
        transforms: str | Iterable[str] | None = None,
        resample: str = "sym6x2",
    ) -> None:
        if channels < 1:
            raise ValueError(f"channels must be at least 1, got {channels}")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"initial ADA probability p must lie in [0, 1], got {p}")
        if not -1.0 <= target <= 1.0:
            raise ValueError(f"ADA target is a mean of signs, in [-1, 1] (the paper uses 0.6), got {target}")
        if interval < 1:
            raise ValueError(f"ADA interval (steps between updates of p) must be at least 1, got {interval}")
        if not speed_kimg > 0:
            raise ValueError(
                f"ADA speed_kimg (kimg for p to go from 0 to 1) must be positive, got {speed_kimg}"
            )
        if resample not in RESAMPLERS:
            raise ValueError(f"unknown ADA resampling {resample!r}: choose from {RESAMPLERS}")
        if transforms is None:
            transforms = ("bg" if geometric else "") + ("c" if color else "")
        self.resample = resample
        self.channels = int(channels)
        self.transforms = parse_transforms(transforms)
        self.target = float(target)
        self.interval = int(interval)
        self.speed_kimg = float(speed_kimg)
        self.fixed = bool(fixed)
        self._p = float(p)
        self.r_t: float | None = None  # E[sign(D(real))] over the last completed interval
        self._sign_sum = 0.0  # sum of sign(D(real)) over the images of the current interval
        self._num_images = 0.0
        self._num_updates = 0

    @property
    def p(self) -> float:
        """The probability each transform hits each sample."""
        return self._p

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Augment (N, C, H, W) in [-1, 1] at the current `p`; same shape, differentiable in `x`."""
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"expected images (N, {self.channels}, H, W), got shape {tuple(x.shape)}")
        return ada_augment(x, self._p, transforms=self.transforms, resample=self.resample)

    def update(self, stats: Mapping[str, float]) -> None:
        """Take one step's `d_real_sign` (mean sign of D on the reals) and `num_images`; every `interval`
        calls, move `p` towards the target overfitting level (unless `fixed`)."""
        missing = [k for k in ("d_real_sign", "num_images") if k not in stats]
        if missing:
            raise ValueError(f"AdaptiveAugment.update needs {missing} in its stats, got {sorted(stats)}")
        sign, num = float(stats["d_real_sign"]), float(stats["num_images"])
        if not num >= 0:
            raise ValueError(f"num_images must be a count >= 0, got {num}")
        if not math.isfinite(sign):
            warnings.warn("ADA: non-finite d_real_sign ignored for this step", RuntimeWarning, stacklevel=2)
        elif not -1.0 <= sign <= 1.0:
            raise ValueError(f"d_real_sign is a mean of signs, in [-1, 1], got {sign}")
        else:
            self._sign_sum += sign * num
            self._num_images += num
        self._num_updates += 1
        if self._num_updates < self.interval:
            return
        if self._num_images > 0:
            r_t = self._sign_sum / self._num_images
            self.r_t = r_t
            if not self.fixed:
                direction = (r_t > self.target) - (r_t < self.target)
                step = direction * self._num_images / (self.speed_kimg * 1000)
                self._p = min(max(self._p + step, 0.0), 1.0)
        self._sign_sum, self._num_images, self._num_updates = 0.0, 0.0, 0

    def state_dict(self) -> dict[str, Any]:
        """p, the last r_t and the current interval's accumulators: a resumed run continues exactly."""
        return {
            "p": self._p,
            "r_t": self.r_t,
            "sign_sum": self._sign_sum,
            "num_images": self._num_images,
            "num_updates": self._num_updates,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what `state_dict()` saved."""
        expected = {"p", "r_t", "sign_sum", "num_images", "num_updates"}
        if set(state) != expected:
            raise ValueError(f"an ADA state has the keys {sorted(expected)}, got {sorted(state)}")
        p = float(state["p"])
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"ADA probability p must lie in [0, 1], got {p}")
        self._p = p
        self.r_t = None if state["r_t"] is None else float(state["r_t"])
        self._sign_sum = float(state["sign_sum"])
        self._num_images = float(state["num_images"])
        self._num_updates = int(state["num_updates"])

    def __repr__(self) -> str:
        return (
            f"AdaptiveAugment(channels={self.channels}, p={self._p:.4f}, target={self.target}, "
            f"interval={self.interval}, speed_kimg={self.speed_kimg}, fixed={self.fixed}, "
            f"transforms={list(self.transforms)}, resample={self.resample!r})"
        )


if TYPE_CHECKING:
    from astrogan.data.augment import Augment

    def _conforms(a: AdaptiveAugment) -> Augment:  # mypy checks that AdaptiveAugment implements Augment
        return a
