"""Science builds: multi-band FITS (per-band files, cubes), HDF5 arrays and COSMOS stamps -> float32 bands."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import h5py
import numpy as np
import pytest

from astrogan.cli.main import main
from astrogan.data import science_inputs
from astrogan.data.build import BuildOptions, build_dataset
from astrogan.data.dataset import open_dataset
from astrogan.data.preprocess import resize_flux
from astrogan.data.science_inputs import ScienceOptions, ScienceStamp, sample_indices
from astrogan.science import ScienceSpec, fits_to_image_order
from astrogan.utils.errors import UserError

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
    opts.setdefault("image_sizes", (16,))
    opts.setdefault("min_size_px", 8)
    return build_dataset(inputs, out, options=BuildOptions(**opts), science=sci, show_progress=False)


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


def test_cosmos_catalogue_builds_through_the_real_module(tmp_path, monkeypatch):
    pytest.importorskip("galsim")
    pytest.importorskip("astrogan.data.cosmos")
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    from cosmos_catalog import CATALOG, gal_file, write_cosmos_catalog

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
    # A damaged image file: its stamp gets a row, and so does each stamp the broken pass could not reach.
    from astropy.io import fits

    path = tmp_path / gal_file(2)
    with fits.open(path) as hdul:
        fits.HDUList([fits.PrimaryHDU(hdul[0].data), fits.ImageHDU(hdul[1].data)]).writeto(
            path, overwrite=True
        )
    with pytest.warns(UserWarning):
        res = build([], tmp_path / "ds2", sci)
    reasons = [r["reason"] for r in res.report if r["status"] == "skipped"]
    assert reasons[0].startswith("unreadable stamp (cannot read HDU 2 of") and "IDENT 1009" in reasons[0]
    assert all(r.startswith("not read (an earlier stamp failed") for r in reasons[1:])
    assert res.num_images + len(reasons) == 9


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
