"""FID (Heusel et al. 2017) and KID (Binkowski et al. 2018) from feature vectors, in closed form."""

from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg

from astrogan.metrics.base import Context, Metric, MetricSkipped, Row


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean `(D,)` and covariance `(D,D)` (unbiased) of features `(N,D)`."""
    f = np.asarray(features, dtype=np.float64)
    if f.shape[0] < 2:
        raise ValueError("FID needs at least 2 images per set")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between two Gaussians: |mu1-mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2)."""
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    s1, s2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    diff = mu1 - mu2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        # Near-singular product: regularise the diagonal, as pytorch-fid does.
        eps = 1e-6 * np.eye(s1.shape[0])
        covmean = linalg.sqrtm((s1 + eps) @ (s2 + eps))
    covmean = np.real(covmean)
    return float(max(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean), 0.0))


def fid_from_features(real: np.ndarray, fake: np.ndarray) -> float:
    """FID between feature sets `(N1,D)` and `(N2,D)`.

    With fewer samples than dimensions, Tr((S1 S2)^1/2) is the nuclear norm of X1c X2c^T /
    sqrt((N1-1)(N2-1)) (Xc: centred features): exact, and far cheaper than a DxD matrix square root.
    """
    x = np.asarray(real, dtype=np.float64)
    y = np.asarray(fake, dtype=np.float64)
    if len(x) < 2 or len(y) < 2:
        raise ValueError("FID needs at least 2 images per set")
    if min(len(x), len(y)) >= x.shape[1]:
        return frechet_distance(*feature_stats(x), *feature_stats(y))
    xc, yc = x - x.mean(0), y - y.mean(0)
    n1, n2 = len(x) - 1, len(y) - 1
    diff = x.mean(0) - y.mean(0)
    tr1 = (xc * xc).sum() / n1
    tr2 = (yc * yc).sum() / n2
    tr_covmean = np.linalg.svd(xc @ yc.T, compute_uv=False).sum() / np.sqrt(n1 * n2)
    return float(max(diff @ diff + tr1 + tr2 - 2.0 * tr_covmean, 0.0))


def kid_from_features(
    real: np.ndarray, fake: np.ndarray, *, num_subsets: int = 100, subset_size: int = 1000, rng_seed: int = 0
) -> tuple[float, float]:
    """KID: unbiased MMD^2 with the cubic polynomial kernel (x.y/D + 1)^3, averaged over random subsets.

    Returns (mean, std) over subsets; the subset size is capped by the smaller set.
    """
    x = np.asarray(real, dtype=np.float64)
    y = np.asarray(fake, dtype=np.float64)
    m = min(subset_size, len(x), len(y))
    if m < 2:
        raise ValueError("KID needs at least 2 images per set")
    d = x.shape[1]
    rng = np.random.default_rng(rng_seed)
    vals = np.empty(num_subsets)
    for i in range(num_subsets):
        a = x[rng.choice(len(x), m, replace=False)]
        b = y[rng.choice(len(y), m, replace=False)]
        kxx = (a @ a.T / d + 1) ** 3
        kyy = (b @ b.T / d + 1) ** 3
        kxy = (a @ b.T / d + 1) ** 3
        off = m * (m - 1)
        vals[i] = (kxx.sum() - np.trace(kxx)) / off + (kyy.sum() - np.trace(kyy)) / off - 2 * kxy.mean()
    return float(vals.mean()), float(vals.std())


