"""A Sérsic prior for generators conditioned on Sérsic parameters: the profile asked for, drawn in the graph.

With `cond_prior = "sersic"` a StyleGAN2 generator conditioned on a Sérsic index and a half-light radius
(and optionally an axis ratio and position angle) renders the analytic profile those numbers describe and
feeds it to every synthesis block, so the network adds what the profile lacks (PSF, noise, texture)
instead of learning from scratch what a number like "n = 1.2" looks like. The profile is
I(r) ∝ exp(-b_n (r/r_e)^(1/n)) on elliptical radii (major axis r_e/sqrt(q), minor r_e*sqrt(q), as
GalSim's area-preserving shear draws it), centred on the stamp, averaged over 2x2 sub-pixels, blurred
by a Gaussian of learned width and scaled to a peak of 1. Without a position-angle column the angle is
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
SUPERSAMPLE = 2


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


class SersicPrior(nn.Module):
    """params(z (N, Z), c (N, K) physical) -> (N, 5); render(params) -> template (N, 1, S, S) in [0, 1]."""

    coords: torch.Tensor

    def __init__(self, names: Sequence[str], image_size: int) -> None:
        super().__init__()
        self.columns = prior_columns(list(names))
        self.image_size = image_size
        # Sub-pixel centres relative to the stamp centre ((S-1)/2 in 0-based pixels, GalSim's true centre).
        k = torch.arange(SUPERSAMPLE * image_size, dtype=torch.float32)
        self.register_buffer("coords", (k + 0.5) / SUPERSAMPLE - 0.5 - (image_size - 1) / 2, persistent=False)
        self.radius = max(2, image_size // 16)  # blur kernel half-width (px)
        self.log_sigma = nn.Parameter(torch.zeros(()))  # blur sigma starts at 1 px

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
        p = params.float()
        n, r_e, q = p[:, 0].clamp_min(0.2), p[:, 1].clamp_min(0.05), p[:, 2].clamp(0.05, 1.0)
        u = p[:, 3:5] / p[:, 3:5].norm(dim=1, keepdim=True).clamp_min(1e-6)
        cos, sin = u[:, 0].view(-1, 1, 1), u[:, 1].view(-1, 1, 1)
        x = self.coords.view(1, 1, -1)  # columns
        y = self.coords.view(1, -1, 1)  # rows
        xr, yr = x * cos + y * sin, y * cos - x * sin  # along the major axis, along the minor
        qq = q.view(-1, 1, 1)
        r = (qq * xr.square() + yr.square() / qq + 1e-12).sqrt()
        nn_, re = n.view(-1, 1, 1), r_e.view(-1, 1, 1)
        # exp(-b (r/r_e)^(1/n)): the constant e^b of the usual form cancels in the peak normalisation
        img = torch.exp(-sersic_b(nn_) * (r / re).pow(1.0 / nn_)).unsqueeze(1)
        img = F.avg_pool2d(img, SUPERSAMPLE)
        img = self._blur(img)
        peak = img.amax(dim=(2, 3), keepdim=True).clamp_min(1e-12)
        return (img / peak).to(params.dtype)

    def _blur(self, img: torch.Tensor) -> torch.Tensor:
        sigma = self.log_sigma.exp().clamp(0.25, self.radius / 2)
        t = torch.arange(-self.radius, self.radius + 1, dtype=img.dtype, device=img.device)
        k = torch.exp(-0.5 * (t / sigma).square())
        k = k / k.sum()
        img = F.conv2d(img, k.view(1, 1, 1, -1), padding=(0, self.radius))
        return F.conv2d(img, k.view(1, 1, -1, 1), padding=(self.radius, 0))

    def sigma_px(self) -> float:
        """The learned blur width (px)."""
        return float(self.log_sigma.exp().clamp(0.25, self.radius / 2))
