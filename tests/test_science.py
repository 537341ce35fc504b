"""The science floor: astropy stretches per band and their inverses, the one flip, FITS out, Lupton composites."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.visualization import AsinhStretch, LogStretch, make_lupton_rgb

from astrogan import science
from astrogan.science import BandStretch, DisplaySpec, ScienceSpec


def _flux(seed: int = 0, shape=(6, 4, 16, 16)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.gamma(1.2, 5.0, size=shape) * np.array([1, 2, 4, 8])[None, :, None, None]).astype(np.float32)


@pytest.mark.parametrize("kind", ["asinh", "log", "sqrt", "linear"])
def test_band_stretch_round_trip_to_float32_rounding(kind):
    flux = _flux()
    st = BandStretch.fit(flux, kind=kind, black_percentile=0.0, white_percentile=100.0)
    assert st.num_bands == 4 and st.white[3] > st.white[0]  # one range per band
    y = st.forward(flux)
    assert y.dtype == np.float32 and 0.0 <= y.min() and y.max() <= 1.0
    back = st.inverse(y)
    span = np.asarray(st.white) - np.asarray(st.black)
    err = np.abs(back - flux) / span[None, :, None, None]
    assert err.max() < 5e-6  # float32 rounding of the stored values, through the inverse's slope


def test_band_stretch_is_astropys_classes_per_band():
    flux = _flux(1)
    st = BandStretch(kind="asinh", a=0.05, black=(0.0, 1.0, 2.0, 3.0), white=(10.0, 20.0, 40.0, 80.0))
    y = st.forward(flux)
    for b in range(4):
        unit = np.clip((flux[:, b] - st.black[b]) / (st.white[b] - st.black[b]), 0, 1)
        np.testing.assert_allclose(y[:, b], AsinhStretch(a=0.05)(unit), rtol=1e-6, atol=1e-7)
    log = BandStretch(kind="log", a=500.0, black=(0.0,) * 4, white=(80.0,) * 4)
    np.testing.assert_allclose(
        log.forward(flux)[:, 2], LogStretch(a=500.0)(np.clip(flux[:, 2] / 80.0, 0, 1)), rtol=1e-6, atol=1e-7
    )
    # Outside [black, white] the stretch clips, and the inverse returns the clip value.
    out = st.inverse(st.forward(np.full((1, 4, 2, 2), 1e6, np.float32)))
    np.testing.assert_allclose(out[0, :, 0, 0], st.white, rtol=1e-6)


def test_stretch_refuses_bad_shapes_and_ranges():
    st = BandStretch(kind="linear", a=1.0, black=(0.0, 0.0), white=(1.0, 1.0))
    with pytest.raises(ValueError, match="2 band"):
        st.forward(np.zeros((3, 8, 8)))
    with pytest.raises(ValueError, match="white > black"):
        BandStretch(kind="linear", a=1.0, black=(1.0,), white=(1.0,))
    with pytest.raises(ValueError, match="unknown stretch"):
        BandStretch(kind="cube", a=1.0, black=(0.0,), white=(1.0,))


def test_spec_dict_round_trip_and_rgb_override():
    st = BandStretch.fit(_flux(), kind="asinh")
    spec = ScienceSpec(
        bands=("g", "r", "i", "z"),
        stretch=st,
        bunit="nanomaggy",
        pixel_scale_arcsec=0.262,
        display=DisplaySpec.fit(_flux(), ("g", "r", "i", "z")),
    )
    back = ScienceSpec.from_dict(spec.to_dict())
    assert back == spec
    assert spec.display is not None and spec.display.rgb == ("i", "r", "g")
    assert spec.with_rgb(("z", "i", "r")).display_or_default().rgb == ("z", "i", "r")
    with pytest.raises(ValueError, match="--rgb"):
        spec.with_rgb(("u", "r", "g"))
    with pytest.raises(ValueError, match="--rgb"):
        spec.with_rgb(("", "r", "g"))
    with pytest.raises(ValueError, match="--rgb"):  # a recorded mapping must name the spec's bands
        ScienceSpec(
            bands=("g", "r"),
            stretch=BandStretch.fit(_flux()[:, :2]),
            display=DisplaySpec(rgb=("i", "r", "g")),
        )
    assert ScienceSpec.from_dict(None) is None


def test_default_rgb_orders_by_wavelength():
    assert science.default_rgb(["g", "r", "i", "z"]) == ("i", "r", "g")
    assert science.default_rgb(["z", "r", "g"]) == ("z", "r", "g")
    assert science.default_rgb(["F814W", "F606W", "F435W"]) == ("F814W", "F606W", "F435W")
    assert science.default_rgb(["a", "b", "c", "d", "e"]) == ("c", "b", "a")
    assert science.default_rgb(["x"]) == ("x", "x", "x")
    assert science.default_rgb(["g", "z"]) == ("z", "", "g")
    assert science.blue_to_red(["z", "g", "r"]) == [1, 2, 0] and science.blue_to_red(["b", "a"]) == [0, 1]


def test_lupton_composite_of_known_inputs_matches_astropy():
    bands = ("g", "r", "i")
    st = BandStretch(kind="linear", a=1.0, black=(0.0,) * 3, white=(10.0,) * 3)
    disp = DisplaySpec(rgb=("i", "r", "g"), stretch=2.0, q=8.0)
    spec = ScienceSpec(bands=bands, stretch=st, display=disp)
    flux = np.zeros((1, 3, 4, 4), np.float32)
    flux[0, 2, 0, 0] = 5.0  # only i (shown red) at the top-left pixel
    flux[0, 0, 3, 3] = 5.0  # only g (shown blue) at the bottom-right
    images = st.forward(flux) * 2 - 1
    rgb = science.display_uint8(images, spec)
    assert rgb.shape == (1, 4, 4, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0, 0, 0] > 200 and rgb[0, 0, 0, 1] == 0 and rgb[0, 0, 0, 2] == 0
    assert rgb[0, 3, 3, 2] > 200 and rgb[0, 3, 3, 0] == 0
    expect = make_lupton_rgb(flux[0, 2], flux[0, 1], flux[0, 0], minimum=0.0, stretch=2.0, Q=8.0)
    np.testing.assert_array_equal(rgb[0], expect)
    grey = science.display_uint8(images, spec, band="i")
    assert grey.shape == (1, 4, 4, 1) and grey[0, 0, 0, 0] == 255 // 2 + 1  # 5 of 10 -> 0.5 -> 128
    with pytest.raises(ValueError, match="unknown band"):
        science.display_uint8(images, spec, band="q")


def test_display_without_spec_is_plain_uint8_and_refuses_many_bands():
    x = np.zeros((2, 3, 4, 4), np.float32)
    assert science.display_uint8(x).shape == (2, 4, 4, 3)
    with pytest.raises(ValueError, match="science spec"):
        science.display_uint8(np.zeros((1, 5, 4, 4), np.float32))


def test_fits_out_marker_pixel_and_header(tmp_path):
    st = BandStretch(kind="asinh", a=0.1, black=(0.0, 0.0), white=(100.0, 50.0))
    spec = ScienceSpec(bands=("g", "r"), stretch=st, bunit="nJy", pixel_scale_arcsec=0.03)
    cube = np.zeros((2, 5, 7), np.float32)  # image order: row 0 on top
    cube[:, -1, 0] = 42.0  # bottom-left in the picture = FITS row 0, column 0
    cards = science.fits_header_cards(spec, runid="00003-x", step=(1200, "training step"), seed=7, trunc=None)
    path = tmp_path / "g.fits"
    science.write_fits(path, cube, cards)
    with fits.open(path) as hdul:
        data, hdr = hdul[0].data, hdul[0].header
        assert data.dtype.byteorder in (">", "=", "|") and data.dtype.kind == "f" and data.dtype.itemsize == 4
        assert data.shape == (2, 5, 7) and data[0, 0, 0] == 42.0 and data[1, 0, 0] == 42.0
        assert hdr["BANDS"] == "g,r" and hdr["BAND2"] == "r" and hdr["BUNIT"] == "nJy"
        assert hdr["PIXSCALE"] == pytest.approx(0.03) and hdr["RUNID"] == "00003-x" and hdr["STEP"] == 1200
        assert hdr["SEED"] == 7 and "TRUNC" not in hdr
    long = science.fits_header_cards(None, cond_sersic_n=1.5, cond_sersic_r=3.0)
    science.write_fits(tmp_path / "h.fits", cube, long)
    with fits.open(tmp_path / "h.fits") as hdul:  # long keys are kept whole (HIERARCH), so they never clash
        assert hdul[0].header["COND_SERSIC_N"] == 1.5 and hdul[0].header["COND_SERSIC_R"] == 3.0
    assert science.fits_bytes(cube, cards)[:6] == b"SIMPLE"
    assert not list(tmp_path.glob(".*"))  # nothing half-written left beside it


def test_model_to_flux_undoes_the_stretch():
    flux = _flux(2)
    st = BandStretch.fit(flux, black_percentile=0, white_percentile=100)
    spec = ScienceSpec(bands=("g", "r", "i", "z"), stretch=st)
    images = (st.forward(flux) * 2 - 1).astype(np.float32)  # as the training tensor holds them
    back = science.model_to_flux(images, spec)
    span = (np.asarray(st.white) - np.asarray(st.black))[None, :, None, None]
    assert (np.abs(back - flux) / span).max() < 1e-5


def test_display_fit_balances_bands_and_darkens_the_sky():
    rng = np.random.default_rng(3)
    n, size = 16, 24
    yy, xx = np.mgrid[:size, :size]
    blob = np.exp(-((yy - 12) ** 2 + (xx - 12) ** 2) / 8.0)
    # g faint, i bright (a red population), a sky level per band and noise of 0.01
    flux = np.stack([f * blob + sky for f, sky in ((1.0, 0.1), (2.0, 0.2), (4.0, 0.3))])[None].repeat(n, 0)
    flux = flux + rng.normal(0, 0.01, flux.shape)
    disp = DisplaySpec.fit(flux, ("g", "r", "i"))
    assert disp.rgb == ("i", "r", "g")
    assert disp.minimum["g"] == pytest.approx(0.1, abs=0.01) and disp.minimum["i"] == pytest.approx(
        0.3, abs=0.01
    )
    assert (
        disp.scale["r"] == 1.0
        and disp.scale["g"] == pytest.approx(2.0, rel=0.1)
        and disp.scale["i"] == pytest.approx(0.5, rel=0.1)
    )
    spec = ScienceSpec(
        bands=("g", "r", "i"),
        stretch=BandStretch.fit(flux, black_percentile=0, white_percentile=100),
        display=disp,
    )
    rgb = science.display_uint8(spec.stretch.forward(flux) * 2 - 1, spec).astype(int)
    centre, corner = rgb[:, 12, 12], rgb[:, 0:3, 0:3].reshape(n, -1, 3)
    assert np.abs(centre[:, 0] - centre[:, 2]).max() < 40  # the typical galaxy of the sample comes out grey
    assert centre.min() > 150 and np.median(corner) < 60  # bright galaxy, dark sky
    # picking other bands keeps each band's own sky and balance
    assert spec.with_rgb(("r", "", "g")).display_or_default().minimum["g"] == disp.minimum["g"]
