"""Composition: does the generated sky hold each kind of object as often as the real sky does?"""

from __future__ import annotations

import html
import math
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from astrogan.metrics.base import Context, Metric, MetricSkipped, Row
from astrogan.utils.errors import UserError

ALPHA = 0.05  # family-wise error rate of the per-category statements (Holm)
DEFAULT_CLUSTERS = 8
MIN_PER_CLUSTER = 25  # the automatic k keeps ~25 real images per cluster, so expected counts stay >= 5
MIN_CLUSTER_SIZE = 5  # smaller clusters (outliers) are dissolved into their neighbours
MIN_REAL, MIN_FAKE = 20, 10
CV_FOLDS = 5
L2 = 1e-2  # ridge strength of the softmax classifier (mean cross-entropy + L2/2 |W|^2, features z-scored)
MAX_PCA_DIMS = 64  # Inception features are projected to this many principal components of the real set
NUM_MC = 4000  # Monte Carlo tables for the chi-square p-value when the asymptotic one is unreliable
NUM_FLOOR_SPLITS = 8
NUM_EXAMPLES = 16  # thumbnails per side and category
# Families of the weight-free vector, each also cut alone into quantile slices: k-means on all ~39 z-scored
# columns follows the many correlated brightness/size columns (colour was 2 of 37), so a generator that
# misses a colour slice left those clusters' shares unchanged (calibration: bench/composition_calibration.py).
FAMILIES = ("colour", "brightness", "morphology", "spectrum")
FAMILY_BINS = 4
_FEATURES_VERSION = 2  # 2: flux-ratio colours


# ---------------------------------------------------------------------------------------------------
# Statistics on counts


