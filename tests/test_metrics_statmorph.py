"""The fast morphology engine agrees with statmorph (the reference) on a handful of galaxies."""

from __future__ import annotations

import numpy as np
import pytest

from astrogan.metrics.morphology import measure_morphology, sersic_profile

pytest.importorskip("statmorph")


def _stamps() -> np.ndarray:
    rng = np.random.default_rng(0)
    size = 40
    yy, xx = np.indices((size, size), dtype=np.float64)
    out = []
    for n, r_eff, q, th in [(1.0, 3.0, 0.6, 0.3), (2.5, 4.0, 0.9, 1.0), (4.0, 2.5, 0.7, 2.0), (0.7, 5.0, 0.5, 0.8)]:
        dx, dy = xx - 19.3, yy - 20.2
        xp, yp = dx * np.cos(th) + dy * np.sin(th), -dx * np.sin(th) + dy * np.cos(th)
        img = 50 * sersic_profile(np.hypot(xp, yp / q), n=n, r_eff=r_eff) / sersic_profile(0.5, n=n, r_eff=r_eff)
        out.append(img + rng.normal(0, 0.5, img.shape))
    return np.stack(out)


def test_fast_engine_matches_statmorph_on_sersic_stamps():
    from astrogan.metrics.morphology_statmorph import measure_morphology_statmorph

    imgs = _stamps()
    fast = measure_morphology(imgs)
    ref = measure_morphology_statmorph(imgs, num_workers=1)
    assert (fast.flag < 2).all() and (ref.flag < 2).all()
    tol = {"gini": 0.02, "m20": 0.05, "concentration": 0.1, "r50": 0.1, "rpetro_circ": 0.3,
           "ellipticity": 1e-6, "orientation": 1e-6, "xc_centroid": 1e-6}
    for k, t in tol.items():
        assert np.allclose(fast.values[k], ref.values[k], atol=t), (k, fast.values[k], ref.values[k])
    # The same 2D Sérsic model from the same start: the same optimum (pixels far out are fitted in blocks).
    assert np.allclose(fast.values["sersic_n"], ref.values["sersic_n"], rtol=0.03), (
        fast.values["sersic_n"], ref.values["sersic_n"])
    assert np.allclose(fast.values["sersic_rhalf"], ref.values["sersic_rhalf"], rtol=0.03)


def test_statmorph_engine_through_run_metrics():
    from astrogan.metrics.compute import run_metrics

    imgs = _stamps()
    res = run_metrics(["morphology"], imgs, imgs[::-1].copy(), morphology_engine="statmorph", num_workers=1)
    assert res.details["morphology"]["engine"] == "statmorph"
    # The same galaxies in another order: every distance is zero.
    assert res.scalars["morph_w1_mean"] == pytest.approx(0.0, abs=1e-12)


def _statmorph_skybox_rule(seg: np.ndarray) -> tuple[int, int, int] | None:
    """statmorph's _slice_skybox written out: the first segmap-free square in a row-major scan."""
    ny, nx = seg.shape
    size = 32
    while True:
        for i in range(0, ny - size):
            for j in range(0, nx - size):
                if not seg[i : i + size, j : j + size].any():
                    return i, j, size
        if size <= 2:
            return None
        size //= 2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_skybox_follows_statmorph_scan(seed):
    from astrogan.metrics.morphology import _skybox

    rng = np.random.default_rng(seed)
    seg = np.zeros((48, 48), dtype=bool)
    for _ in range(4 + 4 * seed):  # a few rectangles, more for later seeds (smaller boxes)
        y, x = rng.integers(0, 44, 2)
        seg[y : y + rng.integers(3, 20), x : x + rng.integers(3, 20)] = True
    img = rng.normal(size=seg.shape)
    box = _skybox(img, seg)
    ref = _statmorph_skybox_rule(seg)
    if ref is None:
        assert box.size == 0
    else:
        i, j, size = ref
        assert box.shape == (size, size)
        assert np.array_equal(box, img[i : i + size, j : j + size])
