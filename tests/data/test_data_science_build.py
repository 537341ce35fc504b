"""Science builds: multi-band FITS (per-band files, cubes), HDF5 arrays and COSMOS stamps -> float32 bands."""

from __future__ import annotations

import dataclasses
import json
import sys
import types

import h5py
import numpy as np
import pytest

from astrogan.cli.main import main
from astrogan.data import science_inputs
from astrogan.data.dataset import open_dataset
from astrogan.data.preprocess import resize_flux
from astrogan.data.science_inputs import ScienceOptions, ScienceStamp, sample_indices
from astrogan.science import ScienceSpec, fits_to_image_order
from astrogan.utils.errors import UserError
from tests.helpers import datasets

BANDS = ("g", "r", "i", "z")


def write_fits(path, data, header=None, *, hdus=None):
    from astropy.io import fits

    if hdus is not None:
        fits.HDUList(hdus).writeto(path)
    else:
        fits.PrimaryHDU(np.asarray(data, dtype=np.float32), header=header).writeto(path)


def wcs_header(*, crpix=(8.5, 8.5), scale_arcsec=0.2, cd=False, bunit="nanomaggy"):
    from astropy.io import fits

    h = fits.Header()
    h["BUNIT"] = bunit
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
    h["CRPIX1"], h["CRPIX2"] = crpix
    h["CRVAL1"], h["CRVAL2"] = 150.1, 2.2
    if cd:
        rot = np.deg2rad(20.0)  # a rotated field: the PC terms must survive the trip
        c, s = np.cos(rot) * scale_arcsec / 3600, np.sin(rot) * scale_arcsec / 3600
        h["CD1_1"], h["CD1_2"], h["CD2_1"], h["CD2_2"] = -c, s, s, c
    else:
        h["CDELT1"], h["CDELT2"] = -scale_arcsec / 3600, scale_arcsec / 3600
    return h


def flux(seed, shape=(16, 16)):
    return np.random.default_rng(seed).gamma(2.0, 5.0, shape).astype(np.float32)


def build(inputs, out, sci, **opts):
    return datasets.build(inputs, out, science=sci, **{"image_sizes": (16,), "min_size_px": 8, **opts})


def band_files(folder, stems, *, bands=BANDS, size=16, header=None):
    folder.mkdir(parents=True, exist_ok=True)
    for k, stem in enumerate(stems):
        for j, b in enumerate(bands):
            write_fits(folder / f"{stem}_{b}.fits", flux(100 * k + j, (size, size)), header)
    return folder


def rows_by_name(report):
    return {r["path"].rsplit("/", 1)[-1]: r for r in report}


def test_per_band_files_make_one_float32_image_per_stem_with_bottom_left_marker(tmp_path):
    raw = band_files(tmp_path / "raw", ["gal_0000", "gal_0001", "gal_0002"])
    from astropy.io import fits

    data = fits.getdata(raw / "gal_0001_i.fits")
    data[0, 0] = 1e4  # FITS row 0 = the BOTTOM row: the marker must land bottom-left in the stored image
    fits.writeto(raw / "gal_0001_i.fits", data, overwrite=True)
    (raw / "notes.txt").write_text("not an image")
    res = build([raw], tmp_path / "ds", ScienceOptions(bands=BANDS))
    ds = open_dataset(res.path)
    images = ds.images()
    assert res.num_images == 3 and ds.channels == 4 and images.shape == (3, 16, 16, 4)
    assert images.dtype == np.float32 and ds.manifest["dtype"] == "float32"
    spec = ds.science
    assert spec is not None and spec.bands == BANDS and spec.stretch.kind == "asinh"
    assert ds.manifest["science"]["stretch"]["scope"] == "dataset" and ds.manifest["stretch"] is None
    assert [m for m in ds.meta()["source"]] == ["gal_0000", "gal_0001", "gal_0002"]
    i_band = images[1, :, :, 2]
    assert i_band[-1, 0] == pytest.approx(1.0) and np.unravel_index(np.argmax(i_band), i_band.shape) == (
        15,
        0,
    )
    rows = rows_by_name(res.report)
    assert rows["gal_0001"]["status"] == "converted" and len(rows["gal_0001"]["files"]) == 4
    assert rows["notes.txt"]["status"] == "ignored" and "not a FITS file" in rows["notes.txt"]["reason"]
    assert [s["path"] for s in ds.manifest["sources"]] == ["gal_0000", "gal_0001", "gal_0002"]


