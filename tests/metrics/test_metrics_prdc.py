"""Precision/recall/density/coverage: a brute-force reference, analytic cases, weight-free features."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from astrogan.metrics.prdc import (
    PRDCResult,
    knn_radii,
    prdc,
    standardise_pair,
    weight_free_feature_names,
    weight_free_features,
)


def brute_knn_radii(x: np.ndarray, k: int) -> np.ndarray:
    # Full sort of all distances; column 0 is each row's distance to itself (0), so the k-th other is column k.
    return np.sort(cdist(x, x), axis=1)[:, k]


def brute_prdc(real: np.ndarray, fake: np.ndarray, k_pr: int, k_dc: int) -> dict[str, float]:
    """The papers' definitions, written out on the full (N, M) distance matrix."""
    d = cdist(real, fake)  # (N, M)
    r_real_pr, r_fake_pr = brute_knn_radii(real, k_pr), brute_knn_radii(fake, k_pr)
    r_real_dc = brute_knn_radii(real, k_dc)
    return {
        "precision": float((d <= r_real_pr[:, None]).any(axis=0).mean()),
        "recall": float((d <= r_fake_pr[None, :]).any(axis=1).mean()),
        "density": float((d < r_real_dc[:, None]).sum() / (k_dc * fake.shape[0])),
        "coverage": float((d.min(axis=1) < r_real_dc).mean()),
    }


# (num_real, num_fake, dim, chunk_size): the smallest legal sizes, chunks of one row, chunks that divide
# the rows exactly, chunks that leave a ragged last block, and the default chunking.
SIZES = [(6, 4, 2, 1), (50, 37, 3, 8), (64, 64, 5, 16), (101, 80, 10, 33), (300, 200, 4, None)]


@pytest.mark.parametrize(("n", "m", "d", "chunk"), SIZES)
def test_knn_radii_match_brute_force(n, m, d, chunk):
    # Off the origin: the squared-distance expansion must still be accurate there.
    x = np.random.default_rng(n).normal(size=(n, d)) + 5.0
    for k in (1, 3, 5):
        if n > k:
            np.testing.assert_allclose(knn_radii(x, k, chunk_size=chunk), brute_knn_radii(x, k), rtol=1e-9)


def test_knn_radii_exclude_self_but_count_duplicates():
    x = np.array([[0.0], [1.0], [3.0], [6.0]])
    np.testing.assert_array_equal(knn_radii(x, 1), [1, 1, 2, 3])
    np.testing.assert_array_equal(knn_radii(x, 2, chunk_size=3), [3, 2, 3, 5])
    # A duplicated row is another sample at distance 0, not the point itself.
    np.testing.assert_array_equal(knn_radii(np.array([[2.0], [2.0], [5.0]]), 1), [0, 0, 3])


@pytest.mark.parametrize(("n", "m", "d", "chunk"), SIZES)
def test_prdc_matches_brute_force(n, m, d, chunk):
    rng = np.random.default_rng(n + m)
    real = rng.normal(size=(n, d))
    fake = rng.normal(size=(m, d)) + 1.0  # overlapping but shifted, so that no number is 0 or 1
    k_pr, k_dc = (3, 5) if n > 10 else (1, 2)
    want = brute_prdc(real, fake, k_pr, k_dc)
    got = prdc(real, fake, nearest_k_pr=k_pr, nearest_k_dc=k_dc, chunk_size=chunk)
    assert got.summary() == pytest.approx(want, abs=1e-12)
    assert (got.nearest_k_pr, got.nearest_k_dc, got.num_real, got.num_fake) == (k_pr, k_dc, n, m)
    if n > 10:
        # The reference must be able to tell the numbers apart, or a swap would pass unnoticed.
        assert want["precision"] != want["recall"] and want["density"] != want["coverage"]
        assert 0 < want["precision"] < 1 and 0 < want["recall"] < 1 and 0 < want["coverage"] < 1


def test_same_set_twice():
    real = np.random.default_rng(0).normal(size=(300, 6))
    res = prdc(real, real.copy(), chunk_size=64)
    # Every fake is a real, at distance 0 from its own ball's centre, and vice versa.
    assert (res.precision, res.recall, res.coverage) == (1.0, 1.0, 1.0)
    # Each real's open ball (radius = distance to its k-th neighbour) holds the real itself and its k-1
    # nearer neighbours: k fakes in each of N balls, so density = k N / (k M) = 1. The k-th neighbour sits
    # on the border, where rounding may tip it in; a closed ball would give (k + 1) / k = 1.2.
    assert res.density == pytest.approx(1.0, abs=0.03)


