"""The resumable training state: the TrainingState object, and its files (atomic writes, weights_only loads)."""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Any

import torch

from astrogan.utils.atomic import atomic_path
from astrogan.utils.errors import UserError
from astrogan.utils.torchtools import get_rng_state, set_rng_state

STATE_FORMAT_VERSION = 1
_STATE_RE = re.compile(r"^state-(\d{7})\.pt$")


def rampdown_factor(step: int, total: int, fraction: float) -> float:
    """The learning rates' factor for 0-based `step` of `total`: 1, then a half cosine towards 0 over the last
    `fraction` of the steps (0: no ramp). Lets the weights settle, so that the EMA generator averages one
    generator rather than a moving one (on #13's bench it made raw G and EMA agree, at no gain in fidelity)."""
    start = total * (1.0 - fraction)
    if fraction <= 0.0 or step < start:
        return 1.0
    t = min((step - start) / max(total - start, 1e-9), 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * t))


def state_path(ckpt_dir: Path, step: int) -> Path:
    return ckpt_dir / f"state-{step:07d}.pt"


def save_state(path: Path, state: dict[str, Any]) -> None:
    """torch.save to a temp file, fsync and rename: a kill mid-write leaves the old checkpoint intact."""
    state = {"format_version": STATE_FORMAT_VERSION, **state}
    with atomic_path(path, suffix=".pt.tmp") as tmp:
        torch.save(state, tmp)


def load_state(path: Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a state file safely; a corrupt or foreign file is a one-line UserError."""
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, pickle with code, wrong file type...
        reason = " ".join(str(exc).split())[:160]
        raise UserError(f"checkpoint {path} is corrupt or not an astrogan state ({reason})") from None
    if not isinstance(state, dict) or state.get("format_version") != STATE_FORMAT_VERSION:
        raise UserError(f"checkpoint {path} is not an astrogan training state (format version mismatch)")
    return state


def list_states(ckpt_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of every state file in `ckpt_dir`, oldest first."""
    if not ckpt_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := _STATE_RE.match(p.name))]
    return sorted(found)


def prune_states(ckpt_dir: Path, *, keep: int) -> None:
    """Delete all but the newest `keep` state files."""
    for _, p in list_states(ckpt_dir)[:-keep]:
        p.unlink(missing_ok=True)


class TrainingState:
    """Everything a run changes while it trains, in one place: networks, optimizers, scalers, the
    augmentation object (ADA's p), the loss's own state (path-length mean), the batch sampler, RNGs and
    the counters. `capture()` takes a deep copy (for a save or a NaN rollback); `restore()` puts one back.

    Learning rates are `base_lr * lr_scale * lr_ramp * mb_ratio`: `lr_scale` shrinks after NaN rollbacks,
    `lr_ramp` is the end-of-training ramp-down (`rampdown_factor`, set from the step before each step, so it
    needs no saving) and `mb_ratio = k / (k + 1)` compensates a network's lazy regularisation every k steps
    (StyleGAN2).
    """

    COUNTERS = ("step", "cur_nimg", "lr_scale", "nan_rollbacks")

    def __init__(
        self,
        *,
        G: torch.nn.Module,
        D: torch.nn.Module,
        G_ema: torch.nn.Module,
        opt_g: torch.optim.Optimizer,
        opt_d: torch.optim.Optimizer,
        scaler_g: torch.amp.GradScaler,
        scaler_d: torch.amp.GradScaler,
        augment: Any,
        loss: Any,
        sampler: Any,
        base_lrs: dict[str, float],
        mb_ratios: dict[str, float],
        dist: Any,
        config: dict[str, Any],
    ) -> None:
        self.G, self.D, self.G_ema = G, D, G_ema
        self.opt = {"G": opt_g, "D": opt_d}
        self.scaler = {"G": scaler_g, "D": scaler_d}
        self.augment, self.loss, self.sampler = augment, loss, sampler
        self.base_lrs, self.mb_ratios = dict(base_lrs), dict(mb_ratios)
        self.dist, self.config = dist, config
        self.step, self.cur_nimg, self.lr_scale, self.nan_rollbacks = 0, 0, 1.0, 0
        self.lr_ramp = 1.0

    def lr(self, net: str) -> float:
        """The learning rate network `net` ("G" or "D") steps with now."""
        return self.base_lrs[net] * self.lr_scale * self.lr_ramp * self.mb_ratios[net]

    def set_lr_ramp(self, ramp: float) -> None:
        if ramp != self.lr_ramp:
            self.lr_ramp = float(ramp)
            self._apply_lrs()

    def set_lr_scale(self, scale: float) -> None:
        self.lr_scale = float(scale)
        self._apply_lrs()

    def _apply_lrs(self) -> None:
        for net, opt in self.opt.items():
            for group in opt.param_groups:
                group["lr"] = self.lr(net)

    def _gather(self, obj: Any) -> list[Any]:
        """Per-process objects (RNG states, sampler, loss state) from every rank (a collective in DDP)."""
        if not self.dist.enabled:
            return [obj]
        out: list[Any] = [None] * self.dist.world_size
        torch.distributed.all_gather_object(out, obj)
        return out

    def capture(self) -> dict[str, Any]:
        """Everything needed to continue bit-exactly (tensors cloned, so later steps do not change it)."""
        rng = self._gather(get_rng_state())
        smp = self._gather(self.sampler.state_dict())
        loss = self._gather(self.loss.state_dict())
        return copy.deepcopy(
            {
                **{k: getattr(self, k) for k in self.COUNTERS},
                "G": self.G.state_dict(),
                "D": self.D.state_dict(),
                "G_ema": self.G_ema.state_dict(),
                "opt_g": self.opt["G"].state_dict(),
                "opt_d": self.opt["D"].state_dict(),
                "scaler_g": self.scaler["G"].state_dict(),
                "scaler_d": self.scaler["D"].state_dict(),
                "augment": self.augment.state_dict(),
                "aug_prob": float(self.augment.p),
                "loss_state": loss,
                "rng": rng,
                "sampler": smp,
                "world_size": self.dist.world_size,
                "config": self.config,
            }
        )

    def restore(self, state: dict[str, Any]) -> None:
        """Put a captured (or loaded) state back; a checkpoint from another world size is a UserError."""
        if int(state.get("world_size", 1)) != self.dist.world_size:
            raise UserError(
                f"checkpoint was written by {state.get('world_size')} processes; resume it with "
                f"the same number (now {self.dist.world_size})"
            )
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.G_ema.load_state_dict(state["G_ema"])
        self.opt["G"].load_state_dict(state["opt_g"])
        self.opt["D"].load_state_dict(state["opt_d"])
        self.scaler["G"].load_state_dict(state["scaler_g"])
        self.scaler["D"].load_state_dict(state["scaler_d"])
        if "augment" in state:
            self.augment.load_state_dict(state["augment"])
        else:  # states written before augmentation objects kept their own state
            self.augment.load_state_dict({"p": float(state["aug_prob"])})
        if state.get("loss_state"):
            self.loss.load_state_dict(state["loss_state"][self.dist.rank])
        self.step, self.cur_nimg = int(state["step"]), int(state["cur_nimg"])
        self.nan_rollbacks = int(state["nan_rollbacks"])
        set_rng_state(state["rng"][self.dist.rank])
        self.sampler.load_state_dict(state["sampler"][self.dist.rank])
        self.set_lr_scale(float(state["lr_scale"]))
