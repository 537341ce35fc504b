"""1D Wasserstein distances between per-galaxy property distributions, with a real-vs-real floor.

Each property is standardised by the REAL set's mean and standard deviation before the distance is
taken (so that a distance of 0.1 means "a tenth of the real spread" for every property and the average
over properties is meaningful); the same standardisation is used for the floor, the distance between
two disjoint random halves of the real set, which is what a perfect generator would reach with as many
samples.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.stats import wasserstein_distance


def standardised_w1(real: np.ndarray, fake: np.ndarray, *, ref: np.ndarray | None = None) -> float:
    """W1 between `real` and `fake` 1D samples after (x - mean) / std of `ref` (default: `real`).

    Non-finite values are dropped; returns NaN when either side has no value.
    """
    ref = real if ref is None else ref
    ref = ref[np.isfinite(ref)]
    a, b = real[np.isfinite(real)], fake[np.isfinite(fake)]
    if a.size == 0 or b.size == 0 or ref.size == 0:
        return float("nan")
    mu, sd = float(ref.mean()), float(ref.std())
    sd = sd if sd > 0 else 1.0
    return float(wasserstein_distance((a - mu) / sd, (b - mu) / sd))


def property_distances(
    real: Mapping[str, np.ndarray], fake: Mapping[str, np.ndarray], names: Sequence[str]
) -> dict[str, float]:
    """Standardised W1 per property name (values `(N,)` per name in each mapping)."""
    return {k: standardised_w1(np.asarray(real[k]), np.asarray(fake[k])) for k in names}


def real_floor(
    real: Mapping[str, np.ndarray], names: Sequence[str], *, rng_seed: int = 0
) -> dict[str, float]:
    """Standardised W1 per property between two disjoint random halves of the real set.

    Standardised with the whole real set, the same reference as `property_distances`.
    """
    n = len(next(iter(real.values())))
    perm = np.random.default_rng(rng_seed).permutation(n)
    a, b = perm[: n // 2], perm[n // 2 : 2 * (n // 2)]
    out = {}
    for k in names:
        v = np.asarray(real[k])
        out[k] = standardised_w1(v[a], v[b], ref=v)
    return out


def mean_distance(d: Mapping[str, float]) -> float:
    """Average of the finite distances (NaN when none)."""
    vals = [v for v in d.values() if np.isfinite(v)]
    return float(np.mean(vals)) if vals else float("nan")
