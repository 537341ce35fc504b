"""The memorization check flags a generator that returns its training images."""

from __future__ import annotations

import numpy as np

from astrogan.metrics.memorization import memorization, nearest_neighbours, reduce_pixels


def _blobs(num: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.indices((16, 16))
    out = np.empty((num, 16, 16, 1), dtype=np.uint8)
    for i in range(num):
        cx, cy, s = rng.uniform(4, 12), rng.uniform(4, 12), rng.uniform(1.5, 4)
        img = 200 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s)) + rng.normal(0, 8, (16, 16))
        out[i, ..., 0] = np.clip(img + 20, 0, 255)
    return out


def test_nearest_neighbours_finds_exact_copies():
    ref = np.random.default_rng(0).normal(size=(30, 5))
    d, i = nearest_neighbours(ref[[4, 9]], ref)
    assert list(i) == [4, 9] and np.allclose(d, 0, atol=1e-6)


def test_reduce_pixels_block_averages():
    x = np.arange(4 * 4, dtype=np.float32).reshape(1, 4, 4, 1)
    r = reduce_pixels(x, size_px=2)
    assert r.shape == (1, 4) and r[0, 0] == np.mean([0, 1, 4, 5])


def test_copying_generator_is_flagged_and_honest_one_is_not():
    train = _blobs(80, 0)
    copies = train[np.random.default_rng(1).choice(80, 40)]
    res = memorization(train, copies, rng_seed=0)
    # Copies of held-out images are not in the training part; every other copy must be flagged.
    held = set(range(80)) - set(res.train_index.tolist())
    expected = np.mean([i not in held for i in np.random.default_rng(1).choice(80, 40)])
    assert res.fraction["pixels"] >= expected - 1e-9 and res.fraction["pixels"] > 0.7
    assert res.closest_pairs[0][2] < 1e-6 and len(res.closest_pairs) == 16
    fresh = memorization(train, _blobs(40, 7), rng_seed=0)
    assert fresh.fraction["pixels"] < 0.25
    assert fresh.summary()["memorization_fraction"] == fresh.fraction["pixels"]


def test_feature_space_is_used_when_given():
    train = _blobs(30, 3)
    res = memorization(train, train[:10], features=lambda x: x.reshape(len(x), -1)[:, ::7].astype(float))
    assert "features" in res.fraction and res.fraction["features"] > 0.5
