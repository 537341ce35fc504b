"""Seeds: parsing `0-63,70` lists, checking requests (seeds, trunc, batch size), seed -> latent (NumPy, torch-free)."""

from __future__ import annotations

import math
import numbers
import random
from collections.abc import Iterable, Sequence

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
    return check_seeds(seeds)


def check_seeds(seeds: Iterable[object]) -> list[int]:
    """`seeds` as a list of ints; UserError (one line) for one that is not a whole number in 0..MAX_SEED.

    Python and NumPy integers pass; floats (even 3.0), bools and text do not: `int(1.5)` would quietly draw seed 1.
    """
    out: list[int] = []
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, numbers.Integral):
            raise UserError(f"seed {s!r} is not a whole number: seeds are integers in 0..{MAX_SEED}")
        value = int(s)
        if not 0 <= value <= MAX_SEED:
            raise UserError(f"seed {value} is out of range 0..{MAX_SEED}")
        out.append(value)
    return out


def check_trunc(trunc: object, *, name: str = "trunc") -> float:
    """`trunc` as a float; UserError (one line, naming `name`: "--trunc" for a flag) unless it is a number in (0, 2].

    NaN and infinities fail too: they would draw every pixel black.
    """
    try:
        value = float(trunc)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise UserError(f"{name} must be a number in (0, 2], got {str(trunc)[:40]!r}") from None
    if not (math.isfinite(value) and 0 < value <= 2):
        raise UserError(f"{name} must be in (0, 2], got {trunc}")
    return value


def check_batch_size(batch_size: object, *, name: str = "batch_size") -> int:
    """`batch_size` as an int; UserError (one line, naming `name`) unless it is a whole number of at least 1."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or int(batch_size) < 1:
        raise UserError(f"{name} must be a whole number of at least 1, got {str(batch_size)[:40]!r}")
    return int(batch_size)


def latents_for_seeds(seeds: Sequence[int], z_dim: int) -> np.ndarray:
    """One standard-normal latent per seed, independent of batch composition: float32 `(N, z_dim)`.

    Uses NumPy's PCG64 so that the torch sampler and the torch-free web server agree bit for bit. Every seed
    must pass `check_seeds` (a UserError otherwise), so seed N means one latent everywhere.
    """
    seeds = check_seeds(seeds)
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
    else:
        many = isinstance(labels, Iterable) and not isinstance(labels, str)  # else one class for every seed
        given: list[object] = list(labels) if isinstance(labels, Iterable) and many else [labels]
        values = []
        for v in given:  # int() would quietly make class 1.7 class 1
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise UserError(f"class label {v!r} is not a whole number: classes are 0..{num_classes - 1}")
            values.append(int(v))
        if not many:
            values *= len(seeds)
    if len(values) != len(seeds) or any(not 0 <= v < num_classes for v in values):
        raise UserError(f"class labels must be in 0..{num_classes - 1}, one per seed")
    return values


def class_names(names: object, num_classes: int) -> list[str] | None:
    """What classes 0..num_classes-1 are called: the dataset's `label_names[i]`, else `str(i)`; None if unconditional.

    A dataset may name more classes than a run trains on (`--num-classes 3` on five names): class i is still
    `label_names[i]`, so the first `num_classes` names; one that names fewer leaves the rest numbered.
    """
    if num_classes <= 0:
        return None
    given = [str(n) for n in names] if isinstance(names, list | tuple) else []
    return [given[i] if i < len(given) else str(i) for i in range(num_classes)]
