"""The settings of a denoising experiment (`DenoiseConfig`), checked in one place, and the seeds derived from them."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from astrogan.utils.errors import UserError

DEFAULT_ALPHAS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
DEFAULT_CONDITIONS = ("none", "half-res", "noise-x4", "both")

# Streams of the experiment seed: SeedSequence([seed, stream, ...]) for each independent use.
REPEAT_STREAM = 3  # the data stream of repeat r (batches and training noise, see mixing.py)
INIT_STREAM = 4  # the initial weights of repeat r
VAL_STREAM = 5  # the fixed noise of the validation images
TEST_STREAM = 6  # the fixed noise of the test images, per condition and chunk


def derive_seed(*keys: int) -> int:
    """One 63-bit integer from a tuple of integers (NumPy SeedSequence), for NumPy or torch generators."""
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


@dataclass(frozen=True)
class DenoiseConfig:
    """Everything `astrogan downstream denoise` needs besides its two image sets and the output folder.

    Defaults follow Holzschuh et al. 2022 (alphas 0..1 by 0.2, five repeats, Gaussian PSF of sigma 2 px,
    32-channel 5-block residual network, Adam 1e-4, MSE). Noise sigma is on the unit scale (uint8 / 255).
    """

    alphas: tuple[float, ...] = DEFAULT_ALPHAS
    repeats: int = 5
    num_generated: int = 50_000
    psf: str = "gaussian:sigma=2"
    noise: str = "gaussian:sigma=0.05"
    conditions: tuple[str, ...] = DEFAULT_CONDITIONS
    steps: int = 5000
    batch_size: int = 32
    lr: float = 1e-4
    val_every: int = 250
    patience: int = 6  # validations without improvement before a cell stops early
    width: int = 32
    num_blocks: int = 5
    max_val_images: int = 1024
    image_size: int | None = None  # None: the largest size both sets store
    seed: int = 0
    max_minutes: float | None = None  # wall-clock budget of all training, shared equally between cells
    device: str = "auto"
    jobs: int = 1  # cells trained at once, each in its own process
    num_examples: int = 2  # test images per condition in the example panel

    def __post_init__(self) -> None:
        if isinstance(self.alphas, str):
            object.__setattr__(self, "alphas", parse_alphas(self.alphas))
        if isinstance(self.conditions, str):
            object.__setattr__(
                self, "conditions", tuple(c.strip() for c in self.conditions.split(",") if c.strip())
            )
        object.__setattr__(self, "alphas", tuple(float(a) for a in self.alphas))
        object.__setattr__(self, "conditions", tuple(self.conditions))

    def validate(self) -> DenoiseConfig:
        """UserError (one line) for a setting out of range; returns self."""
        parse_alphas(",".join(repr(a) for a in self.alphas))
        for name in (
            "repeats",
            "steps",
            "batch_size",
            "val_every",
            "patience",
            "width",
            "num_blocks",
            "jobs",
        ):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.num_generated < 1 and max(self.alphas) > 0:
            raise UserError(f"--num-generated must be at least 1 for alpha > 0, got {self.num_generated}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UserError(f"--lr must be a positive number, got {self.lr}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise UserError(f"--max-minutes must be positive, got {self.max_minutes}")
        if self.max_val_images < 1 or self.num_examples < 0:
            raise UserError("max_val_images must be >= 1 and num_examples >= 0")
        from astrogan.downstream.degrade import parse_conditions, parse_psf

        parse_psf(self.psf)
        parse_conditions(self.conditions)
        return self

    def cell_settings(self) -> dict[str, Any]:
        """The settings every cell's result depends on (a finished cell is reused only when they match)."""
        keys = ("psf", "noise", "steps", "batch_size", "lr", "val_every", "patience", "width", "num_blocks")
        return {k: getattr(self, k) for k in keys} | {
            "seed": self.seed,
            "max_val_images": self.max_val_images,
        }

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def parse_alphas(text: str) -> tuple[float, ...]:
    """`0,0.2,0.4` -> (0.0, 0.2, 0.4): numbers in [0, 1], distinct at three decimals, sorted."""
    values: list[float] = []
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        try:
            a = float(part)
        except ValueError:
            raise UserError(f"--alphas wants numbers in [0, 1] like 0,0.2,1; got {part!r}") from None
        if not 0.0 <= a <= 1.0:
            raise UserError(f"--alphas must lie in [0, 1], got {part}")
        values.append(a)
    if not values:
        raise UserError("--alphas is empty: give e.g. 0,0.2,0.4,0.6,0.8,1")
    keys = [alpha_key(a) for a in values]
    if len(set(keys)) != len(keys):
        raise UserError(f"--alphas repeats a value (at three decimals): {text}")
    return tuple(sorted(values))


def alpha_key(alpha: float) -> str:
    """The name of an alpha in files and JSON: `a0.800`."""
    return f"a{alpha:.3f}"
