"""Differentiable augmentation for data-efficient GAN training (Zhao et al. 2020, "DiffAugment"), and the
`Augment` interface the training loop holds (DiffAugment here, ADA in `astrogan.data.ada`).

Applied identically (same policy, fresh randomness) to real and fake images before the discriminator, so
gradients flow through it to the generator. Every op draws its random numbers for the whole batch whether
or not a sample is augmented, so the RNG stream (and thus a resumed run) does not depend on `prob`.
Empty sky is black, so translation and cutout fill with -1 (black in [-1, 1]) rather than 0 (grey).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F


@runtime_checkable
class Augment(Protocol):
    """What the loop holds: applied to D's inputs (real and fake), told each step's stats, saved with the run.

    `__call__` maps (N, C, H, W) in [-1, 1] to the same shape, differentiably in `x`; `update` is called once per
    training step with `{"d_real_sign": mean sign(D(real)) over the step's reals (all processes),
    "num_images": reals D saw this step (all processes)}`; `p` is the current strength (logged and saved).
    """

    name: str

    @property
    def p(self) -> float: ...

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...

    def update(self, stats: Mapping[str, float]) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


def _blend(x: torch.Tensor, aug: torch.Tensor, prob: float) -> torch.Tensor:
    keep = (torch.rand(x.shape[0], 1, 1, 1, device=x.device) >= prob).to(x.dtype)
    return keep * x + (1 - keep) * aug


def _color(x: torch.Tensor) -> torch.Tensor:
    n = x.shape[0]
    x = x + (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5)  # brightness
    if x.shape[1] > 1:  # saturation has no meaning for a single band
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) + 0.5) + mean  # contrast


def _translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    n, _, h, w = x.shape
    sy, sx = max(1, int(h * ratio + 0.5)), max(1, int(w * ratio + 0.5))
    dy = torch.randint(-sy, sy + 1, (n, 1, 1), device=x.device)
    dx = torch.randint(-sx, sx + 1, (n, 1, 1), device=x.device)
    gy = torch.arange(h, device=x.device).view(1, h, 1) + dy + sy
    gx = torch.arange(w, device=x.device).view(1, 1, w) + dx + sx
    padded = F.pad(x, (sx, sx, sy, sy), value=-1.0)
    idx = torch.arange(n, device=x.device).view(n, 1, 1)
    return padded.permute(0, 2, 3, 1)[idx, gy, gx].permute(0, 3, 1, 2)


def _cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    n, _, h, w = x.shape
    ch, cw = max(1, int(h * ratio + 0.5)), max(1, int(w * ratio + 0.5))
    cy = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), device=x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), device=x.device)
    yy = torch.arange(h, device=x.device).view(1, h, 1)
    xx = torch.arange(w, device=x.device).view(1, 1, w)
    # A ch x cw hole from (cy - ch // 2, cx - cw // 2), clipped at the border (DiffAugment's; `<= ch // 2`
    # about the centre cut ch + 1 rows when ch is even).
    y0, x0 = cy - ch // 2, cx - cw // 2
    inside = (yy >= y0) & (yy < y0 + ch) & (xx >= x0) & (xx < x0 + cw)
    return torch.where(inside.unsqueeze(1), torch.full_like(x, -1.0), x)


_OPS = {"color": _color, "translation": _translation, "cutout": _cutout}


def diff_augment(x: torch.Tensor, types: Sequence[str], *, prob: float = 1.0) -> torch.Tensor:
    """Augment `x` (N, C, H, W) in [-1, 1]: each op hits each sample with probability `prob`."""
    if prob <= 0 or not types:
        return x
    for name in types:
        x = _blend(x, _OPS[name](x), prob)
    return x


class DiffAugment:
    """Callable holding the policy and the probability (the latter is part of the resumable state).

    Implements `Augment` with a constant strength: `p` is `prob`, `update` does nothing.
    """

    name = "diffaugment"

    def __init__(self, types: Sequence[str], prob: float) -> None:
        unknown = [t for t in types if t not in _OPS]
        if unknown:
            raise ValueError(f"unknown augmentation(s) {unknown}: choose from {sorted(_OPS)}")
        self.types = tuple(types)
        self.prob = float(prob)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return diff_augment(x, self.types, prob=self.prob)

    @property
    def p(self) -> float:
        """The probability each op hits each sample (an alias of `prob`)."""
        return self.prob

    def update(self, stats: Mapping[str, float]) -> None:
        """Nothing to adapt: DiffAugment's strength is fixed."""

    def state_dict(self) -> dict[str, Any]:
        """`{"p": prob}`."""
        return {"p": self.prob}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore `prob` from `state_dict()`'s output."""
        if "p" not in state:
            raise ValueError(f"a DiffAugment state needs the key 'p', got {sorted(state)}")
        p = float(state["p"])
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"augmentation probability must lie in [0, 1], got {p}")
        self.prob = p


if TYPE_CHECKING:

    def _conforms(a: DiffAugment) -> Augment:  # mypy checks that DiffAugment implements Augment
        return a
