"""Precision/recall (Kynkäänniemi et al. 2019) and density/coverage (Naeem et al. 2020) on feature vectors.

Both pairs estimate the real and generated manifolds as unions of k-nearest-neighbour balls around
each sample. Precision is the share of generated samples that look real (fidelity), recall the share of
real samples the generator can produce (diversity); density and coverage are Naeem et al.'s versions,
which are less fooled by outliers in the real set. All distances are Euclidean in the feature space
given, computed in row chunks so that memory stays bounded for tens of thousands of samples.

`weight_free_features` and `standardise_pair` build a feature space that needs no network weights:
per-band colour statistics plus morphology properties, z-scored on the real set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from astrogan.metrics.base import Context, Metric, Row
from astrogan.metrics.spectrum import to_float_images

# Elements of one float64 distance block (chunk rows x all rows): 2**23 is 64 MiB, small beside a
# 20k x 2048 feature matrix (320 MiB) and big enough that BLAS still runs at full speed.
_BLOCK_ELEMENTS = 2**23


@dataclass(frozen=True)
class PRDCResult:
    """The four numbers, the neighbourhood sizes they used and how many samples each side had."""

    precision: float
    recall: float
    density: float
    coverage: float
    nearest_k_pr: int
    nearest_k_dc: int
    num_real: int
    num_fake: int

    def summary(self, prefix: str = "") -> dict[str, float]:
        """`{prefix + "precision": ..., "recall", "density", "coverage"}` for a metrics table."""
        return {
            f"{prefix}precision": self.precision,
            f"{prefix}recall": self.recall,
            f"{prefix}density": self.density,
            f"{prefix}coverage": self.coverage,
        }


def _check_features(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise ValueError(f"{name} must be a 2D array (N, D) with D >= 1, got shape {arr.shape}")
    arr = arr.astype(np.float64, copy=False)
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(
            f"{name} has {rows.size} row(s) with NaN or inf (first: {rows[:5].tolist()}); "
            "impute or drop them first (e.g. standardise_pair imputes with the real median)"
        )
    return arr


def _check_k(k: int, name: str) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"{name} must be a positive integer, got {k!r}")
    return int(k)


def _chunk_rows(num_cols: int, chunk_size: int | None) -> int:
    if chunk_size is None:
        return max(1, _BLOCK_ELEMENTS // max(num_cols, 1))
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    return int(chunk_size)


def _sq_dist_block(a: np.ndarray, a_sq: np.ndarray, b: np.ndarray, b_sq: np.ndarray) -> np.ndarray:
    """Squared distances `(len(a), len(b))` by |a|^2 + |b|^2 - 2 a.b; rounding can go below 0, so clamp."""
    # Summing the two norms first keeps d(a, b) and d(b, a) bitwise equal, so that a radius found among
    # the reals and the same pair's distance found between reals and fakes agree at ties.
    ab = a @ b.T
    d2 = np.add(a_sq[:, None], b_sq[None, :])
    ab *= 2.0
    d2 -= ab
    np.maximum(d2, 0.0, out=d2)
    return d2


def _centred(*arrays: np.ndarray) -> list[np.ndarray]:
    # Distances do not change under a shift, but the expansion loses digits to cancellation when the
    # points sit far from the origin compared to their spread; centring first keeps it accurate.
    centre = np.mean([a.mean(axis=0) for a in arrays], axis=0)
    return [a - centre for a in arrays]


def _knn_sq_radii(x: np.ndarray, k: int, chunk_size: int | None) -> np.ndarray:
    """Squared distance of each row of `x` (already centred) to its k-th nearest other row: `(N,)`."""
    n = x.shape[0]
    sq = np.einsum("ij,ij->i", x, x)
    step = _chunk_rows(n, chunk_size)
    out = np.empty(n)
    for start in range(0, n, step):
        stop = min(start + step, n)
        d2 = _sq_dist_block(x[start:stop], sq[start:stop], x, sq)
        # Exclude each row's distance to itself; its duplicates (distance 0) still count as neighbours.
        d2[np.arange(stop - start), np.arange(start, stop)] = np.inf
        out[start:stop] = np.partition(d2, k - 1, axis=1)[:, k - 1]
    return out


def knn_radii(features: np.ndarray, k: int, *, chunk_size: int | None = None) -> np.ndarray:
    """Distance of each row of `features` `(N, D)` to its k-th nearest OTHER row: `(N,)` float64.

    Computed `chunk_size` rows at a time (default: blocks of about 64 MiB) against all rows.
    """
    x = _check_features(features, "features")
    k = _check_k(k, "k")
    if x.shape[0] < k + 1:
        raise ValueError(f"need at least k + 1 = {k + 1} rows for k-NN radii with k={k}, got {x.shape[0]}")
    (x,) = _centred(x)
    return np.sqrt(_knn_sq_radii(x, k, chunk_size))


def _subsample(x: np.ndarray, max_samples: int | None, rng: np.random.Generator) -> np.ndarray:
    if max_samples is None or x.shape[0] <= max_samples:
        return x
    return x[np.sort(rng.choice(x.shape[0], size=max_samples, replace=False))]


def prdc(
    real: np.ndarray,
    fake: np.ndarray,
    *,
    nearest_k_pr: int = 3,
    nearest_k_dc: int = 5,
    max_samples: int | None = None,
    rng_seed: int = 0,
    chunk_size: int | None = None,
) -> PRDCResult:
    """Precision, recall, density and coverage of `fake` `(M, D)` against `real` `(N, D)`.

    precision: share of fakes inside at least one real k-NN ball (k = `nearest_k_pr`, radius = that
    real's distance to its k-th nearest other real); recall: share of reals inside at least one fake
    k-NN ball (radii among fakes); density: (1 / (k M)) * number of (fake, real ball) containments with
    k = `nearest_k_dc`, ~1 when fakes are distributed like reals; coverage: share of reals whose own
    k-NN ball holds at least one fake. `max_samples` draws at most that many rows from each side
    (seeded by `rng_seed`) before anything is computed.
    """
    real = _check_features(real, "real")
    fake = _check_features(fake, "fake")
    k_pr = _check_k(nearest_k_pr, "nearest_k_pr")
    k_dc = _check_k(nearest_k_dc, "nearest_k_dc")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(
            f"real and fake need the same feature size, got D={real.shape[1]} and D={fake.shape[1]}"
        )
    if max_samples is not None and (isinstance(max_samples, bool) or max_samples < 1):
        raise ValueError(f"max_samples must be a positive integer or None, got {max_samples!r}")
    rng = np.random.default_rng(rng_seed)
    real = _subsample(real, max_samples, rng)
    fake = _subsample(fake, max_samples, rng)
    need_real, need_fake = max(k_pr, k_dc) + 1, k_pr + 1
    if real.shape[0] < need_real:
        raise ValueError(
            f"need at least {need_real} real samples (max(nearest_k_pr, nearest_k_dc) + 1), got {real.shape[0]}"
        )
    if fake.shape[0] < need_fake:
        raise ValueError(f"need at least {need_fake} fake samples (nearest_k_pr + 1), got {fake.shape[0]}")

    # Compare squared distances with squared radii, so no square root can move a point across a border.
    real_c, fake_c = _centred(real, fake)
    r2_real_pr = _knn_sq_radii(real_c, k_pr, chunk_size)
    r2_real_dc = r2_real_pr if k_dc == k_pr else _knn_sq_radii(real_c, k_dc, chunk_size)
    r2_fake_pr = _knn_sq_radii(fake_c, k_pr, chunk_size)

    real_sq = np.einsum("ij,ij->i", real_c, real_c)
    fake_sq = np.einsum("ij,ij->i", fake_c, fake_c)
    n, m = real.shape[0], fake.shape[0]
    fake_is_real_like = np.zeros(m, bool)
    real_is_reached = np.zeros(n, bool)
    balls_per_fake = np.zeros(m, np.int64)
    nearest_fake_d2 = np.full(n, np.inf)
    step = _chunk_rows(n, chunk_size)
    for start in range(0, m, step):
        stop = min(start + step, m)
        d2 = _sq_dist_block(fake_c[start:stop], fake_sq[start:stop], real_c, real_sq)  # (chunk, N)
        # Kynkäänniemi et al. use closed balls (||x - c|| <= r); Naeem et al.'s reference code uses open
        # ones (<), which is what makes density exactly 1 when the fakes are the reals themselves.
        fake_is_real_like[start:stop] = (d2 <= r2_real_pr[None, :]).any(axis=1)
        real_is_reached |= (d2 <= r2_fake_pr[start:stop, None]).any(axis=0)
        balls_per_fake[start:stop] = (d2 < r2_real_dc[None, :]).sum(axis=1)
        np.minimum(nearest_fake_d2, d2.min(axis=0), out=nearest_fake_d2)

    return PRDCResult(
        precision=float(fake_is_real_like.mean()),
        recall=float(real_is_reached.mean()),
        density=float(balls_per_fake.sum() / (k_dc * m)),
        coverage=float((nearest_fake_d2 < r2_real_dc).mean()),
        nearest_k_pr=k_pr,
        nearest_k_dc=k_dc,
        num_real=n,
        num_fake=m,
    )


_COLOUR_STATS = ("mean", "std", "p10", "p50", "p90")


def weight_free_feature_names(num_channels: int, morphology_names: Sequence[str] = ()) -> list[str]:
    """Column names of `weight_free_features`, in order: `band{c}_{stat}`, `band{c}-band{c+1}`, morphology."""
    names = [f"band{c}_{s}" for c in range(num_channels) for s in _COLOUR_STATS]
    names += [f"band{c}-band{c + 1}" for c in range(num_channels - 1)]
    return names + sorted(morphology_names)


def weight_free_features(
    images: np.ndarray, morphology_values: Mapping[str, np.ndarray] | None = None
) -> np.ndarray:
    """Feature vectors that need no network weights: `(N, H, W, C)` images -> `(N, D)` float64.

    Per band, over the central half of the stamp (the middle H/2 x W/2 box, where a centred object
    lives; the border is mostly sky): mean, std and the 10/50/90th percentiles of the values in [0, 1]
    (uint8 / 255; float images are taken as they are); then the differences of adjacent band means
    (colours, for C > 1); then the morphology values `(N,)` per name, in sorted name order so that real
    and fake columns line up whatever order the mappings were built in. Non-finite morphology values
    become NaN, for `standardise_pair` to impute. Names: `weight_free_feature_names`.
    """
    shape = to_float_images(np.asarray(images)[:0]).shape[1:]  # the shape checks alone
    n, (h, w, c) = len(images), shape
    if n == 0 or h == 0 or w == 0 or c == 0:
        raise ValueError(f"need at least one non-empty image, got shape {(n, *shape)}")
    hh, ww = max(1, h // 2), max(1, w // 2)
    y0, x0 = (h - hh) // 2, (w - ww) // 2
    # A chunk of images at a time: float64 copies of the whole set took 13 bytes per pixel value.
    step = max(1, _BLOCK_ELEMENTS // (hh * ww * c))
    stats = np.empty((n, c, len(_COLOUR_STATS)))
    for s in range(0, n, step):
        x = to_float_images(np.asarray(images[s : s + step])[:, y0 : y0 + hh, x0 : x0 + ww])
        centre = x.reshape(len(x), hh * ww, c)
        pct = np.percentile(centre, [10, 50, 90], axis=1)  # (3, n, C)
        stats[s : s + step] = np.stack([centre.mean(axis=1), centre.std(axis=1), *pct], axis=-1)  # (n, C, 5)
    mean = stats[..., 0]
    cols = [stats.reshape(n, c * len(_COLOUR_STATS)), mean[:, :-1] - mean[:, 1:]]
    morph = morphology_values or {}
    for name in sorted(morph):
        v = np.asarray(morph[name], dtype=np.float64)
        if v.shape != (n,):
            raise ValueError(
                f"morphology value {name!r} must have shape ({n},) like the images, got {v.shape}"
            )
        cols.append(np.where(np.isfinite(v), v, np.nan)[:, None])
    return np.concatenate(cols, axis=1)


def standardise_pair(real: np.ndarray, fake: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Impute and z-score `real` `(N, D)` and `fake` `(M, D)` on the real set: `((N, D'), (M, D'))`.

    Missing (non-finite) values are replaced by the real column median; a column with no finite real
    value is dropped from both. Both sides are then scaled by the real column mean and std (std 0 -> 1),
    computed on the finite real values. Why: the k-NN balls of `prdc` are Euclidean, and in a space that
    mixes units (flux fractions, pixels, indices) the column with the biggest numbers would decide every
    distance. Measuring each column in units of its REAL spread gives all properties a say, and keeps
    the yardstick fixed by the reference set, so that a generator with a wild spread cannot rescale it
    (a pooled std would shrink the very differences we want to see).
    """
    r = np.asarray(real, dtype=np.float64)
    f = np.asarray(fake, dtype=np.float64)
    if r.ndim != 2 or f.ndim != 2 or r.shape[1] != f.shape[1]:
        raise ValueError(f"expected real (N, D) and fake (M, D) with the same D, got {r.shape} and {f.shape}")
    r = np.where(np.isfinite(r), r, np.nan)
    f = np.where(np.isfinite(f), f, np.nan)
    keep = ~np.isnan(r).all(axis=0)
    if not keep.any():
        raise ValueError("every feature column is missing (NaN) in the real set; nothing to compare")
    r, f = r[:, keep], f[:, keep]
    median = np.nanmedian(r, axis=0)
    mean = np.nanmean(r, axis=0)
    std = np.nanstd(r, axis=0)
    std = np.where(std > 0, std, 1.0)
    r = np.where(np.isnan(r), median, r)
    f = np.where(np.isnan(f), median, f)
    return (r - mean) / std, (f - mean) / std


_PRDC_MEANING = {
    "precision": "share of generated images that fall inside the real images' k-NN manifold (fidelity)",
    "recall": "share of real images inside the generated images' k-NN manifold (diversity)",
    "density": "how many real neighbourhoods hold each generated image, over k (fidelity, outlier-robust; ~1)",
    "coverage": "share of real neighbourhoods holding at least one generated image (diversity, outlier-robust)",
}


def _feature_space(ctx: Context) -> tuple[str, np.ndarray, np.ndarray]:
    """("inception" | "weight-free", real (N,D), fake (M,D)): Inception features when the weights are
    given, otherwise colour statistics plus the morphology vector, z-scored on the real set."""
    from astrogan.metrics.base import MetricSkipped
    from astrogan.metrics.fid import shared_inception

    if ctx.inception_weights is not None or _weights_from_env():
        try:
            r, f = shared_inception(ctx)
            return "inception", r, f
        except MetricSkipped:
            pass
    from astrogan.metrics.morphology import COMPARED_PROPERTIES
    from astrogan.metrics.morphology.metric import shared_morphology

    real_m, fake_m = shared_morphology(ctx)
    names = [k for k in COMPARED_PROPERTIES if k != "orientation"]  # an angle: no Euclidean meaning
    r = weight_free_features(ctx.real, {k: real_m.values[k] for k in names})
    f = weight_free_features(ctx.fake, {k: fake_m.values[k] for k in names})
    r, f = standardise_pair(r, f)
    return "weight-free", r, f


def _weights_from_env() -> bool:
    import os

    return bool(os.environ.get("ASTROGAN_INCEPTION_WEIGHTS"))


class PRDCMetric(Metric):
    name = "prdc"
    description = (
        "precision/recall (Kynkäänniemi 2019) and density/coverage (Naeem 2020): fidelity vs diversity"
    )

    def compute(self, ctx: Context) -> dict[str, Any]:
        from astrogan.metrics.base import MetricSkipped

        space, r, f = _feature_space(ctx)
        if len(r) < 12 or len(f) < 6:
            raise MetricSkipped(
                f"prdc skipped: needs at least 12 real and 6 generated images, got {len(r)} and {len(f)}"
            )
        # All four depend on both sample sizes (k-NN radii shrink as a set grows; coverage needs as many
        # fakes as reals), so value and floor are taken at the same sizes: half A of the real set against
        # m generated images, and against m real images of the other half B.
        rng = np.random.default_rng(ctx.rng_seed)
        perm = rng.permutation(len(r))
        half = min(len(r) // 2, 10000)
        m = min(len(f), half)
        a, b = r[perm[:half]], r[perm[half : half + m]]
        fm = f[np.sort(rng.permutation(len(f))[:m])]
        res = prdc(a, fm, rng_seed=ctx.rng_seed)
        floor = prdc(a, b, rng_seed=ctx.rng_seed)
        return {"space": space, "result": res, "floor": floor}

    def scalars(self, d: dict[str, Any]) -> dict[str, float]:
        return {
            **d["result"].summary("prdc_"),
            **{f"{k}_floor": v for k, v in d["floor"].summary("prdc_").items()},
        }

    def rows(self, d: dict[str, Any], ctx: Context) -> list[Row]:
        res, fl = d["result"], d["floor"]
        return [
            Row(
                f"{k} ({d['space']} features)",
                getattr(res, k),
                getattr(fl, k),
                _PRDC_MEANING[k] + "; half the real set against as many generated images as the floor's real "
                "ones (the other half); higher is better",
                ctx.counts(res.num_real, res.num_fake),
                lower_is_better=False,
            )
            for k in ("precision", "recall", "density", "coverage")
        ]

    def to_json(self, d: dict[str, Any]) -> dict[str, Any]:
        res, fl = d["result"], d["floor"]
        return {
            "feature_space": d["space"],
            "nearest_k_precision_recall": res.nearest_k_pr,
            "nearest_k_density_coverage": res.nearest_k_dc,
            "values": res.summary(),
            "floor_real_halves": fl.summary(),
        }

    def section(self, d: dict[str, Any]) -> str:
        import html

        res = d["result"]
        verdict = _verdict(res.precision, res.recall, d["floor"].precision, d["floor"].recall)
        return (
            "<h2>Fidelity and diversity</h2><p>"
            + html.escape(
                f"In {d['space']} features: precision {res.precision:.3f}, recall {res.recall:.3f}, density "
                f"{res.density:.3f}, coverage {res.coverage:.3f}. {verdict}"
            )
            + "</p>"
        )


def _verdict(p: float, r: float, p0: float, r0: float) -> str:
    """One sentence telling "few but good" from "varied but wrong" against the real floors."""
    good_p, good_r = p >= 0.75 * p0, r >= 0.75 * r0
    if good_p and good_r:
        return "Both are within 25% of the real-vs-real values: realistic and varied."
    if good_p:
        return "Few but good: the images look real but cover only part of the real variety."
    if good_r:
        return "Varied but wrong: the images spread over the real variety but many do not look real."
    return "Neither realistic nor varied yet."
