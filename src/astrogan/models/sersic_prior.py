"""A Sérsic prior for generators conditioned on Sérsic parameters: the profile asked for, drawn in the graph.

With `cond_prior = "sersic"` a StyleGAN2 generator conditioned on a Sérsic index and a half-light radius
(and optionally an axis ratio and position angle) renders the analytic profile those numbers describe and
feeds it to every synthesis block, so the network adds what the profile lacks (PSF, noise, texture)
instead of learning from scratch what a number like "n = 1.2" looks like. The profile is
I(r) ∝ exp(-b_n (r/r_e)^(1/n)) on elliptical radii (major axis r_e/sqrt(q), minor r_e*sqrt(q), as
GalSim's area-preserving shear draws it), centred on the stamp, averaged over 2x2 sub-pixels, blurred
and scaled to a peak of 1. The blur is the data's own PSF when the model knows it (`psf`, a spec such as
`moffat:fwhm_px=2,beta=3`), convolved on the sub-pixel grid as
GalSim draws it; otherwise a Gaussian of learned width. `truncate` cuts the profile at that many r_e, r_e
being the cut profile's own (GalSim's `trunc` with `flux_untruncated=False`, as `synth_sersic` draws at 4),
so that the template is the data's noise-free picture. Without a position-angle column the angle is
drawn from the latent (the direction of its first two components), so it is fixed per seed and uniform.
Plain torch ops only, so it exports to ONNX and TorchScript with the rest of the generator.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from astrogan.utils.errors import UserError

PRIOR_KINDS = ("", "none", "sersic")  # "" and "none": no prior
# Column names each role is recognised by (the synth's own first); lengths must be in pixels.
ROLES: dict[str, tuple[str, ...]] = {
    "n": ("sersic_n", "n_sersic", "sersic_index"),
    "r_e": ("half_light_radius_px", "hlr_px", "r_e_px", "re_px", "r50_px"),
    "q": ("q", "axis_ratio", "b_over_a"),
    "pa": ("position_angle_deg", "pa_deg"),
}
NUM_PARAMS = 5  # n, r_e (px), q, cos(angle), sin(angle)
# Elliptical annuli (in half-light radii) over which `annulus_profile` averages: finer where the light is.
ANNULI_RE = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0)
SUPERSAMPLE = 2
PSF_KINDS = ("moffat", "gaussian")
N_RANGE = (0.2, 10.0)  # the Sérsic indices the truncated b_n fit covers (clamped beyond)
_B_DEGREE = 10  # the polynomial in ln n for ln b of a truncated profile: within 3e-4 of the exact b
# render_locked: the central differences' step, relative for n, r_e and q, in radians for the angle. Their error
# (~step^2 / 6) is nothing to a first-order lock; a smaller step cancels more float32 digits (n's and r_e's
# directions are nearly parallel, and Gram-Schmidt amplifies that: at 0.01 the TorchScript export differed by
# 2e-4) and jumps where a sub-pixel crosses the cut edge at `truncate` r_e
LOCK_STEP = 0.05


def parse_prior_psf(spec: str) -> tuple[str, float, float] | None:
    """(kind, FWHM px, Moffat beta) of `moffat:fwhm_px=2,beta=3` / `gaussian:fwhm_px=2` ("" or "none": None).

    UserError (one line) for anything else."""
    text = spec.strip().lower()
    if text in ("", "none"):
        return None
    kind, _, rest = text.partition(":")
    example = "moffat:fwhm_px=2,beta=3 or gaussian:fwhm_px=2 (pixels of the model's image size)"
    values: dict[str, float] = {}
    try:
        for item in filter(None, rest.split(",")):
            key, eq, val = item.partition("=")
            if not eq:
                raise ValueError(item)
            values[key.strip()] = float(val)
    except ValueError:
        raise UserError(f"prior_psf {spec!r} is not a PSF spec; give {example}") from None
    fwhm = values.pop("fwhm_px", values.pop("fwhm", float("nan")))
    beta = values.pop("beta", 3.0 if kind == "moffat" else 0.0)
    if kind not in PSF_KINDS or values or not (math.isfinite(fwhm) and fwhm > 0):
        raise UserError(f"prior_psf {spec!r} is not a PSF spec; give {example}")
    if kind == "moffat" and not (math.isfinite(beta) and beta > 1.0):
        raise UserError(f"prior_psf {spec!r}: a Moffat beta must be > 1")
    return kind, fwhm, beta


def psf_kernel_subpixel(kind: str, fwhm_px: float, beta: float, image_size: int) -> torch.Tensor:
    """The PSF sampled on the SUPERSAMPLE-times finer grid, 4 FWHM either side (within the stamp): (K, K), sum 1,
    K odd."""
    radius = min(math.ceil(4.0 * fwhm_px * SUPERSAMPLE), SUPERSAMPLE * image_size - 1)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64) / SUPERSAMPLE
    r2 = t.view(-1, 1).square() + t.view(1, -1).square()
    if kind == "moffat":  # GalSim's Moffat (untruncated): (1 + (r / alpha)^2)^-beta
        alpha = fwhm_px / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))
        ker = (1.0 + r2 / alpha**2).pow(-beta)
    else:
        ker = torch.exp(-0.5 * r2 / (fwhm_px / (2.0 * math.sqrt(2.0 * math.log(2.0)))) ** 2)
    return (ker / ker.sum()).float()


def _pixel_kernel(k: torch.Tensor) -> torch.Tensor:
    """(K, K) sub-pixel kernel -> (1, 1, K+S-1, K+S-1): it convolved with the S x S mean (S = SUPERSAMPLE)."""
    s = SUPERSAMPLE
    box = torch.full((1, 1, s, s), 1.0 / s**2, dtype=k.dtype)
    return F.conv2d(F.pad(k.view(1, 1, *k.shape), (s - 1,) * 4), box)


def truncated_b_coeffs(truncate: float) -> torch.Tensor:
    """Polynomial coefficients (highest first) of ln b_n in x = (ln n - mid) / half over N_RANGE for a
    Sérsic cut at `truncate` r_e, r_e the cut profile's own: P(2n, b) = P(2n, b truncate^(1/n)) / 2."""
    import numpy as np
    from scipy import special

    lo_n, hi_n = math.log(N_RANGE[0]), math.log(N_RANGE[1])
    lnn = np.linspace(lo_n, hi_n, 2000)
    n = np.exp(lnn)
    lo, hi = np.zeros_like(n), special.gammaincinv(2.0 * n, 0.5)  # the cut profile's b lies below
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        f = special.gammainc(2 * n, mid) - 0.5 * special.gammainc(2 * n, mid * truncate ** (1 / n))
        lo, hi = np.where(f < 0, mid, lo), np.where(f < 0, hi, mid)
    x = (lnn - 0.5 * (lo_n + hi_n)) / (0.5 * (hi_n - lo_n))
    return torch.tensor(np.polyfit(x, np.log(0.5 * (lo + hi)), _B_DEGREE), dtype=torch.float64)


