"""The auxiliary condition regressor: a small CNN learns physical conditions from the real images, and the
generator pays for the distance between what it reads on a fake and what the fake was asked for.

A projection discriminator (Miyato & Koyama 2018) only learns that an image does not *fit* its condition
once it has learnt what images look like; on a 30-minute CPU budget the generators of #13 got the radius
roughly (rank correlation 0.6) and the axis ratio barely (0.1-0.3). The auxiliary regressor (the
continuous-label form of AC-GAN, Odena et al. 2017) gives the generator a direct, dense signal from the
first steps: `weight * MSE(R(G(z, c)), normalise(c))`.

R is not the discriminator: it sees the images *before* augmentation (a scaled or cut-out picture does not
have its true radius), it is trained on real images only (so it measures, rather than judging realism),
and it has its own Adam. It lives in the loss (its weights and optimizer in the loss state, so a
checkpoint resumes it bit-exactly; a checkpoint from before it existed starts it fresh), not in the model:
exports, ONNX graphs and `generator.json` do not change. Its weights are drawn from a forked RNG, so
turning it on does not move the run's random stream. Under DDP its gradients are averaged like D's.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from astrogan.conditions import CondSpec
from astrogan.utils.errors import UserError

_INIT_SEED = 20_170_130  # R's own initialisation seed (AC-GAN's arXiv date); the run's stream is untouched
_HIDDEN = 128


class CondRegressor(nn.Module):
    """images (N, C, S, S) in [-1, 1] -> normalised conditions (N, K).

    DCGAN-like: 4x4 stride-2 convolutions from `width` channels doubling up to 128 down to 4x4, one 3x3
    convolution at 8x8, then a two-layer head; ~0.9 M parameters and about a DCGAN-32 discriminator's
    cost at 64 px (a stride-1 stem at full resolution cost 2.5x the whole DCGAN step)."""

    def __init__(self, channels: int, image_size: int, dim: int, *, width: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in, size, w = channels, int(image_size), int(width)
        while size > 4:
            if size == 8:
                layers += [nn.Conv2d(c_in, c_in, 3, 1, 1), nn.LeakyReLU(0.2)]
            layers += [nn.Conv2d(c_in, w, 4, 2, 1), nn.LeakyReLU(0.2)]
            c_in, size, w = w, size // 2, min(2 * w, _HIDDEN)
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(c_in * size * size, _HIDDEN), nn.LeakyReLU(0.2), nn.Linear(_HIDDEN, dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # type: ignore[no-any-return]


class CondAux:
    """The regressor, its optimizer and the generator's penalty; one per rank, held by the loss.

    spec: the conditions (names, mean/std to normalise with); weight: the penalty's weight on the generator
    (reached after `warmup` regressor steps, so an untrained R does not steer G); lr: R's Adam rate."""

    def __init__(
        self,
        spec: CondSpec,
        *,
        channels: int,
        image_size: int,
        device: torch.device | str,
        weight: float = 1.0,
        lr: float = 1e-3,
        warmup: int = 500,
    ) -> None:
        if not (math.isfinite(weight) and weight > 0) or not lr > 0 or warmup < 0:
            raise UserError(f"cond_weight and cond_lr must be > 0, got {weight} and {lr}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_INIT_SEED)
            self.net = CondRegressor(channels, image_size, spec.dim).to(device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=lr, betas=(0.9, 0.99))
        self.mean = torch.tensor(spec.mean, dtype=torch.float32, device=device)
        self.std = torch.tensor(spec.std, dtype=torch.float32, device=device)
        self.weight, self.warmup, self.steps = float(weight), int(warmup), 0

    def _target(self, c: torch.Tensor) -> torch.Tensor:
        return (c.float() - self.mean) / self.std

    def _predict(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):  # a small net: fp32 keeps its regression exact
            return self.net(x.float())  # type: ignore[no-any-return]

    def train_step(self, real: torch.Tensor, c_real: torch.Tensor) -> dict[str, float]:
        """One Adam step of R on real images (N, C, S, S) and their conditions (N, K); returns its MSE."""
        self.net.requires_grad_(True)
        with torch.enable_grad():
            loss = F.mse_loss(self._predict(real.detach()), self._target(c_real))
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            for p in self.net.parameters():  # identical replicas on every rank, like D
                if p.grad is not None:
                    torch.distributed.all_reduce(p.grad)
                    p.grad /= torch.distributed.get_world_size()
        self.opt.step()
        self.steps += 1
        return {"loss_cond_real": loss.item()}

    def penalty(self, fake: torch.Tensor, c_gen: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The generator's term for fakes (N, C, S, S) asked for c_gen (N, K): weight x ramp x MSE (R frozen)."""
        self.net.requires_grad_(False)
        mse = F.mse_loss(self._predict(fake), self._target(c_gen))
        ramp = min(1.0, self.steps / self.warmup) if self.warmup else 1.0
        return mse * (self.weight * ramp), {"loss_cond_fake": mse.item()}

    def state_dict(self) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "opt": self.opt.state_dict(), "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.steps = int(state["steps"])


def attach(loss: Any, spec: CondSpec | None, *, channels: int, image_size: int, device: torch.device) -> None:
    """Give `loss` a CondAux when the run is conditioned on physical parameters and the loss family takes
    one (its `cond_weight` > 0); class labels and unconditional runs are left as they are."""
    weight = float(getattr(loss, "cond_weight", 0.0) or 0.0)
    if spec is None or weight <= 0:
        return
    loss.cond_aux = CondAux(
        spec,
        channels=channels,
        image_size=image_size,
        device=device,
        weight=weight,
        lr=float(getattr(loss, "cond_lr", 1e-3)),
    )
