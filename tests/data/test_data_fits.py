"""FITS reading, the one row-order flip, and invertible stretches (astrogan.data.fits_io)."""

from __future__ import annotations

import numpy as np
import pytest

from astrogan.data import fits_io
from astrogan.data.preprocess import decode_fits
from astrogan.utils.errors import UserError


def _write_fits(path, data, *, empty_primary=False):
    from astropy.io import fits

    if empty_primary:
        fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data)]).writeto(path)
    else:
        fits.PrimaryHDU(data).writeto(path)


def test_fits_to_image_order_flips_rows_only_and_is_its_own_inverse():
    fits_order = np.array([[1, 2, 3], [4, 5, 6]])  # row 0 = bottom of the sky picture
    img = fits_io.fits_to_image_order(fits_order)
    assert img.tolist() == [[4, 5, 6], [1, 2, 3]]  # top row first, columns untouched
    assert np.array_equal(fits_io.fits_to_image_order(img), fits_order)
    cube = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    flipped = fits_io.fits_to_image_order(cube)
    assert np.array_equal(flipped[:, 0], cube[:, 2]) and np.array_equal(flipped[:, :, 0], cube[:, ::-1, 0])


@pytest.mark.parametrize("kind", ["asinh", "log", "sqrt", "linear"])
def test_stretch_round_trip(kind):
    rng = np.random.default_rng(1)
    flux = rng.gamma(1.5, 10.0, size=(3, 40, 40)).astype(np.float32)
    y, params = fits_io.stretch(flux, kind, black_percentile=0.0, white_percentile=100.0)
    assert y.dtype == np.float32 and y.shape == flux.shape
    assert (
        0.0 <= y.min() and y.max() <= 1.0 and y.max() == pytest.approx(1.0) and y.min() == pytest.approx(0.0)
    )
    back = fits_io.unstretch(y, params)
    np.testing.assert_allclose(back, flux, rtol=1e-4, atol=1e-3 * float(flux.max()))
    assert params["kind"] == kind and params["black"] == pytest.approx(float(flux.min()))


def test_asinh_lifts_faint_flux_and_clips_outside_black_white():
    flux = np.linspace(0.0, 100.0, 101, dtype=np.float32)[None]
    y, params = fits_io.stretch(flux, "asinh", a=0.1, black=10.0, white=90.0)
    assert y[0, 10] == 0.0 and y[0, 90] == pytest.approx(1.0)
    assert y[0, 20] > (20 - 10) / 80  # asinh is above linear for faint flux
    assert np.all(np.diff(y[0]) >= 0)
    back = fits_io.unstretch(y, params)
    np.testing.assert_allclose(back[0, 10:91], flux[0, 10:91], rtol=1e-4, atol=1e-3)
    assert back[0, 0] == pytest.approx(10.0) and back[0, 100] == pytest.approx(90.0, rel=1e-5)


def test_headroom_keeps_the_peak_below_white_and_is_undone_exactly():
    """White at headroom x the percentile's level: a linear stretch with white at the peak puts the peak at
    1 / headroom, so a generator's overshoot of it is kept, not clipped; unstretch still returns the flux."""
    rng = np.random.default_rng(2)
    flux = rng.gamma(1.5, 10.0, size=(32, 32)).astype(np.float32)
    y, params = fits_io.stretch(flux, "linear", black_percentile=0.0, white_percentile=100.0, headroom=1.25)
    assert y.max() == pytest.approx(0.8) and y.min() == pytest.approx(0.0) and params["headroom"] == 1.25
    np.testing.assert_allclose(fits_io.unstretch(y, params), flux, rtol=1e-4, atol=1e-3 * float(flux.max()))
    plain, _ = fits_io.stretch(flux, "linear", black_percentile=0.0, white_percentile=100.0)
    np.testing.assert_allclose(y, plain * 0.8, atol=1e-6)
    for bad in (0.5, float("nan"), float("inf")):
        with pytest.raises(UserError, match="headroom"):
            fits_io.stretch(flux, "linear", headroom=bad)


def test_stretch_ignores_nonfinite_and_rejects_unknown_kind():
    flux = np.ones((8, 8), dtype=np.float32)
    flux[0, 0], flux[1, 1] = np.nan, np.inf
    flux[4:, :] = 5.0
    y, params = fits_io.stretch(flux, "linear", black_percentile=0, white_percentile=100)
    assert np.isfinite(y).all() and y[0, 0] == 0.0 and y[1, 1] == 0.0
    assert params["white"] == 5.0 and params["black"] == 1.0
    with pytest.raises(UserError):
        fits_io.stretch(flux, "cube-root")


def test_read_fits_2d_3d_and_first_hdu_with_data(tmp_path):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    _write_fits(tmp_path / "a.fits", a, empty_primary=True)
    fd = fits_io.read_fits(tmp_path / "a.fits")
    assert fd.hdu_index == 1 and fd.data.shape == (1, 3, 4) and np.array_equal(fd.data[0], a)
    cube = np.random.default_rng(0).random((3, 5, 6)).astype(np.float32)
    cube[1, 2, 3] = np.nan
    _write_fits(tmp_path / "c.fits", cube)
    fd = fits_io.read_fits(tmp_path / "c.fits")
    assert fd.data.shape == (3, 5, 6) and fd.mask.sum() == 1 and fd.mask[1, 2, 3]
    _write_fits(tmp_path / "4d.fits", np.zeros((2, 2, 3, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="4 axes"):
        fits_io.read_fits(tmp_path / "4d.fits")


def test_decode_fits_puts_fits_bottom_row_at_the_top_and_flags_nans(tmp_path):
    data = np.zeros((6, 6), dtype=np.float32)
    data[0, :] = 100.0  # bright BOTTOM row in FITS order
    data[3, 3] = np.nan
    _write_fits(tmp_path / "x.fits", data)
    dec = decode_fits(
        tmp_path / "x.fits",
        stretch_kind="linear",
        stretch_params={"black_percentile": 0.0, "white_percentile": 100.0},
    )
    assert dec.pixels.shape == (6, 6, 1) and dec.pixels.dtype == np.float32
    assert np.all(dec.pixels[-1, :, 0] == 1.0) and np.all(dec.pixels[:-1, :, 0] == 0.0)
    assert "nonfinite-filled:1" in dec.flags and dec.stretch["kind"] == "linear"