def test_far_apart_sets_score_zero():
    rng = np.random.default_rng(1)
    res = prdc(rng.normal(size=(100, 3)), rng.normal(size=(80, 3)) + 100.0)
    assert res.summary() == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def four_modes(rng: np.random.Generator, per_mode: int) -> np.ndarray:
    centres = np.array([[10.0, 10.0], [10.0, -10.0], [-10.0, 10.0], [-10.0, -10.0]])
    return np.concatenate([c + rng.normal(size=(per_mode, 2)) for c in centres])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_few_but_good(seed):
    rng = np.random.default_rng(seed)
    real = four_modes(rng, 100)
    fake = np.array([10.0, 10.0]) + rng.normal(size=(100, 2))  # only the first mode, but that one well
    res = prdc(real, fake)
    assert res.precision > 0.9 and res.density > 0.8
    assert res.recall < 0.4 and res.coverage < 0.4


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_varied_but_wrong(seed):
    rng = np.random.default_rng(seed)
    real = rng.normal(size=(400, 4))
    fake = 3.0 * rng.normal(size=(400, 4))  # covers the reals, but most fakes fall where no real is
    res = prdc(real, fake)
    assert res.recall > 0.9
    assert res.precision < 0.3 and res.density < 0.3


def test_max_samples_subsamples_each_side_reproducibly():
    rng = np.random.default_rng(2)
    real, fake = rng.normal(size=(200, 3)), rng.normal(size=(150, 3)) + 0.5
    a = prdc(real, fake, max_samples=60, rng_seed=7)
    assert (a.num_real, a.num_fake) == (60, 60)
    assert prdc(real, fake, max_samples=60, rng_seed=7) == a
    assert prdc(real, fake, max_samples=60, rng_seed=8) != a
    assert prdc(real, fake, max_samples=1000) == prdc(real, fake)


def test_result_is_frozen_and_summary_prefixed():
    res = PRDCResult(0.1, 0.2, 0.3, 0.4, 3, 5, 10, 12)
    assert res.summary("wf_") == {
        "wf_precision": 0.1,
        "wf_recall": 0.2,
        "wf_density": 0.3,
        "wf_coverage": 0.4,
    }
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.precision = 1.0  # type: ignore[misc]


def test_standardise_pair_uses_real_median_and_real_statistics():
    nan = np.nan
    real = np.array(
        [[0.0, 5.0, nan, 1.0], [1.0, 5.0, nan, 2.0], [5.0, 5.0, nan, np.inf], [nan, nan, nan, 3.0]]
    )
    fake = np.array([[6.0, 7.0, 1.0, nan], [nan, nan, 2.0, 100.0]])
    r, f = standardise_pair(real, fake)
    # Column 2 has no real value: dropped from both sides. inf counts as missing.
    assert r.shape == (4, 3) and f.shape == (2, 3)
    sd0 = np.sqrt(((0 - 2) ** 2 + (1 - 2) ** 2 + (5 - 2) ** 2) / 3)  # finite real values 0, 1, 5: mean 2
    np.testing.assert_allclose(r[:, 0], np.array([0.0, 1.0, 5.0, 1.0]) / sd0 - 2 / sd0)  # NaN -> median 1
    np.testing.assert_allclose(f[:, 0], [(6 - 2) / sd0, (1 - 2) / sd0])
    # A constant real column keeps unit scale instead of dividing by zero.
    np.testing.assert_allclose(r[:, 1], 0.0)
    np.testing.assert_allclose(f[:, 1], [2.0, 0.0])
    sd3 = np.std([1.0, 2.0, 3.0])  # median 2 == mean 2 here
    np.testing.assert_allclose(r[:, 2], np.array([-1.0, 0.0, 0.0, 1.0]) / sd3)
    np.testing.assert_allclose(f[:, 2], [0.0, 98.0 / sd3])  # fake's own spread never rescales it


def test_standardise_pair_refuses_bad_input():
    with pytest.raises(ValueError, match="same D"):
        standardise_pair(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="missing"):
        standardise_pair(np.full((3, 2), np.nan), np.zeros((3, 2)))


