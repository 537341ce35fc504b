"""Memorization check: is a generated image much nearer to one real image than to the others?

A plain "nearest training image closer than real images are to each other" test fails on noisy data:
a smooth generator (one that has learnt to denoise) is closer, in pixels, to every noisy training image
than two independently noisy real images are to each other, so it looks like a copier. We use the
relative test of Carlini et al. (2023, "Extracting training data from diffusion models"): for each
image, the distance to its nearest real image over the mean distance to the next `k` nearest. A copy
sits on one real image (ratio ~0) while a denoised or fresh image is about as far from its nearest
real image as from the next ones (ratio ~1).

The threshold is calibrated by leave-one-out on the real set: every real image (or a random subset of
`max_calibration`) against all the others, which is exactly what a perfect generator's fresh images
face. A generated image counts as memorised when it is relatively near (copy ratio at most a threshold)
AND not an outlier (its nearest distance within the 95th percentile of the real images' own): an odd
picture far from every real image can still have one real image a little nearer than the rest (9% of
ESA/Hubble showcase pictures against Galaxy Zoo galaxies, on the ratio alone), but it is no copy.
The ratio threshold is set so that exactly `percentile`% of the real images' own leave-one-out pairs are
flagged: a perfect generator scores `percentile`% (~0.05), a copier ~1, noise and unrelated pictures ~0.
The fraction has a bootstrap confidence interval (resampling both the calibration and the generated
images). Fewer than `min_real` real images are too few to place a 5th percentile: the check refuses
and says so.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from astrogan.metrics.base import Context, Metric, MetricSkipped, Row
from astrogan.metrics.spectrum import to_float_images

_CHUNK_VALUES = 2**22  # pixel values reduced at once (a float64 copy of them: 32 MB)


def reduce_pixels(images: np.ndarray, *, size_px: int = 32) -> np.ndarray:
    """`(N,H,W[,C])` -> float32 `(N, size*size*C)` by block averaging to at most `size_px` on a side.

    A chunk of images at a time: a float64 copy of the whole set took 8 bytes per pixel value."""
    _, h, w, c = to_float_images(np.asarray(images)[:0]).shape  # the shape checks alone
    fy, fx = max(1, h // size_px), max(1, w // size_px)
    hh, ww = (h // fy) * fy, (w // fx) * fx
    step = max(1, _CHUNK_VALUES // max(1, h * w * c))
    out = np.empty((len(images), (hh // fy) * (ww // fx) * c), dtype=np.float32)
    for s in range(0, len(images), step):
        x = to_float_images(np.asarray(images[s : s + step]))
        x = x[:, :hh, :ww].reshape(len(x), hh // fy, fy, ww // fx, fx, c).mean(axis=(2, 4))
        out[s : s + step] = x.reshape(len(x), -1)
    return out


def nearest_k(
    query: np.ndarray,
    ref: np.ndarray,
    k: int,
    *,
    exclude: np.ndarray | None = None,
    chunk: int = 512,
) -> tuple[np.ndarray, np.ndarray]:
    """The `k` nearest rows of `ref (R,D)` to each row of `query (Q,D)`, nearest first: (distances (Q,k),
    indices (Q,k)). `exclude (Q,)`: one index of `ref` per query that may not be returned (itself)."""
    extra = 1 if exclude is not None else 0
    if len(ref) < k + extra:
        raise ValueError(f"need at least {k + extra} reference rows, got {len(ref)}")
    q = query.astype(np.float64)
    r = ref.astype(np.float64)
    r2 = (r * r).sum(axis=1)
    dist = np.empty((len(q), k))
    idx = np.empty((len(q), k), dtype=np.int64)
    for s in range(0, len(q), chunk):
        qq = q[s : s + chunk]
        d2 = (qq * qq).sum(axis=1)[:, None] + r2[None, :] - 2.0 * qq @ r.T
        np.maximum(d2, 0.0, out=d2)
        if exclude is not None:
            d2[np.arange(len(qq)), exclude[s : s + chunk]] = np.inf
        part = (
            np.argpartition(d2, k - 1, axis=1)[:, :k]
            if k < d2.shape[1]
            else np.tile(np.arange(k), (len(qq), 1))
        )
        pd = np.take_along_axis(d2, part, axis=1)
        order = np.argsort(pd, axis=1, kind="stable")
        idx[s : s + chunk] = np.take_along_axis(part, order, axis=1)
    # The expansion |q|^2 + |r|^2 - 2 q.r loses the small distances to rounding (an exact copy comes out
    # at ~1e-3 instead of 0, which ranks copies at random among duplicates): recompute the k found exactly.
    for s in range(0, len(q), chunk):
        diff = q[s : s + chunk, None, :] - r[idx[s : s + chunk]]
        dist[s : s + chunk] = np.sqrt(np.einsum("qkd,qkd->qk", diff, diff))
    order = np.argsort(dist, axis=1, kind="stable")
    return np.take_along_axis(dist, order, axis=1), np.take_along_axis(idx, order, axis=1)


def nearest_neighbours(
    query: np.ndarray, ref: np.ndarray, *, chunk: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """For rows of `query (Q,D)`: (distance to nearest row of `ref (R,D)` (Q,), its index (Q,))."""
    d, i = nearest_k(query, ref, 1, chunk=chunk)
    return d[:, 0], i[:, 0]


def copy_ratio(dist: np.ndarray) -> np.ndarray:
    """Nearest distance over the mean of the next ones, `dist (Q, 1+k)` sorted -> `(Q,)`; 0 for an
    image that sits on several identical real images (all distances 0)."""
    rest = dist[:, 1:].mean(axis=1)
    return np.divide(dist[:, 0], rest, out=np.zeros(len(dist)), where=rest > 0)


@dataclass
class MemorizationResult:
    """Per space ('pixels', 'features'): memorised fraction, its 95% interval, thresholds and ratios.

    fake_ratio / real_ratio: the copy ratio of every generated image and of the calibration images;
    fake_nn_dist / fake_nn_index: each generated image's nearest real image; closest_pairs: the most
    copy-like (generated index, real index, pixel distance) by pixel-space ratio."""

    fraction: dict[str, float]
    interval: dict[str, tuple[float, float]]
    threshold: dict[str, float]
    distance_limit: dict[str, float]
    fake_ratio: dict[str, np.ndarray]
    real_ratio: dict[str, np.ndarray]
    fake_nn_dist: dict[str, np.ndarray]
    fake_nn_index: dict[str, np.ndarray]
    num_real: int
    num_duplicates: int
    num_calibration: int
    k: int
    percentile: float
    closest_pairs: list[tuple[int, int, float]] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        """Flat scalars: memorization_fraction (pixels) with its interval, and per space."""
        out: dict[str, float] = {}
        for k, v in self.fraction.items():
            out[f"memorization_fraction_{k}"] = v
            out[f"memorization_fraction_{k}_low"], out[f"memorization_fraction_{k}_high"] = self.interval[k]
        out["memorization_fraction"] = self.fraction["pixels"]
        return out


def memorization(
    train: np.ndarray,
    fake: np.ndarray,
    *,
    k: int = 5,
    percentile: float = 5.0,
    min_real: int = 200,
    max_calibration: int = 2000,
    size_px: int = 32,
    features: Callable[[np.ndarray], np.ndarray] | None = None,
    train_features: np.ndarray | None = None,
    fake_features: np.ndarray | None = None,
    num_pairs: int = 16,
    num_boot: int = 500,
    rng_seed: int = 0,
) -> MemorizationResult:
    """Memorization check of generated images `fake (M,H,W,C)` against the real images `train (N,H,W,C)`
    the generator learnt from (see the module docstring).

    `features`, when given, maps images to `(N,D)` vectors for a second space; precomputed
    `train_features`/`fake_features` may be given instead. Raises ValueError when N < `min_real`.
    """
    n = len(train)
    if n < max(min_real, k + 2):
        raise ValueError(
            f"memorization not judged: {n} real images are too few to place the {percentile:g}th percentile "
            f"of the real images' own copy ratios (needs at least {max(min_real, k + 2)})"
        )
    rng = np.random.default_rng(rng_seed)
    pix = reduce_pixels(train, size_px=size_px)
    # Exact duplicates in the real set (816 Galaxy Zoo examples hold 339 images with a twin) would put the
    # leave-one-out threshold at 0 and hide copies among them: each distinct image counts once.
    _, keep = np.unique(pix, axis=0, return_index=True)
    keep = np.sort(keep)
    num_dup = n - len(keep)
    if len(keep) < max(min_real, k + 2):
        raise ValueError(
            f"memorization not judged: {len(keep)} distinct real images ({num_dup} exact duplicates merged) "
            f"are too few (needs at least {max(min_real, k + 2)})"
        )
    calib = np.sort(rng.permutation(len(keep))[: min(len(keep), max_calibration)])
    spaces: dict[str, tuple[np.ndarray, np.ndarray]] = {
        "pixels": (pix[keep], reduce_pixels(fake, size_px=size_px))
    }
    if train_features is not None and fake_features is not None:
        spaces["features"] = (np.asarray(train_features)[keep], np.asarray(fake_features))
    elif features is not None:
        spaces["features"] = (np.asarray(features(train))[keep], np.asarray(features(fake)))
    frac, ci, thr, lim, fr, rr, fd, fi = {}, {}, {}, {}, {}, {}, {}, {}
    for name, (tr, fk) in spaces.items():
        rdist, _ = nearest_k(tr[calib], tr, k + 1, exclude=calib)  # leave one out
        fdist, fidx = nearest_k(fk, tr, k + 1)
        rr[name], fr[name] = copy_ratio(rdist), copy_ratio(fdist)
        t = _thresholds(rr[name], rdist[:, 0], percentile)
        thr[name], lim[name] = t
        frac[name] = float(np.mean(_flagged(fr[name], fdist[:, 0], t)))
        ci[name] = _bootstrap_interval(
            rr[name], rdist[:, 0], fr[name], fdist[:, 0], percentile, num_boot, rng
        )
        fd[name], fi[name] = fdist[:, 0], keep[fidx[:, 0]]  # index into the full `train`
    order = np.argsort(fr["pixels"], kind="stable")[:num_pairs]
    pairs = [(int(i), int(fi["pixels"][i]), float(fd["pixels"][i])) for i in order]
    return MemorizationResult(
        fraction=frac,
        interval=ci,
        threshold=thr,
        distance_limit=lim,
        fake_ratio=fr,
        real_ratio=rr,
        fake_nn_dist=fd,
        fake_nn_index=fi,
        num_real=n,
        num_duplicates=num_dup,
        num_calibration=len(calib),
        k=k,
        percentile=percentile,
        closest_pairs=pairs,
    )


def _thresholds(real_ratio: np.ndarray, real_d1: np.ndarray, percentile: float) -> tuple[float, float]:
    """(ratio threshold, distance limit) that flag `percentile`% of the real images' leave-one-out pairs.

    The distance limit is the (100 - percentile)-th percentile of the real images' nearest-neighbour
    distances (farther than that is an outlier, not a copy); the ratio threshold is the ratio at the
    `percentile` rank among the real images within the limit."""
    limit = float(np.percentile(real_d1, 100.0 - percentile))
    near = np.sort(real_ratio[real_d1 <= limit])
    rank = int(np.floor(percentile / 100.0 * len(real_ratio)))
    ratio = float(near[min(max(rank - 1, 0), len(near) - 1)]) if rank > 0 and near.size else -1.0
    return ratio, limit


def _flagged(ratio: np.ndarray, d1: np.ndarray, thr: tuple[float, float]) -> np.ndarray:
    """Copies: relatively near (copy ratio at most the threshold) and absolutely near (d1 within the limit)."""
    return (ratio <= thr[0]) & (d1 <= thr[1])


def _bootstrap_interval(
    real_ratio: np.ndarray,
    real_d1: np.ndarray,
    fake_ratio: np.ndarray,
    fake_d1: np.ndarray,
    percentile: float,
    num_boot: int,
    rng: np.random.Generator,
) -> tuple[float, float]:
    """95% interval of the memorised fraction, resampling the calibration (thresholds) and the fakes."""
    vals = np.empty(num_boot)
    n, m = len(real_ratio), len(fake_ratio)
    for b in range(num_boot):
        i = rng.integers(0, n, n)
        thr = _thresholds(real_ratio[i], real_d1[i], percentile)
        j = rng.integers(0, m, m)
        vals[b] = np.mean(_flagged(fake_ratio[j], fake_d1[j], thr))
    lo, hi = np.percentile(vals, [2.5, 97.5])
    return float(lo), float(hi)


class MemorizationMetric(Metric):
    name = "memorization"
    description = (
        "copy ratio of every generated image against leave-one-out real images (Carlini et al. 2023)"
    )

    def compute(self, ctx: Context) -> MemorizationResult:
        feats = ctx.peek("inception")  # only when FID/KID/PRDC computed them already
        try:
            return memorization(
                ctx.real,
                ctx.fake,
                rng_seed=ctx.rng_seed,
                train_features=None if feats is None else feats[0],
                fake_features=None if feats is None else feats[1],
            )
        except ValueError as e:
            raise MetricSkipped(str(e)) from None

    def scalars(self, r: MemorizationResult) -> dict[str, float]:
        return r.summary()

    def rows(self, r: MemorizationResult, ctx: Context) -> list[Row]:
        lo, hi = r.interval["pixels"]
        return [
            Row(
                "memorised fraction (pixels)",
                r.fraction["pixels"],
                r.percentile / 100.0,
                f"generated images that are no outliers and much nearer one real image than the next {r.k} "
                f"(95% interval {lo:.3g}-{hi:.3g}); "
                f"a perfect generator scores the floor ({r.percentile:g}%), a copier 1",
                ctx.counts(r.num_real),
            )
        ]

    def to_json(self, r: MemorizationResult) -> dict[str, Any]:
        return {
            "method": "copy ratio d1 / mean(d2..d{k+1}) to the real images; threshold: the percentile of the real "
            "images' own leave-one-out ratios",
            "fraction": r.fraction,
            "interval_95": {k: list(v) for k, v in r.interval.items()},
            "threshold_ratio": r.threshold,
            "distance_limit": r.distance_limit,
            "percentile": r.percentile,
            "k": r.k,
            "num_real": r.num_real,
            "num_duplicates_merged": r.num_duplicates,
            "num_calibration": r.num_calibration,
            "closest_pairs": [{"generated": a, "real": b, "distance": d} for a, b, d in r.closest_pairs],
        }

    def figures(self, r: MemorizationResult, ctx: Context, out_dir: Path) -> list[tuple[str, str]]:
        from astrogan.metrics.plots import display, imshow, pyplot

        plt = pyplot()
        pairs = r.closest_pairs[:16]
        fig, axes = plt.subplots(2, max(len(pairs), 1), figsize=(1.3 * max(len(pairs), 1), 3))
        axes = np.asarray(axes).reshape(2, -1)
        # Only the pictures shown go through display (a float64 copy of both whole sets took 8 B/value).
        fx, rx = display(ctx.fake[[p[0] for p in pairs]]), display(ctx.real[[p[1] for p in pairs]])
        for j, (fi, _, _) in enumerate(pairs):
            imshow(axes[0, j], fx[j])
            imshow(axes[1, j], rx[j])
            axes[0, j].set_title(f"{r.fake_ratio['pixels'][fi]:.2f}", fontsize=7)
        fig.suptitle("most copy-like: generated (top), nearest real image (bottom), copy ratio", fontsize=8)
        fig.savefig(out_dir / "closest_pairs.png", dpi=100, bbox_inches="tight")
        plt.close(fig)
        fig, ax = plt.subplots(figsize=(5, 3))
        a, b = r.real_ratio["pixels"], r.fake_ratio["pixels"]
        bins = np.linspace(0, max(a.max(), b.max(), 1e-9) * 1.05, 40)
        ax.hist(a, bins=bins, density=True, alpha=0.5, label="real, leave-one-out")
        ax.hist(b, bins=bins, density=True, alpha=0.5, label="generated")
        ax.axvline(r.threshold["pixels"], color="k", ls="--", label="ratio threshold")
        ax.set_xlabel(f"copy ratio: nearest distance / mean of the next {r.k} (pixels)")
        ax.legend(fontsize=7)
        fig.savefig(out_dir / "memorization.png", dpi=100, bbox_inches="tight")
        plt.close(fig)
        return [
            ("closest_pairs.png", "the 16 most copy-like generated images and their nearest real images"),
            ("memorization.png", "copy ratios of generated and real images"),
        ]

    def section(self, r: MemorizationResult) -> str:
        lo, hi = r.interval["pixels"]
        return (
            "<h2>Memorization</h2><p>"
            + html.escape(
                f"{100 * r.fraction['pixels']:.1f}% of generated images (95% interval {100 * lo:.1f}-{100 * hi:.1f}%) "
                f"are no outliers and sit much nearer one real image than the next {r.k}, against "
                f"{r.percentile:g}% of the real images themselves ({r.num_calibration} of {r.num_real} real images "
                f"calibrate the copy-ratio threshold {r.threshold['pixels']:.3g} and the distance limit "
                f"{r.distance_limit['pixels']:.3g}; {r.num_duplicates} exact duplicates among them counted once)."
            )
            + "</p>"
        )
