"""What the denoiser learns to undo (a PSF drawn by GalSim, Gaussian noise) and the test-time shifts.

Units. Images are float32 `(N, C, H, W)` on the unit scale: uint8 pictures divided by 255, float32
datasets as stored (already stretched to [0, 1]). The noise sigma is given on that scale (0.05 on a
uint8 picture is about 13 grey levels), one value for every band or one per band.

The PSF. `gaussian:sigma=2` (pixels; `fwhm=` also accepted), `moffat:fwhm=3,beta=3` or `none`. GalSim
draws the profile at pixel centres (`method="no_pixel"`: the images are already pixel-integrated, so the
pixel response must not be applied twice), truncated at 4 sigma (Gaussian) or 2.5 FWHM (Moffat) and
normalised to sum 1; the image is convolved with it, its edges mirrored (`reflect`), so a real picture's
sky stays sky at the border.

Test conditions (Holzschuh et al. 2022, section on denoising):

- `none`: degraded exactly as in training.
- `half-res`: coarser pixels. The clean image is binned 2x2 (block average), so the galaxy covers half
  the pixels along each axis; the binned scene sits at the centre of an H x H frame whose border is its
  own mirror image, so the network sees its usual input size. The instrument is unchanged in pixels
  (same PSF in pixels, same noise per pixel). Scores are computed on the central binned region only,
  the mirrored border being context, not data.
- `noise-x4`: the noise sigma times four.
- `both`: the two shifts together.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from astrogan.utils.errors import UserError

# (y0, y1, x0, x1): the region of an H x W frame on which a prediction is scored.
Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class PSF:
    """A parsed PSF spec: kind 'gaussian' | 'moffat' | 'none', FWHM in pixels."""

    kind: str
    fwhm_px: float = 0.0
    beta: float = 3.0

    def describe(self) -> str:
        if self.kind == "gaussian":
            return f"gaussian:sigma={self.fwhm_px / _FWHM_PER_SIGMA:g}"
        if self.kind == "moffat":
            return f"moffat:fwhm={self.fwhm_px:g},beta={self.beta:g}"
        return "none"


@dataclass(frozen=True)
class Condition:
    """A test condition: `bin_factor` 2 for coarser pixels, `noise_scale` multiplies the noise sigma."""

    name: str
    bin_factor: int = 1
    noise_scale: float = 1.0


CONDITIONS: dict[str, Condition] = {
    "none": Condition("none"),
    "half-res": Condition("half-res", bin_factor=2),
    "noise-x4": Condition("noise-x4", noise_scale=4.0),
    "both": Condition("both", bin_factor=2, noise_scale=4.0),
}
AS_TRAINED = CONDITIONS["none"]

_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def _kv(spec: str, what: str, allowed: dict[str, tuple[str, ...]]) -> tuple[str, dict[str, str]]:
    """`kind:key=value,key=value` -> (kind, {key: value}); UserError naming the accepted keys."""
    kind, _, rest = spec.strip().partition(":")
    kind = kind.strip().lower()
    if kind not in allowed:
        raise UserError(f"unknown {what} kind {kind!r} in {spec!r}: use {' or '.join(allowed)}")
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, val = part.partition("=")
        key = key.strip().lower()
        if not eq or key not in allowed[kind]:
            keys = ", ".join(f"{k}=NUMBER" for k in allowed[kind]) or "no parameters"
            raise UserError(f"bad {what} parameter {part!r} in {spec!r}: {kind} takes {keys}")
        out[key] = val.strip()
    return kind, out


def _number(text: str, what: str, spec: str, *, positive: bool = True) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"{what} must be a number, got {text!r} in {spec!r}") from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise UserError(f"{what} must be a finite number {'> 0' if positive else '>= 0'}, got {text!r}")
    return value


def parse_psf(spec: str | None) -> PSF:
    """`gaussian:sigma=2` | `gaussian:fwhm=4.7` | `moffat:fwhm=3,beta=3` | `none` (pixels)."""
    if spec is None or spec.strip().lower() in ("", "none"):
        return PSF("none")
    kind, kv = _kv(spec, "psf", {"gaussian": ("sigma", "fwhm"), "moffat": ("fwhm", "beta")})
    if kind == "gaussian":
        if ("sigma" in kv) == ("fwhm" in kv):
            raise UserError(f"give exactly one of sigma= or fwhm= (pixels) in --psf {spec!r}")
        if "sigma" in kv:
            return PSF("gaussian", fwhm_px=_number(kv["sigma"], "psf sigma", spec) * _FWHM_PER_SIGMA)
        return PSF("gaussian", fwhm_px=_number(kv["fwhm"], "psf fwhm", spec))
    if "fwhm" not in kv:
        raise UserError(f"moffat needs fwhm= (pixels) in --psf {spec!r}")
    beta = _number(kv.get("beta", "3"), "moffat beta", spec)
    if beta <= 1.1:
        raise UserError(f"moffat beta must be > 1.1 (GalSim's limit), got {beta:g} in {spec!r}")
    return PSF("moffat", fwhm_px=_number(kv["fwhm"], "psf fwhm", spec), beta=beta)


def parse_noise(spec: str | None, channels: int) -> tuple[float, ...]:
    """`gaussian:sigma=0.05` (every band) or `gaussian:sigma=0.01/0.02/0.03` (one per band) or `none`.

    Returns one sigma per band `(channels,)`, on the unit scale (see the module docstring).
    """
    if spec is None or spec.strip().lower() in ("", "none"):
        return (0.0,) * channels
    _, kv = _kv(spec, "noise", {"gaussian": ("sigma",)})
    if "sigma" not in kv:
        raise UserError(f"gaussian noise needs sigma= (unit scale, e.g. 0.05) in --noise {spec!r}")
    values = [_number(v, "noise sigma", spec, positive=False) for v in kv["sigma"].split("/")]
    if len(values) == 1:
        values *= channels
    if len(values) != channels:
        raise UserError(
            f"--noise {spec!r} gives {len(values)} sigmas for {channels}-band images: give one, or one per band"
        )
    return tuple(values)


def parse_conditions(text: str | Sequence[str]) -> tuple[Condition, ...]:
    """`none,half-res,noise-x4,both` -> the conditions, in the given order, each once."""
    names = [t.strip() for t in text.split(",")] if isinstance(text, str) else [str(t) for t in text]
    names = [n for n in dict.fromkeys(names) if n]
    bad = [n for n in names if n not in CONDITIONS]
    if bad or not names:
        raise UserError(
            f"unknown test condition {', '.join(bad) or '(none given)'}: choose from {', '.join(CONDITIONS)}"
        )
    return tuple(CONDITIONS[n] for n in names)


def psf_kernel(psf: PSF) -> np.ndarray:
    """The PSF as a normalised convolution kernel, float32 `(K, K)` with K odd (`[[1.0]]` for none)."""
    if psf.kind == "none":
        return np.ones((1, 1), np.float32)
    import galsim

    if psf.kind == "gaussian":
        profile = galsim.Gaussian(fwhm=psf.fwhm_px)
        radius = math.ceil(4.0 * psf.fwhm_px / _FWHM_PER_SIGMA)
    else:
        profile = galsim.Moffat(beta=psf.beta, fwhm=psf.fwhm_px)
        radius = math.ceil(2.5 * psf.fwhm_px)
    size = 2 * radius + 1
    kernel = profile.drawImage(nx=size, ny=size, scale=1.0, method="no_pixel").array.astype(np.float64)
    return (kernel / kernel.sum()).astype(np.float32)


def coarsen(clean: torch.Tensor, factor: int) -> tuple[torch.Tensor, Box]:
    """Coarser pixels: `(N, C, H, W)` binned `factor`x`factor`, centred in an H x W frame with a mirrored border.

    Returns the new scene `(N, C, H, W)` and the box of the binned data inside it.
    """
    if factor == 1:
        return clean, (0, clean.shape[-2], 0, clean.shape[-1])
    h, w = clean.shape[-2:]
    binned = F.avg_pool2d(clean, factor)
    bh, bw = binned.shape[-2:]
    top, left = (h - bh) // 2, (w - bw) // 2
    pad = (left, w - bw - left, top, h - bh - top)
    return F.pad(binned, pad, mode="reflect"), (top, top + bh, left, left + bw)


class Degradation:
    """Blur with the PSF kernel, then add Gaussian noise; one object degrades real and generated images alike.

    `kernel` float `(K, K)` from `psf_kernel`; `noise_sigma` one sigma per band `(C,)` on the unit scale.
    The noise is drawn on the CPU from the `torch.Generator` passed in, so the same seed gives the same
    pixels on any device and whichever set the clean images came from.
    """

    def __init__(self, kernel: np.ndarray, noise_sigma: Sequence[float]) -> None:
        self.kernel = np.asarray(kernel, dtype=np.float32)
        if self.kernel.ndim != 2 or self.kernel.shape[0] % 2 == 0 or self.kernel.shape[1] % 2 == 0:
            raise ValueError(f"kernel must be (K, K) with K odd, got {self.kernel.shape}")
        self.noise_sigma = tuple(float(s) for s in noise_sigma)
        self._weights: dict[tuple[str, int], torch.Tensor] = {}

    @property
    def channels(self) -> int:
        return len(self.noise_sigma)

    def check_size(self, image_size: int) -> None:
        """UserError when `image_size` px frames cannot take the kernel (mirroring needs radius < size)."""
        radius = self.kernel.shape[0] // 2
        if radius >= image_size:
            raise UserError(
                f"the PSF kernel ({self.kernel.shape[0]} px wide) is too large for {image_size} px images: "
                "use a narrower --psf or larger images"
            )

    def blur(self, x: torch.Tensor) -> torch.Tensor:
        """`(N, C, H, W)` convolved band by band with the kernel, edges mirrored."""
        if self.kernel.shape == (1, 1):
            return x
        key = (str(x.device), x.shape[1])
        weight = self._weights.get(key)
        if weight is None:
            k = torch.from_numpy(self.kernel).to(x.device)
            weight = k.expand(x.shape[1], 1, *k.shape).contiguous()
            self._weights[key] = weight
        r = self.kernel.shape[0] // 2
        return F.conv2d(F.pad(x, (r, r, r, r), mode="reflect"), weight, groups=x.shape[1])

    def noise(self, shape: Sequence[int], *, generator: torch.Generator, scale: float = 1.0) -> torch.Tensor:
        """Gaussian noise `(N, C, H, W)` on the CPU, band c with sigma `noise_sigma[c] * scale`."""
        sigma = torch.tensor(self.noise_sigma, dtype=torch.float32).view(1, -1, 1, 1) * float(scale)
        return torch.randn(tuple(shape), generator=generator, dtype=torch.float32) * sigma

    def __call__(
        self, clean: torch.Tensor, *, generator: torch.Generator, condition: Condition = AS_TRAINED
    ) -> tuple[torch.Tensor, torch.Tensor, Box]:
        """Clean `(N, C, H, W)` -> (degraded input, truth, scored box); truth differs from `clean` for half-res."""
        if clean.shape[1] != self.channels:
            raise ValueError(f"images have {clean.shape[1]} bands, the noise {self.channels} sigmas")
        truth, box = coarsen(clean, condition.bin_factor)
        noise = self.noise(truth.shape, generator=generator, scale=condition.noise_scale)
        return self.blur(truth) + noise.to(truth.device), truth, box
