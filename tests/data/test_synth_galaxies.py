"""Bulge + disc multi-band synthesis: files, headers, determinism, colours, PSF, noise, orientation, fast path."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from astrogan.data import synth_galaxies as sg
from astrogan.utils.errors import UserError

BANDS = ("g", "r", "i", "z")


def _setup(size: int = 32, **kw: object) -> sg.GalaxySetup:
    return sg.make_setup(",".join(BANDS), image_size=size, **kw)  # type: ignore[arg-type]


def _galaxy(setup: sg.GalaxySetup, **override: object) -> dict:
    """A round, centred, mid-B/T galaxy at z = 0.3 (any field can be overridden)."""
    p = sg.draw_galaxy_params(0, 0, setup=setup)
    p.update(
        redshift=0.3,
        bulge_fraction=0.5,
        ref_mag=18.0,
        bulge_n=4.0,
        bulge_hlr_arcsec=0.3,
        bulge_q=1.0,
        disc_hlr_arcsec=1.2,
        disc_q=1.0,
        centre_dx_px=0.0,
        centre_dy_px=0.0,
        disc_sed="Sbc",
    )
    p.update(override)
    return p


def _radius(size: int) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size]
    c = (size - 1) / 2
    return np.hypot(x - c, y - c)


def _colour(cube: np.ndarray, mask: np.ndarray, blue: int, red: int) -> float:
    return float(-2.5 * np.log10(cube[blue][mask].sum() / cube[red][mask].sum()))


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_folder_files_headers_and_params(tmp_path: Path) -> None:
    from astropy.io import fits

    setup = _setup(24, seed=3)
    out = sg.synth_galaxies(tmp_path / "gal", num=3, setup=setup, num_workers=1)
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "galaxy_000000.fits",
        "galaxy_000001.fits",
        "galaxy_000002.fits",
        "params.csv",
        "synth.json",
    ]
    rows = _read_csv(out / "params.csv")
    assert [r["file"] for r in rows] == names[:3]
    for col in (
        "bulge_fraction", "bulge_n", "bulge_hlr_arcsec", "bulge_hlr_px", "disc_hlr_arcsec", "disc_hlr_px",
        "bulge_q", "disc_q", "position_angle_deg", "redshift", "seed", "g_mag", "z_mag", "g_minus_r",
        "r_minus_i", "g_minus_i", "i_minus_z", "g_psf_fwhm_arcsec", "z_noise_sigma_nmgy", "r_bulge_fraction",
    ):  # fmt: skip
        assert col in rows[0], col
    images, truth = sg.render_galaxies(3, setup, num_workers=1)
    for k, row in enumerate(rows):
        with fits.open(out / row["file"]) as hdul:
            data, h = hdul[0].data, hdul[0].header
        assert data.shape == (4, 24, 24) and data.dtype.kind == "f" and data.dtype.itemsize == 4
        # Written in GalSim's (= FITS) order: no flip on the way out.
        np.testing.assert_array_equal(data, images[k])
        assert h["BANDS"] == "g,r,i,z" and [h[f"BAND{i}"] for i in range(1, 5)] == list(BANDS)
        assert h["BUNIT"] == "nanomaggy" and h["MAGZP"] == 22.5 and h["PIXSCALE"] == 0.2
        for i, b in enumerate(BANDS, start=1):
            assert h[f"FWHM{i}"] == pytest.approx(float(row[f"{b}_psf_fwhm_arcsec"]))
            assert h[f"NOISE{i}"] == pytest.approx(float(row[f"{b}_noise_sigma_nmgy"]))
            assert h[f"MAG{i}"] == pytest.approx(float(row[f"{b}_mag"]))
        assert h["BT"] == pytest.approx(float(row["bulge_fraction"]))
        assert h["REDSHIFT"] == pytest.approx(float(row["redshift"]))
        assert h["SEED"] == int(row["seed"]) == truth[k]["seed"]
        # B/T is set in LSST r; colours are differences of the true magnitudes.
        assert float(row["r_bulge_fraction"]) == pytest.approx(float(row["bulge_fraction"]), abs=1e-9)
        assert float(row["g_minus_i"]) == pytest.approx(float(row["g_mag"]) - float(row["i_mag"]), abs=1e-9)
        assert float(row["bulge_hlr_px"]) == pytest.approx(float(row["bulge_hlr_arcsec"]) / 0.2)
        assert 0 <= float(row["bulge_fraction"]) <= 1 and 0.05 <= float(row["redshift"]) <= 0.8
        assert 2.5 <= float(row["bulge_n"]) <= 5 and float(row["bulge_hlr_px"]) < float(row["disc_hlr_px"])
        assert float(row["disc_q"]) <= float(row["bulge_q"]) <= 1
        assert 17 <= float(row["r_mag"]) <= 21
    meta = json.loads((out / "synth.json").read_text())
    assert meta["generator"] == "astrogan.data.synth_galaxies.synth_galaxies"
    assert meta["bands"] == list(BANDS) and meta["seed"] == 3 and meta["bunit"] == "nanomaggy"
    assert meta["licence"] and "row 0" in meta["orientation"] and meta["params_file"] == "params.csv"
    assert meta["noise_sigma_nmgy"]["z"] == pytest.approx(float(rows[0]["z_noise_sigma_nmgy"]))


@pytest.mark.slow  # a pool of spawned workers
def test_same_seed_same_files_whatever_workers_or_num(tmp_path: Path) -> None:
    setup = sg.make_setup("g,i", image_size=16, seed=11)
    one = sg.synth_galaxies(tmp_path / "w1", num=5, setup=setup, num_workers=1, chunk_size=2)
    two = sg.synth_galaxies(tmp_path / "w2", num=5, setup=setup, num_workers=2, chunk_size=2)
    short = sg.synth_galaxies(tmp_path / "n3", num=3, setup=setup, num_workers=1)
    for name in sorted(p.name for p in one.iterdir()):
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    for k in range(3):  # galaxy k does not depend on --num either
        name = f"galaxy_{k:06d}.fits"
        assert (short / name).read_bytes() == (one / name).read_bytes()
    other = sg.render_galaxies(1, sg.make_setup("g,i", image_size=16, seed=12), num_workers=1)[0]
    assert not np.array_equal(other[0], sg.render_galaxies(1, setup, num_workers=1)[0][0])
    # A band's noise is seeded by its name: galaxy 0's i plane is the same drawn alone or with g.
    alone = sg.render_galaxies(1, sg.make_setup("i", image_size=16, seed=11), num_workers=1)[0]
    np.testing.assert_array_equal(alone[0, 0], sg.render_galaxies(1, setup, num_workers=1)[0][0, 1])


def test_bulge_dominated_centre_is_redder_than_the_disc_outskirts() -> None:
    setup = _setup(48, noise="none")
    r = _radius(48)
    inner, outer = r < 2, (r > 6) & (r < 12)
    g, i = BANDS.index("g"), BANDS.index("i")
    gradient = {}
    for bt in (0.0, 0.5, 1.0):
        cube = sg.render_galaxy(_galaxy(setup, bulge_fraction=bt), setup, noise=False)
        gradient[bt] = _colour(cube, inner, g, i) - _colour(cube, outer, g, i)
    # Mid B/T: the red bulge rules the centre, the blue disc the outskirts (0.52 mag measured).
    assert gradient[0.5] > 0.35
    # One component alone has only the PSF's small chromatic gradient (g's PSF is wider than i's).
    assert gradient[0.5] > gradient[0.0] + 0.3 and gradient[0.5] > gradient[1.0] + 0.25


@pytest.mark.filterwarnings("error")  # e.g. GalSim's warning of a huge FFT
def test_true_colours_match_aperture_photometry_without_noise() -> None:
    setup = _setup(48, noise="none")
    images, rows = sg.render_galaxies(6, setup, num_workers=1)
    assert images.std(axis=(2, 3)).min() > 0
    for cube, row in zip(images, rows, strict=True):
        mags = 22.5 - 2.5 * np.log10(cube.astype(np.float64).sum(axis=(1, 2)))  # nanomaggies -> AB
        true = np.array([row[f"{b}_mag"] for b in BANDS])
        # The stamp holds nearly all the light (untruncated wings fall outside) ...
        assert np.all((mags - true > -1e-3) & (mags - true < 0.05)), (mags, true)
        # ... and the colours agree closely.
        for blue, red in (("g", "r"), ("r", "i"), ("g", "i"), ("i", "z")):
            measured = mags[BANDS.index(blue)] - mags[BANDS.index(red)]
            assert measured == pytest.approx(row[f"{blue}_minus_{red}"], abs=0.02)


def test_sed_ordering_of_g_minus_i() -> None:
    setup = _setup(48, noise="none")
    whole = _radius(48) < 100

    def g_minus_i(**kw: object) -> tuple[float, float]:
        p = _galaxy(setup, **kw)
        cube = sg.render_galaxy(p, setup, noise=False)
        return sg.band_values(p, setup)["g_minus_i"], _colour(cube, whole, 0, 2)

    bulge = g_minus_i(bulge_fraction=1.0)
    discs = [g_minus_i(bulge_fraction=0.0, disc_sed=s) for s in ("Sbc", "Scd", "Im")]
    # Elliptical redder than Sbc, redder than Scd, redder than Im: in the truths and in the pixels.
    for k in (0, 1):
        values = [bulge[k]] + [d[k] for d in discs]
        assert values == sorted(values, reverse=True) and values[0] - values[-1] > 1.0, values
    # Higher redshift moves the 4000 A break into r: the bulge's g - i grows.
    assert g_minus_i(bulge_fraction=1.0, redshift=0.6)[0] > bulge[0] + 0.3


@pytest.mark.parametrize("psf", ["moffat", "kolmogorov"])
def test_psf_fwhm_per_band_is_what_the_header_says(tmp_path: Path, psf: str) -> None:
    from astropy.io import fits

    # A point-like bulge on a fine grid: its image is the band's PSF (plus a 0.05 arcsec pixel).
    setup = sg.make_setup(",".join(BANDS), image_size=64, pixel_scale_arcsec=0.05, noise="none", psf=psf)
    p = _galaxy(setup, bulge_fraction=1.0, bulge_hlr_arcsec=0.005, bulge_n=2.5)
    cube = sg.render_galaxy(p, setup, noise=False)
    row = {"file": "psf.fits", **sg._row(p, setup)}
    sg._write_cube(tmp_path / "psf.fits", cube, row, setup)
    header = fits.getheader(tmp_path / "psf.fits")
    for k, b in enumerate(BANDS):
        plane = cube[k]
        fwhm = 2 * np.sqrt((plane >= plane.max() / 2).sum() / np.pi) * 0.05  # half-max area -> diameter
        assert fwhm == pytest.approx(header[f"FWHM{k + 1}"], rel=0.03), b
    # Seeing law: FWHM ~ lambda^-0.2, 0.7 arcsec in r.
    assert header["FWHM2"] == pytest.approx(0.7)
    assert header["FWHM1"] > header["FWHM2"] > header["FWHM3"] > header["FWHM4"]


def test_noise_sigma_per_band_matches_the_record() -> None:
    faint = dict(mag_range=(20.0, 21.0), max_offset_px=0.0)
    noisy, rows = sg.render_galaxies(8, _setup(48, **faint), num_workers=1)
    clean, _ = sg.render_galaxies(8, _setup(48, noise="none", **faint), num_workers=1)
    corners = np.zeros((48, 48), bool)
    for ys in (slice(0, 8), slice(-8, None)):
        for xs in (slice(0, 8), slice(-8, None)):
            corners[ys, xs] = True
    for k, b in enumerate(BANDS):
        sigma = rows[0][f"{b}_noise_sigma_nmgy"]
        assert sigma > 0 and all(r[f"{b}_noise_sigma_nmgy"] == sigma for r in rows)
        # The same galaxies (truths do not depend on noise): the difference is the noise alone.
        assert np.std(noisy[:, k] - clean[:, k]) == pytest.approx(sigma, rel=0.05), b
        # In the empty corners of the noisy stamps alone.
        assert np.std(noisy[:, k][:, corners]) == pytest.approx(sigma, rel=0.10), b
    # One LSST visit: the z sky is noisier than the g sky.
    assert rows[0]["z_noise_sigma_nmgy"] > rows[0]["g_noise_sigma_nmgy"]


def test_plus_y_is_a_larger_row_index_in_the_array_and_the_fits_file(tmp_path: Path) -> None:
    from astropy.io import fits

    from astrogan.science import fits_to_image_order

    setup = sg.make_setup("r", image_size=32, noise="none")
    p = _galaxy(setup, centre_dx_px=-3.0, centre_dy_px=5.0, bulge_hlr_arcsec=0.2, disc_hlr_arcsec=0.5)
    cube = sg.render_galaxy(p, setup, noise=False)
    sg._write_cube(tmp_path / "g.fits", cube, {"file": "g.fits", **sg._row(p, setup)}, setup)
    data = fits.getdata(tmp_path / "g.fits")
    assert data.shape == (32, 32)  # one band: a plain 2-D image (science.write_fits' rule)
    y, x = np.mgrid[0:32, 0:32]
    for plane in (cube[0], data):
        cy, cx = (plane * y).sum() / plane.sum(), (plane * x).sum() / plane.sum()
        assert cy == pytest.approx(15.5 + 5.0, abs=0.1) and cx == pytest.approx(15.5 - 3.0, abs=0.1)
    # In image order (row 0 on top, as a PNG shows it) the galaxy is in the upper half.
    shown = fits_to_image_order(data)
    assert (shown * y).sum() / shown.sum() == pytest.approx(15.5 - 5.0, abs=0.1)


def test_draws_hit_galsims_separable_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    import galsim

    setup = _setup(24, noise="none")
    p = _galaxy(setup)
    calls = []

    def integrate(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        calls.append(type(self).__name__)
        return original(self, *args, **kwargs)

    original = galsim.integ.ImageIntegrator.__call__
    monkeypatch.setattr(galsim.integ.ImageIntegrator, "__call__", integrate)
    cube = sg.render_galaxy(p, setup, noise=False)
    assert calls == []  # no image was integrated over wavelength
    # The probe works: a chromatic (wavelength-dependent) PSF does take the slow path.
    chromatic_psf = galsim.ChromaticObject(galsim.Gaussian(fwhm=0.7)).dilate(lambda w: (w / 620.0) ** -0.2)
    galsim.Convolve(sg.galaxy_model(p), chromatic_psf).drawImage(sg._bandpass("g"), nx=24, ny=24, scale=0.2)
    assert calls
    # Plain reference: achromatic bulge and disc with their in-band fluxes, one PSF, same pixels.
    bulge_sed, disc_sed = sg._component_seds(p)
    beta = p["position_angle_deg"] * galsim.degrees
    for k, b in enumerate(BANDS):
        bp = sg._bandpass(b)
        bulge = galsim.Sersic(
            n=p["bulge_n"], half_light_radius=p["bulge_hlr_arcsec"], flux=bulge_sed.calculateFlux(bp)
        )
        disc = galsim.Exponential(half_light_radius=p["disc_hlr_arcsec"], flux=disc_sed.calculateFlux(bp))
        gal = bulge.shear(q=p["bulge_q"], beta=beta) + disc.shear(q=p["disc_q"], beta=beta)
        ref = galsim.Convolve(gal, sg.band_psf(setup, b)).drawImage(nx=24, ny=24, scale=0.2).array
        np.testing.assert_allclose(cube[k], ref * 10 ** (-0.4 * (bp.zeropoint - 22.5)), rtol=1e-4, atol=1e-6)


def test_band_names_and_settings_errors() -> None:
    assert sg.parse_bands("g, R ,f606w,ACS_wfc_F814W,LSST_z") == ("g", "r", "F606W", "F814W", "z")
    with pytest.raises(UserError, match=r"unknown band 'q': choose from u, g, r, i, z, y, F435W"):
        sg.parse_bands("g,q")
    with pytest.raises(UserError, match="twice"):
        sg.parse_bands("g,g")
    assert sg.parse_noise("none", ("g", "r"), pixel_scale_arcsec=0.2) == (0.0, 0.0)
    assert sg.parse_noise("0.01", ("g", "r"), pixel_scale_arcsec=0.2) == (0.01, 0.01)
    assert sg.parse_noise("r=0.02", ("g", "r"), pixel_scale_arcsec=0.2) == (0.004, 0.02)
    # Sky noise per pixel scales with the pixel side; HST bands take the nearest LSST band's sky.
    assert sg.parse_noise("default", ("g", "F814W"), pixel_scale_arcsec=0.1) == pytest.approx((0.002, 0.005))
    with pytest.raises(UserError, match="not drawn"):
        sg.parse_noise("z=0.1", ("g", "r"), pixel_scale_arcsec=0.2)
    with pytest.raises(UserError, match="--psf must be one of moffat, kolmogorov"):
        sg.make_setup("g", psf="none")
    with pytest.raises(UserError, match="--seeing"):
        sg.make_setup("g", seeing_arcsec=0.0)
    with pytest.raises(UserError, match="--mag-range"):
        sg.parse_mag_range("21")
    with pytest.raises(
        UserError, match=r"--max-offset must be < half the stamp \(32 px for --size 64\), got 100"
    ):
        sg.make_setup("g", image_size=64, max_offset_px=100.0)
    assert sg.make_setup("g", image_size=64, max_offset_px=31.0).max_offset_px == 31.0


def test_cli_runs_and_reports_an_unknown_band_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from astrogan.cli.main import main

    out = tmp_path / "cli"
    argv = ["synth", "galaxies", "--bands", "g,r", "--num", "2", "--size", "16", "--noise", "none"]
    assert main([*argv, "--workers", "1", "--seed", "5", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir())[:2] == ["galaxy_000000.fits", "galaxy_000001.fits"]
    assert json.loads((out / "synth.json").read_text())["noise_sigma_nmgy"] == {"g": 0.0, "r": 0.0}
    capsys.readouterr()
    assert main(["synth", "galaxies", "--bands", "g,H", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown band 'H': choose from") and "F160W" in err and "\n" not in err
    assert not (tmp_path / "bad").exists()


def test_dataset_build_provenance_credits_the_cubes_and_finds_their_rows(tmp_path: Path) -> None:
    from astrogan.data.provenance import Provenance, file_sha256, provenance_of, read_synths

    out = sg.synth_galaxies(tmp_path / "gal", num=2, setup=_setup(16, noise="none"), num_workers=1)
    prov = Provenance()
    read_synths([out / "synth.json"], prov)
    cube = (out / "galaxy_000001.fits").resolve()
    fields, extras = provenance_of(cube, file_sha256(cube)[0], prov)
    assert fields["source"] == "synthetic" and "synth galaxies" in fields["credit"]
    assert fields["synthetic"]["row"] == 1 and extras[0] == "galaxy_000001.fits"