def prior_columns(names: Sequence[str]) -> dict[str, int]:
    """Where each role sits in the condition vector: {"n": i, "r_e": j, ["q": k], ["pa": l]}.

    UserError (one line) when the Sérsic index or the half-light radius in pixels is missing.
    """
    found: dict[str, int] = {}
    for role, aliases in ROLES.items():
        for alias in aliases:
            if alias in names:  # the first alias listed wins when two are present
                found[role] = list(names).index(alias)
                break
    for role, what in (("n", "a Sérsic index"), ("r_e", "a half-light radius in pixels")):
        if role not in found:
            raise UserError(
                f"cond_prior 'sersic' needs {what} among the conditions ({' or '.join(ROLES[role])}); "
                f"the conditions are {', '.join(names)}"
            )
    return found


def has_prior_columns(names: Sequence[str]) -> bool:
    """True when the conditions name a Sérsic index and a half-light radius in pixels (the prior can be drawn)."""
    try:
        prior_columns(list(names))
    except UserError:
        return False
    return True


def sersic_b(n: torch.Tensor) -> torch.Tensor:
    """b_n with Gamma(2n) = 2 gamma(2n, b_n) (half the light inside r_e), Ciotti & Bertin (1999)'s series:
    half the light to within 2e-4 for n >= 0.5."""
    return (
        2.0 * n
        - 1.0 / 3.0
        + 4.0 / (405.0 * n)
        + 46.0 / (25515.0 * n**2)
        + 131.0 / (1148175.0 * n**3)
        - 2194697.0 / (30690717750.0 * n**4)
    )


