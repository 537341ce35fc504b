"""The lockstep asymmetry search finds what the plain per-galaxy search finds, alone or in any batch."""

from __future__ import annotations

import numpy as np
import pytest

from astrogan.metrics.morphology._reference import _asymmetry_search
from astrogan.metrics.morphology.asymmetry import asymmetry_search_batch


def _problems():
    """Stamps and search settings that exercise every path: interior and border windows, apertures
    larger than the stamp, apertures without deep pixels, walks that drift or run out of tries."""
    rng = np.random.default_rng(3)
    out = []
    for k in range(14):
        h, w = (48, 48) if k % 3 else (40, 56)
        yy, xx = np.indices((h, w), dtype=np.float64)
        cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h
        q, th = rng.uniform(0.4, 1.0), rng.uniform(0, np.pi)
        dx, dy = xx - cx, yy - cy
        r = np.hypot(dx * np.cos(th) + dy * np.sin(th), (dy * np.cos(th) - dx * np.sin(th)) / q)
        img = 50 * np.exp(-r / rng.uniform(1.5, 6)) + 8 * np.exp(
            -np.hypot(xx - rng.uniform(0, w), yy - cy) / 2
        )
        img += rng.normal(0, 0.5, img.shape)
        r_ap = [1.2, 4.0, 9.0, 15.0, 24.0, 40.0, 70.0][k % 7]
        x0, y0 = cx + rng.uniform(-3, 3), cy + rng.uniform(-3, 3)
        reach = 1.0 if k % 5 == 0 else max(1.0, r_ap / 6)
        out.append((img, x0, y0, r_ap, float(rng.uniform(0, 0.5)), reach))
    return out


def _batch(problems):
    imgs = [p[0] for p in problems]
    cols = [np.array([p[i] for p in problems]) for i in range(1, 6)]
    return asymmetry_search_batch(imgs, *cols)


def test_lockstep_search_equals_the_per_galaxy_search():
    problems = _problems()
    asym, xc, yc, drifted = _batch(problems)
    for k, (img, x0, y0, r_ap, sky, reach) in enumerate(problems):
        want = _asymmetry_search(img, x0, y0, r_ap, sky, reach_px=reach)
        # float32 sums in another order: the same walk, scores equal to rounding.
        assert asym[k] == pytest.approx(want[0], abs=1e-5, rel=1e-5), k
        assert (xc[k], yc[k]) == pytest.approx(want[1:3], abs=1e-3), k
        assert drifted[k] == want[3], k
    assert drifted.any() and not drifted.all()  # both outcomes are exercised


def test_a_galaxy_gets_the_same_numbers_alone_and_in_any_batch():
    problems = _problems()
    together = np.stack(_batch(problems))
    for k in (0, 5, 11):
        alone = np.stack(_batch(problems[k : k + 1]))[:, 0]
        np.testing.assert_array_equal(alone, together[:, k])
    reordered = np.stack(_batch(problems[::-1]))[:, ::-1]
    np.testing.assert_array_equal(reordered, together)


@pytest.mark.parametrize(
    ("centre", "max_asym", "tol"), [((20.5, 19.5), 1e-6, 1e-9), ((20.3, 19.6), 0.02, 0.03)]
)
def test_a_symmetric_galaxy_is_found_at_its_centre(centre, max_asym, tol):
    # On the half-pixel grid the rotation is an exact flip (A = 0); off it, bilinear rotation blurs
    # the cusp a little (A ~ 0.01), and the quadratic step still lands within a few hundredths of a px.
    yy, xx = np.indices((41, 41), dtype=np.float64)
    img = 100 * np.exp(-np.hypot(xx - centre[0], yy - centre[1]) / 3.0)
    asym, xc, yc, drifted = asymmetry_search_batch(
        [img], *(np.array([v]) for v in (19.0, 21.0, 12.0, 0.0, 3.0))
    )
    assert abs(asym[0]) <= max_asym
    assert (xc[0], yc[0]) == pytest.approx(centre, abs=tol)
    assert not drifted[0]