def _inception_scale(real: np.ndarray, fake: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float (FITS) data -> [0,1] with the real set's 0.5/99.5 percentiles, applied to both sets."""
    if real.dtype == np.uint8:
        return real, fake
    lo, hi = np.percentile(real, [0.5, 99.5])
    scale = 1.0 / (hi - lo) if hi > lo else 1.0
    return (np.clip((real - lo) * scale, 0, 1), np.clip((fake - lo) * scale, 0, 1))


def shared_inception(ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    """(real, generated) Inception features `(N, 2048)` of the context, extracted once (real cached).

    Raises MetricSkipped without a weights file. With `--protocol holzschuh2022` the images are the
    paper's (one band, min-max normalised, through magma)."""

    def extract() -> tuple[np.ndarray, np.ndarray]:
        import torch

        from astrogan.metrics.inception import (
            WEIGHTS_HINT,
            extract_features,
            load_inception,
            resolve_weights_path,
        )

        path = resolve_weights_path(ctx.inception_weights)
        if path is None:
            raise MetricSkipped(WEIGHTS_HINT)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        model, sha = load_inception(path, device=device)
        ctx.shared("inception_weights", lambda: {"sha256": sha, "path": str(path)})
        if ctx.protocol == "holzschuh2022":
            from astrogan.metrics.protocols import holzschuh_band, holzschuh_fid_images

            b = holzschuh_band(ctx.real.shape[-1], "fid")
            r, f = holzschuh_fid_images(ctx.real)[b], holzschuh_fid_images(ctx.fake)[b]
        else:
            r, f = _inception_scale(ctx.real, ctx.fake)
        rf = ctx.cache.get(
            "inception",
            {**ctx.base, "sha": sha, "protocol": ctx.protocol},
            lambda: {"features": extract_features(model, r, device=device)},
        )
        return rf["features"], extract_features(model, f, device=device)

    return ctx.shared("inception", extract)


def _halves(n: int, rng_seed: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(rng_seed).permutation(n)
    return perm[: n // 2], perm[n // 2 : 2 * (n // 2)]


class FIDMetric(Metric):
    name = "fid"
    description = "Fréchet Inception Distance (2048-d pool features)"
    needs_inception = True

    def compute(self, ctx: Context) -> dict[str, float]:
        r, f = shared_inception(ctx)
        a, b = _halves(len(r), ctx.rng_seed)
        floor = fid_from_features(r[a], r[b]) if len(a) >= 2 else float("nan")
        return {"fid": fid_from_features(r, f), "floor": floor, "num_real": len(r), "num_fake": len(f)}

    def scalars(self, d: dict) -> dict[str, float]:
        return {"fid": d["fid"], "fid_floor": d["floor"]}

    def rows(self, d: dict, ctx: Context) -> list[Row]:
        return [
            Row(
                "FID",
                d["fid"],
                d["floor"],
                "distance between Gaussian fits of Inception features (overall realism and variety); the floor is "
                "two halves of the real set (FID is biased upward for small sets, so it is a high floor)",
                ctx.counts(d["num_real"], d["num_fake"]),
            )
        ]

    def to_json(self, d: dict) -> dict:
        return {"fid": d["fid"], "floor_real_halves": d["floor"]}


class KIDMetric(Metric):
    name = "kid"
    description = "Kernel Inception Distance (unbiased cubic-kernel MMD^2)"
    needs_inception = True

    def compute(self, ctx: Context) -> dict[str, float]:
        r, f = shared_inception(ctx)
        m, s = kid_from_features(r, f, rng_seed=ctx.rng_seed)
        a, b = _halves(len(r), ctx.rng_seed)
        floor = kid_from_features(r[a], r[b], rng_seed=ctx.rng_seed)[0] if len(a) >= 2 else float("nan")
        return {"mean": m, "std": s, "floor": floor, "num_real": len(r), "num_fake": len(f)}

    def scalars(self, d: dict) -> dict[str, float]:
        return {"kid_mean": d["mean"], "kid_std": d["std"], "kid_floor": d["floor"]}

    def rows(self, d: dict, ctx: Context) -> list[Row]:
        return [
            Row(
                "KID",
                d["mean"],
                d["floor"],
                f"unbiased kernel distance of Inception features (± {d['std']:.2g}); 0 for a perfect generator, "
                "so the floor (two halves of the real set) is ~0 and the ratio is not shown when it is <= 0",
                ctx.counts(d["num_real"], d["num_fake"]),
            )
        ]

    def to_json(self, d: dict) -> dict:
        return {"mean": d["mean"], "std": d["std"], "floor_real_halves": d["floor"]}
