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
    # The Sérsic index is fitted differently (1D profile vs 2D model); it must rank the galaxies alike.
    assert (np.argsort(fast.values["sersic_n"]) == np.argsort(ref.values["sersic_n"])).all()


def test_statmorph_engine_through_run_metrics():
    from astrogan.metrics.compute import run_metrics

    imgs = _stamps()
    res = run_metrics(["morphology"], imgs, imgs[::-1].copy(), morphology_engine="statmorph", num_workers=1)
    assert res.details["morphology"]["engine"] == "statmorph"
    # The same galaxies in another order: every distance is zero.
    assert res.scalars["morph_w1_mean"] == pytest.approx(0.0, abs=1e-12)
