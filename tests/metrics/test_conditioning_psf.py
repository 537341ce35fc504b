"""The PSF-aware Sérsic fit (`morphology.psf_fit`) on GalSim stamps, and the conditioning metric with a PSF."""

from __future__ import annotations

import numpy as np
import pytest

from astrogan.conditions import CondSpec
from astrogan.metrics.base import Context, StatsCache
from astrogan.metrics.conditioning import ConditioningMetric, closed_loop
from astrogan.metrics.morphology.psf_fit import fit_sersic_psf, psf_kernel
from astrogan.utils.errors import UserError

galsim = pytest.importorskip("galsim")

PSF = "moffat:fwhm=2.0,beta=3.0"
COLUMNS = ("sersic_n", "half_light_radius_px", "q")
# n, circularised half-light radius (px), q, position angle (deg): small galaxies, where the PSF matters.
TRUTH = np.array(
    [
        [1.0, 3.0, 0.5, 30.0],
        [1.5, 4.5, 0.8, 100.0],
        [2.5, 2.8, 0.6, 150.0],
        [3.0, 5.0, 0.9, 60.0],
        [4.0, 3.5, 0.7, 10.0],
        [4.0, 6.0, 0.45, 120.0],
    ]
)


def draw(n: float, r: float, q: float, pa: float, *, trunc: float = 0.0, size: int = 64) -> np.ndarray:
    """A Sérsic stamp of flux 5000 convolved with the Moffat PSF, on a sky of 3 (GalSim draws y up)."""
    gal = galsim.Sersic(n=n, half_light_radius=r, trunc=trunc * r, flux=5000.0)
    gal = galsim.Convolve(gal.shear(q=q, beta=pa * galsim.degrees), galsim.Moffat(beta=3.0, fwhm=2.0))
    return gal.drawImage(nx=size, ny=size, scale=1.0).array + 3.0


@pytest.fixture(scope="module")
def noiseless():
    return np.stack([draw(*t) for t in TRUTH])


@pytest.fixture(scope="module")
def fitted(noiseless):
    return fit_sersic_psf(noiseless, PSF)


def test_noiseless_stamps_give_their_parameters_back(fitted):
    r = fitted
    assert (r["flag"] == 0).all() and r["converged"].all() and not r["on_bound"].any()
    # Measured: n within 2.3%, r_eff within 1.3%, q within 0.4%, angle within 0.1 degree.
    np.testing.assert_allclose(r["n"], TRUTH[:, 0], rtol=0.03)
    np.testing.assert_allclose(r["r_eff"], TRUTH[:, 1], rtol=0.03)
    np.testing.assert_allclose(r["q"], TRUTH[:, 2], rtol=0.02)
    np.testing.assert_allclose(r["r_eff_major"], TRUTH[:, 1] / np.sqrt(TRUTH[:, 2]), rtol=0.03)
    dpa = (r["theta_deg"] - TRUTH[:, 3] + 90.0) % 180.0 - 90.0
    assert np.abs(dpa).max() < 2.0
    np.testing.assert_allclose(r["background"], 3.0, atol=0.01)
    # GalSim centres an even stamp on the corner between its four middle pixels.
    np.testing.assert_allclose(np.c_[r["x0"], r["y0"]], 31.5, atol=0.02)


def test_the_psf_matters(noiseless, fitted):
    plain = fit_sersic_psf(noiseless, None)
    # Without the PSF the flattened core reads as a lower n (median ratio measured 0.43) and the shape
    # as rounder; with it n is right (ratio 1.004).
    ok = plain["flag"] < 2
    assert np.median(plain["n"][ok] / TRUTH[ok, 0]) < 0.8
    assert np.median(fitted["n"] / TRUTH[:, 0]) == pytest.approx(1.0, abs=0.03)
    assert (plain["q"][ok] > TRUTH[ok, 2]).all()
    # The spec string and its kernel are the same PSF.
    again = fit_sersic_psf(noiseless[:2], psf_kernel(PSF, oversample=2))
    np.testing.assert_allclose(again["n"], fitted["n"][:2], rtol=1e-6)


def test_psf_specs_and_kernels_are_checked():
    k = psf_kernel("gaussian:fwhm=2", size_px=9, oversample=3)
    assert k.shape == (27, 27) and k.sum() == pytest.approx(1.0) and k[13, 13] == k.max()
    assert psf_kernel("none") is None and psf_kernel(None) is None
    with pytest.raises(UserError, match="psf kind"):
        psf_kernel("airy:fwhm=2")
    with pytest.raises(UserError, match="odd"):
        fit_sersic_psf(np.zeros((1, 16, 16)), np.ones((4, 4)))
    with pytest.raises(UserError, match=r"\(N, H, W\)"):
        fit_sersic_psf(np.zeros((16, 16)), PSF)


