"""GAN loss families: each owns its forward passes and declares its phases, so the loop knows no objective.

A family runs one **phase** at a time (`Dmain`, `Dreg`, `Gmain`, `Greg`): it gets G, D, the augmentation
object and a batch, runs the passes that phase needs and returns the scalar to back-propagate. Phases and
their intervals are data (`Phase`); a lazy regularisation phase runs every `interval` steps and its loss
is multiplied by `interval` (Karras et al. 2020, StyleGAN2 sec. 4; the loop rescales Adam's lr and betas
by k/(k+1) for that network). The idea of the split follows stylegan2-ada's loss/loop (no code copied).

- `dcgan`: binary cross-entropy on logits with random (noisy, soft) label smoothing
  (real targets ~ U[0.9, 1], fake targets ~ U[0, 0.1]; Salimans et al. 2016), non-saturating G loss.
- `fastgan`: the hinge loss with the randomised margin of Liu et al. 2021 (FastGAN, ICLR 2021):
  D real relu(U[0.8, 1] - logit), fake relu(U[0.8, 1] + logit), G -mean(logit), plus the paper's
  self-supervised reconstruction loss on real images. The paper measures reconstruction with LPIPS,
  whose network weights we cannot download at run time, so this uses pixel MSE (or L1) instead.
- `stylegan2`: non-saturating logistic loss, lazy R1 on reals (every 16 steps, gamma from the
  `0.0002 * res^2 / batch` heuristic of Karras et al. 2020 ADA unless given), lazy path-length
  regularisation (every 4 steps, weight 2, batch halved), style mixing (p = 0.9), w_avg tracked in G.

With physical conditions (`--cond`), dcgan and stylegan2 also train an auxiliary condition regressor on the
reals and add `cond_weight x MSE(R(fake), c)` to G's loss (`training.cond_aux`; `cond_weight=0` turns it off).
With `mismatch_weight` > 0 (conditional runs), D also sees each real image with another image's condition (the
batch's conditions rolled by one) and is taught to call that pair fake, weighted by it: the matching-aware
discriminator of Reed et al. 2016 ("Generative adversarial text to image synthesis", GAN-CLS). The pair's two
logits come from one pass through D's trunk (`D(x, c, c_other=...)`), so the term costs only the projection.
With `profile_weight` > 0 (stylegan2 with the Sérsic prior), G's loss also penalises the azimuthal profile of
what the synthesis draws on top of the template: the asked n and r_e set the radial light, the network the rest.
With `black_weight` / `peak_weight` > 0 (stylegan2, data built from FITS with a per-image percentile stretch), G's
loss also asks each fake to obey the build's own stretch, as every real image does by construction
(fits_io.stretch): its `stretch_black` percentile at black (-1), and its `stretch_white` percentile not above white (1).

All random draws come from torch's global RNG, so a resumed run with restored RNG state is bit-exact.
Logits are cast to float32 before the loss, so every family works under autocast (bf16/fp16).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from astrogan.models.sersic_prior import annulus_profile
from astrogan.training.cond_aux import CondAux
from astrogan.utils.errors import UserError

Stats = dict[str, float]
# `train`'s profile_weight for models that start as the Sérsic template (prior_residual). Measured
# (bench/conditioning_sersic.py, 46 kimg, seed 0): median relative error of measured vs asked n / r_e / q
# 0.044 / 0.028 / 0.017 with it, 0.064 / 0.057 / 0.018 without (real floor 0.030 / 0.014 / 0.013).
PROFILE_WEIGHT = 1000.0
Augment = Callable[[torch.Tensor], torch.Tensor]


@dataclasses.dataclass(frozen=True)
class Phase:
    """One optimizer step of one network: `net` is "G" or "D"; it runs every `interval` steps."""

    name: str
    net: str
    interval: int = 1
    needs_real: bool = False  # the loop draws real images (and their labels) for this phase


@dataclasses.dataclass
class Batch:
    """What the loop hands a phase per micro-batch: reals (N, C, H, W) in [-1, 1] when the phase needs them,
    their labels (N,) or None, latents z (N, z_dim) and labels for generated images (N,) or None."""

    z: torch.Tensor
    c_gen: torch.Tensor | None = None
    real: torch.Tensor | None = None
    c_real: torch.Tensor | None = None


class GANLoss(Protocol):
    """What the arch-agnostic loop needs from a loss family."""

    name: str
    phases: tuple[Phase, ...]

    def run(
        self, phase: Phase, *, G: nn.Module, D: nn.Module, augment: Augment, batch: Batch
    ) -> tuple[torch.Tensor, Stats]:
        """Run `phase`'s forward passes; return the scalar to back-propagate and float stats."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def reg_intervals(phases: tuple[Phase, ...]) -> dict[str, int]:
    """{"G": k, "D": k}: the lazy-regularisation interval of each network (1 when it has none)."""
    return {net: max([p.interval for p in phases if p.net == net] or [1]) for net in ("G", "D")}