def _ellipse_radius(params: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Elliptical radius (px, circularised: major r/sqrt(q), minor r*sqrt(q)) at the grid `coords` (L,) about the
    stamp centre for profiles params (N, 5) (float32): (N, L, L). The angle's (cos, sin) is renormalised."""
    q = params[:, 2].clamp(0.05, 1.0).view(-1, 1, 1)
    u = params[:, 3:5] / params[:, 3:5].norm(dim=1, keepdim=True).clamp_min(1e-6)
    cos, sin = u[:, 0].view(-1, 1, 1), u[:, 1].view(-1, 1, 1)
    x, y = coords.view(1, 1, -1), coords.view(1, -1, 1)  # columns, rows
    xr, yr = x * cos + y * sin, y * cos - x * sin  # along the major axis, along the minor
    return (q * xr.square() + yr.square() / q + 1e-12).sqrt()


def elliptical_radius(params: torch.Tensor, image_size: int) -> torch.Tensor:
    """Each pixel centre's elliptical radius in half-light radii (N, S, S) for profiles params (N, 5), centred
    on the stamp as `SersicPrior.render` draws them."""
    p = params.float()
    k = torch.arange(image_size, dtype=torch.float32, device=p.device) - (image_size - 1) / 2
    return _ellipse_radius(p, k) / p[:, 1].clamp_min(0.05).view(-1, 1, 1)


def lock(img: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """img (N, C, S, S) less its components along the orthonormal directions basis (N, S*S, K), every band."""
    flat = img.flatten(2)
    coeffs = torch.einsum("ncp,npk->nck", flat, basis.to(flat.dtype))
    return (flat - torch.einsum("nck,npk->ncp", coeffs, basis.to(flat.dtype))).view_as(img)


def annulus_profile(img: torch.Tensor, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Azimuthal averages of img (N, C, S, S) about the stamp centre in the elliptical annuli ANNULI_RE of
    profiles params (N, 5): (means (N, C, B), area fractions (N, B)), B = len(ANNULI_RE) + 1 (the last one
    open-ended); an annulus with no pixel has mean 0 and area 0. Differentiable in img."""
    n, c, s = img.shape[0], img.shape[1], img.shape[-1]
    edges = torch.tensor(ANNULI_RE, dtype=torch.float32, device=img.device)
    idx = torch.bucketize(elliptical_radius(params, s).flatten(1), edges)  # (N, P) in 0..B-1
    onehot = F.one_hot(idx, len(ANNULI_RE) + 1).to(img.dtype)  # (N, P, B)
    counts = onehot.sum(dim=1)  # (N, B)
    sums = torch.einsum("ncp,npb->ncb", img.reshape(n, c, s * s), onehot)
    return sums / counts.clamp_min(1.0).unsqueeze(1), counts / float(s * s)


class SersicPrior(nn.Module):
    """params(z (N, Z), c (N, K) physical) -> (N, 5); render(params) -> template (N, 1, S, S) in [0, 1]."""

    coords: torch.Tensor
    psf: torch.Tensor | None
    b_coeffs: torch.Tensor | None

    def __init__(self, names: Sequence[str], image_size: int, psf: str = "", truncate: float = 0.0) -> None:
        super().__init__()
        self.columns = prior_columns(list(names))
        self.image_size = image_size
        # Sub-pixel centres relative to the stamp centre ((S-1)/2 in 0-based pixels, GalSim's true centre).
        k = torch.arange(SUPERSAMPLE * image_size, dtype=torch.float32)
        self.register_buffer("coords", (k + 0.5) / SUPERSAMPLE - 0.5 - (image_size - 1) / 2, persistent=False)
        spec = parse_prior_psf(psf)
        # The data's PSF when known (a fixed kernel: nothing to learn), else a Gaussian blur of learned width.
        # Stored as the PSF convolved with the pixel's SUPERSAMPLE x SUPERSAMPLE box, applied with that stride: the
        # same numbers as convolving on the sub-pixel grid and then averaging, at a quarter of the cost.
        self.register_buffer(
            "psf",
            None if spec is None else _pixel_kernel(psf_kernel_subpixel(*spec, image_size)),
            persistent=False,
        )
        # learned blur kernel half-width (px); sigma is clamped to radius / 2, which must lie above its start (1 px):
        # at the bound the clamp passes no gradient (torch 2.14), and the blur would never learn
        self.radius = max(4, image_size // 16)
        self.log_sigma = nn.Parameter(torch.zeros(())) if spec is None else None  # sigma starts at 1 px
        if truncate and not truncate > 1.0:
            raise UserError(
                f"prior_truncate is in half-light radii and must be > 1 (0: not cut), got {truncate}"
            )
        self.truncate = float(truncate)
        coeffs = truncated_b_coeffs(self.truncate) if self.truncate else None
        self.register_buffer("b_coeffs", coeffs, persistent=False)

    def params(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """The profile's parameters for each sample: (N, 5) = n, r_e (px), q, cos(angle), sin(angle)."""
        col = self.columns
        n = c[:, col["n"]].clamp_min(0.2)
        r_e = c[:, col["r_e"]].clamp_min(0.05)
        q = c[:, col["q"]].clamp(0.05, 1.0) if "q" in col else torch.ones_like(n)
        if "pa" in col:
            angle = c[:, col["pa"]] * (math.pi / 180.0)
            u = torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
        elif z.shape[1] >= 2:
            u = z[:, :2] / z[:, :2].norm(dim=1, keepdim=True).clamp_min(1e-6)
        else:
            u = torch.stack([torch.ones_like(n), torch.zeros_like(n)], dim=1)
        return torch.cat([torch.stack([n, r_e, q], dim=1), u.to(n.dtype)], dim=1)

    def render(self, params: torch.Tensor) -> torch.Tensor:
        """Blurred, peak-normalised profiles (N, 1, S, S) from params (N, 5) (interpolated ones too: the
        angle's (cos, sin) is renormalised)."""
        img = self._blurred(self._profile(params.float()).unsqueeze(1))
        peak = img.amax(dim=(2, 3), keepdim=True).clamp_min(1e-12)
        return (img / peak).to(params.dtype)

    def _profile(self, p: torch.Tensor) -> torch.Tensor:
        """The profiles on the sub-pixel grid (N, L, L), 1 at the centre, from params p (N, 5) in float32."""
        n, r_e = p[:, 0].clamp_min(0.2), p[:, 1].clamp_min(0.05)
        r = _ellipse_radius(p, self.coords)
        nn_, re = n.view(-1, 1, 1), r_e.view(-1, 1, 1)
        # exp(-b (r/r_e)^(1/n)): the constant e^b of the usual form cancels in the peak normalisation
        img = torch.exp(-self._b(nn_) * (r / re).pow(1.0 / nn_))
        if self.truncate:
            img = img * (r <= self.truncate * re).to(img.dtype)
        return img

    def _blurred(self, img: torch.Tensor) -> torch.Tensor:
        """Sub-pixel maps (N, 1, L, L) -> pixels (N, 1, S, S): the PSF and the pixel's box (linear in img)."""
        if self.psf is not None:  # on the sub-pixel grid, then the pixel's box: GalSim's drawImage
            k = self.psf.to(img.dtype)
            return F.conv2d(img, k, stride=SUPERSAMPLE, padding=(k.shape[-1] - SUPERSAMPLE) // 2)
        return self._blur(F.avg_pool2d(img, SUPERSAMPLE))

    def lock_basis(self, params: torch.Tensor) -> torch.Tensor:
        """`render_locked(params)`'s basis (N, S*S, K)."""
        return self.render_locked(params)[1]

    def render_locked(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """render(params) (N, 1, S, S) and the orthonormal pixel directions (N, S*S, K) along which a change of
        that template moves a Sérsic fit's conditioned parameters (n, r_e, and q / angle when they are
        conditions), for profiles params (N, 5).

        Each is the template's derivative in that parameter (central differences), made orthogonal to what such
        a fit leaves free: the template's gain, the sky, a shift of the centre and, when it is not a condition,
        the angle. Removing an image's components along them (`lock`) leaves what a fit reads off it unchanged
        to first order. The peak normalisation's share of a derivative is a gain (along the template), so the
        differences are taken before it, blurred in one convolution with the profile, and scaled by its peak.
        Plain ops (Gram-Schmidt, twice), so it exports; no gradient (params are conditions, and a learned blur
        learns through the template of `render`)."""
        p = params.detach().float()
        moved = [0, 1, 2, 3] if "q" in self.columns else [0, 1, 3]
        with torch.no_grad():
            maps = torch.cat([self._profile(p)] + [self._difference(p, j) for j in moved]).unsqueeze(1)
        blurred = self._blurred(maps)[:, 0].view(len(moved) + 1, p.shape[0], self.image_size, self.image_size)
        peak = blurred[0].amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)
        template = blurred[0] / peak
        with torch.no_grad():
            t, locked = template.detach(), list((blurred[1:] / peak).unbind(0))
            padded = F.pad(t.unsqueeze(1), (1, 1, 1, 1), mode="replicate")[:, 0]
            free = [t, torch.ones_like(t), padded[:, 1:-1, 2:] - padded[:, 1:-1, :-2]]
            free.append(padded[:, 2:, 1:-1] - padded[:, :-2, 1:-1])  # the centre's shift, both ways
            if "pa" not in self.columns:
                free.append(locked.pop())
            eps = 1e-8 * t.square().sum(dim=(1, 2)).view(-1, 1)  # a direction 1e-4 of the template's: none
            basis: list[torch.Tensor] = []
            for v in [d.flatten(1) for d in free + locked]:
                for _ in range(2):  # twice is enough (Giraud et al. 2005)
                    for b in basis:
                        v = v - (v * b).sum(dim=1, keepdim=True) * b
                v = v / (v.square().sum(dim=1, keepdim=True) + eps).sqrt()
                basis.append(v)
        return template.unsqueeze(1).to(params.dtype), torch.stack(basis[len(free) :], dim=-1).to(
            params.dtype
        )

    def _difference(self, p: torch.Tensor, j: int) -> torch.Tensor:
        """The sub-pixel profile's central difference in parameter j (0 n, 1 r_e, 2 q, 3 the angle) per unit
        step: (N, L, L). q's upper step stops at 1 (a round profile), its quotient uses the step taken."""
        up, down = p.clone(), p.clone()
        if j == 3:  # (cos, sin) turned by +-LOCK_STEP (no atan2: ONNX has none)
            c, s = math.cos(LOCK_STEP), math.sin(LOCK_STEP)
            up[:, 3], up[:, 4] = p[:, 3] * c - p[:, 4] * s, p[:, 4] * c + p[:, 3] * s
            down[:, 3], down[:, 4] = p[:, 3] * c + p[:, 4] * s, p[:, 4] * c - p[:, 3] * s
            return (self._profile(up) - self._profile(down)) / (2 * LOCK_STEP)
        up[:, j] = p[:, j] * (1 + LOCK_STEP)
        down[:, j] = p[:, j] * (1 - LOCK_STEP)
        if j == 2:
            up[:, 2] = up[:, 2].clamp_max(1.0)
        step = (up[:, j] - down[:, j]).view(-1, 1, 1)
        return (self._profile(up) - self._profile(down)) / step

    def _b(self, n: torch.Tensor) -> torch.Tensor:
        """b_n of the (cut) profile at indices n (any shape)."""
        if self.b_coeffs is None:
            return sersic_b(n)
        lo, hi = math.log(N_RANGE[0]), math.log(N_RANGE[1])
        x = (n.clamp(*N_RANGE).log() - 0.5 * (lo + hi)) / (0.5 * (hi - lo))
        coeffs = self.b_coeffs.to(n.dtype)
        acc = torch.zeros_like(x) + coeffs[0]
        for i in range(1, coeffs.shape[0]):  # Horner
            acc = acc * x + coeffs[i]
        return acc.exp()

    def _blur(self, img: torch.Tensor) -> torch.Tensor:
        assert self.log_sigma is not None  # only without a known PSF
        sigma = self.log_sigma.exp().clamp(0.25, self.radius / 2)
        t = torch.arange(-self.radius, self.radius + 1, dtype=img.dtype, device=img.device)
        k = torch.exp(-0.5 * (t / sigma).square())
        k = k / k.sum()
        img = F.conv2d(img, k.view(1, 1, 1, -1), padding=(0, self.radius))
        return F.conv2d(img, k.view(1, 1, -1, 1), padding=(self.radius, 0))

    def sigma_px(self) -> float | None:
        """The learned blur width (px); None when the template uses the data's known PSF."""
        if self.log_sigma is None:
            return None
        return float(self.log_sigma.exp().clamp(0.25, self.radius / 2))
