"""GAN loss objects, one per family, so the training loop knows nothing of the objective.

- `dcgan`: binary cross-entropy on logits with random (noisy, soft) label smoothing
  (real targets ~ U[0.9, 1], fake targets ~ U[0, 0.1]; Salimans et al. 2016), non-saturating G loss.
- `fastgan`: the hinge loss with the randomised margin of Liu et al. 2021 (FastGAN, ICLR 2021):
  D real relu(U[0.8, 1] - logit), fake relu(U[0.8, 1] + logit), G -mean(logit), plus the paper's
  self-supervised reconstruction loss on real images. The paper measures reconstruction with LPIPS,
  whose network weights we cannot download at run time, so this uses pixel MSE (or L1) instead.

Interface (what the loop calls; `real`/`fake` are already augmented, `fake` detached for D):
    loss_d, stats = loss.d_loss(D, real, fake, c=None)   # stats: loss_d, acc_real, acc_fake (+ extras)
    loss_g, stats = loss.g_loss(D, fake, c=None)         # stats: loss_g
All random draws come from torch's global RNG, so a resumed run with restored RNG state is bit-exact.
Logits are cast to float32 before the loss, so both work under autocast (bf16/fp16).
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from astrogan.utils.errors import UserError

Stats = dict[str, float]


class GANLoss(Protocol):
    """What the arch-agnostic loop needs from a loss family."""

    name: str

    def d_loss(
        self, D: nn.Module, real: torch.Tensor, fake: torch.Tensor, c: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, Stats]: ...

    def g_loss(
        self, D: nn.Module, fake: torch.Tensor, c: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, Stats]: ...


def _per_image(logits: torch.Tensor) -> torch.Tensor:
    """(N,) or (N, K) logits -> (N,) mean logit per image, float32."""
    logits = logits.float()
    return logits.flatten(1).mean(dim=1) if logits.dim() > 1 else logits


def _accuracy(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> Stats:
    """An image is judged real when its mean logit is > 0."""
    with torch.no_grad():
        acc_real = (_per_image(logits_real) > 0).float().mean().item()
        acc_fake = (_per_image(logits_fake) <= 0).float().mean().item()
    return {"acc_real": acc_real, "acc_fake": acc_fake}


class DCGANLoss:
    """BCE-with-logits, random label smoothing for D, non-saturating loss for G."""

    name = "dcgan"

    def __init__(
        self, *, real_range: tuple[float, float] = (0.9, 1.0), fake_range: tuple[float, float] = (0.0, 0.1)
    ) -> None:
        for label, (lo, hi) in (("real_range", real_range), ("fake_range", fake_range)):
            if not 0.0 <= lo <= hi <= 1.0:
                raise UserError(f"dcgan loss {label} must satisfy 0 <= low <= high <= 1, got {(lo, hi)}")
        self.real_range = (float(real_range[0]), float(real_range[1]))
        self.fake_range = (float(fake_range[0]), float(fake_range[1]))

    @staticmethod
    def _targets(like: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
        # rand() then scale: one draw per logit from the global RNG (CPU or CUDA generator of `like`).
        return torch.rand(like.shape, device=like.device, dtype=torch.float32) * (hi - lo) + lo

    def d_loss(
        self, D: nn.Module, real: torch.Tensor, fake: torch.Tensor, c: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, Stats]:
        """Shapes: real, fake (N, C, H, W); c (N,) or None. Returns a scalar and stats."""
        logits_real = D(real, c).float()
        logits_fake = D(fake, c).float()
        t_real = self._targets(logits_real, *self.real_range)
        t_fake = self._targets(logits_fake, *self.fake_range)
        loss_real = F.binary_cross_entropy_with_logits(logits_real, t_real)
        loss_fake = F.binary_cross_entropy_with_logits(logits_fake, t_fake)
        loss = loss_real + loss_fake
        stats = {"loss_d": loss.item(), "loss_d_real": loss_real.item(), "loss_d_fake": loss_fake.item()}
        stats.update(_accuracy(logits_real, logits_fake))
        return loss, stats

    def g_loss(
        self, D: nn.Module, fake: torch.Tensor, c: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, Stats]:
        """Non-saturating: BCE(D(G(z)), 1). Shapes: fake (N, C, H, W)."""
        logits = D(fake, c).float()
        loss = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
        return loss, {"loss_g": loss.item()}


class FastGANLoss:
    """Hinge loss with random margins U[low, 1] plus reconstruction of real images (MSE/L1 for LPIPS)."""

    name = "fastgan"

    def __init__(self, *, recon_weight: float = 1.0, recon: str = "mse", margin_low: float = 0.8) -> None:
        if recon not in ("mse", "l1"):
            raise UserError(f"fastgan loss recon must be 'mse' or 'l1', got {recon!r}")
        if recon_weight < 0:
            raise UserError(f"fastgan loss recon_weight must be >= 0, got {recon_weight}")
        if not 0.0 <= margin_low <= 1.0:
            raise UserError(f"fastgan loss margin_low must be in [0, 1], got {margin_low}")
        self.recon_weight = float(recon_weight)
        self.recon = recon
        self.margin_low = float(margin_low)

    def _margin(self, like: torch.Tensor) -> torch.Tensor:
        return (
            torch.rand(like.shape, device=like.device, dtype=torch.float32) * (1.0 - self.margin_low)
            + self.margin_low
        )

    def d_loss(
        self, D: nn.Module, real: torch.Tensor, fake: torch.Tensor, c: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, Stats]:
        """Shapes: real, fake (N, C, H, W). D(real, c, return_recon=True) -> (logits, [(pred, target)])."""
        out = D(real, c, return_recon=True)
        logits_real, pairs = out if isinstance(out, tuple) else (out, [])
        logits_real = logits_real.float()
        logits_fake = D(fake, c).float()
        loss_real = F.relu(self._margin(logits_real) - logits_real).mean()
        loss_fake = F.relu(self._margin(logits_fake) + logits_fake).mean()
        dist = F.mse_loss if self.recon == "mse" else F.l1_loss
        loss_recon = logits_real.new_zeros(())
        for pred, target in pairs:
            loss_recon = loss_recon + dist(pred.float(), target.float())
        loss = loss_real + loss_fake + self.recon_weight * loss_recon
        stats = {
            "loss_d": loss.item(),
            "loss_d_real": loss_real.item(),
            "loss_d_fake": loss_fake.item(),
            "loss_recon": loss_recon.item(),
        }
        stats.update(_accuracy(logits_real, logits_fake))
        return loss, stats

    def g_loss(
        self, D: nn.Module, fake: torch.Tensor, c: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, Stats]:
        """-mean(D(G(z))). Shapes: fake (N, C, H, W)."""
        loss = -D(fake, c).float().mean()
        return loss, {"loss_g": loss.item()}


LOSSES: dict[str, type] = {"dcgan": DCGANLoss, "fastgan": FastGANLoss}


def make_loss(name: str, **kwargs: Any) -> GANLoss:
    """Build the loss family `name` (an ArchSpec.loss); kwargs go to its constructor."""
    try:
        cls = LOSSES[name]
    except KeyError:
        raise UserError(f"unknown loss {name!r}: choose one of {', '.join(sorted(LOSSES))}") from None
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise UserError(f"bad option for loss {name!r}: {exc}") from None
