"""The batched 2D Sérsic fit: exact recovery of an exact model, batch independence, binning bookkeeping."""

from __future__ import annotations

import numpy as np
import pytest

from astrogan.metrics.morphology import _reference as ref_impl
from astrogan.metrics.morphology import sersic as ms
from astrogan.metrics.morphology import sersic_profile


def _sersic2d(p: np.ndarray, h: int, w: int) -> np.ndarray:
    """astropy's Sersic2D at pixel centres: p = (amplitude, r_eff, n, x_0, y_0, ellip, theta)."""
    amp, re, n, x0, y0, e, th = p
    yy, xx = np.indices((h, w), dtype=np.float64)
    dx, dy = xx - x0, yy - y0
    xm, ym = dx * np.cos(th) + dy * np.sin(th), dy * np.cos(th) - dx * np.sin(th)
    return sersic_profile(np.hypot(xm, ym / (1 - e)), n=n, r_eff=re, amplitude=amp)


TRUE = np.array(
    [
        [2.0, 6.0, 1.0, 30.2, 31.7, 0.3, 0.5],
        [1.0, 4.0, 3.5, 33.6, 29.1, 0.55, -0.9],
        [5.0, 9.0, 0.6, 31.0, 32.4, 0.1, 1.2],
    ]
)


def test_fit_recovers_an_exact_model_from_statmorph_like_starts():
    stamps = [_sersic2d(p, 64, 64) for p in TRUE]
    # Starts like statmorph's: n in [1, 3.5], radius and centre off by a fraction, amplitude rough.
    start = TRUE * [0.7, 1.2, 1.0, 1.0, 1.0, 0.8, 1.0] + [0, 0, 0, 0.6, -0.4, 0.05, 0.1]
    start[:, 2] = [2.0, 2.5, 1.0]
    p, flag = ms.fit_sersic_2d(stamps, start)
    assert (flag == 0).all()
    # Blocks far out are fitted at their mean position: close to, not exactly, the pixel optimum.
    np.testing.assert_allclose(p[:, [1, 2, 5]], TRUE[:, [1, 2, 5]], rtol=0.02)
    np.testing.assert_allclose(p[:, 3:5], TRUE[:, 3:5], atol=0.02)
    # Without blocks (every pixel on its own) the optimum is the true model itself.
    p_full, _ = ms.fit_sersic_2d(stamps, start, full_res_px=1e6)
    np.testing.assert_allclose(p_full[:, :6], TRUE[:, :6], rtol=1e-4, atol=1e-4)


def test_batch_fits_equal_one_by_one_fits():
    rng = np.random.default_rng(0)
    stamps = [_sersic2d(p, 64, 64) + rng.normal(0, 0.01, (64, 64)) for p in TRUE]
    stamps.append(_sersic2d(TRUE[0], 48, 56))  # another stamp size in the same batch
    start = np.vstack([TRUE, TRUE[:1]]) * 1.1
    together, flag_t = ms.fit_sersic_2d(stamps, start)
    for i, s in enumerate(stamps):
        alone, flag_a = ms.fit_sersic_2d([s], start[i : i + 1])
        np.testing.assert_allclose(alone[0], together[i], rtol=1e-6, atol=1e-8)
        assert flag_a[0] == flag_t[i]


def test_binned_stamp_keeps_every_valid_pixel_once():
    rng = np.random.default_rng(2)
    stamp = rng.normal(size=(50, 61))
    stamp[rng.random(stamp.shape) < 0.1] = 0.0  # masked pixels (statmorph gives them no weight)
    out = ref_impl._bin_stamp(stamp, 20.3, 27.8, 4.0)
    x, y, count, mean = out
    assert count.sum() == np.count_nonzero(stamp)
    assert (mean * count).sum() == pytest.approx(stamp.sum())
    yy, xx = np.nonzero(stamp)
    assert (x * count).sum() == pytest.approx(xx.sum()) and (y * count).sum() == pytest.approx(yy.sum())
    # Single pixels near the centre, blocks of up to 64 pixels far from it.
    near = np.hypot(x - 20.3, y - 27.8) < 4
    assert (count[near] == 1).all() and 32 < count.max() <= 64


def test_degenerate_stamps_are_flagged_not_raised():
    flat = np.zeros((32, 32))
    flat[10:20, 10:20] = 1.0
    p, flag = ms.fit_sersic_2d([flat, np.full((32, 32), np.nan)], np.array([[1, 3, 2, 15, 15, 0.1, 0.0]] * 2))
    assert flag[1] == 2 and np.isnan(p[1]).all()
    # A flat box is no Sérsic profile: the fit runs to the edge of its box and says so (suspect);
    # every parameter stays in the box (unbounded, r_eff reached 5e12 px here).
    lo, hi = ms._param_box(np.array([[0, 32, 0, 32]]))
    assert flag[0] == 1 and (np.isclose(p[0, :3], lo[0, :3]) | np.isclose(p[0, :3], hi[0, :3])).any()
    assert 0 < p[0, 1] <= 5 * 64 and 0.01 <= p[0, 2] <= 10 and p[0, 0] > 0  # 5: ellipticity -4 swapped
    assert ms.fit_sersic_2d([], np.zeros((0, 7)))[0].shape == (0, 7)


def test_binned_frames_equal_binned_stamps():
    """The batched binning (stamps inside zero frames) gives each stamp's own super-pixels."""
    rng = np.random.default_rng(4)
    frames = np.zeros((4, 50, 60))
    bounds = np.array([[2, 45, 3, 57], [0, 50, 0, 60], [5, 40, 10, 50], [1, 33, 7, 44]])
    xc, yc = np.array([20.3, 30.7, 15.2, 17.0]), np.array([21.6, 24.1, 17.9, 12.5])
    for i, (y0, y1, x0, x1) in enumerate(bounds):
        frames[i, y0:y1, x0:x1] = rng.normal(size=(y1 - y0, x1 - x0))
    x, y, sw, zsw = ms._bin_frames(frames, bounds, xc, yc, 4.0)
    for i, (y0, y1, x0, x1) in enumerate(bounds):
        want = ref_impl._bin_stamp(frames[i, y0:y1, x0:x1], xc[i], yc[i], 4.0)
        m = sw[i] > 0
        assert m.sum() == want.shape[1] and not m[m.sum() :].any()
        np.testing.assert_allclose(
            np.stack([x[i, m], y[i, m], sw[i, m] ** 2, zsw[i, m] / sw[i, m]]), want, rtol=1e-12
        )
        # The centre's block is split into single pixels.
        assert (want[2][np.hypot(want[0] - xc[i], want[1] - yc[i]) < 1.5] == 1).all()
