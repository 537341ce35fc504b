"""Memorization check: nearest training image of every generated image, against held-out real images.

For every generated image we find its nearest training image (Euclidean distance, in pixels at a
reduced size and optionally in a feature space). The reference is the distribution of
nearest-neighbour distances from held-out real images (a random part of the real set, never used as
neighbours) to the training part. A generated image closer to a training image than the 5th
percentile of those held-out distances counts as memorised; a generator that copies its training set
scores ~1, an honest one ~0.05 or less.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from astrogan.metrics.spectrum import to_float_images


def reduce_pixels(images: np.ndarray, *, size_px: int = 32) -> np.ndarray:
    """`(N,H,W[,C])` -> float32 `(N, size*size*C)` by block averaging to at most `size_px` on a side."""
    x = to_float_images(images)
    n, h, w, c = x.shape
    fy, fx = max(1, h // size_px), max(1, w // size_px)
    hh, ww = (h // fy) * fy, (w // fx) * fx
    x = x[:, :hh, :ww].reshape(n, hh // fy, fy, ww // fx, fx, c).mean(axis=(2, 4))
    return x.reshape(n, -1).astype(np.float32)


def nearest_neighbours(
    query: np.ndarray, ref: np.ndarray, *, chunk: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """For rows of `query (Q,D)`: (distance to nearest row of `ref (R,D)` (Q,), its index (Q,))."""
    q = query.astype(np.float64)
    r = ref.astype(np.float64)
    r2 = (r * r).sum(axis=1)
    dist = np.empty(len(q))
    idx = np.empty(len(q), dtype=np.int64)
    for s in range(0, len(q), chunk):
        qq = q[s : s + chunk]
        d2 = (qq * qq).sum(axis=1)[:, None] + r2[None, :] - 2.0 * qq @ r.T
        j = np.argmin(d2, axis=1)
        idx[s : s + chunk] = j
        dist[s : s + chunk] = np.sqrt(np.maximum(d2[np.arange(len(qq)), j], 0.0))
    return dist, idx


@dataclass
class MemorizationResult:
    """Per space ('pixels', 'features'): fraction memorised, threshold, distances and closest pairs."""

    fraction: dict[str, float]
    threshold: dict[str, float]
    fake_nn_dist: dict[str, np.ndarray]
    fake_nn_index: dict[str, np.ndarray]
    heldout_nn_dist: dict[str, np.ndarray]
    train_index: np.ndarray
    closest_pairs: list[tuple[int, int, float]] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        """Flat scalars: memorization_fraction (pixels) and memorization_fraction_<space>."""
        out = {f"memorization_fraction_{k}": v for k, v in self.fraction.items()}
        out["memorization_fraction"] = self.fraction["pixels"]
        return out


def memorization(
    train: np.ndarray,
    fake: np.ndarray,
    *,
    heldout_fraction: float = 0.1,
    min_heldout: int = 8,
    percentile: float = 5.0,
    size_px: int = 32,
    features: Callable[[np.ndarray], np.ndarray] | None = None,
    train_features: np.ndarray | None = None,
    fake_features: np.ndarray | None = None,
    num_pairs: int = 16,
    rng_seed: int = 0,
) -> MemorizationResult:
    """Memorization check of generated images `fake (M,H,W,C)` against real images `train (N,H,W,C)`.

    A random `heldout_fraction` of `train` (at least `min_heldout`) is held out; their distances to
    the rest give the threshold (`percentile`). Generated images are compared with the same training
    part. `features`, when given, maps images to `(N,D)` vectors for a second space; precomputed
    `train_features`/`fake_features` may be given instead.
    Returns the fraction below threshold per space and the `num_pairs` closest (fake, train, distance)
    pairs in pixel space (train index into the full `train` array).
    """
    n = len(train)
    num_held = max(min_heldout, int(round(heldout_fraction * n)))
    if n - num_held < 1 or num_held < 2:
        raise ValueError(f"memorization needs more real images (got {n}, holding out {num_held})")
    perm = np.random.default_rng(rng_seed).permutation(n)
    held, kept = np.sort(perm[:num_held]), np.sort(perm[num_held:])
    spaces: dict[str, tuple[np.ndarray, np.ndarray]] = {
        "pixels": (reduce_pixels(train, size_px=size_px), reduce_pixels(fake, size_px=size_px))
    }
    if train_features is not None and fake_features is not None:
        spaces["features"] = (np.asarray(train_features), np.asarray(fake_features))
    elif features is not None:
        spaces["features"] = (np.asarray(features(train)), np.asarray(features(fake)))
    frac, thr, fd, fi, hd = {}, {}, {}, {}, {}
    for name, (tr, fk) in spaces.items():
        h_dist, _ = nearest_neighbours(tr[held], tr[kept])
        f_dist, f_idx = nearest_neighbours(fk, tr[kept])
        t = float(np.percentile(h_dist, percentile))
        frac[name] = float(np.mean(f_dist < t))
        thr[name] = t
        fd[name], fi[name], hd[name] = f_dist, kept[f_idx], h_dist
    order = np.argsort(fd["pixels"])[:num_pairs]
    pairs = [(int(i), int(fi["pixels"][i]), float(fd["pixels"][i])) for i in order]
    return MemorizationResult(
        fraction=frac,
        threshold=thr,
        fake_nn_dist=fd,
        fake_nn_index=fi,
        heldout_nn_dist=hd,
        train_index=kept,
        closest_pairs=pairs,
    )
