"""Seeds: parsing `0-63,70` lists and turning a seed into a latent vector (NumPy only, shared by torch and web)."""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

from astrogan.utils.errors import UserError

MAX_SEED = 2**32 - 1


def parse_seeds(text: str, *, max_count: int = 100_000) -> list[int]:
    """Parse StyleGAN-style seed lists: `"0-63"`, `"1,5,9"`, `"0-3,10"` -> [0, 1, 2, 3, 10]."""
    seeds: list[int] = []
    for part in str(text).replace(" ", "").split(","):
        if not part:
            continue
        try:
            if "-" in part[1:]:
                lo_s, hi_s = part.split("-", 1) if not part.startswith("-") else (part, "")
                lo, hi = int(lo_s), int(hi_s)
                for end in (lo, hi):  # before the order: no order of "0--3" makes it a range of seeds
                    if not 0 <= end <= MAX_SEED:
                        raise UserError(f"seed {end} in {part!r} is out of range 0..{MAX_SEED}")
                if hi < lo:
                    raise UserError(f"seed range {part!r} runs backwards; write it as {hi}-{lo}")
                if len(seeds) + hi - lo + 1 > max_count:  # check before expanding: 0-4294967295 is 4e9 ints
                    raise UserError(f"too many seeds in {text!r} (more than {max_count})")
                seeds.extend(range(lo, hi + 1))
            else:
                seeds.append(int(part))
        except ValueError as exc:
            if isinstance(exc, UserError):
                raise
            raise UserError(f"cannot read seeds {text!r}: use a list like 0-63 or 1,5,9") from None
        if len(seeds) > max_count:
            raise UserError(f"too many seeds in {text!r} (more than {max_count})")
    if not seeds:
        raise UserError(f"no seeds in {text!r}: use a list like 0-63 or 1,5,9")
    for s in seeds:
        if not 0 <= s <= MAX_SEED:
            raise UserError(f"seed {s} is out of range 0..{MAX_SEED}")
    return seeds


def latents_for_seeds(seeds: Sequence[int], z_dim: int) -> np.ndarray:
    """One standard-normal latent per seed, independent of batch composition: float32 `(N, z_dim)`.

    Uses NumPy's PCG64 so that the torch sampler and the torch-free web server agree bit for bit.
    """
    out = np.empty((len(seeds), z_dim), dtype=np.float32)
    for i, seed in enumerate(seeds):
        out[i] = np.random.default_rng(int(seed)).standard_normal(z_dim, dtype=np.float32)
    return out


def seed_python_and_numpy(seed: int) -> None:
    """Seed Python's and NumPy's global generators (torch is seeded in utils.torchtools)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))


def labels_for_seeds(
    seeds: Sequence[int], num_classes: int, labels: Sequence[int] | int | None = None
) -> list[int] | None:
    """Class labels for a batch of seeds: the given ones (one per seed, or one for all), else `seed % num_classes`.

    The one rule shared by the torch sampler and the torch-free web server; None for unconditional models.
    """
    if num_classes <= 0:
        if labels is not None:
            raise UserError("this generator is unconditional: drop --class")
        return None
    if labels is None:
        values = [int(s) % num_classes for s in seeds]
    elif isinstance(labels, int):
        values = [int(labels)] * len(seeds)
    else:
        values = [int(v) for v in labels]
    if len(values) != len(seeds) or any(not 0 <= v < num_classes for v in values):
        raise UserError(f"class labels must be in 0..{num_classes - 1}, one per seed")
    return values
