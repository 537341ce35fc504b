"""The fast morphology engine's shortcuts give the same numbers as the plain computations they replace."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from astrogan.metrics.morphology import _reference as ref_impl
from astrogan.metrics.morphology import measure as morph


@pytest.mark.parametrize(("h", "w", "sigma"), [(48, 48, 4.0), (40, 56, 0.3), (32, 32, 20.0), (24, 24, 0.0)])
def test_banded_gaussian_equals_scipy_with_zero_borders(h, w, sigma):
    img = np.random.default_rng(0).normal(size=(h, w))
    want = ndi.gaussian_filter(img, sigma, mode="constant", cval=0.0)
    got = ref_impl._gaussian_filter_zero(img, sigma)
    assert got.dtype == np.float32  # float32 products: the Gini segmap only compares it with its own mean
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6 * np.abs(want).max())


@pytest.mark.parametrize("kwargs", [{}, {"sub_radius": 0.0}, {"elong": 1.8, "theta": 0.7}])
def test_growth_curves_on_the_fine_grid_equal_interpolated_apertures(kwargs):
    rng = np.random.default_rng(1)
    yy, xx = np.indices((40, 40))
    img = np.exp(-np.hypot(xx - 19.3, yy - 20.6) / 4.0) + rng.normal(0, 0.01, (40, 40))
    g = ref_impl._Growth(img, 19.3, 20.6, **kwargs)
    rk, flux, area = g._curves()
    want_flux, want_area = g.flux_area(rk)
    np.testing.assert_allclose(flux, want_flux, rtol=0, atol=1e-9 * np.abs(want_flux).max())
    np.testing.assert_allclose(area, want_area, rtol=0, atol=1e-9 * want_area.max())
    # Apertures grow with radius and end holding the whole image.
    assert np.all(np.diff(area) >= -1e-9)
    assert area[-1] == pytest.approx(img.size, rel=1e-6)


def test_closed_form_shape_matches_eigen_decomposition():
    for x2, y2, xy in [(4.0, 1.0, 0.5), (1.0, 9.0, -2.0), (2.0, 2.0, 0.0)]:
        ell, elong, theta = morph._shape(x2, y2, xy)
        ev = np.sort(np.linalg.eigvalsh(np.array([[x2, xy], [xy, y2]])))[::-1]
        a, b = np.sqrt(ev)
        assert ell == pytest.approx(1 - b / a, abs=1e-12)
        assert elong == pytest.approx(a / b, rel=1e-12)
        assert theta == pytest.approx(0.5 * np.arctan2(2 * xy, x2 - y2), abs=1e-12)
