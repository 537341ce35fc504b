"""The memorization check: copiers score ~1, a perfect generator ~5%, smooth/noise/unrelated images ~0."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from astrogan.metrics.memorization import (
    copy_ratio,
    memorization,
    nearest_k,
    nearest_neighbours,
    reduce_pixels,
)


def _sersic_set(num: int, seed: int, *, noise: bool = True) -> np.ndarray:
    """Noisy (or noiseless) Sérsic-like stamps 24 px, uint8 (N, 24, 24, 1): a real survey in miniature."""
    rng = np.random.default_rng(seed)
    yy, xx = np.indices((24, 24), dtype=np.float64)
    out = np.empty((num, 24, 24, 1), dtype=np.uint8)
    for i in range(num):
        r_e, q, th = rng.uniform(1.5, 5), rng.uniform(0.3, 1), rng.uniform(0, np.pi)
        n = rng.uniform(0.7, 3)
        dx, dy = xx - 11.5 + rng.uniform(-1, 1), yy - 11.5 + rng.uniform(-1, 1)
        xp, yp = dx * np.cos(th) + dy * np.sin(th), -dx * np.sin(th) + dy * np.cos(th)
        img = 200 * np.exp(-2 * n * ((np.hypot(xp, yp / q) / r_e) ** (1 / n) - 1) / 4) / np.exp(n / 2)
        img = img + 20 + (rng.normal(0, 12, img.shape) if noise else 0)
        out[i, ..., 0] = np.clip(img, 0, 255)
    return out


@pytest.fixture(scope="module")
def train() -> np.ndarray:
    return _sersic_set(400, 0)


def test_nearest_k_matches_brute_force():
    rng = np.random.default_rng(0)
    ref, q = rng.normal(size=(70, 6)), rng.normal(size=(33, 6))
    d, i = nearest_k(q, ref, 4, chunk=10)
    full = cdist(q, ref)
    want = np.sort(full, axis=1)[:, :4]
    assert np.allclose(d, want, atol=1e-9) and np.allclose(
        np.take_along_axis(full, i, axis=1), want, atol=1e-9
    )
    # Leave-one-out: a row is never its own neighbour.
    d2, i2 = nearest_k(ref, ref, 3, exclude=np.arange(70), chunk=16)
    assert not (i2 == np.arange(70)[:, None]).any() and (d2[:, 0] > 0).all()
    d1, i1 = nearest_neighbours(ref[[4, 9]], ref)
    assert list(i1) == [4, 9] and np.allclose(d1, 0, atol=1e-6)


def test_copy_ratio_and_reduce_pixels():
    assert np.allclose(copy_ratio(np.array([[0.0, 2.0, 4.0], [3.0, 3.0, 3.0], [0.0, 0.0, 0.0]])), [0, 1, 0])
    x = np.arange(4 * 4, dtype=np.float32).reshape(1, 4, 4, 1)
    r = reduce_pixels(x, size_px=2)
    assert r.shape == (1, 4) and r[0, 0] == np.mean([0, 1, 4, 5])


def test_copier_scores_one(train):
    copies = train[np.random.default_rng(1).choice(len(train), 150)]
    res = memorization(train, copies, rng_seed=0)
    assert res.fraction["pixels"] == 1.0 and res.closest_pairs[0][2] < 1e-6
    assert res.interval["pixels"][0] > 0.95


def test_perfect_generator_scores_the_percentile(train):
    # Fresh galaxies from the same law with new noise: as copy-like as real images are to each other.
    res = memorization(train, _sersic_set(400, 5), rng_seed=0)
    lo, hi = res.interval["pixels"]
    assert 0.01 <= res.fraction["pixels"] <= 0.12 and lo <= 0.05 <= hi
    assert res.num_calibration == 400 and res.threshold["pixels"] > 0.5


def test_denoising_noise_and_unrelated_images_are_not_copies(train):
    # A smooth generator is nearer, in pixels, to every noisy training image than noisy reals are to each
    # other: the old absolute-distance test called that copying (every one of these fell under its
    # threshold). The copy ratio barely moves: without noise in the distances, content differences weigh a
    # little more, so on these very noisy 24 px stamps ~12% fall under the 5% threshold (2% on 64 px stamps).
    smooth = _sersic_set(200, 6, noise=False)
    res = memorization(train, smooth, rng_seed=0)
    assert res.fraction["pixels"] < 0.2
    assert np.mean(res.fake_nn_dist["pixels"] < np.percentile(_loo_nn(train), 5)) > 0.9  # the old test
    noise = np.random.default_rng(2).integers(0, 256, (200, 24, 24, 1), dtype=np.uint8)
    assert memorization(train, noise, rng_seed=0).fraction["pixels"] < 0.02
    flat = np.full((50, 24, 24, 1), 20, dtype=np.uint8)
    assert memorization(train, flat, rng_seed=0).fraction["pixels"] < 0.02


def _loo_nn(x: np.ndarray) -> np.ndarray:
    """Leave-one-out nearest-neighbour distances of a set (the old check's reference)."""
    f = reduce_pixels(x)
    return nearest_k(f, f, 1, exclude=np.arange(len(f)))[0][:, 0]


def test_small_sets_are_refused_with_the_count():
    with pytest.raises(ValueError, match="150 real images are too few.*at least 200"):
        memorization(_sersic_set(150, 0), _sersic_set(10, 1))


def test_feature_space_is_used_when_given(train):
    res = memorization(train, train[:50], features=lambda x: x.reshape(len(x), -1)[:, ::7].astype(float))
    assert res.fraction["features"] == 1.0 and "memorization_fraction_features_high" in res.summary()


def test_reduce_pixels_converts_a_chunk_of_images_at_a_time(monkeypatch):
    """A float64 copy of the whole set (8 bytes per pixel value) is what limited eval's --num."""
    from astrogan.metrics import memorization as mem

    imgs = np.random.default_rng(0).integers(0, 256, (10, 16, 16, 3), dtype=np.uint8)
    whole = reduce_pixels(imgs, size_px=8)
    seen, inner = [], mem.to_float_images
    monkeypatch.setattr(mem, "_CHUNK_VALUES", 4 * 16 * 16 * 3)
    monkeypatch.setattr(mem, "to_float_images", lambda x: seen.append(len(x)) or inner(x))
    np.testing.assert_array_equal(reduce_pixels(imgs, size_px=8), whole)
    assert max(seen) == 4 and sum(seen) == 10
