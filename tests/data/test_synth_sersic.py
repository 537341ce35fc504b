"""Sérsic synthesis: shapes, reproducibility, the parameters table, and the physics of the renders."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from scipy.stats import spearmanr

from astrogan.data.synthetic import render_sersic, synth_sersic
from astrogan.utils.errors import UserError


def _elliptical_radius(shape: tuple[int, int], q: float, pa_deg: float) -> np.ndarray:
    """Circularised radius sqrt(q x'^2 + y'^2 / q) of every pixel about the stamp centre."""
    h, w = shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    dx, dy = x - (w - 1) / 2, y - (h - 1) / 2
    b = np.deg2rad(pa_deg)
    xp = dx * np.cos(b) + dy * np.sin(b)
    yp = -dx * np.sin(b) + dy * np.cos(b)
    return np.sqrt(q * xp**2 + yp**2 / q)


def _radius_enclosing(img: np.ndarray, r: np.ndarray, frac: float) -> float:
    order = np.argsort(r.ravel())
    cum = np.cumsum(img.ravel()[order])
    cum /= cum[-1]
    return float(np.interp(frac, cum, r.ravel()[order]))


def test_shapes_dtypes_and_params() -> None:
    images, params = render_sersic(5, image_size=32, seed=1, bands=3, num_workers=1)
    assert images.shape == (5, 3, 32, 32) and images.dtype == np.float32
    for key in (
        "sersic_n",
        "half_light_radius_arcsec",
        "half_light_radius_px",
        "q",
        "ellipticity",
        "position_angle_deg",
        "flux",
        "flux_ratio_1",
        "flux_ratio_2",
        "psf_fwhm_px",
        "noise_sigma",
        "seed",
    ):
        assert params[key].shape == (5,), key
    assert "flux_ratio_3" not in params
    assert np.all((params["sersic_n"] >= 0.5) & (params["sersic_n"] <= 6))
    assert np.all((params["q"] >= 0.2) & (params["q"] <= 1))
    assert np.allclose(params["ellipticity"], 1 - params["q"])
    assert np.all((params["position_angle_deg"] >= 0) & (params["position_angle_deg"] < 180))
    assert np.allclose(params["half_light_radius_arcsec"], params["half_light_radius_px"] * 0.262)
    assert np.all(params["noise_sigma"] == 2.0)
    # Band k carries flux_ratio_k times the flux of band 0 (same shape, noise aside).
    ratio = images[:, 1].sum(axis=(1, 2)) / images[:, 0].sum(axis=(1, 2))
    bright = params["flux"] > 3000
    assert np.allclose(ratio[bright], params["flux_ratio_1"][bright], rtol=0.05)


@pytest.mark.slow
def test_reproducible_and_independent_of_workers() -> None:
    a, pa = render_sersic(70, image_size=16, seed=7, num_workers=1)
    b, pb = render_sersic(70, image_size=16, seed=7, num_workers=2)
    np.testing.assert_array_equal(a, b)
    for key in pa:
        np.testing.assert_array_equal(pa[key], pb[key])
    # Image i depends only on (seed, i): a shorter run gives the same first images.
    c, _ = render_sersic(3, image_size=16, seed=7, num_workers=1)
    np.testing.assert_array_equal(a[:3], c)
    d, _ = render_sersic(3, image_size=16, seed=8, num_workers=1)
    assert not np.array_equal(c, d)


def test_half_light_radius_matches_when_noiseless_and_psf_free() -> None:
    images, p = render_sersic(24, image_size=64, seed=3, psf=None, noise=None, num_workers=1)
    for i in range(len(images)):
        r = _elliptical_radius(images.shape[2:], p["q"][i], p["position_angle_deg"][i])
        measured = _radius_enclosing(images[i, 0].astype(np.float64), r, 0.5)
        assert measured == pytest.approx(p["half_light_radius_px"][i], rel=0.10), i
        # Noiseless and (nearly) all the light on the stamp.
        assert images[i, 0].sum() == pytest.approx(p["flux"][i], rel=0.03)


@pytest.mark.slow  # heavy: renders many Sersic stamps
def test_higher_sersic_index_is_more_concentrated() -> None:
    images, p = render_sersic(40, image_size=64, seed=11, psf=None, noise=None, num_workers=1)
    conc = []
    for i in range(len(images)):
        r = _elliptical_radius(images.shape[2:], p["q"][i], p["position_angle_deg"][i])
        img = images[i, 0].astype(np.float64)
        conc.append(_radius_enclosing(img, r, 0.8) / _radius_enclosing(img, r, 0.2))
    rho = spearmanr(p["sersic_n"], conc).statistic
    assert rho > 0.8


def test_synth_sersic_writes_stamps_and_params_table(tmp_path) -> None:
    from astropy.io import fits

    out = synth_sersic(tmp_path / "raw", num=6, image_size=16, seed=2, num_workers=1)
    images, params = render_sersic(6, image_size=16, seed=2, num_workers=1)
    with open(out / "params.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["file"] for r in rows] == [f"sersic_{i:06d}.fits" for i in range(6)]
    for i, row in enumerate(rows):
        assert float(row["sersic_n"]) == pytest.approx(params["sersic_n"][i], rel=1e-12)
        assert float(row["flux"]) == pytest.approx(params["flux"][i], rel=1e-12)
        data = fits.getdata(out / row["file"])
        assert data.dtype.kind == "f" and data.shape == (16, 16)
        np.testing.assert_array_equal(data, images[i, 0])
        header = fits.getheader(out / row["file"])
        assert header["SERSIC_N"] == pytest.approx(params["sersic_n"][i])
        assert header["BUNIT"] == "count"  # the unit a science build and astropy read
    # A non-empty folder is never overwritten without asking.
    with pytest.raises(UserError, match="already exists"):
        synth_sersic(out, num=2, image_size=16, num_workers=1)


def test_png_output_with_recorded_stretch(tmp_path) -> None:
    import json

    from PIL import Image

    out = synth_sersic(tmp_path / "png", num=4, image_size=16, seed=0, fmt="png", bands=3, num_workers=1)
    images, _ = render_sersic(4, image_size=16, seed=0, bands=3, num_workers=1)
    stretch = json.loads((out / "stretch.json").read_text())
    png = np.asarray(Image.open(out / "sersic_000001.png"))
    assert png.shape == (16, 16, 3) and png.dtype == np.uint8
    # Undo the documented stretch (and the one row flip) and get the flux back where it is unclipped.
    s, vmax = stretch["softening"], stretch["vmax"]
    back = np.sinh(png[::-1].astype(np.float64) / 255 * np.arcsinh(vmax / s)) * s
    want = np.transpose(images[1], (1, 2, 0))
    inside = (want > 0) & (want < vmax)
    step = np.cosh(np.arcsinh(want / s)) * s * np.arcsinh(vmax / s) / 255  # one grey level in flux
    assert np.all(np.abs(back - want)[inside] <= step[inside])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"psf": "moffat:fwhm=abc"}, "must be a number"),
        ({"psf": "airy:fwhm=2"}, "unknown psf kind"),
        ({"psf": "gaussian:beta=2"}, "bad psf parameter"),
        ({"psf": "moffat:fwhm=1,fwhm_arcsec=2"}, "give the FWHM once, as one of fwhm or fwhm_arcsec"),
        ({"noise": "gaussian:sigma=-1"}, ">= 0"),
        ({"noise": "uniform"}, "unknown noise kind"),
        ({"fmt": "jpeg"}, "fits or png"),
        ({"fmt": "png", "bands": 2}, "1 or 3 bands"),
        ({"pixel_scale_arcsec": float("inf")}, "pixel-scale-arcsec must be a finite number > 0"),
        ({"pixel_scale_arcsec": 0.0}, "pixel-scale-arcsec must be a finite number > 0"),
    ],
)
def test_bad_specs_are_one_line_user_errors(tmp_path, kwargs, match) -> None:
    with pytest.raises(UserError, match=match) as err:
        synth_sersic(tmp_path / "x", num=1, image_size=16, **kwargs)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "x").exists()


def test_overwrite_replaces_only_an_earlier_synth_folder(tmp_path) -> None:
    from astrogan.data.synth_galaxies import make_setup, synth_galaxies

    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    with pytest.raises(UserError, match="holds no synth.json") as err:
        synth_sersic(mine, num=1, image_size=16, num_workers=1, overwrite=True)
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="holds no synth.json"):
        synth_galaxies(mine, num=1, setup=make_setup("g", image_size=16), num_workers=1, overwrite=True)
    assert [p.name for p in mine.iterdir()] == ["thesis.tex"]
    # An earlier synth folder is still replaced when asked.
    out = synth_sersic(tmp_path / "raw", num=2, image_size=16, num_workers=1)
    synth_sersic(out, num=1, image_size=16, num_workers=1, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["params.csv", "sersic_000000.fits", "synth.json"]


def test_out_naming_the_current_folder_is_one_line(tmp_path, monkeypatch) -> None:
    here = tmp_path / "empty"
    here.mkdir()
    monkeypatch.chdir(here)
    for out in (".", str(here), ".."):
        with pytest.raises(UserError, match="is the current folder") as err:
            synth_sersic(out, num=1, image_size=16, num_workers=1, overwrite=True)
        assert "\n" not in str(err.value)
    assert here.is_dir() and not any(here.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]