def _per_image(logits: torch.Tensor) -> torch.Tensor:
    """(N,) or (N, K) logits -> (N,) mean logit per image, float32."""
    logits = logits.float()
    return logits.flatten(1).mean(dim=1) if logits.dim() > 1 else logits


def _prior(G: Any, z: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor | None:
    """The StyleGAN2 generator's Sérsic-prior parameters for (z, c), or None (models.sersic_prior)."""
    return G.prior_params(z, c) if hasattr(G, "prior_params") else None


def _accuracy(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> Stats:
    """An image is judged real when its mean logit is > 0; `d_real_sign` feeds ADA's overfitting heuristic."""
    with torch.no_grad():
        per_real = _per_image(logits_real)
        acc_real = (per_real > 0).float().mean().item()
        acc_fake = (_per_image(logits_fake) <= 0).float().mean().item()
        sign = per_real.sign().mean().item()
    return {"acc_real": acc_real, "acc_fake": acc_fake, "d_real_sign": sign}


class _CondAuxMixin:
    """The auxiliary condition regressor's hooks (`training.cond_aux`): set by the loop on conditioned runs."""

    cond_weight = 0.0
    cond_lr = 1e-3
    mismatch_weight = 0.0
    cond_aux: CondAux | None = None

    def _set_cond(self, cond_weight: float, cond_lr: float) -> None:
        if not (math.isfinite(cond_weight) and cond_weight >= 0) or not cond_lr > 0:
            raise UserError(f"{self.__class__.__name__}: cond_weight must be >= 0 and cond_lr > 0")
        self.cond_weight, self.cond_lr = float(cond_weight), float(cond_lr)

    def _set_mismatch(self, weight: float) -> None:
        if not (math.isfinite(weight) and weight >= 0):
            raise UserError(f"{self.__class__.__name__}: mismatch_weight must be >= 0, got {weight}")
        self.mismatch_weight = float(weight)

    def _mismatched(self, c: torch.Tensor | None) -> torch.Tensor | None:
        """The reals' conditions (or labels) shifted by one within the batch, for D's mismatch term; None when
        off. A roll, not a shuffle: no draw from the RNG, so the run's random stream is the same with it on."""
        if not self.mismatch_weight or c is None or c.shape[0] < 2:
            return None
        return c.roll(1, dims=0)

    def _train_cond(self, batch: Batch) -> Stats:
        """One regressor step on the phase's (unaugmented) reals; nothing without a regressor."""
        if self.cond_aux is None or batch.real is None or batch.c_real is None:
            return {}
        return self.cond_aux.train_step(batch.real, batch.c_real)

    def _cond_penalty(
        self, loss: torch.Tensor, fake: torch.Tensor, c: torch.Tensor | None
    ) -> tuple[torch.Tensor, Stats]:
        """`loss` plus the regressor's penalty on (unaugmented) fakes asked for `c`."""
        if self.cond_aux is None or c is None:
            return loss, {}
        extra, stats = self.cond_aux.penalty(fake, c)
        return loss + extra, stats

    def _cond_state(self) -> dict[str, Any]:
        return {} if self.cond_aux is None else {"cond_aux": self.cond_aux.state_dict()}

    def _load_cond_state(self, state: dict[str, Any]) -> None:
        # A state from before the regressor existed (or a run without it): R starts fresh.
        if self.cond_aux is not None and "cond_aux" in state:
            self.cond_aux.load_state_dict(state["cond_aux"])


class _TwoPhaseLoss(_CondAuxMixin):
    """DCGAN/FastGAN shape: one D step on (real, G(z)) and one G step on G(z), no regularisation phases."""

    name = "?"
    phases = (Phase("Dmain", "D", needs_real=True), Phase("Gmain", "G"))

    def d_loss(
        self, D: nn.Module, real: torch.Tensor, fake: torch.Tensor, c: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, Stats]:
        raise NotImplementedError

    def g_loss(
        self, D: nn.Module, fake: torch.Tensor, c: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, Stats]:
        raise NotImplementedError

    def run(
        self, phase: Phase, *, G: nn.Module, D: nn.Module, augment: Augment, batch: Batch
    ) -> tuple[torch.Tensor, Stats]:
        """Dmain: fakes from the reals' labels, made without a graph; Gmain: fakes from sampled labels."""
        if phase.name == "Dmain":
            assert batch.real is not None
            with torch.no_grad():
                fake = G(batch.z, batch.c_real)
            loss, stats = self.d_loss(D, augment(batch.real), augment(fake.float()), batch.c_real)
            return loss, {**stats, **self._train_cond(batch)}
        if phase.name == "Gmain":
            fake = G(batch.z, batch.c_gen)
            loss, stats = self.g_loss(D, augment(fake.float()), batch.c_gen)
            loss, more = self._cond_penalty(loss, fake, batch.c_gen)
            return loss, {**stats, **more}
        raise ValueError(f"{self.name} loss has no phase {phase.name!r}")

    def state_dict(self) -> dict[str, Any]:
        return self._cond_state()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._load_cond_state(state)


class DCGANLoss(_TwoPhaseLoss):
    """BCE-with-logits, random label smoothing for D, non-saturating loss for G."""

    name = "dcgan"

    def __init__(
        self,
        *,
        real_range: tuple[float, float] = (0.9, 1.0),
        fake_range: tuple[float, float] = (0.0, 0.1),
        cond_weight: float = 1.0,
        cond_lr: float = 1e-3,
        mismatch_weight: float = 0.0,
    ) -> None:
        self._set_cond(cond_weight, cond_lr)
        self._set_mismatch(mismatch_weight)
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
        c_wrong = self._mismatched(c)
        both = D(real, c, c_other=c_wrong).float() if c_wrong is not None else None
        logits_real = both[0] if both is not None else D(real, c).float()
        logits_fake = D(fake, c).float()
        t_real = self._targets(logits_real, *self.real_range)
        t_fake = self._targets(logits_fake, *self.fake_range)
        loss_real = F.binary_cross_entropy_with_logits(logits_real, t_real)
        loss_fake = F.binary_cross_entropy_with_logits(logits_fake, t_fake)
        loss = loss_real + loss_fake
        stats = {"loss_d": loss.item(), "loss_d_real": loss_real.item(), "loss_d_fake": loss_fake.item()}
        stats.update(_accuracy(logits_real, logits_fake))
        if both is not None:
            logits_wrong = both[1]
            # The fake range's midpoint, not a draw: the random stream stays the same with the term on.
            t_wrong = torch.full_like(logits_wrong, sum(self.fake_range) / 2)
            loss_wrong = F.binary_cross_entropy_with_logits(logits_wrong, t_wrong)
            loss = loss + self.mismatch_weight * loss_wrong
            stats["loss_d_mismatch"] = loss_wrong.item()
        return loss, stats

    def g_loss(
        self, D: nn.Module, fake: torch.Tensor, c: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, Stats]:
        """Non-saturating: BCE(D(G(z)), 1). Shapes: fake (N, C, H, W)."""
        logits = D(fake, c).float()
        loss = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
        return loss, {"loss_g": loss.item()}


class FastGANLoss(_TwoPhaseLoss):
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


class StyleGAN2Loss(_CondAuxMixin):
    """Non-saturating logistic loss with lazy R1 and path-length regularisation and style mixing.

    Needs a generator with `mapping(z, c, *, update_w_avg) -> ws (N, num_ws, w_dim)` and
    `synthesis(ws) -> images` (models.stylegan2). The path-length mean is part of the resumable state.
    """

    name = "stylegan2"

    def __init__(
        self,
        *,
        r1_gamma: float | None = None,
        r1_interval: int = 16,
        pl_weight: float = 2.0,
        pl_interval: int = 4,
        pl_batch_shrink: int = 2,
        pl_decay: float = 0.01,
        style_mixing: float = 0.9,
        image_size: int = 64,
        batch_size: int = 32,
        cond_weight: float = 1.0,
        cond_lr: float = 1e-3,
        mismatch_weight: float = 0.0,
        profile_weight: float = 0.0,
        black_weight: float = 0.0,
        peak_weight: float = 0.0,
        stretch_black: float = 0.5,
        stretch_white: float = 100.0,
    ) -> None:
        self._set_cond(cond_weight, cond_lr)
        self._set_mismatch(mismatch_weight)
        if r1_gamma is None:  # Karras et al. 2020 (ADA), auto config: gamma = 0.0002 * res^2 / minibatch
            r1_gamma = 0.0002 * image_size**2 / max(batch_size, 1)
        checks = {
            "r1_gamma": r1_gamma >= 0,
            "pl_weight": pl_weight >= 0,
            "r1_interval": r1_interval >= 1,
            "pl_interval": pl_interval >= 1,
            "pl_batch_shrink": pl_batch_shrink >= 1,
            "pl_decay": 0 < pl_decay <= 1,
            "style_mixing": 0 <= style_mixing <= 1,
            "profile_weight": math.isfinite(profile_weight) and profile_weight >= 0,
            "black_weight": math.isfinite(black_weight) and black_weight >= 0,
            "peak_weight": math.isfinite(peak_weight) and peak_weight >= 0,
            "stretch_black": 0 <= stretch_black < stretch_white <= 100,
            "stretch_white": 0 <= stretch_black < stretch_white <= 100,
        }
        for key, ok in checks.items():
            if not ok:
                raise UserError(f"stylegan2 loss {key} is out of range: {locals()[key]!r}")
        self.r1_gamma, self.pl_weight = float(r1_gamma), float(pl_weight)
        self.pl_batch_shrink, self.pl_decay = int(pl_batch_shrink), float(pl_decay)
        self.style_mixing = float(style_mixing)
        self.profile_weight = float(profile_weight)
        self.stretch_weights = (float(black_weight), float(peak_weight))
        self.stretch_levels = (float(stretch_black) / 100, float(stretch_white) / 100)
        phases = [Phase("Dmain", "D", needs_real=True)]
        if self.r1_gamma > 0:
            phases.append(Phase("Dreg", "D", interval=int(r1_interval), needs_real=True))
        phases.append(Phase("Gmain", "G"))
        if self.pl_weight > 0:
            phases.append(Phase("Greg", "G", interval=int(pl_interval)))
        self.phases = tuple(phases)
        self.pl_mean = torch.zeros(())

    def _ws(self, G: Any, z: torch.Tensor, c: torch.Tensor | None, *, update: bool) -> torch.Tensor:
        """Mapped latents with style mixing: from a random layer on, the styles of a second latent.

        The cutoff, the coin and the second latent are always drawn, so the RNG stream does not depend
        on the mixing probability.
        """
        ws = G.mapping(z, c, update_w_avg=update)
        num_ws = ws.shape[1]
        cutoff = int(torch.randint(1, max(num_ws, 2), ()).item())
        mix = bool(torch.rand(()).item() < self.style_mixing) and num_ws > 1
        z2 = torch.randn_like(z)
        if not mix:
            return ws
        ws2 = G.mapping(z2, c, update_w_avg=False)
        return torch.cat([ws[:, :cutoff], ws2[:, cutoff:]], dim=1)

    def run(
        self, phase: Phase, *, G: Any, D: nn.Module, augment: Augment, batch: Batch
    ) -> tuple[torch.Tensor, Stats]:
        """One phase: Dmain, Dreg (R1), Gmain or Greg (path length); regularisers are scaled by the interval."""
        if phase.name == "Dmain":
            assert batch.real is not None
            with torch.no_grad():
                fake = G.synthesis(
                    self._ws(G, batch.z, batch.c_gen, update=False), _prior(G, batch.z, batch.c_gen)
                )
            logits_fake = D(augment(fake.float()), batch.c_gen).float()
            c_wrong = self._mismatched(batch.c_real)
            both = None if c_wrong is None else D(augment(batch.real), batch.c_real, c_other=c_wrong).float()
            logits_real = both[0] if both is not None else D(augment(batch.real), batch.c_real).float()
            loss_fake = F.softplus(logits_fake).mean()
            loss_real = F.softplus(-logits_real).mean()
            loss = loss_real + loss_fake
            stats = {"loss_d": loss.item(), "loss_d_real": loss_real.item(), "loss_d_fake": loss_fake.item()}
            if both is not None:
                loss_wrong = F.softplus(both[1]).mean()
                loss = loss + self.mismatch_weight * loss_wrong
                stats["loss_d_mismatch"] = loss_wrong.item()
            return loss, {**stats, **_accuracy(logits_real, logits_fake), **self._train_cond(batch)}
        if phase.name == "Dreg":
            assert batch.real is not None
            real = batch.real.detach().requires_grad_(True)
            logits = D(augment(real), batch.c_real).float()
            (grad,) = torch.autograd.grad(logits.sum(), real, create_graph=True)
            penalty = grad.float().square().sum(dim=(1, 2, 3)).mean()
            return penalty * (self.r1_gamma / 2) * phase.interval, {"loss_r1": penalty.item()}
        if phase.name == "Gmain":
            ws, prior = self._ws(G, batch.z, batch.c_gen, update=True), _prior(G, batch.z, batch.c_gen)
            fake = G.synthesis(ws, prior)
            loss = F.softplus(-D(augment(fake.float()), batch.c_gen).float()).mean()
            stats = {"loss_g": loss.item()}
            if self.profile_weight > 0:
                penalty = self._profile_penalty(G, ws, prior, fake)
                loss = loss + self.profile_weight * penalty
                stats["loss_profile"] = penalty.item()
            if any(w > 0 for w in self.stretch_weights):
                terms = self._stretch_penalty(fake)
                for name, weight, term in zip(("black", "peak"), self.stretch_weights, terms, strict=True):
                    if weight > 0:
                        loss = loss + weight * term
                        stats[f"loss_{name}"] = term.item()
            loss, more = self._cond_penalty(loss, fake, batch.c_gen)
            return loss, {**stats, **more}
        if phase.name == "Greg":
            n = max(1, batch.z.shape[0] // self.pl_batch_shrink)
            c = None if batch.c_gen is None else batch.c_gen[:n]
            ws = self._ws(G, batch.z[:n], c, update=False)
            img = G.synthesis(ws, _prior(G, batch.z[:n], c)).float()
            noise = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
            (grad,) = torch.autograd.grad((img * noise).sum(), ws, create_graph=True)
            lengths = grad.float().square().sum(dim=2).mean(dim=1).sqrt()
            self.pl_mean = self.pl_mean.to(lengths.device)
            self.pl_mean = self.pl_mean.lerp(lengths.mean().detach(), self.pl_decay)
            penalty = (lengths - self.pl_mean).square().mean()
            stats = {"loss_pl": penalty.item(), "pl_mean": self.pl_mean.item()}
            return penalty * self.pl_weight * phase.interval, stats
        raise ValueError(f"stylegan2 loss has no phase {phase.name!r}")

    @staticmethod
    def _profile_penalty(
        G: Any, ws: torch.Tensor, prior: torch.Tensor | None, fake: torch.Tensor
    ) -> torch.Tensor:
        """The residual's azimuthal profile, squared: how far the light drawn on top of the Sérsic template
        moves the asked profile's radial distribution (models.sersic_prior.annulus_profile).

        The residual is the image minus the template's own share, less its mean (a constant is the sky's).
        Averaged over elliptical annuli it is what changes the measured n and r_e; what the annuli average
        out (noise, arms, clumps, asymmetry) is left to the discriminator. Area-weighted, so white noise of
        sigma adds only ~sigma^2 * B / S^2."""
        if prior is None:
            raise UserError(
                "stylegan2 loss profile_weight needs a generator with the Sérsic prior "
                "(--model cond_prior=sersic, conditions with a Sérsic index and a half-light radius in px)"
            )
        residual = fake.float() - G.synthesis.prior_share(ws, prior).float()
        residual = residual - residual.mean(dim=(2, 3), keepdim=True)
        means, area = annulus_profile(residual, prior)
        return (area.unsqueeze(1) * means.square()).sum(dim=2).mean()

    def _stretch_penalty(self, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """How far fakes (B, C, H, W) are from the build's stretch, each term averaged over the images: the
        squared distance of each one's black percentile from -1, and how far its white percentile overshoots 1
        (all bands together, as fits_io.stretch takes them), squared.

        Every real image has black and white exactly there by construction. A fake whose sky sits low has more
        than the black percentile's share of pixels clipped at black when sampled, and one whose peak overshoots
        gets a flat top: both bias a Sérsic fit. A peak below white is left to D: the gradient reaches only the
        pixels at those levels, and raising the peak through its one pixel adds a central spike
        (bench/conditioning_sersic.py, seed 0: r_e measured 3% small with a two-sided peak term)."""
        flat = fake.float().flatten(1)
        black, white = (_row_percentile(flat, level) for level in self.stretch_levels)
        return (black + 1).square().mean(), F.relu(white - 1).square().mean()

    def state_dict(self) -> dict[str, Any]:
        return {"pl_mean": self.pl_mean.detach().cpu().clone(), **self._cond_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pl_mean = state["pl_mean"].clone().to(self.pl_mean.device)
        self._load_cond_state(state)


def _row_percentile(x: torch.Tensor, q: float) -> torch.Tensor:
    """Each row's `q` quantile (0..1) of x (B, N), interpolated linearly as numpy's percentile: (B,).

    Two `kthvalue`s rather than `torch.quantile`, which refuses inputs of more than 2**24 elements (a batch of
    large pictures) and sorts whole rows; the gradient reaches the one or two pixels at that level."""
    n = x.shape[1]
    pos = q * (n - 1)
    low = int(math.floor(pos))
    below = x.kthvalue(low + 1, dim=1).values
    if pos == low:
        return below
    above = x.kthvalue(low + 2, dim=1).values
    return below + (pos - low) * (above - below)


LOSSES: dict[str, type] = {"dcgan": DCGANLoss, "fastgan": FastGANLoss, "stylegan2": StyleGAN2Loss}
# Families whose defaults depend on the run (image size, batch): make_loss passes these when given.
_RUN_ARGS = {"stylegan2": ("image_size", "batch_size")}


def _check_numbers(name: str, cls: type, options: dict[str, Any]) -> None:
    """A numeric option given as text (`r1_gamma=nan`, `pl_weight=abc`) or a bool: one line naming it."""
    hints = typing.get_type_hints(cls.__init__)  # type: ignore[misc]  # the class, not an instance
    for key, value in options.items():
        hint = hints.get(key)
        if hint not in (int, float, float | None) or (value is None and hint == float | None):
            continue
        if isinstance(value, bool) or not isinstance(value, int if hint is int else int | float):
            kind = "an integer" if hint is int else "a number"
            raise UserError(f"{name} loss {key} must be {kind}, got {value!r}")


def make_loss(
    name: str, *, image_size: int | None = None, batch_size: int | None = None, **options: Any
) -> GANLoss:
    """Build the loss family `name` (an ArchSpec.loss); `options` go to its constructor."""
    try:
        cls = LOSSES[name]
    except KeyError:
        raise UserError(f"unknown loss {name!r}: choose one of {', '.join(sorted(LOSSES))}") from None
    run = {"image_size": image_size, "batch_size": batch_size}
    for key in _RUN_ARGS.get(name, ()):
        if run[key] is not None:
            options.setdefault(key, run[key])
    _check_numbers(name, cls, options)
    try:
        return cls(**options)  # type: ignore[no-any-return,unused-ignore]
    except TypeError as exc:
        raise UserError(f"bad option for loss {name!r}: {exc}") from None