def test_a_truncated_profile_is_fitted_as_one():
    # synth_sersic truncates at 4 r_e (r_e that of the truncated profile): an untruncated fit reads the
    # radius high for a large n (measured 5.7 for 4.0), the truncated one right (4.01).
    x = np.stack([draw(3.5, 4.0, 0.7, 40.0, trunc=4.0), draw(1.5, 5.0, 0.6, 80.0, trunc=4.0)])
    cut = fit_sersic_psf(x, PSF, truncate=4.0)
    np.testing.assert_allclose(cut["r_eff"], [4.0, 5.0], rtol=0.03)
    np.testing.assert_allclose(cut["n"], [3.5, 1.5], rtol=0.03)
    assert fit_sersic_psf(x[:1], PSF)["r_eff"][0] > 1.1 * 4.0
    with pytest.raises(UserError, match="truncate"):
        fit_sersic_psf(x, PSF, truncate=0.5)


def test_blank_noise_and_broken_stamps_are_flagged_not_fatal(noiseless):
    rng = np.random.default_rng(0)
    x = np.stack(
        [
            noiseless[0] + rng.normal(0, 2.0, (64, 64)),
            np.zeros((64, 64)),  # blank
            rng.normal(0, 2.0, (64, 64)),  # pure noise
            np.full((64, 64), np.nan),  # broken
        ]
    )
    r = fit_sersic_psf(x, PSF)
    assert r["flag"].tolist() == [0, 2, 2, 2]
    assert np.isfinite(r["n"][0]) and np.isnan(r["n"][1:]).all() and r["snr"][0] > 50


@pytest.fixture(scope="module")
def stamps():
    """64 noisy stamps as the bench's dataset holds them (linear: black at the 0.5th percentile, white at
    the peak, (N, 64, 64, 1) float32) and their true parameters."""
    from astrogan.data.synthetic import render_sersic

    images, params = render_sersic(64, image_size=64, seed=0, num_workers=1)
    x = images[:, 0].astype(np.float64)
    lo, hi = np.percentile(x, 0.5, axis=(1, 2), keepdims=True), x.max(axis=(1, 2), keepdims=True)
    x = np.clip((x - lo) / (hi - lo), 0.0, 1.0)[..., None].astype(np.float32)
    return x, np.stack([params[c] for c in COLUMNS], axis=1)


def test_closed_loop_with_the_psf_has_the_better_floor(stamps):
    images, asked = stamps
    engine = closed_loop(asked, images, COLUMNS)
    fit = closed_loop(asked, images, COLUMNS, psf=PSF, truncate=4.0)
    # Measured: Spearman n 0.90 -> 0.94, radius 0.88 -> 0.90, q 0.90 -> 0.98; median relative error
    # n 0.39 -> 0.025, radius 0.10 -> 0.015, q 0.125 -> 0.011; 2 of 64 (the faintest) dropped.
    for c in COLUMNS:
        assert fit[c]["spearman"] >= 0.88 and fit[c]["num_used"] >= 56, (c, fit[c])
        assert fit[c]["median_rel_err"] < 0.05 and fit[c]["median_rel_err"] < engine[c]["median_rel_err"], c
        assert "convolved with the PSF" in fit[c]["measured_as"]
    assert fit["sersic_n"]["spearman"] > engine["sersic_n"]["spearman"]
    assert fit["q"]["spearman"] > engine["q"]["spearman"]
    with pytest.raises(UserError, match="needs the images"):
        closed_loop(asked, None, COLUMNS, psf=PSF)


def test_the_metric_takes_its_psf_from_the_context(stamps):
    images, asked = stamps
    spec = CondSpec.from_values(list(COLUMNS), asked)
    ctx = Context(
        images[:24],
        images[24:48],
        cache=StatsCache(None, None),
        cond_spec=spec,
        real_cond=asked[:24],
        fake_cond=asked[24:48],
        psf=PSF,
    )
    m = ConditioningMetric()
    d = m.compute(ctx)
    js = m.to_json(d)
    assert js["psf"] == PSF
    assert "convolved with the PSF" in js["columns"]["sersic_n"]["generated"]["measured_as"]
    assert js["columns"]["q"]["real"]["spearman"] > 0.8
    assert PSF in m.section(d)