def test_weight_free_features_layout_and_values():
    imgs = np.zeros((2, 8, 8, 3), np.uint8)
    imgs[0] = 255  # bright border, bright centre
    imgs[1] = 255
    imgs[1, 2:6, 2:6] = 51  # the central half (4 x 4 box) is dim: 0.2 after /255
    morph = {"m20": np.array([-2.0, np.inf]), "gini": np.array([0.5, np.nan])}
    x = weight_free_features(imgs, morph)
    names = weight_free_feature_names(3, morph.keys())
    assert x.shape == (2, 5 * 3 + 2 + 2) and x.dtype == np.float64 and len(names) == x.shape[1]
    col = {name: x[:, i] for i, name in enumerate(names)}
    np.testing.assert_allclose(col["band1_mean"], [1.0, 0.2])  # the border does not count
    np.testing.assert_allclose(col["band1_std"], [0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(col["band2_p90"], [1.0, 0.2])
    np.testing.assert_allclose(col["band0-band1"], [0.0, 0.0])
    # Morphology in sorted name order; non-finite becomes NaN for standardise_pair to impute.
    assert names[-2:] == ["gini", "m20"]
    np.testing.assert_array_equal(x[:, -2:], [[0.5, -2.0], [np.nan, np.nan]])
    # Float images are taken as already in [0, 1].
    np.testing.assert_allclose(weight_free_features(imgs / 255.0), x[:, :-2])


def test_weight_free_features_colour_change_moves_colour_columns():
    rng = np.random.default_rng(3)
    base = rng.uniform(0.2, 0.6, size=(4, 16, 16, 3))
    redder = base.copy()
    redder[..., 0] += 0.3
    a, b = weight_free_features(base), weight_free_features(redder)
    names = weight_free_feature_names(3)
    moved = {n for i, n in enumerate(names) if not np.allclose(a[:, i], b[:, i])}
    assert moved == {"band0_mean", "band0_p10", "band0_p50", "band0_p90", "band0-band1"}
    np.testing.assert_allclose(b[:, names.index("band0-band1")] - a[:, names.index("band0-band1")], 0.3)
    # Single band: no colour differences.
    assert weight_free_features(base[..., :1]).shape == (4, 5)


def test_weight_free_features_convert_a_chunk_of_images_at_a_time(monkeypatch):
    """A float64 copy of the whole set (13 bytes per pixel value at peak) is what limited eval's --num."""
    from astrogan.metrics import prdc as prdc_module

    imgs = np.random.default_rng(0).integers(0, 256, (10, 16, 16, 3), dtype=np.uint8)
    morph = {"gini": np.linspace(0, 1, 10)}
    whole = weight_free_features(imgs, morph)
    seen, inner = [], prdc_module.to_float_images
    monkeypatch.setattr(prdc_module, "_BLOCK_ELEMENTS", 4 * 8 * 8 * 3)  # 4 images' central boxes
    monkeypatch.setattr(prdc_module, "to_float_images", lambda x: seen.append(len(x)) or inner(x))
    np.testing.assert_array_equal(weight_free_features(imgs, morph), whole)
    assert max(seen) == 4 and sum(seen) == 10


def test_weight_free_features_refuses_bad_input():
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        weight_free_features(np.zeros((3, 8, 8, 1)), {"gini": np.zeros(4)})
    with pytest.raises(ValueError, match="expected images"):
        weight_free_features(np.zeros((8, 8)))


def test_prdc_refuses_bad_input():
    rng = np.random.default_rng(4)
    real, fake = rng.normal(size=(20, 3)), rng.normal(size=(20, 3))
    bad = fake.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"fake has 1 row\(s\) with NaN.*impute"):
        prdc(real, bad)
    with pytest.raises(ValueError, match="same feature size"):
        prdc(real, fake[:, :2])
    with pytest.raises(ValueError, match="2D"):
        prdc(real[:, 0], fake)
    with pytest.raises(ValueError, match="at least 6 real samples"):
        prdc(real[:5], fake)
    with pytest.raises(ValueError, match="at least 4 fake samples"):
        prdc(real, fake[:3])
    with pytest.raises(ValueError, match="at least 6 real samples"):
        prdc(real, fake, max_samples=5)
    with pytest.raises(ValueError, match="nearest_k_pr must be a positive integer"):
        prdc(real, fake, nearest_k_pr=0)
    with pytest.raises(ValueError, match="max_samples"):
        prdc(real, fake, max_samples=0)
    with pytest.raises(ValueError, match="chunk_size"):
        prdc(real, fake, chunk_size=0)
    with pytest.raises(ValueError, match="at least k \\+ 1 = 4 rows"):
        knn_radii(real[:3], 3)
    with pytest.raises(ValueError, match="NaN or inf"):
        knn_radii(np.array([[0.0], [np.inf], [1.0]]), 1)