def test_round_trip_gives_back_the_flux_to_float32_rounding(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    rng = np.random.default_rng(3)
    cubes = [rng.uniform(0.5, 9.5, (4, 16, 16)).astype(np.float32) for _ in range(2)]
    for k, cube in enumerate(cubes):
        for j, b in enumerate(BANDS):
            write_fits(raw / f"s{k}_{b}.fits", cube[j])
    sci = ScienceOptions(bands=BANDS, stretch_black=(0, 0, 0, 0), stretch_white=(10, 20, 30, 40))
    res = build([raw], tmp_path / "ds", sci)
    ds = open_dataset(res.path)
    spec = ds.science
    assert spec.stretch.black == (0, 0, 0, 0) and spec.stretch.white == (10, 20, 30, 40)
    stored = np.moveaxis(ds.images(), -1, 1)  # (N, B, H, W) image order
    back = spec.stretch.inverse(stored)
    for k, cube in enumerate(cubes):
        np.testing.assert_allclose(back[k], fits_to_image_order(cube), rtol=2e-6, atol=2e-6)
        assert not np.array_equal(back[k], cube)  # and it is image order, not FITS order


def test_fits_cubes_name_their_bands_from_headers(tmp_path):
    from astropy.io import fits

    raw = tmp_path / "raw"
    raw.mkdir()
    for k in range(3):
        h = fits.Header()
        h["BANDS"] = "g,r,i"
        write_fits(raw / f"cube{k}.fits", np.stack([flux(k * 3 + j) for j in range(3)]), h)
    h = fits.Header()
    for j, name in enumerate(("u", "g", "r"), start=1):
        h[f"FILTER{j}"] = name
    write_fits(raw / "other.fits", np.stack([flux(50 + j) for j in range(3)]), h)
    res = build([raw], tmp_path / "ds", ScienceOptions(cubes=True))
    assert res.science.bands == ("g", "r", "i") and res.num_images == 3
    other = rows_by_name(res.report)["other.fits"]
    assert other["status"] == "skipped" and other["reason"] == "bands u,g,r differ from the dataset's g,r,i"
    plain = fits.Header()
    assert science_inputs.header_bands(plain, 2) == ("b0", "b1")
    plain["BAND1"], plain["BAND2"] = "F606W", "F814W"
    assert science_inputs.header_bands(plain, 2) == ("F606W", "F814W")


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_h5_arrays_both_layouts_in_slices_with_params(tmp_path, monkeypatch, layout):
    n = 7
    cubes = np.stack([np.stack([flux(10 * i + b) for b in range(2)]) for i in range(n)])  # (N, 2, 16, 16)
    cubes[4, 1, 0, 0] = 1e4  # FITS order: bottom-left of image 4, band r
    arr = cubes if layout == "nchw" else np.moveaxis(cubes, 1, -1)
    path = tmp_path / "stamps.h5"
    with h5py.File(path, "w") as fh:
        fh["images"] = arr
        fh["images"].attrs["BUNIT"] = "electron/s"
        fh["mag"] = np.linspace(20.0, 23.0, n)
        fh["ident"] = np.array([f"id{i}".encode() for i in range(n)])
    monkeypatch.setattr(science_inputs, "_H5_CHUNK_BYTES", 3 * 2 * 16 * 16 * 4)  # 3 images per slice
    sci = ScienceOptions(h5=path, bands=("g", "r") if layout == "nhwc" else None, h5_params=("mag", "ident"))
    res = build([], tmp_path / "ds", sci)
    ds = open_dataset(res.path)
    assert ds.science.bands == (("g", "r") if layout == "nhwc" else ("b0", "b1"))
    assert ds.science.bunit == "electron/s" and res.num_images == n
    assert list(ds.meta()["source"])[:2] == ["stamps.h5:images[0]", "stamps.h5:images[1]"]
    params = ds.params()
    assert params[5] == {"mag": pytest.approx(22.5), "ident": "id5"}
    assert ds.images()[4, -1, 0, 1] == pytest.approx(1.0)
    assert res.report[0]["path"] == str(path.resolve()) and res.report[0]["num_images"] == n
    assert ds.manifest["sources"][0]["h5"]["layout"] == layout


def test_h5_origin_top_and_3d_arrays(tmp_path):
    stack = np.stack([flux(i) for i in range(3)])  # (N, H, W): one band
    stack[1, 0, 0] = 1e4  # row 0 is the TOP here
    path = tmp_path / "top.h5"
    with h5py.File(path, "w") as fh:
        fh["imgs"] = stack
    res = build([], tmp_path / "ds", ScienceOptions(h5=path, h5_key="imgs", h5_origin="top"))
    images = open_dataset(res.path).images()
    assert images.shape == (3, 16, 16, 1) and images[1, 0, 0, 0] == pytest.approx(1.0)
    with pytest.raises(UserError, match="no array 'images' in top.h5 \\(its arrays: imgs\\)"):
        build([], tmp_path / "ds2", ScienceOptions(h5=path))
    with pytest.raises(UserError, match="--h5-params mag"):
        build([], tmp_path / "ds3", ScienceOptions(h5=path, h5_key="imgs", h5_params=("mag",)))


def test_headers_are_kept_and_the_wcs_follows_the_crop_and_the_resize(tmp_path):
    from astropy.io import fits
    from astropy.wcs import WCS

    raw = tmp_path / "raw"
    raw.mkdir()
    tall = wcs_header(crpix=(8.5, 12.5))
    write_fits(raw / "tall.fits", flux(1, (24, 16)), tall)  # 24 rows, 16 columns: the top 16 rows are kept
    res = build([raw], tmp_path / "ds", ScienceOptions(bands=("r",)), crop="top-left")
    ds = open_dataset(res.path)
    card = ds.header(0)
    assert card["BUNIT"] == "nanomaggy" and card["PIXSCALE"] == pytest.approx(0.2) and card["BANDS"] == "r"
    # The top of the picture is the END of the FITS rows: the crop drops FITS rows 0-7, so CRPIX2 = 12.5 - 8.
    assert card["CRPIX1"] == pytest.approx(8.5) and card["CRPIX2"] == pytest.approx(4.5)
    assert ds.science.pixel_scale_arcsec == pytest.approx(0.2) and ds.science.bunit == "nanomaggy"
    src, out = WCS(tall), WCS(fits.Header(card))
    # Stored pixel (row 0, col 3) in image order is FITS (x=3, y=15) of the crop, (3, 15 + 8) of the source.
    a, b = src.pixel_to_world(3, 23), out.pixel_to_world(3, 15)
    assert a.separation(b).arcsec < 1e-6
    # Resize 32 -> 16 with a CD matrix: scale doubles, the centre stays on the same sky position.
    raw2 = tmp_path / "raw2"
    raw2.mkdir()
    big = wcs_header(crpix=(16.5, 16.5), cd=True)
    write_fits(raw2 / "big.fits", flux(2, (32, 32)), big)
    ds2 = open_dataset(build([raw2], tmp_path / "ds2", ScienceOptions(bands=("r",))).path)
    card2 = ds2.header(0)
    assert card2["PIXSCALE"] == pytest.approx(0.4) and card2["CRPIX1"] == pytest.approx(8.5)
    w2 = WCS(fits.Header(card2))
    assert WCS(big).pixel_to_world(15.5, 15.5).separation(w2.pixel_to_world(7.5, 7.5)).arcsec < 1e-6
    assert WCS(big).pixel_to_world(-0.5, -0.5).separation(w2.pixel_to_world(-0.5, -0.5)).arcsec < 1e-6
    assert WCS(big).pixel_to_world(31.5, -0.5).separation(w2.pixel_to_world(15.5, -0.5)).arcsec < 1e-6


def test_each_broken_input_gets_one_line_and_the_rest_builds(tmp_path):
    raw = band_files(tmp_path / "raw", ["good_0000", "good_0001"], bands=("g", "r"))
    nan = flux(7)
    nan[:] = np.nan
    write_fits(raw / "nan_0000_g.fits", nan)
    write_fits(raw / "nan_0000_r.fits", flux(8))
    write_fits(raw / "shape_0000_g.fits", flux(9))
    write_fits(raw / "shape_0000_r.fits", flux(10, (15, 16)))
    write_fits(raw / "galaxy_0003_g.fits", flux(11))
    write_fits(raw / "cube3.fits", np.stack([flux(12 + j) for j in range(3)]))
    holes = flux(20)
    holes[3, 5] = np.nan
    write_fits(raw / "holes_0000_g.fits", holes)
    write_fits(raw / "holes_0000_r.fits", flux(21))
    with pytest.warns(UserWarning, match="nonfinite-filled"):
        res = build([raw], tmp_path / "ds", ScienceOptions(bands=("g", "r")))
    rows = rows_by_name(res.report)
    assert rows["nan_0000"]["reason"] == "band g is all NaN (no finite pixels)"
    assert rows["shape_0000"]["reason"] == "bands differ in shape: g 16x16, r 16x15 (width x height)"
    assert (
        rows["galaxy_0003"]["reason"] == "missing band file for galaxy_0003: r (expected galaxy_0003_r.fits)"
    )
    assert rows["cube3.fits"]["reason"].startswith("cube has 3 plane(s) in HDU 0 for the 2 bands g,r")
    assert all(
        rows[k]["status"] == "skipped" for k in ("nan_0000", "shape_0000", "galaxy_0003", "cube3.fits")
    )
    assert res.num_images == 3 and rows["holes_0000"]["flags"] == ["nonfinite-filled:1"]
    ds = open_dataset(res.path)
    holes_img = ds.images()[list(ds.meta()["source"]).index("holes_0000")]
    assert holes_img[15 - 3, 5, 0] == 0.0  # filled with band g's black, which the stretch maps to 0
    assert ds.manifest["counts"]["skipped"] == 4


def test_nan_pixels_are_filled_before_the_resize_so_they_cannot_spread(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for k in range(3):
        data = flux(30 + k, (32, 32)) + 20.0  # all well above black: an unfilled NaN would show as zeros
        data[10, 12] = np.nan
        write_fits(raw / f"h{k}_g.fits", data)
    with pytest.warns(UserWarning, match="nonfinite-filled"):
        res = build([raw], tmp_path / "ds", ScienceOptions(bands=("g",)))  # 32 px -> 16 px
    images = open_dataset(res.path).images()
    assert images.shape == (3, 16, 16, 1) and np.isfinite(images).all()
    assert (images == 0.0).sum(axis=(1, 2, 3)).max() <= 1  # Lanczos would carry one NaN to ~36 pixels


def test_wrong_hdu_gets_one_line(tmp_path):
    from astropy.io import fits

    raw = tmp_path / "raw"
    raw.mkdir()
    for k in range(2):
        write_fits(raw / f"ok{k}.fits", None, hdus=[fits.PrimaryHDU(), fits.ImageHDU(flux(k))])
    table = fits.BinTableHDU.from_columns([fits.Column(name="x", format="E", array=np.zeros(3))])
    write_fits(raw / "table.fits", None, hdus=[fits.PrimaryHDU(), table])
    write_fits(raw / "short.fits", flux(5))
    res = build([raw], tmp_path / "ds", ScienceOptions(cubes=True, hdu=1))
    rows = rows_by_name(res.report)
    assert rows["table.fits"]["reason"] == "HDU 1 holds a table, not an image"
    assert rows["short.fits"]["reason"] == "no HDU 1 (the file has 1)"
    assert res.num_images == 2 and res.science.bands == ("b0",)


def test_band_files_in_a_synth_folder_take_credit_and_params_row_from_its_stem(tmp_path):
    raw = band_files(tmp_path / "raw", ["gal_0", "gal_1", "gal_2"], bands=("g", "r"))
    (raw / "synth.json").write_text(
        json.dumps({"generator": "test", "credit": "Test sims", "licence": "CC0"})
    )
    (raw / "params.csv").write_text("file,sersic_n\ngal_1,2.0\ngal_0.fits,1.0\n")
    res = build([raw], tmp_path / "ds", ScienceOptions(bands=("g", "r")))
    ds = open_dataset(res.path)
    meta = ds.meta()
    assert list(meta["source"]) == ["gal_0", "gal_1"] and list(meta["params_row"]) == [1, 0]
    assert set(meta["credit"]) == {"Test sims"} and ds.manifest["synthetic"][0]["num_images"] == 2
    assert ds.manifest["licences"] == {"CC0": 2}
    row = rows_by_name(res.report)["gal_2"]
    assert row["reason"].startswith("not in the synthetic parameters table (none of gal_2, gal_2_g.fits")


def test_same_inputs_same_hash_and_the_stretch_enters_it(tmp_path):
    raw = band_files(tmp_path / "raw", [f"g{k}" for k in range(7)], bands=("g", "r"))
    sci = ScienceOptions(bands=("g", "r"), fit_sample=3)
    a = build([raw], tmp_path / "a", sci)
    b = build([raw], tmp_path / "b", sci)
    assert a.content_hash == b.content_hash and a.science == b.science
    c = build([raw], tmp_path / "c", ScienceOptions(bands=("g", "r"), fit_sample=3, stretch="log"))
    assert c.content_hash != a.content_hash and c.science.stretch.kind == "log"
    d = build([raw], tmp_path / "d", ScienceOptions(bands=("g", "r"), fit_sample=3, rgb=("r", "r", "g")))
    assert d.content_hash != a.content_hash and d.science.display.rgb == ("r", "r", "g")
    assert sample_indices(7, 3) == [0, 3, 6] and sample_indices(2, 256) == [0, 1]


def test_resize_flux_keeps_values_outside_unit_range():
    cube = np.stack([np.full((8, 8), -5.0, np.float32), np.full((8, 8), 300.0, np.float32)])
    same = resize_flux(cube, 8)
    assert np.array_equal(same, cube) and same is not cube
    small = resize_flux(cube, 4)
    assert small.shape == (2, 4, 4) and np.allclose(small[0], -5.0) and np.allclose(small[1], 300.0)


@pytest.mark.parametrize(
    ("opts", "sci", "message"),
    [
        ({"channels": 3}, {}, "--channels does not apply"),
        ({"dtype": "uint8"}, {}, "float32"),
        ({"dedup": True}, {}, "--dedup"),
        ({}, {"stretch_black": (0.0,)}, "--stretch-black needs one value per band"),
        ({}, {"band_pattern": "{stem}"}, "--band-pattern needs"),
        ({}, {"rgb": ("g", "x", "r")}, "--rgb"),
    ],
)
def test_science_option_mistakes_are_user_errors(tmp_path, opts, sci, message):
    raw = band_files(tmp_path / "raw", ["a"], bands=("g", "r"))
    with pytest.raises(UserError, match=message):
        build([raw], tmp_path / "ds", ScienceOptions(bands=("g", "r"), **sci), **opts)
    assert not (tmp_path / "ds").exists()


def test_cosmos_selection_is_wired_through_the_same_build(tmp_path, monkeypatch):
    calls = {}

    class Selection:
        def __init__(self, stamps):
            self.stamps = stamps

        def __len__(self):
            return len(self.stamps)

        def __iter__(self):
            return iter(self.stamps)

        def describe(self):
            return {
                "catalog": "real_galaxy_catalog_25.2.fits",
                "num_selected": len(self.stamps),
                "credit": "COSMOS",
            }

    def open_cosmos(
        catalog_path, *, dir=None, max_mag=None, min_mag=None, exclusion_level="marginal", max_num=None
    ):
        calls.update(
            path=catalog_path, dir=dir, max_mag=max_mag, exclusion_level=exclusion_level, max_num=max_num
        )
        header = {"BUNIT": "electron/s", "PIXSCALE": 0.03}
        stamps = [
            ScienceStamp(f"cosmos {i}", flux(i)[None], ("F814W",), header, {"mag": 20.0 + i})
            for i in range(3)
        ]
        stamps.append(ScienceStamp("cosmos bad", np.full((1, 16, 16), np.nan, np.float32), ("F814W",)))
        return Selection(stamps)

    fake = types.ModuleType("astrogan.data.cosmos")
    fake.open_cosmos = open_cosmos
    monkeypatch.setitem(sys.modules, "astrogan.data.cosmos", fake)
    catalog = tmp_path / "real_galaxy_catalog_25.2.fits"
    catalog.write_bytes(b"")
    sci = ScienceOptions(
        cosmos=catalog, cosmos_dir=tmp_path, max_mag=23.5, exclusion_level="bad_fits", max_num=9
    )
    res = build([], tmp_path / "ds", sci)
    assert calls == {
        "path": catalog,
        "dir": tmp_path,
        "max_mag": 23.5,
        "exclusion_level": "bad_fits",
        "max_num": 9,
    }
    ds = open_dataset(res.path)
    assert res.num_images == 3 and ds.science.bands == ("F814W",) and ds.science.pixel_scale_arcsec == 0.03
    assert ds.manifest["sources"][0]["cosmos"]["num_selected"] == 4 and ds.meta()["credit"][0] == "COSMOS"
    assert ds.params()[2] == {"mag": 22.0}
    assert [r["reason"] for r in res.report if r["status"] == "skipped"] == [
        "band F814W is all NaN (no finite pixels)"
    ]


def test_cosmos_catalogue_builds_through_the_real_module(tmp_path):
    pytest.importorskip("galsim")
    pytest.importorskip("astrogan.data.cosmos")
    from tests.helpers.cosmos_catalog import CATALOG, gal_file, write_cosmos_catalog

    write_cosmos_catalog(tmp_path)
    sci = ScienceOptions(cosmos=tmp_path / CATALOG, exclusion_level="none", max_mag=22.5)
    with pytest.warns(UserWarning, match="pixscale-mixed"):  # stamps of 17-25 px all resized to 16 px
        res = build([], tmp_path / "ds", sci)
    ds = open_dataset(res.path)
    assert res.num_images == 9 and ds.science.bands == ("F814W",) and ds.science.bunit == "count/s"
    assert (
        ds.science.pixel_scale_arcsec is None and "pixscale-mixed" in ds.manifest["science_inputs"]["flags"]
    )
    assert ds.params()[0]["ident"] == 1001 and ds.meta()["source"][0] == f"{CATALOG}:1001"
    assert ds.header(0)["PIXSCALE"] == pytest.approx(0.03 * 19 / 16)  # 21x19 stamp, 19 px crop -> 16 px
    assert ds.manifest["sources"][0]["cosmos"]["num_selected"] == 9
    # The selection's own credit and licence, not the fallback line, in the meta rows and the manifest.
    source = ds.manifest["sources"][0]
    assert source["credit"] == source["cosmos"]["credit"] != science_inputs.COSMOS_CREDIT
    assert "Koekemoer et al. 2007" in source["credit"] and ds.meta()["credit"][0] == source["credit"]
    assert list(ds.manifest["licences"]) == [source["cosmos"]["licence"]]
    assert source["licence"].startswith("public domain")
    # A truncated image file (HDUs 2-5 of file 2 gone): each missing stamp gets its own row, the rest builds.
    from astropy.io import fits

    path = tmp_path / gal_file(2)
    with fits.open(path) as hdul:
        fits.HDUList([fits.PrimaryHDU(hdul[0].data), fits.ImageHDU(hdul[1].data)]).writeto(
            path, overwrite=True
        )
    with pytest.warns(UserWarning):
        res = build([], tmp_path / "ds2", sci)
    rows = [r for r in res.report if r["status"] == "skipped"]
    assert [r["path"] for r in rows] == [f"{CATALOG}:{i}" for i in (1009, 1010, 1011)]
    for row, (hdu, ident) in zip(rows, ((2, 1009), (3, 1010), (4, 1011)), strict=True):
        assert row["reason"].startswith(f"unreadable stamp (cannot read HDU {hdu} of {path.resolve()}")
        assert f"(IDENT {ident})" in row["reason"]
    assert res.num_images == 6


def test_one_damaged_cosmos_stamp_skips_only_itself_and_the_fit_reads_only_its_sample(tmp_path, monkeypatch):
    pytest.importorskip("galsim")
    import galsim

    from tests.helpers.cosmos_catalog import CATALOG, damage_hdu, write_cosmos_catalog

    write_cosmos_catalog(tmp_path)
    path = damage_hdu(tmp_path, 2, 2)  # IDENT 1009, catalogue row 8; the HDUs after it are whole
    reads = []
    real_get = galsim.RealGalaxyCatalog.getGalImage
    monkeypatch.setattr(
        galsim.RealGalaxyCatalog, "getGalImage", lambda self, i: reads.append(int(i)) or real_get(self, i)
    )
    sci = ScienceOptions(cosmos=tmp_path / CATALOG, exclusion_level="none", fit_sample=4)
    with pytest.warns(UserWarning, match="pixscale-mixed"):
        res = build([], tmp_path / "ds", sci)
    assert reads[:4] == sample_indices(12, 4) == [0, 4, 7, 11]  # the fit pass: its sample and nothing else
    assert reads[4:] == list(range(12))  # the build pass: every stamp once
    skipped = [r for r in res.report if r["status"] == "skipped"]
    assert len(skipped) == 1 and skipped[0]["path"] == f"{CATALOG}:1009"
    reason = skipped[0]["reason"]
    assert reason.startswith(f"unreadable stamp (cannot read HDU 2 of {path.resolve()} (IDENT 1009)")
    assert res.num_images == 11
    assert [p["ident"] for p in open_dataset(res.path).params()][8:] == [1010, 1011, 1012]


def test_cli_builds_a_science_dataset_shows_it_and_refuses_mistakes(tmp_path, capsys):
    raw = band_files(tmp_path / "raw", ["a", "b"], bands=("g", "r"), header=wcs_header())
    out = tmp_path / "ds"
    args = [
        "dataset",
        "build",
        str(raw),
        "-o",
        str(out),
        "--bands",
        "g,r",
        "--image-size",
        "16",
        "--min-size",
        "8",
    ]
    assert main([*args, "--stretch", "sqrt", "--white-percentile", "99"]) == 0
    ds = open_dataset(out)
    assert (
        ds.science.stretch.kind == "sqrt" and ds.manifest["science_inputs"]["fit"]["white_percentile"] == 99
    )
    capsys.readouterr()
    assert main(["dataset", "info", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "g, r" in shown and "sqrt" in shown and "nanomaggy" in shown and "0.2 arcsec/px" in shown
    code = main([*args[:4], str(tmp_path / "ds2"), *args[5:], "--channels", "3"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: --channels does not apply") and "Traceback" not in err
    code = main(["dataset", "build", str(raw), "-o", str(tmp_path / "ds3"), "--stretch-white", "1,2"])
    err = capsys.readouterr().err
    assert code == 2 and "--stretch-white belongs to science builds" in err
    report = json.loads((out / "report.json").read_text())
    assert {r["path"].rsplit("/", 1)[-1] for r in report["files"]} == {"a", "b"}


def test_science_spec_round_trips_through_the_manifest(tmp_path):
    raw = band_files(tmp_path / "raw", ["a", "b"], bands=("g", "r"))
    res = build([raw], tmp_path / "ds", ScienceOptions(bands=("g", "r")))
    manifest = json.loads((res.path / "manifest.json").read_text())
    assert ScienceSpec.from_dict(manifest["science"]) == res.science
    assert manifest["preprocessing"]["params"]["science"]["spec"] == manifest["science"]


# ----------------------------------------------------------------------------------------------------
# --crop pad: a centred --image-size square cut from larger stamps, smaller ones padded, never resampled


def stored_fits(ds, index):
    """Image `index` of a one-size dataset back in FITS order, (B, Y, X), still stretched."""
    return fits_to_image_order(np.moveaxis(ds.images()[index], -1, 0))


def test_pad_keeps_the_native_pixel_scale_of_mixed_size_cosmos_stamps(tmp_path):
    pytest.importorskip("galsim")
    import warnings

    from tests.helpers.cosmos_catalog import CATALOG, GALAXIES, MARKER, PIXEL_SCALE, write_cosmos_catalog

    written = write_cosmos_catalog(tmp_path)
    sci = ScienceOptions(cosmos=tmp_path / CATALOG, exclusion_level="none")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = build([], tmp_path / "ds", sci, crop="pad", image_sizes=(20,), min_size_px=1)
    assert not [w for w in caught if "mixed" in str(w.message)]
    ds = open_dataset(res.path)
    assert res.num_images == 12 and ds.science.pixel_scale_arcsec == PIXEL_SCALE
    assert ds.manifest["science_inputs"]["flags"] == []
    assert ds.manifest["science_inputs"]["pixel_scale_arcsec_seen"] == {str(PIXEL_SCALE): 12}
    assert {h["PIXSCALE"] for h in ds.headers()} == {PIXEL_SCALE}
    flags = dict(zip(ds.meta()["source"], ds.meta()["flags"], strict=True))
    for g in GALAXIES:  # padded:<pixels per band outside the stamp>
        rows, cols = min(g.shape[0], 20), min(g.shape[1], 20)
        assert flags[f"{CATALOG}:{g.ident}"] == ("" if rows * cols == 400 else f"padded:{400 - rows * cols}")
    # 1001 is 21 x 19 (Y, X): its top FITS row goes (the cut starts at FITS row (21 - 20) // 2 = 0) and one
    # column of padding comes first ((19 - 20) // 2 = -1): the marker at FITS (0, 0) moves to FITS (0, 1).
    got = stored_fits(ds, 0)
    stamp = written[1001].astype(np.float32)
    ring = np.concatenate([stamp[0], stamp[-1], stamp[1:-1, 0], stamp[1:-1, -1]]).astype(np.float64)
    expect = np.full((1, 20, 20), np.float32(np.median(ring)), np.float32)
    expect[0, :, 1:] = stamp[:20, :]
    assert stamp[0, 0] == MARKER and np.unravel_index(np.argmax(got[0]), (20, 20)) == (0, 1)
    np.testing.assert_array_equal(got, ds.science.stretch.forward(expect))


def test_pad_passes_a_stamp_of_the_size_through_bit_identical(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    cubes = [np.stack([flux(40 + k), flux(50 + k)]) for k in range(3)]
    for k, cube in enumerate(cubes):
        write_fits(raw / f"c{k}.fits", cube, wcs_header())
    sci = ScienceOptions(cubes=True)
    pad = open_dataset(build([raw], tmp_path / "pad", sci, crop="pad").path)
    center = open_dataset(build([raw], tmp_path / "center", sci, crop="center").path)
    assert np.array_equal(pad.images(), center.images()) and pad.headers() == center.headers()
    assert set(pad.meta()["flags"]) == {""} and pad.header(0)["CRPIX1"] == 8.5
    for k, cube in enumerate(cubes):  # the stamp's own float32 flux, only stretched
        np.testing.assert_array_equal(stored_fits(pad, k), pad.science.stretch.forward(cube))


def test_pad_cuts_at_the_centre_and_moves_crpix_by_the_offset(tmp_path):
    from astropy.io import fits
    from astropy.wcs import WCS

    raw = tmp_path / "raw"
    raw.mkdir()
    ramp = (np.arange(21)[:, None] * 100 + np.arange(20)[None, :]).astype(np.float32)[None]  # FITS (y, x)
    header = wcs_header(crpix=(8.5, 12.5), cd=True)
    write_fits(raw / "big.fits", ramp, header)
    small = flux(60, (10, 12))[None]
    write_fits(raw / "small.fits", small, header)
    sci = ScienceOptions(cubes=True, stretch="linear", stretch_black=(-1.0,), stretch_white=(3000.0,))
    res = build([raw], tmp_path / "ds", sci, crop="pad")
    ds = open_dataset(res.path)
    names = list(ds.meta()["source"])
    big, little = names.index("big.fits"), names.index("small.fits")
    # 21 x 20 -> 16: the cut starts at FITS row (21 - 16) // 2 = 2 and column (20 - 16) // 2 = 2.
    np.testing.assert_array_equal(stored_fits(ds, big), ds.science.stretch.forward(ramp[:, 2:18, 2:18]))
    assert stored_fits(ds, big)[0, 0, 0] == ds.science.stretch.forward(ramp[:, 2:3, 2:3])[0, 0, 0]
    meta = ds.meta()
    assert (meta["crop_top"][big], meta["crop_left"][big], meta["crop_size"][big]) == (
        3,
        2,
        16,
    )  # image order
    # 10 x 12 -> 16: offsets (10 - 16) // 2 = -3 rows and (12 - 16) // 2 = -2 columns: padded, CRPIX grows.
    for index, (dy, dx) in ((big, (2, 2)), (little, (-3, -2))):
        card = ds.header(index)
        assert (card["CRPIX1"], card["CRPIX2"]) == (8.5 - dx, 12.5 - dy)
        assert card["PIXSCALE"] == pytest.approx(0.2)
        src, out = WCS(header), WCS(fits.Header(card))
        assert card["CDELT1"] == src.wcs.get_cdelt()[0] and card["PC1_2"] == pytest.approx(
            src.wcs.get_pc()[0, 1]
        )
        for x, y in ((0, 0), (15, 0), (3, 11)):  # stored FITS pixel (x, y) is the stamp's (x + dx, y + dy)
            assert src.pixel_to_world(x + dx, y + dy).separation(out.pixel_to_world(x, y)).arcsec < 1e-9
    assert meta["flags"][little] == f"padded:{256 - 120}" and meta["flags"][big] == ""


def test_pad_fill_is_the_border_median_and_its_noise_reproduces(tmp_path, monkeypatch):

    rng = np.random.default_rng(5)
    stamp = rng.normal(50.0, 5.0, (8, 8)).astype(np.float32)
    stamp[[0, -1], :] = rng.normal(5.0, 2.0, (2, 8))  # the border ring: sky around the galaxy
    stamp[1:-1, [0, -1]] = rng.normal(5.0, 2.0, (6, 2))
    ring = np.concatenate([stamp[0], stamp[-1], stamp[1:-1, 0], stamp[1:-1, -1]]).astype(np.float64)
    med = np.median(ring)
    sigma = np.median(np.abs(ring - med)) * 1.4826
    raw = tmp_path / "raw"
    raw.mkdir()
    write_fits(raw / "s_g.fits", stamp)
    sci = ScienceOptions(bands=("g",), stretch="linear", stretch_black=(-50.0,), stretch_white=(100.0,))
    pad = np.ones((32, 32), bool)
    pad[12:20, 12:20] = False  # (8 - 32) // 2 = -12 on both axes: the stamp sits at rows/columns 12-19

    def flux_back(path):
        ds = open_dataset(path)
        assert list(ds.meta()["flags"]) == [f"padded:{32 * 32 - 64}"]
        return ds.science.stretch.inverse(stored_fits(ds, 0))[0]

    plain = flux_back(build([raw], tmp_path / "plain", sci, crop="pad", image_sizes=(32,)).path)
    assert np.allclose(plain[pad], med, rtol=0, atol=1e-5) and np.ptp(plain[pad]) == 0
    np.testing.assert_allclose(plain[~pad].reshape(8, 8), stamp, rtol=0, atol=1e-4)
    # --pad-noise: noise of the border's MAD sigma on the padding, seeded by (build seed, stamp name).
    noisy_sci = dataclasses.replace(sci, pad_noise=True)
    noisy = [
        flux_back(
            build([raw], tmp_path / f"noisy{k}", noisy_sci, crop="pad", image_sizes=(32,), seed=seed).path
        )
        for k, seed in enumerate((0, 0, 1))
    ]
    assert np.array_equal(noisy[0], noisy[1]) and not np.array_equal(noisy[0][pad], noisy[2][pad])
    np.testing.assert_array_equal(noisy[0][~pad], plain[~pad])  # the stamp itself is untouched
    for values in (noisy[0][pad], noisy[2][pad]):  # 960 draws: std within 10 %, mean within 4 sigma/sqrt(n)
        assert abs(values.std() / sigma - 1) < 0.1 and abs(values.mean() - med) < 4 * sigma / np.sqrt(
            values.size
        )


def test_pad_fits_the_stretch_on_the_stamps_own_pixels(tmp_path):
    raw = band_files(tmp_path / "raw", [f"s{k}" for k in range(4)], bands=("g", "r"), size=10)
    sci = ScienceOptions(bands=("g", "r"))
    pad = build([raw], tmp_path / "pad", sci, crop="pad")  # 10 px stamps padded to 16
    with pytest.warns(UserWarning, match="upscaled"):
        center = build([raw], tmp_path / "center", sci, crop="center")  # the same 10 px, resized to 16
    assert pad.science.stretch == center.science.stretch  # the padding is not fitted


def test_cli_pad_noise_reaches_the_build(tmp_path):
    raw = band_files(tmp_path / "raw", ["a"], bands=("g",), size=8)
    out = tmp_path / "ds"
    args = ["dataset", "build", str(raw), "-o", str(out), "--bands", "g", "--image-size", "16"]
    assert main([*args, "--crop", "pad", "--pad-noise"]) == 0
    img = open_dataset(out).images()[0, :, :, 0]
    assert np.ptp(img[:4, :]) > 0  # padded rows carry noise, not one value


def test_cli_crop_pad_defaults_and_mistakes(tmp_path, capsys):
    from PIL import Image

    raw = band_files(tmp_path / "raw", ["a", "b"], bands=("g", "r"), size=16)
    args = ["dataset", "build", str(raw), "--bands", "g,r", "--image-size", "20", "--crop", "pad"]
    assert main([*args, "-o", str(tmp_path / "ds")]) == 0  # 16 px stamps: --min-size defaults to 1 here
    ds = open_dataset(tmp_path / "ds")
    assert ds.num_images == 2 and set(ds.meta()["flags"]) == {"padded:144"}
    assert ds.manifest["preprocessing"]["params"]["crop"] == "pad"
    capsys.readouterr()
    code = main(["dataset", "build", str(raw), "-o", str(tmp_path / "x"), "--bands", "g,r", "--pad-noise"])
    assert code == 2 and "--pad-noise fills the padding of --crop pad" in capsys.readouterr().err
    pics = tmp_path / "pics"
    pics.mkdir()
    Image.new("RGB", (40, 40), (10, 20, 30)).save(pics / "p.png")
    code = main(["dataset", "build", str(pics), "-o", str(tmp_path / "y"), "--crop", "pad"])
    err = capsys.readouterr().err
    assert (
        code == 2
        and err.startswith("error: --crop pad keeps a science stamp's pixel scale")
        and "Traceback" not in err
    )
    code = main(["dataset", "build", str(pics), "-o", str(tmp_path / "z"), "--pad-noise"])
    assert code == 2 and "--pad-noise belongs to science builds" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------
# Speed: one WCS read per image (none without a celestial CTYPE), float filters outside the content hash


def test_headers_without_celestial_axes_never_build_a_wcs(monkeypatch):
    from astropy.io import fits

    built = []  # (celestial_cards turns any exception of a WCS read into "no WCS": record, do not raise)
    monkeypatch.setattr(science_inputs, "_wcslib_cards", lambda h: built.append(h) or {})
    monkeypatch.setattr(science_inputs, "_astropy_cards", lambda h: built.append(h) or {})
    h = fits.Header()
    h["BUNIT"], h["BANDS"] = "nanomaggy", "g,r"
    h["CTYPE1"], h["CTYPE2"], h["CDELT1"], h["CDELT2"] = "LINEAR", "LINEAR", 1.0, 1.0
    assert science_inputs.celestial_cards(h) == {} and science_inputs.celestial_cards({"PIXSCALE": 0.2}) == {}
    assert science_inputs.kept_cards(h, ("g", "r")) == {"BUNIT": "nanomaggy", "BANDS": "g,r"}
    assert built == []


@pytest.mark.parametrize(
    "cards",
    [
        {"CDELT1": -5e-5, "CDELT2": 5e-5},
        {"CD1_1": -4e-5, "CD1_2": 2e-5, "CD2_1": 2e-5, "CD2_2": 4e-5, "RADESYS": "FK5", "EQUINOX": 2000.0},
        {"CDELT1": -1e-4, "CDELT2": 1e-4, "CROTA2": 30.0, "CUNIT1": "DEG", "CUNIT2": "DEG"},
        {"CDELT1": -0.2, "CDELT2": 0.2, "CUNIT1": "arcsec", "CUNIT2": "arcsec", "NAXIS": 3, "NAXIS3": 4},
        {"CTYPE1": "GLON-CAR", "CTYPE2": "GLAT-CAR", "CDELT1": -0.01, "CDELT2": 0.01, "EPOCH": 1950.0},
        {"CTYPE1": "WAVE", "CTYPE2": "RA---SIN", "CTYPE3": "DEC--SIN", "CDELT1": 1e-9, "CDELT2": -1e-3,
         "CDELT3": 1e-3, "CRPIX3": 4.0, "CRVAL3": -30.0, "CUNIT1": "m"},
        {"CTYPE1": "RA---TAN-SIP", "CTYPE2": "DEC--TAN-SIP", "CDELT1": -1e-4, "CDELT2": 1e-4, "A_ORDER": 2,
         "B_ORDER": 2, "A_2_0": 1e-6, "B_0_2": 1e-6},
        {"CTYPE1": "RA---ZPN", "CTYPE2": "DEC--ZPN", "CDELT1": -1e-4, "CDELT2": 1e-4, "PV2_1": 1.0, "PV2_3": 0.2},
    ],
)  # fmt: skip
def test_one_wcslib_read_gives_astropys_celestial_cards(cards):
    import warnings

    from astropy.io import fits
    from astropy.wcs import WCS
    from astropy.wcs.utils import proj_plane_pixel_scales

    h = fits.Header(wcs_header(crpix=(8.5, 12.5)))
    for key in ("BUNIT", "CDELT1", "CDELT2"):  # each case brings its own scale
        del h[key]
    h.update(cards)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = WCS(h).celestial  # astropy's own road: the WCS class, then its celestial axes
    science_inputs._WCS_CACHE.clear()
    got = science_inputs.celestial_cards(h)
    assert got == science_inputs._wcs_cards(ref.wcs) and got["WCSAXES"] == 2
    assert science_inputs.celestial_cards(dict(h)) == got  # a card dict reads the same
    scale = float(np.mean(proj_plane_pixel_scales(ref))) * 3600
    assert science_inputs.pixel_scale_arcsec(h) == pytest.approx(scale, rel=1e-12)


def test_a_cube_build_reads_each_wcs_once(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    raw.mkdir()
    for k in range(3):
        write_fits(raw / f"c{k}.fits", np.stack([flux(k), flux(k + 9)]), wcs_header(crpix=(8.5 + k, 8.5)))
    reads = []
    real = science_inputs._wcslib_cards
    monkeypatch.setattr(science_inputs, "_wcslib_cards", lambda h: reads.append(1) or real(h))
    science_inputs._WCS_CACHE.clear()
    res = build([raw], tmp_path / "ds", ScienceOptions(cubes=True), image_sizes=(8,))  # cut and resized
    assert res.num_images == 3 and len(reads) == 3  # read with the stamp; found again to cut it
    assert open_dataset(res.path).header(2)["CRPIX1"] == pytest.approx((10.5 - 0.5) / 2 + 0.5)


def test_float_images_use_shuffle_deflate_and_the_hash_ignores_filters(tmp_path, monkeypatch):
    from astrogan.data import writer

    raw = band_files(tmp_path / "raw", ["a", "b", "c"], bands=("g", "r"))
    sci = ScienceOptions(bands=("g", "r"))
    a = build([raw], tmp_path / "a", sci)
    monkeypatch.setattr(writer, "FLOAT_FILTERS", {})
    b = build([raw], tmp_path / "b", sci)
    assert a.content_hash == b.content_hash
    with h5py.File(a.path / "images.h5") as fa, h5py.File(b.path / "images.h5") as fb:
        assert (fa["images"].compression, fa["images"].compression_opts, fa["images"].shuffle) == (
            "gzip",
            1,
            True,
        )
        assert fb["images"].compression is None and np.array_equal(fa["images"][()], fb["images"][()])