def holm(p: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values `(K,)` (family-wise error control, any dependence)."""
    p = np.asarray(p, dtype=np.float64)
    m = p.size
    order = np.argsort(p, kind="stable")
    adj = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.maximum.accumulate(adj)  # step-down: never smaller than an earlier (smaller) one
    return out


def total_variation(a: np.ndarray, b: np.ndarray) -> float:
    """Total variation distance between two count (or fraction) vectors `(K,)`: 1/2 sum |p_a - p_b|."""
    pa = np.asarray(a, dtype=np.float64)
    pb = np.asarray(b, dtype=np.float64)
    return float(0.5 * np.abs(pa / pa.sum() - pb / pb.sum()).sum())


def _chi2_stat(table: np.ndarray) -> np.ndarray:
    """Pearson chi-square of `(..., 2, K)` tables with positive margins: `(...)`."""
    rows = table.sum(axis=-1, keepdims=True)
    cols = table.sum(axis=-2, keepdims=True)
    expected = rows * cols / table.sum(axis=(-2, -1), keepdims=True)
    return ((table - expected) ** 2 / expected).sum(axis=(-2, -1))


@dataclass(frozen=True)
class HomogeneityTest:
    """Chi-square test of homogeneity of a 2 x K table: statistic, degrees of freedom, p and how p was got."""

    statistic: float
    dof: int
    p: float
    method: str  # "asymptotic" or "monte carlo (N tables)"


def homogeneity_test(
    real_counts: np.ndarray, fake_counts: np.ndarray, *, rng_seed: int = 0
) -> HomogeneityTest:
    """Chi-square test that real and generated counts `(K,)` come from one category distribution.

    Categories empty on both sides are left out. When an expected count is under 5 the chi-square law is a
    poor fit, and p is the share of NUM_MC random tables with the same margins (multivariate
    hypergeometric draws) whose statistic reaches the observed one."""
    from scipy.stats import chi2

    table = np.stack([np.asarray(real_counts, np.int64), np.asarray(fake_counts, np.int64)])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return HomogeneityTest(0.0, 0, 1.0, "asymptotic")
    stat = float(_chi2_stat(table.astype(np.float64)))
    dof = table.shape[1] - 1
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    if expected.min() >= 5:
        return HomogeneityTest(stat, dof, float(chi2.sf(stat, dof)), "asymptotic")
    rng = np.random.default_rng(rng_seed)
    cols = table.sum(axis=0)
    fake = rng.multivariate_hypergeometric(cols, int(table[1].sum()), size=NUM_MC)
    sims = _chi2_stat(np.stack([cols - fake, fake], axis=1).astype(np.float64))
    p = (1 + int((sims >= stat - 1e-9 * max(stat, 1.0)).sum())) / (1 + NUM_MC)
    return HomogeneityTest(stat, dof, float(p), f"monte carlo ({NUM_MC} tables)")


def category_tests(real_counts: np.ndarray, fake_counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per category, Fisher's exact two-sided p of "this category's share differs" `(K,)`, and Holm's
    adjustment of them over the K categories `(K,)`."""
    from scipy.stats import fisher_exact

    r = np.asarray(real_counts, np.int64)
    f = np.asarray(fake_counts, np.int64)
    nr, nf = int(r.sum()), int(f.sum())
    p = np.ones(r.size)
    for k in range(r.size):
        if r[k] + f[k] > 0:
            p[k] = float(fisher_exact([[r[k], nr - r[k]], [f[k], nf - f[k]]])[1])
    return p, holm(p)


def matched_tv_floor(
    real_assign: np.ndarray,
    num_categories: int,
    num_fake: int,
    *,
    num_splits: int = NUM_FLOOR_SPLITS,
    rng_seed: int = 0,
) -> tuple[float, float]:
    """(TV floor, chi-square p of the first split) between two random halves of the real categories `(N,)`.

    The floor is the mean over `num_splits` splits, each TV rescaled by sqrt((1/N + 1/M) / (2/half)) to
    the sizes of the real-vs-generated comparison (N real, M = num_fake): the sampling noise of a
    difference of two category histograms shrinks as sqrt(1/n_a + 1/n_b)."""
    a = np.asarray(real_assign, np.int64)
    n = a.size
    half = n // 2
    if half < 2 or num_fake < 1:
        return float("nan"), float("nan")
    rng = np.random.default_rng(rng_seed)
    scale = math.sqrt((1.0 / n + 1.0 / num_fake) / (2.0 / half))
    tvs, p0 = [], float("nan")
    for i in range(num_splits):
        perm = rng.permutation(n)
        ca = np.bincount(a[perm[:half]], minlength=num_categories)
        cb = np.bincount(a[perm[half : 2 * half]], minlength=num_categories)
        tvs.append(total_variation(ca, cb) * scale)
        if i == 0:
            p0 = homogeneity_test(ca, cb, rng_seed=rng_seed).p
    return float(np.mean(tvs)), p0


# ---------------------------------------------------------------------------------------------------
# Categories: k-means clusters, or a softmax classifier on labels


def kmeans(
    x: np.ndarray, k: int, *, rng_seed: int = 0, num_init: int = 8, max_iter: int = 100
) -> tuple[np.ndarray, np.ndarray]:
    """k-means (k-means++ seeding, Lloyd iterations, best of `num_init`) of `x` `(N, D)`.

    Returns (centres `(k, D)`, labels `(N,)`), clusters numbered by size, largest first, so that the
    numbering (and a user's names for it) is stable for the same data and seed."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k must be in 1..{n} (the number of rows), got {k}")
    rng = np.random.default_rng(rng_seed)
    sq = np.einsum("ij,ij->i", x, x)
    best: tuple[float, np.ndarray, np.ndarray] | None = None
    for _ in range(num_init):
        centres = x[[int(rng.integers(n))]]
        d2 = np.maximum(sq - 2 * x @ centres[0] + centres[0] @ centres[0], 0)
        for _ in range(1, k):
            prob = d2 / d2.sum() if d2.sum() > 0 else np.full(n, 1.0 / n)
            c = x[int(rng.choice(n, p=prob))]
            centres = np.vstack([centres, c])
            d2 = np.minimum(d2, np.maximum(sq - 2 * x @ c + c @ c, 0))
        labels = np.full(n, -1)
        for _ in range(max_iter):
            dist = sq[:, None] - 2 * x @ centres.T + np.einsum("ij,ij->i", centres, centres)[None, :]
            new = dist.argmin(axis=1)
            if np.array_equal(new, labels):
                break
            labels = new
            for j in range(k):
                members = labels == j
                if members.any():
                    centres[j] = x[members].mean(axis=0)
                else:  # an emptied cluster restarts at the point worst served by its centre
                    far = int(dist[np.arange(n), labels].argmax())
                    centres[j], labels[far] = x[far], j
        inertia = float(((x - centres[labels]) ** 2).sum())
        if best is None or inertia < best[0]:
            best = (inertia, centres.copy(), labels.copy())
    assert best is not None
    _, centres, labels = best
    order = np.argsort(-np.bincount(labels, minlength=k), kind="stable")
    rank = np.empty(k, np.int64)
    rank[order] = np.arange(k)
    return centres[order], rank[labels]


def nearest_centre(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest centre `(k, D)` for every row of `x` `(N, D)`: `(N,)`."""
    x = np.asarray(x, dtype=np.float64)
    d2 = -2 * x @ centres.T + np.einsum("ij,ij->i", centres, centres)[None, :]
    return np.asarray(d2.argmin(axis=1), dtype=np.int64)


def _dissolve_small(
    x: np.ndarray, centres: np.ndarray, labels: np.ndarray, *, min_size: int = MIN_CLUSTER_SIZE
) -> tuple[np.ndarray, np.ndarray, int]:
    """(centres, labels, how many were dissolved): clusters of fewer than `min_size` rows (k-means gives
    outliers a cluster of their own) are dissolved into the nearest remaining ones, smallest first,
    while at least two remain; the rest are renumbered by size, largest first."""
    dissolved = 0
    while len(centres) > 2:
        sizes = np.bincount(labels, minlength=len(centres))
        j = int(sizes.argmin())
        if sizes[j] >= min_size:
            break
        centres = np.delete(centres, j, axis=0)
        labels = nearest_centre(x, centres)
        dissolved += 1
    if dissolved:
        k = len(centres)
        centres = np.stack(
            [x[labels == j].mean(axis=0) if (labels == j).any() else centres[j] for j in range(k)]
        )
        labels = nearest_centre(x, centres)
        order = np.argsort(-np.bincount(labels, minlength=k), kind="stable")
        rank = np.empty(k, np.int64)
        rank[order] = np.arange(k)
        centres, labels = centres[order], rank[labels]
    return centres, labels, dissolved


def choose_num_clusters(num_real: int, requested: int | None) -> tuple[int, str]:
    """(k, the rule that chose it): `requested` when given (capped at num_real // 5), else
    DEFAULT_CLUSTERS capped so that clusters hold ~MIN_PER_CLUSTER real images (at least 2)."""
    if requested:
        k = max(2, min(int(requested), num_real // 5))
        why = f"--clusters {requested}" + ("" if k == requested else f", capped at N/5 = {k}")
        return k, why
    k = max(2, min(DEFAULT_CLUSTERS, num_real // MIN_PER_CLUSTER))
    return k, f"automatic: min({DEFAULT_CLUSTERS}, N_real/{MIN_PER_CLUSTER})"


@dataclass
class SoftmaxClassifier:
    """Multinomial logistic regression (softmax, L2 on the weights) fitted by L-BFGS; weights `(D+1, K)`."""

    num_classes: int
    l2: float = L2
    weights: np.ndarray | None = None

    def fit(self, x: np.ndarray, y: np.ndarray) -> SoftmaxClassifier:
        """Fit on features `(N, D)` and labels `(N,)` in 0..K-1."""
        from scipy.optimize import minimize

        xb = np.hstack([np.asarray(x, np.float64), np.ones((len(x), 1))])
        onehot = np.eye(self.num_classes)[np.asarray(y, np.int64)]
        n, d = xb.shape
        mask = np.ones((d, 1))
        mask[-1] = 0.0  # the bias is not shrunk

        def loss(w_flat: np.ndarray) -> tuple[float, np.ndarray]:
            w = w_flat.reshape(d, self.num_classes)
            logits = xb @ w
            logits -= logits.max(axis=1, keepdims=True)
            logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
            value = -(onehot * logp).sum() / n + 0.5 * self.l2 * float((mask * w * w).sum())
            grad = xb.T @ (np.exp(logp) - onehot) / n + self.l2 * mask * w
            return float(value), grad.ravel()

        res = minimize(
            loss, np.zeros(d * self.num_classes), jac=True, method="L-BFGS-B", options={"maxiter": 500}
        )
        self.weights = res.x.reshape(d, self.num_classes)
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities `(N, K)`."""
        assert self.weights is not None, "fit first"
        logits = np.asarray(x, np.float64) @ self.weights[:-1] + self.weights[-1]
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return np.asarray(e / e.sum(axis=1, keepdims=True))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Most probable class `(N,)`."""
        return np.asarray(self.predict_proba(x).argmax(axis=1), dtype=np.int64)


def stratified_folds(y: np.ndarray, num_folds: int, *, rng_seed: int = 0) -> np.ndarray:
    """Fold number `(N,)` of every sample: each class dealt round-robin over the folds in random order."""
    y = np.asarray(y, np.int64)
    rng = np.random.default_rng(rng_seed)
    fold = np.empty(y.size, np.int64)
    start = 0
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        fold[idx] = (start + np.arange(idx.size)) % num_folds
        start += idx.size  # the next class continues where this one stopped: folds stay equal in size
    return fold


def cross_val_predict(
    x: np.ndarray, y: np.ndarray, num_classes: int, *, num_folds: int = CV_FOLDS, rng_seed: int = 0
) -> np.ndarray:
    """Held-out predictions `(N,)`: each sample classified by a classifier fitted on the other folds."""
    fold = stratified_folds(y, num_folds, rng_seed=rng_seed)
    pred = np.empty(len(y), np.int64)
    for f in range(num_folds):
        test = fold == f
        if test.any():
            clf = SoftmaxClassifier(num_classes).fit(x[~test], y[~test])
            pred[test] = clf.predict(x[test])
    return pred


def confusion_matrix(true: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts `(K, K)`: row = true class, column = predicted class."""
    idx = np.asarray(true, np.int64) * num_classes + np.asarray(pred, np.int64)
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def adjusted_fractions(confusion: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Adjusted classify-and-count (Forman 2008): true class fractions `(K,)` from classified fractions.

    With M[t, p] = P(predicted p | true t) from the held-out predictions, the classified fractions are
    q = M^T pi; pi is the least-squares solution on the simplex (non-negative, summing to 1). A class the
    real set lacks (a zero row of M) keeps pi = 0."""
    from scipy.optimize import nnls

    cm = np.asarray(confusion, np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    m = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    q = np.asarray(observed, np.float64)
    q = q / q.sum()
    weight = 1e3  # a heavy extra equation holds sum(pi) = 1 (nnls takes no equality constraint)
    a = np.vstack([m.T, weight * np.ones((1, m.shape[0]))])
    pi, _ = nnls(a, np.concatenate([q, [weight]]))
    pi[rows[:, 0] == 0] = 0.0
    return np.asarray(pi / pi.sum() if pi.sum() > 0 else pi)


# ---------------------------------------------------------------------------------------------------
# Features


def spectrum_slopes(images: np.ndarray, *, chunk: int = 512) -> np.ndarray:
    """Per image and band, the slope of log10 power against log10 frequency (bins 2..Nyquist): `(N, C)`."""
    from astrogan.metrics.spectrum import radial_spectrum

    out = []
    for s in range(0, len(images), chunk):
        freqs, power = radial_spectrum(images[s : s + chunk])  # chunks: the 2D FFTs are complex128
        lf = np.log10(freqs[1:])
        lp = np.log10(np.maximum(power[..., 1:], 1e-20))
        lf_c = lf - lf.mean()
        out.append((lp * lf_c).sum(axis=-1) / (lf_c @ lf_c))
    return np.concatenate(out)


def weight_free_composition_features(
    images: np.ndarray, morphology: Mapping[str, np.ndarray]
) -> tuple[np.ndarray, list[str]]:
    """(features `(N, D)`, names): the colour statistics and morphology of `prdc.weight_free_features`,
    the whole frame's mean and std per band, and the power-spectrum slope per band. NaN marks a value
    that could not be measured (for `prdc.standardise_pair` to impute)."""
    from astrogan.metrics.prdc import weight_free_feature_names, weight_free_features

    c = images.shape[-1] if images.ndim == 4 else 1
    step = 512  # per-image statistics, taken in chunks: a float64 copy of 20k images would be gigabytes
    base = np.concatenate(
        [
            weight_free_features(images[s : s + step], {k: v[s : s + step] for k, v in morphology.items()})
            for s in range(0, len(images), step)
        ]
    )
    names = weight_free_feature_names(c, sorted(morphology))
    names += [f"band{b}_frame_{s}" for s in ("mean", "std") for b in range(c)]
    names += [f"band{b}_spectrum_slope" for b in range(c)]
    names += [f"colour_band{a}-band{b}" for a, b in zip(*_colour_pairs(c), strict=True)]
    return np.hstack([base, frame_stats(images), spectrum_slopes(images), flux_colours(images)]), names


def flux_colours(images: np.ndarray, *, chunk: int = 512) -> np.ndarray:
    """Per band pair (`_colour_pairs`), (f_a - f_b) / (f_a + f_b) of the object's light `(N, P)`: f the summed
    values above the sky (each band's border median) in the central half box.

    Why: the colour statistics of `prdc` (differences of mean values) grow with brightness, so a bright
    red galaxy and a faint blue one can share them; a flux ratio is a colour whatever the brightness."""
    from astrogan.metrics.spectrum import to_float_images

    out = []
    for s in range(0, len(images), chunk):
        x = to_float_images(images[s : s + chunk])
        n, h, w, c = x.shape
        e = max(1, min(h, w) // 16)  # border strips: the sky, away from a centred object
        border = np.concatenate(
            [
                x[:, :e].reshape(n, -1, c),
                x[:, -e:].reshape(n, -1, c),
                x[:, :, :e].reshape(n, -1, c),
                x[:, :, -e:].reshape(n, -1, c),
            ],
            axis=1,
        )
        centre = x[:, h // 4 : h - h // 4, w // 4 : w - w // 4] - np.median(border, axis=1)[:, None, None]
        f = np.clip(centre, 0, None).sum(axis=(1, 2))  # (n, C)
        a, b = _colour_pairs(c)
        total = np.maximum(f[:, a] + f[:, b], 1e-3 * centre.shape[1] * centre.shape[2])
        out.append((f[:, a] - f[:, b]) / total)
    return np.concatenate(out) if out else np.zeros((0, len(_colour_pairs(images.shape[-1])[0])))


def _colour_pairs(c: int) -> tuple[list[int], list[int]]:
    """Band pairs of `flux_colours` for C bands: adjacent ones, and first-last from 3 bands on (the longest
    baseline, the single most telling colour: (B - R) of an RGB picture)."""
    pairs = [(b, b + 1) for b in range(c - 1)] + ([(0, c - 1)] if c >= 3 else [])
    return [p[0] for p in pairs], [p[1] for p in pairs]


def frame_stats(images: np.ndarray, *, chunk: int = 512) -> np.ndarray:
    """Mean and std of the whole frame per band `(N, 2C)` (the sky and diffuse light, not only the centre)."""
    from astrogan.metrics.spectrum import to_float_images

    out = []
    for s in range(0, len(images), chunk):
        x = to_float_images(images[s : s + chunk])
        out.append(np.hstack([x.mean(axis=(1, 2)), x.std(axis=(1, 2))]))
    return np.concatenate(out)


def _pca_pair(real: np.ndarray, fake: np.ndarray, dims: int = MAX_PCA_DIMS) -> tuple[np.ndarray, np.ndarray]:
    """Project `(N, D)` and `(M, D)` onto the real set's first `dims` principal components, scaled so that
    a component has unit variance on average (k-means and the classifier see the dominant directions,
    not 2048 noisy ones)."""
    r = np.asarray(real, np.float64)
    mean = r.mean(axis=0)
    _, s, vt = np.linalg.svd(r - mean, full_matrices=False)
    k = max(1, min(dims, vt.shape[0]))
    rms = math.sqrt(float((s[:k] ** 2).sum()) / max(len(r) - 1, 1) / k) or 1.0
    return (r - mean) @ vt[:k].T / rms, (np.asarray(fake, np.float64) - mean) @ vt[:k].T / rms


def _morphology_columns(ctx: Context) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Real and generated morphology (the shared measurement), NaN where a galaxy was not usable."""
    from astrogan.metrics.morphology import COMPARED_PROPERTIES
    from astrogan.metrics.morphology.metric import shared_morphology

    real_m, fake_m = shared_morphology(ctx)
    names = [k for k in COMPARED_PROPERTIES if k != "orientation"]  # an angle: no Euclidean meaning

    def cols(res: Any) -> dict[str, np.ndarray]:
        good = res.good()
        return {k: np.where(good, np.asarray(res.values[k], np.float64), np.nan) for k in names}

    return cols(real_m), cols(fake_m)


def feature_families(names: Sequence[str]) -> dict[str, np.ndarray]:
    """Column indices `(D_f,)` of each family of the weight-free vector, by column name: colour (flux-ratio
    colours), brightness (the central statistics per band, their differences, the whole frame's mean and
    std), spectrum (power-spectrum slopes) and morphology (the rest); empty families are left out."""
    fam: dict[str, list[int]] = {f: [] for f in FAMILIES}
    for i, name in enumerate(names):
        if name.startswith("colour_"):
            fam["colour"].append(i)
        elif name.endswith("_spectrum_slope"):
            fam["spectrum"].append(i)
        elif re.fullmatch(r"band\d+(_\w+|-band\d+)", name):  # mean differences grow with brightness
            fam["brightness"].append(i)
        else:
            fam["morphology"].append(i)
    return {f: np.asarray(v, np.int64) for f, v in fam.items() if v}


def weight_free_space(
    real: np.ndarray, fake: np.ndarray, names: Sequence[str]
) -> tuple[str, np.ndarray, np.ndarray, dict[str, tuple[list[str], np.ndarray]]]:
    """("weight-free", real `(N, D')`, generated `(M, D')`, {family: (column names, indices)}): the raw
    weight-free vectors `(N, D)`, `(M, D)` imputed and z-scored on the real set, columns with no real
    value dropped (and from the names)."""
    from astrogan.metrics.prdc import standardise_pair

    keep = np.asarray(~np.isnan(np.where(np.isfinite(real), real, np.nan)).all(axis=0), dtype=bool)
    kept = [n for n, k in zip(names, keep.tolist(), strict=True) if k]
    r, f = standardise_pair(real, fake)
    fams = {fam: ([kept[i] for i in idx], idx) for fam, idx in feature_families(kept).items()}
    return "weight-free", r, f, fams


def feature_space(
    ctx: Context,
) -> tuple[str, np.ndarray, np.ndarray, dict[str, tuple[list[str], np.ndarray]]]:
    """("inception" | "weight-free", real `(N, D)`, generated `(M, D)`, families) in a space where Euclidean
    distance means something: Inception pool features on the real set's principal components when the
    weights are given (no families), else the weight-free vector z-scored on the real set (real side
    cached) and its families {name: (column names, column indices)}."""

    def build() -> tuple[str, np.ndarray, np.ndarray, dict[str, tuple[list[str], np.ndarray]]]:
        if ctx.inception_weights is not None or os.environ.get("ASTROGAN_INCEPTION_WEIGHTS"):
            from astrogan.metrics.fid import shared_inception

            try:
                r, f = shared_inception(ctx)
                pr, pf = _pca_pair(r, f)
                return "inception", pr, pf, {}
            except MetricSkipped:
                pass
        rm, fm = _morphology_columns(ctx)
        real = ctx.cache.get(
            "composition",
            {**ctx.base, "engine": ctx.morphology_engine, "features": _FEATURES_VERSION},
            lambda: {"features": weight_free_composition_features(ctx.real, rm)[0]},
        )["features"]
        fake, names = weight_free_composition_features(ctx.fake, fm)
        return weight_free_space(real, fake, names)

    return ctx.shared("composition_features", build)


# ---------------------------------------------------------------------------------------------------
# Names


_NAME_LINE = re.compile(r"^\s*(\d+)\s*[:=]\s*(\S.*?)\s*$")


def read_cluster_names(path: str | os.PathLike[str]) -> dict[int, str]:
    """`{number: name}` from a small text file of `NUMBER: NAME` lines (`#` comments and blank lines
    skipped), e.g. `3: spiral galaxies`; the numbers are the report's cluster (or class) numbers."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read the cluster names file {p}: {exc.__class__.__name__}") from None
    names: dict[int, str] = {}
    for num, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0]
        if not line.strip():
            continue
        m = _NAME_LINE.match(line)
        if m is None:
            raise UserError(
                f"{p} line {num}: expected 'NUMBER: NAME' (e.g. '3: spiral galaxies'), got {line.strip()!r}"
            )
        idx = int(m.group(1))
        if idx in names:
            raise UserError(f"{p} line {num}: cluster {idx} is named twice")
        names[idx] = m.group(2)[:80]
    return names


# ---------------------------------------------------------------------------------------------------
# The metric


@dataclass(frozen=True)
class Category:
    """One category: its number and name, counts and shares on each side, tests and verdict.

    In label mode both sides are counted as classified (the real images by held-out folds);
    `label_fraction` is the real share by the true labels and `corrected_fraction` the generated share
    corrected for the classifier's confusion."""

    id: int
    name: str
    real_count: int
    fake_count: int
    real_fraction: float
    fake_fraction: float
    p: float
    p_adj: float
    verdict: str  # "under", "over" or ""
    label_fraction: float | None = None
    corrected_fraction: float | None = None

    @property
    def ratio(self) -> float:
        """generated share / real share (inf when the real set has none)."""
        if self.real_fraction > 0:
            return self.fake_fraction / self.real_fraction
        return math.inf if self.fake_fraction > 0 else math.nan


@dataclass
class CompositionResult:
    """What `CompositionMetric.compute` found: real_assign `(N,)` and fake_assign `(M,)` are each image's
    category position (the real images' by held-out classification in label mode); `examples` holds up
    to NUM_EXAMPLES (real, generated) indices per category for the thumbnails."""

    mode: str  # "labels" or "clusters"
    space: str
    categories: list[Category]
    test: HomogeneityTest
    tv: float
    floor: float
    floor_p: float
    num_real: int
    num_fake: int
    statements: list[str]
    classifier: dict[str, Any] | None = None
    clustering: dict[str, Any] | None = None
    real_assign: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    fake_assign: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    unused_names: list[int] = field(default_factory=list)
    examples: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    slices: list[Slice] = field(default_factory=list)
    p_overall: float = (
        math.nan
    )  # Holm over the main and the slice clusterings' chi-square tests (min adjusted)

    @property
    def under(self) -> list[Category]:
        return [c for c in self.categories if c.verdict == "under"]

    @property
    def over(self) -> list[Category]:
        return [c for c in self.categories if c.verdict == "over"]

    @property
    def slices_flagged(self) -> list[Category]:
        """Under- or over-produced categories of the slice clusterings."""
        return [c for s in self.slices for c in s.categories if c.verdict]


@dataclass
class Slice:
    """One feature family (colour, morphology, ...) clustered alone: its categories (with verdicts), the
    chi-square test of its (real, generated) x category table, that p Holm-adjusted over every clustering of
    the result, and each image's category `(N,)`, `(M,)`."""

    family: str
    columns: list[str]
    categories: list[Category]
    test: HomogeneityTest
    p_adj: float
    real_assign: np.ndarray
    fake_assign: np.ndarray


def _p_text(p: float) -> str:
    if not math.isfinite(p):
        return "p n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}"


def _statements(
    cats: Sequence[Category], test: HomogeneityTest, mode: str, p_overall: float | None = None
) -> list[str]:
    """One sentence per under- or over-produced category (most significant first; slice categories
    included), or one that says none is. `p_overall`: the p of the whole comparison (default `test.p`)."""
    how = ", both as classified" if mode == "labels" else ""
    p_all = test.p if p_overall is None else p_overall
    what = "chi-square" if p_overall is None else "chi-square, Holm over the clusterings"
    out = []
    for c in sorted((c for c in cats if c.verdict), key=lambda c: c.p_adj):
        verb = "under-produces" if c.verdict == "under" else "over-produces"
        ratio = "no real one" if not math.isfinite(c.ratio) else f"ratio {c.ratio:.2f}"
        out.append(
            f"The generator {verb} {c.name}: {100 * c.fake_fraction:.1f}% of generated vs "
            f"{100 * c.real_fraction:.1f}% of real images{how} ({ratio}, Holm-adjusted {_p_text(c.p_adj)})."
        )
    if not out:
        if p_all < ALPHA:
            out.append(
                f"The mix differs overall ({what} {_p_text(p_all)}), but no single category differs at "
                f"the {ALPHA:.0%} level after Holm's correction."
            )
        else:
            out.append(
                f"No category is under- or over-produced at the {ALPHA:.0%} level (Holm): the generated "
                f"images are composed like the real ones ({what} {_p_text(p_all)})."
            )
    return out


def _slices_text(d: CompositionResult) -> str:
    """'; slices: colour p = 0.003, ...' (Holm-adjusted), or '' without slices."""
    if not d.slices:
        return ""
    return "; slices (Holm): " + ", ".join(f"{s.family} {_p_text(s.p_adj)}" for s in d.slices)


def _examples(assign: np.ndarray, k: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Up to NUM_EXAMPLES random member indices per category, in index order."""
    out = []
    for c in range(k):
        idx = np.flatnonzero(assign == c)
        out.append(np.sort(rng.choice(idx, size=min(NUM_EXAMPLES, idx.size), replace=False)))
    return out


def _by_labels(ctx: Context, r: np.ndarray, f: np.ndarray) -> dict[str, Any]:
    """Categories = the dataset's classes: a softmax classifier on the real features classifies both sides."""
    assert ctx.real_labels is not None
    labels = np.asarray(ctx.real_labels, np.int64)
    present = np.unique(labels)
    y = np.searchsorted(present, labels)
    k = present.size
    given = list(ctx.label_names or [])
    names = [given[c] if c < len(given) else f"class {c}" for c in present]
    pred_real = cross_val_predict(r, y, k, rng_seed=ctx.rng_seed)
    pred_fake = SoftmaxClassifier(k).fit(r, y).predict(f)
    cm = confusion_matrix(y, pred_real, k)
    recall = np.diag(cm) / np.maximum(cm.sum(axis=1), 1)
    fake_counts = np.bincount(pred_fake, minlength=k)
    rng = np.random.default_rng(ctx.rng_seed)
    return {
        "ids": present.tolist(),
        "names": names,
        "real_assign": pred_real,
        "fake_assign": pred_fake,
        "label_fractions": np.bincount(y, minlength=k) / len(y),
        "corrected": adjusted_fractions(cm, fake_counts) if fake_counts.sum() else None,
        "examples": list(zip(_examples(y, k, rng), _examples(pred_fake, k, rng), strict=True)),
        "classifier": {
            "kind": f"softmax regression (L2 {L2:g}) on the features",
            "held_out": f"{CV_FOLDS}-fold stratified cross-validation on the real images",
            "accuracy": float(np.mean(pred_real == y)),
            "balanced_accuracy": float(recall.mean()),
            "chance": float(np.bincount(y).max() / len(y)),
            "confusion": cm.tolist(),
            "correction": "adjusted classify-and-count (Forman 2008): least squares on the simplex of "
            "q = M^T pi, M the held-out confusion matrix (rows = true class)",
        },
    }


def _by_clusters(ctx: Context, r: np.ndarray, f: np.ndarray) -> dict[str, Any]:
    """Categories = k-means clusters of the real features; generated images go to the nearest centre."""
    k, rule = choose_num_clusters(len(r), ctx.num_clusters)
    centres, real_assign = kmeans(r, k, rng_seed=ctx.rng_seed)
    centres, real_assign, dissolved = _dissolve_small(r, centres, real_assign)
    k = len(centres)
    fake_assign = nearest_centre(f, centres)
    rng = np.random.default_rng(ctx.rng_seed)
    return {
        "ids": list(range(k)),
        "names": [f"cluster {i}" for i in range(k)],
        "real_assign": real_assign,
        "fake_assign": fake_assign,
        "examples": list(zip(_examples(real_assign, k, rng), _examples(fake_assign, k, rng), strict=True)),
        "clustering": {
            "k": k,
            "rule": rule,
            "dissolved_small_clusters": dissolved,
            "method": "k-means (k-means++ seeding, best of 8), sizes descending",
        },
    }


def _main_axis(real: np.ndarray, fake: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both sides `(N, D)`, `(M, D)` projected on the real set's first principal component `(N,)`, `(M,)`,
    signed to rise with the first column (so that the same data always gives the same order)."""
    mean = real.mean(axis=0)
    _, _, vt = np.linalg.svd(real - mean, full_matrices=False)
    axis = vt[0] * (1.0 if vt[0, 0] >= 0 else -1.0)
    return (real - mean) @ axis, (fake - mean) @ axis


def _describe(family: str, j: int, k: int, members: np.ndarray, columns: Sequence[str]) -> str:
    """'colour slice 1/4 (colour_band1-band2 high, +1.3 sd)': the family, the bin and the column whose real
    members' mean `members` `(n, D_f)` (z-scored) is furthest from the whole set's."""
    if not len(members):
        return f"{family} slice {j + 1}/{k}"
    mean = members.mean(axis=0)
    i = int(np.abs(mean).argmax())
    return f"{family} slice {j + 1}/{k} ({columns[i]} {'low' if mean[i] < 0 else 'high'}, {mean[i]:+.1f} sd)"


def _slice_clusterings(
    ctx: Context, r: np.ndarray, f: np.ndarray, families: Mapping[str, tuple[list[str], np.ndarray]]
) -> list[dict[str, Any]]:
    """Per feature family: the real images cut into FAMILY_BINS equal quantile bins (fewer for a small set)
    along the family's first principal component, the generated images put in the same bins. A bin is a
    slice (the bluest quarter, the smallest quarter) that k-means on all columns cuts across."""
    k = max(2, min(FAMILY_BINS, len(r) // MIN_PER_CLUSTER))
    out = []
    for family, (columns, idx) in families.items():
        xr, xf = _main_axis(r[:, idx], f[:, idx])
        edges = np.quantile(xr, np.arange(1, k) / k)
        ra, fa = np.searchsorted(edges, xr, side="right"), np.searchsorted(edges, xf, side="right")
        names = [_describe(family, j, k, r[ra == j][:, idx], columns) for j in range(k)]
        out.append(
            {"family": family, "columns": list(columns), "names": names, "real_assign": ra, "fake_assign": fa}
        )
    return out


def _categories(
    ids: Sequence[int],
    names: Sequence[str],
    real_assign: np.ndarray,
    fake_assign: np.ndarray,
    *,
    gate: float,
    extra: Mapping[str, Any],
) -> list[Category]:
    """(categories, chi-square test) of one categorisation. A category gets a verdict when its Fisher p,
    Holm-adjusted over this categorisation, and `gate` (this categorisation's chi-square p, Holm-adjusted
    over all of them) are both under ALPHA: under the null a statement is made in at most ALPHA of runs."""
    k = len(ids)
    n, m = len(real_assign), len(fake_assign)
    real_counts = np.bincount(real_assign, minlength=k)
    fake_counts = np.bincount(fake_assign, minlength=k)
    p, p_adj = category_tests(real_counts, fake_counts)
    rf, ff = real_counts / n, fake_counts / m
    return [
        Category(
            id=int(ids[i]),
            name=names[i],
            real_count=int(real_counts[i]),
            fake_count=int(fake_counts[i]),
            real_fraction=float(rf[i]),
            fake_fraction=float(ff[i]),
            p=float(p[i]),
            p_adj=float(p_adj[i]),
            verdict=("under" if ff[i] < rf[i] else "over") if p_adj[i] < ALPHA and gate < ALPHA else "",
            label_fraction=None if "label_fractions" not in extra else float(extra["label_fractions"][i]),
            corrected_fraction=None if extra.get("corrected") is None else float(extra["corrected"][i]),
        )
        for i in range(k)
    ]


def _test(real_assign: np.ndarray, fake_assign: np.ndarray, k: int, rng_seed: int) -> HomogeneityTest:
    """The chi-square test of homogeneity of one categorisation (`(N,)`, `(M,)` in 0..k-1)."""
    real_counts = np.bincount(real_assign, minlength=k)
    fake_counts = np.bincount(fake_assign, minlength=k)
    return homogeneity_test(real_counts, fake_counts, rng_seed=rng_seed)


class CompositionMetric(Metric):
    """Real and generated images are put into categories, and the two category distributions compared:
    a chi-square test of homogeneity on the (real, generated) x category table (a Monte Carlo p-value with
    fixed margins when an expected count is under 5), one Fisher exact test per category with Holm's
    correction for the "under-/over-produces" statements, and the total variation distance beside its
    real-vs-real floor (two halves of the real set, rescaled to the sample sizes as in
    `astrogan.metrics.distances`).

    Categories come from the dataset's class labels when it has them (a softmax classifier trained on the
    real images, held-out accuracy by stratified cross-validation, then applied to the generated images;
    both sides are compared as classified, and the generated fractions are also corrected for the
    classifier's confusion by adjusted classify-and-count, Forman 2008), otherwise from k-means clusters of
    the real images, the generated images going to the nearest centre. Features: Inception pool features
    (PCA) when the weights are given, else a weight-free vector (colour, cheap morphology, spectrum slope).

    With the weight-free vector each feature family (colour, brightness, morphology, spectrum) is also cut
    alone into FAMILY_BINS quantile slices along its main axis and tested alike: clusters of all columns
    follow the many brightness/size columns and miss a thin slice such as the bluest quarter. The overall
    p is Holm over these tests; a category's verdict needs its test's adjusted p under ALPHA too.
    """

    name = "composition"
    description = (
        "category mix of generated vs real images: chi-square test, per-category Holm-adjusted tests"
    )

    def compute(self, ctx: Context) -> CompositionResult:
        n, m = len(ctx.real), len(ctx.fake)
        if n < MIN_REAL or m < MIN_FAKE:
            raise MetricSkipped(
                f"composition skipped: needs at least {MIN_REAL} real and {MIN_FAKE} generated images, "
                f"got {n} and {m}"
            )
        space, r, f, families = feature_space(ctx)
        labelled = ctx.real_labels is not None and np.unique(ctx.real_labels).size >= 2
        mode = "labels" if labelled else "clusters"
        d = _by_labels(ctx, r, f) if labelled else _by_clusters(ctx, r, f)
        k = len(d["ids"])
        user = dict(ctx.category_names or {})
        names = [
            f"{user[i]} ({name})" if i in user else name for i, name in zip(d["ids"], d["names"], strict=True)
        ]
        # Unlabelled: each feature family also clustered alone; one Holm family over all the chi-squares.
        parts = [] if labelled else _slice_clusterings(ctx, r, f, families)
        test = _test(d["real_assign"], d["fake_assign"], k, ctx.rng_seed)
        tests = [_test(s["real_assign"], s["fake_assign"], len(s["names"]), ctx.rng_seed) for s in parts]
        gates = holm([test.p] + [t.p for t in tests])
        cats = _categories(d["ids"], names, d["real_assign"], d["fake_assign"], gate=gates[0], extra=d)
        slices = [
            Slice(
                family=s["family"],
                columns=s["columns"],
                categories=_categories(
                    list(range(len(s["names"]))),
                    s["names"],
                    s["real_assign"],
                    s["fake_assign"],
                    gate=float(g),
                    extra={},
                ),
                test=t,
                p_adj=float(g),
                real_assign=s["real_assign"],
                fake_assign=s["fake_assign"],
            )
            for s, t, g in zip(parts, tests, gates[1:], strict=True)
        ]
        p_overall = float(gates.min())
        floor, floor_p = matched_tv_floor(d["real_assign"], k, m, rng_seed=ctx.rng_seed)
        every = cats + [c for s in slices for c in s.categories]
        return CompositionResult(
            mode=mode,
            space=space,
            categories=cats,
            test=test,
            tv=total_variation(
                np.bincount(d["real_assign"], minlength=k), np.bincount(d["fake_assign"], minlength=k)
            ),
            floor=floor,
            floor_p=floor_p,
            num_real=n,
            num_fake=m,
            statements=_statements(every, test, mode, p_overall if slices else None),
            classifier=d.get("classifier"),
            clustering=d.get("clustering"),
            real_assign=d["real_assign"],
            fake_assign=d["fake_assign"],
            unused_names=sorted(set(user) - set(d["ids"])),
            examples=d["examples"],
            slices=slices,
            p_overall=p_overall,
        )

    def scalars(self, d: CompositionResult) -> dict[str, float]:
        out = {
            "composition_tv": d.tv,
            "composition_tv_floor": d.floor,
            "composition_p": d.p_overall if math.isfinite(d.p_overall) else d.test.p,
            "composition_num_under": float(len(d.under)),
            "composition_num_over": float(len(d.over)),
        }
        if d.slices:
            out["composition_num_slices_flagged"] = float(len(d.slices_flagged))
        if d.classifier is not None:
            out["composition_classifier_accuracy"] = d.classifier["accuracy"]
        return out

    def rows(self, d: CompositionResult, ctx: Context) -> list[Row]:
        what = "classes" if d.mode == "labels" else "clusters"
        return [
            Row(
                f"composition (total variation over {len(d.categories)} {what}, {d.space} features)",
                d.tv,
                d.floor,
                "share of generated images that would have to change category for their mix to match the real "
                f"one; chi-square homogeneity {_p_text(d.test.p)} (real halves {_p_text(d.floor_p)}); "
                f"{len(d.under)} under-, {len(d.over)} over-produced (Holm, {ALPHA:.0%})" + _slices_text(d),
                ctx.counts(d.num_real, d.num_fake),
            )
        ]

    def to_json(self, d: CompositionResult) -> dict[str, Any]:
        def num(v: float | None) -> float | None:
            return None if v is None or not math.isfinite(v) else float(v)

        return {
            "mode": d.mode,
            "feature_space": d.space,
            "test": {
                "name": "chi-square test of homogeneity (real vs generated x category)",
                "statistic": d.test.statistic,
                "dof": d.test.dof,
                "p": d.test.p,
                "method": d.test.method,
            },
            "per_category_test": f"Fisher exact (two-sided), Holm-adjusted over the categories; alpha {ALPHA}",
            "total_variation": num(d.tv),
            "floor_real_halves": {"total_variation": num(d.floor), "p": num(d.floor_p)},
            "categories": [
                {
                    "id": c.id,
                    "name": c.name,
                    "real_count": c.real_count,
                    "generated_count": c.fake_count,
                    "real_fraction": c.real_fraction,
                    "generated_fraction": c.fake_fraction,
                    "ratio": num(c.ratio),
                    "p": c.p,
                    "p_adjusted": c.p_adj,
                    "verdict": c.verdict or None,
                    "real_label_fraction": c.label_fraction,
                    "generated_fraction_corrected": c.corrected_fraction,
                }
                for c in d.categories
            ],
            "p_overall": num(d.p_overall),
            "p_overall_method": "Holm over the chi-square tests of the clusters and of each feature family's "
            f"{FAMILY_BINS} quantile slices (min adjusted p); a category's verdict needs its clustering's "
            "adjusted p and its own Holm-adjusted Fisher p under alpha"
            if d.slices
            else "the chi-square test's p",
            "slices": [
                {
                    "family": sl.family,
                    "columns": sl.columns,
                    "method": f"{len(sl.categories)} quantile bins of the real set along the family's first "
                    "principal component (z-scored columns)",
                    "test": {"statistic": sl.test.statistic, "dof": sl.test.dof, "p": sl.test.p},
                    "p_adjusted": sl.p_adj,
                    "categories": [
                        {
                            "name": c.name,
                            "real_count": c.real_count,
                            "generated_count": c.fake_count,
                            "p_adjusted": c.p_adj,
                            "verdict": c.verdict or None,
                        }
                        for c in sl.categories
                    ],
                }
                for sl in d.slices
            ],
            "statements": d.statements,
            "classifier": d.classifier,
            "clustering": d.clustering,
            "unused_names": d.unused_names,
        }

    def figures(self, d: CompositionResult, ctx: Context, out_dir: Path) -> list[tuple[str, str]]:
        from astrogan.imaging import make_grid
        from astrogan.metrics.plots import display, pyplot

        plt = pyplot()
        out = [
            ("composition.png", "composition: share of each category, real vs generated (* = Holm p < 0.05)")
        ]
        _bar_chart(plt, d, out_dir / "composition.png")
        for i, (c, (ri, fi)) in enumerate(zip(d.categories, d.examples, strict=True)):
            fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.6))
            for ax, images, idx, side, frac in (
                (axes[0], ctx.real, ri, "real", c.label_fraction if d.mode == "labels" else c.real_fraction),
                (axes[1], ctx.fake, fi, "generated", c.fake_fraction),
            ):
                ax.axis("off")
                share = "" if frac is None else f" ({100 * frac:.1f}%)"
                ax.set_title(f"{side}{share}", fontsize=9)
                if len(idx):
                    sheet = make_grid(
                        display(images[idx]), ncols=4, pad_px=2, pad_value=1.0, dtype=np.float64
                    )
                    ax.imshow(sheet[..., 0] if sheet.shape[-1] == 1 else sheet, cmap="gray")
                else:
                    ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes)
            verdict = {"under": " - under-produced", "over": " - over-produced"}.get(c.verdict, "")
            fig.suptitle(f"{c.name}{verdict}", fontsize=10)
            fig.tight_layout()
            name = f"composition_{i:02d}.png"
            fig.savefig(out_dir / name, dpi=100)
            plt.close(fig)
            out.append((name, f"composition, {c.name}: real members (left) and generated ones (right)"))
        return out

    def section(self, d: CompositionResult) -> str:
        e = html.escape
        labels = d.mode == "labels"
        if labels:
            cl = d.classifier or {}
            how = (
                f"Categories are the dataset's {len(d.categories)} classes. A {cl.get('kind', '')} ({d.space}) "
                f"was trained on the real images: held-out accuracy {cl.get('accuracy', math.nan):.1%} "
                f"(balanced {cl.get('balanced_accuracy', math.nan):.1%}, chance {cl.get('chance', math.nan):.1%}; "
                f"{cl.get('held_out', '')}). It classified the generated images; both sides are compared as "
                "classified, the real images by the held-out folds, so that its mistakes hit both alike. The "
                "corrected column removes its confusion from the generated shares (adjusted classify-and-count)."
            )
        else:
            cu = d.clustering or {}
            how = (
                f"Categories are {cu.get('k')} k-means clusters of the real images in {d.space} features "
                f"(k {cu.get('rule', '')}); each generated image joins the nearest cluster centre. Name the "
                "clusters for the report with --cluster-names FILE (lines 'NUMBER: NAME')."
            )
        head = "<th>#</th><th>category</th>"
        head += "<th>real % (labels)</th><th>real % (classified)</th>" if labels else "<th>real %</th>"
        head += "<th>generated %</th>" + ("<th>generated % (corrected)</th>" if labels else "")
        head += "<th>ratio</th><th>p (Holm)</th><th>verdict</th><th>examples</th>"
        body = []
        for i, c in enumerate(d.categories):
            cells = [str(c.id), e(c.name)]
            if labels:
                cells.append(f"{100 * (c.label_fraction or 0):.1f}")
            cells += [f"{100 * c.real_fraction:.1f}", f"{100 * c.fake_fraction:.1f}"]
            if labels:
                cf = c.corrected_fraction
                cells.append("n/a" if cf is None else f"{100 * cf:.1f}")
            cells += [
                "inf" if math.isinf(c.ratio) else ("n/a" if math.isnan(c.ratio) else f"{c.ratio:.2f}"),
                f"{c.p_adj:.2g}",
                e(c.verdict + "-produced" if c.verdict else ""),
                f"<a href='composition_{i:02d}.png'>thumbnails</a>",
            ]
            body.append("<tr>" + "".join(f"<td>{x}</td>" for x in cells) + "</tr>")
        t = d.test
        test = (
            f"Chi-square test of homogeneity: {t.statistic:.3g} on {t.dof} degrees of freedom, {_p_text(t.p)} "
            f"({t.method}); between two halves of the real set {_p_text(d.floor_p)}. Total variation "
            f"{d.tv:.3f} (real-vs-real floor {d.floor:.3f}). Per category: Fisher's exact test, Holm-adjusted."
        )
        unused = ""
        if d.unused_names:
            unused = (
                f"<p class='skip'>Names given for categories that do not exist: {e(str(d.unused_names))}.</p>"
            )
        if d.slices:
            test += (
                f" Each feature family is also cut into {FAMILY_BINS} quantile slices along its main axis and "
                f"tested alike ({_slices_text(d).lstrip('; ')}); overall {_p_text(d.p_overall)}, Holm over "
                f"{1 + len(d.slices)} tests."
            )
        statements = "".join(f"<li>{e(s)}</li>" for s in d.statements)
        return (
            "<h2>Composition: is the generated sky a representative sky?</h2>"
            f"<p>{e(how)}</p><ul>{statements}</ul><p>{e(test)}</p>"
            f"<table><tr>{head}</tr>{''.join(body)}</table>{unused}"
        )


def _bar_chart(plt: Any, d: CompositionResult, path: Path) -> None:
    """Grouped bars of the real and generated share per category, a star over the significant ones."""
    k = len(d.categories)
    x = np.arange(k)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.7 * k + 2), 3.8))
    width = 0.4 if d.mode == "clusters" else 0.27
    real = [100 * c.real_fraction for c in d.categories]
    fake = [100 * c.fake_fraction for c in d.categories]
    ax.bar(x - width / 2 if d.mode == "clusters" else x - width, real, width, label="real", color="C1")
    ax.bar(x + width / 2 if d.mode == "clusters" else x, fake, width, label="generated", color="C0")
    if d.mode == "labels":
        corr = [100 * (c.corrected_fraction or 0) for c in d.categories]
        ax.bar(x + width, corr, width, label="generated, corrected", color="C2")
    top = max(real + fake + [1.0])
    for i, c in enumerate(d.categories):
        if c.verdict:
            ax.text(i, max(real[i], fake[i]) + 0.02 * top, "*", ha="center", fontsize=14)
    ax.set_ylim(0, 1.15 * top)  # room for the stars
    ax.set_xticks(x)
    ax.set_xticklabels([c.name for c in d.categories], rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("% of images" + (" (as classified)" if d.mode == "labels" else ""))
    ax.set_title(f"composition: chi-square {_p_text(d.test.p)}", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tight_layout on long names only warns
        fig.savefig(path, dpi=100)
    plt.close(fig)
