"""1D Wasserstein distances between per-galaxy property distributions, with a real-vs-real floor.

Each property is standardised by the REAL set's mean and standard deviation before the distance is
taken (so that a distance of 0.1 means "a tenth of the real spread" for every property and the average
over properties is meaningful); only finite values count on each side (a property a measurement could
not give is NaN and left out, and the counts are reported).

The floor is what a perfect generator would reach: the distance between two disjoint random halves of
the real set, averaged over several splits, and rescaled to the sample sizes of the real-vs-generated
comparison. Between two samples of one distribution W1 = integral |F_a - F_b| dx shrinks as
sqrt(1/n_a + 1/n_b) (the difference of the empirical CDFs is a Brownian bridge of that variance), so
halves of N real images (sqrt(4/N)) would sit above a comparison of N real with M generated images
(sqrt(1/N + 1/M)) and flatter every generator by up to a factor 0.7; the rescaled floor gives a
perfect generator a ratio of ~1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

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


def matched_floor_splits(
    values: np.ndarray, num_fake: int, *, num_splits: int = 8, rng_seed: int = 0, standardise: bool = True
) -> np.ndarray:
    """The real-vs-real W1 of each of `num_splits` random splits of `values (N,)` into halves, each rescaled to a
    comparison with `num_fake` others by sqrt((1/N + 1/num_fake) / (1/n_a + 1/n_b)): float64 `(num_splits,)`,
    empty with fewer than 4 finite values or no fakes. Their spread says how much one W1 of that size varies."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    n = v.size
    if n < 4 or num_fake < 1:
        return np.zeros(0)
    rng = np.random.default_rng(rng_seed)
    half = n // 2
    scale = np.sqrt((1.0 / n + 1.0 / num_fake) / (2.0 / half))
    out = []
    for _ in range(num_splits):
        perm = rng.permutation(n)
        a, b = v[perm[:half]], v[perm[half : 2 * half]]
        w1 = standardised_w1(a, b, ref=v) if standardise else float(wasserstein_distance(a, b))
        out.append(w1 * scale)
    return np.asarray(out, dtype=np.float64)


def matched_floor(
    values: np.ndarray, num_fake: int, *, num_splits: int = 8, rng_seed: int = 0, standardise: bool = True
) -> float:
    """Real-vs-real floor of `standardised_w1` (of plain W1 when not `standardise`) for a comparison of
    `values (N,)` with `num_fake` others: the mean of `matched_floor_splits`; NaN with fewer than 4 finite
    values or no fakes.
    """
    splits = matched_floor_splits(
        values, num_fake, num_splits=num_splits, rng_seed=rng_seed, standardise=standardise
    )
    return float(np.mean(splits)) if splits.size else float("nan")


@dataclass(frozen=True)
class PropertyDistance:
    """One property: W1 real vs generated, its matched floor, and how many values each side used/lost."""

    w1: float
    floor: float
    num_real: int
    num_fake: int
    dropped_real: int
    dropped_fake: int

    @property
    def ratio(self) -> float:
        """w1 / floor (1 = as close as real images are to each other; NaN without a floor)."""
        return self.w1 / self.floor if self.floor > 0 and np.isfinite(self.floor) else float("nan")


def compare_properties(
    real: Mapping[str, np.ndarray],
    fake: Mapping[str, np.ndarray],
    names: Sequence[str],
    *,
    rng_seed: int = 0,
    num_splits: int = 8,
) -> dict[str, PropertyDistance]:
    """Per property name: standardised W1 of finite values, matched floor and counts (values `(N,)`)."""
    out = {}
    for k in names:
        r, f = np.asarray(real[k], dtype=np.float64), np.asarray(fake[k], dtype=np.float64)
        rr, ff = r[np.isfinite(r)], f[np.isfinite(f)]
        out[k] = PropertyDistance(
            w1=standardised_w1(rr, ff),
            floor=matched_floor(rr, ff.size, num_splits=num_splits, rng_seed=rng_seed),
            num_real=int(rr.size),
            num_fake=int(ff.size),
            dropped_real=int(r.size - rr.size),
            dropped_fake=int(f.size - ff.size),
        )
    return out


def property_distances(
    real: Mapping[str, np.ndarray], fake: Mapping[str, np.ndarray], names: Sequence[str]
) -> dict[str, float]:
    """Standardised W1 per property name (values `(N,)` per name in each mapping)."""
    return {k: standardised_w1(np.asarray(real[k]), np.asarray(fake[k])) for k in names}


def real_floor(
    real: Mapping[str, np.ndarray], names: Sequence[str], *, num_fake: int | None = None, rng_seed: int = 0
) -> dict[str, float]:
    """`matched_floor` per property for a comparison with `num_fake` generated values (default: as many
    as the real finite values, i.e. a generated set of the real set's size)."""
    out = {}
    for k in names:
        v = np.asarray(real[k], dtype=np.float64)
        m = int(np.isfinite(v).sum()) if num_fake is None else num_fake
        out[k] = matched_floor(v, m, rng_seed=rng_seed)
    return out


def mean_distance(d: Mapping[str, float]) -> float:
    """Average of the finite distances (NaN when none)."""
    vals = [v for v in d.values() if np.isfinite(v)]
    return float(np.mean(vals)) if vals else float("nan")
