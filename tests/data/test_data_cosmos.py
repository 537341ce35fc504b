"""COSMOS stamps in GalSim's real-galaxy format: selection, pixels, header/params, describe() and the errors."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("galsim")

from astrogan.data.cosmos import open_cosmos
from astrogan.utils.errors import UserError
from tests.helpers.cosmos_catalog import CATALOG, GALAXIES, MARKER, gal_file, psf_file, write_cosmos_catalog

ALL = [g.ident for g in GALAXIES]
SHAPES = {g.ident: g.shape for g in GALAXIES}


@pytest.fixture(scope="module")
def cosmos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[int, np.ndarray]]:
    """One catalogue shared by the read-only tests: (folder, {IDENT: stamp as written})."""
    root = tmp_path_factory.mktemp("cosmos")
    return root, write_cosmos_catalog(root)


def idents(sel) -> list[int]:
    return [int(i) for i in (s.params["ident"] for s in sel)]


def one_line_error(excinfo: pytest.ExceptionInfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg and msg.strip() == msg
    return msg


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        ("none", ALL),
        ("bad_stamp", [1001, 1002, 1004, 1006, 1008, 1009, 1010, 1011, 1012]),  # S/N, negative flux, mask
        ("bad_fits", [1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008, 1010, 1011, 1012]),  # both fits failed
        ("marginal", [1001, 1002, 1004, 1006, 1008]),  # also: one fit failed, n >= 5 and big, |dmag| >= 0.8
    ],
)
def test_exclusion_levels_keep_galsims_choice(cosmos, level, expected):
    sel = open_cosmos(cosmos[0] / CATALOG, exclusion_level=level)
    assert len(sel) == len(expected)
    assert idents(sel) == expected


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"max_mag": 23.5}, [1001, 1002, 1004, 1008]),  # 1006 has MAG = 23.5 exactly: the limit is strict
        ({"min_mag": 21.0, "max_mag": 23.0}, [1002, 1008]),  # 21.0 kept, 23.0 not: min <= MAG < max
        ({"min_mag": 22.0}, [1004, 1006, 1008]),
        ({"exclusion_level": "none", "max_mag": 21.0}, [1001, 1007, 1009]),
        ({"exclusion_level": "none", "max_num": 3}, [1001, 1002, 1003]),
        ({"exclusion_level": "bad_stamp", "min_mag": 22.0, "max_num": 2}, [1004, 1006]),
    ],
)
def test_magnitude_cut_and_max_num(cosmos, kwargs, expected):
    sel = open_cosmos(cosmos[0] / CATALOG, **kwargs)
    assert idents(sel) == expected
    assert len(sel) == len(expected)


def test_stamps_are_the_written_pixels_in_fits_order(cosmos, monkeypatch):
    import galsim

    calls = []
    real_get = galsim.RealGalaxyCatalog.getGalImage

    def spy(self, i):
        calls.append(int(i))
        return real_get(self, i)

    monkeypatch.setattr(galsim.RealGalaxyCatalog, "getGalImage", spy)
    root, written = cosmos
    stamps = list(open_cosmos(root / CATALOG, exclusion_level="none"))
    assert calls == list(range(12))  # GalSim's own reader fetched every pixel
    assert [s.source for s in stamps] == [f"{CATALOG}:{i}" for i in ALL]
    for s in stamps:
        ident = s.params["ident"]
        assert s.flux.dtype == np.float32
        assert s.flux.shape == (1, *SHAPES[ident])  # (1, Y, X), not transposed
        np.testing.assert_array_equal(s.flux[0], written[ident].astype(np.float32))
        assert s.bands == ("F814W",)
    assert stamps[0].flux[0, 0, 0] == MARKER  # the bottom-left FITS pixel is still row 0, column 0
    assert np.count_nonzero(np.concatenate([s.flux.ravel() for s in stamps]) == MARKER) == 1


def test_header_and_params_are_carried(cosmos):
    sel = open_cosmos(cosmos[0] / CATALOG, exclusion_level="marginal")
    s = next(s for s in sel if s.params["ident"] == 1002)
    assert s.source == f"{CATALOG}:1002"
    h = s.header
    assert h["BUNIT"] == "count/s"
    assert h["BAND"] == "F814W"
    assert h["PIXSCALE"] == pytest.approx(0.03)
    assert h["NOISEVAR"] == pytest.approx(7e-6 + 1e-7)
    assert h["NOISEMN"] == pytest.approx(1e-4)
    assert h["MAGZPT"] == pytest.approx(25.94333)  # GalSim's F814W zeropoint
    assert (h["RA"], h["DEC"]) == pytest.approx((150.001, 2.001))
    assert all(len(k) <= 8 for k in h)  # usable as FITS keywords
    p = s.params
    assert p["ident"] == 1002 and isinstance(p["ident"], int)
    assert p["mag"] == pytest.approx(21.0)
    assert p["weight"] == pytest.approx(0.21)  # the catalogue's value, not GalSim's max-normalised one
    assert p["stamp_flux"] == pytest.approx(100.0)
    assert (p["catalog_row"], p["gal_file"], p["gal_hdu"]) == (1, gal_file(1), 2)
    assert (p["psf_file"], p["psf_hdu"]) == (psf_file(1), 2)
    assert p["sersic_n"] == pytest.approx(1.5)
    assert p["sersic_q"] == pytest.approx(0.7)
    assert p["sersic_hlr_arcsec"] == pytest.approx(0.12)
    assert (p["bulge_hlr_arcsec"], p["disk_hlr_arcsec"]) == pytest.approx((0.06, 0.18))
    assert p["bulge_to_total"] == pytest.approx(0.25)
    assert (p["fit_status_bulge"], p["fit_status_sersic"]) == (1, 1)
    assert p["mag_auto"] == pytest.approx(21.01)


def test_describe_records_files_counts_and_selection(cosmos):
    import galsim

    root = cosmos[0]
    d = open_cosmos(root / CATALOG, max_mag=23.5, max_num=3).describe()
    assert d["catalog"] == str((root / CATALOG).resolve())
    assert d["catalog_sha256"] == hashlib.sha256((root / CATALOG).read_bytes()).hexdigest()
    sel_file = root / CATALOG.replace(".fits", "_selection.fits")
    assert d["files"]["selection"]["sha256"] == hashlib.sha256(sel_file.read_bytes()).hexdigest()
    assert d["sample"] == "23.5"
    assert (d["num_in_catalog"], d["num_after_exclusion"], d["num_after_mag"], d["num_selected"]) == (
        12,
        5,
        4,
        3,
    )
    s = d["selection"]
    assert (s["exclusion_level"], s["max_mag"], s["min_mag"], s["max_num"]) == ("marginal", 23.5, None, 3)
    assert s["mag_rule"] == "MAG < 23.5"
    assert s["galsim_cuts"] == {
        "sn_limit": 20.0,
        "cut_ratio": 0.2,
        "min_mask_dist": 11.0,
    }  # the 23.5 sample's
    assert d["bands"] == ["F814W"]
    assert d["galsim_version"] == galsim.__version__
    assert d["image_dir"] == str(root.resolve())


def test_a_pass_holds_one_image_file_at_a_time_and_repeats(cosmos):
    sel = open_cosmos(cosmos[0] / CATALOG, exclusion_level="none")
    open_counts = []
    first = []
    for s in sel:
        open_counts.append(len(sel._rgc.loaded_files))
        first.append(s.flux)
    assert max(open_counts) == 1
    assert sel._rgc.loaded_files == {}  # closed after the pass
    again = [s.flux for s in sel]
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))


def test_the_download_layout_is_found_from_its_folder(tmp_path):
    sample_dir = tmp_path / "COSMOS_23.5_training_sample"  # galsim_download_cosmos -s 23.5 -d tmp_path
    write_cosmos_catalog(sample_dir)
    for sel in (
        open_cosmos(None, dir=tmp_path),
        open_cosmos(tmp_path),
        open_cosmos("23.5", dir=tmp_path),
        open_cosmos(CATALOG, dir=tmp_path),
        open_cosmos(
            sample_dir / CATALOG.replace(".fits", "_fits.fits")
        ),  # a companion table names its catalogue
    ):
        assert sel.catalog == (sample_dir / CATALOG).resolve()
        assert sel.image_dir == sample_dir.resolve()
        assert idents(sel) == [1001, 1002, 1004, 1006, 1008]
    with pytest.raises(UserError) as e:
        open_cosmos("25.2", dir=tmp_path)
    assert "galsim_download_cosmos -s 25.2" in one_line_error(e)


def test_images_in_another_folder_follow_galsims_dir(tmp_path):
    images = tmp_path / "images"
    write_cosmos_catalog(images)
    tables = tmp_path / "tables"
    tables.mkdir()
    for name in (
        CATALOG,
        CATALOG.replace(".fits", "_fits.fits"),
        CATALOG.replace(".fits", "_selection.fits"),
    ):
        shutil.move(images / name, tables / name)
    sel = open_cosmos(tables / CATALOG, dir=images)
    assert sel.image_dir == images.resolve()
    assert next(iter(sel)).flux[0, 0, 0] == MARKER


def test_without_the_fits_table_only_level_none_works(tmp_path):
    write_cosmos_catalog(tmp_path, with_fits=False)
    sel = open_cosmos(tmp_path / CATALOG, exclusion_level="none")
    assert idents(sel) == ALL
    stamp = next(iter(sel))
    assert "sersic_n" not in stamp.params and stamp.params["mag"] == pytest.approx(20.0)
    assert sel.describe()["files"]["fits"] is None
    with pytest.raises(UserError) as e:
        open_cosmos(tmp_path / CATALOG)
    msg = one_line_error(e)
    assert "real_galaxy_catalog_23.5_fits.fits not found" in msg and "'none'" in msg


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"exclusion_level": "strict"}, "unknown exclusion level 'strict': use one of none, bad_stamp"),
        ({"min_mag": 23.0, "max_mag": 22.0}, "--min-mag (23.0) must be below --max-mag (22.0)"),
        ({"max_num": 0}, "--max-num must be at least 1"),
        ({"max_mag": 19.0}, "no galaxy of the 12 in real_galaxy_catalog_23.5.fits passes the selection"),
    ],
)
def test_bad_selections_say_what_to_do(cosmos, kwargs, needle):
    with pytest.raises(UserError) as e:
        open_cosmos(cosmos[0] / CATALOG, **kwargs)
    assert needle in one_line_error(e)


def test_a_missing_catalogue_says_how_to_download(tmp_path):
    with pytest.raises(UserError) as e:
        open_cosmos(tmp_path / "real_galaxy_catalog_25.2.fits")
    msg = one_line_error(e)
    assert "real_galaxy_catalog_25.2.fits not found" in msg and "galsim_download_cosmos -s 25.2 -d DIR" in msg
    with pytest.raises(UserError) as e:
        open_cosmos(None, dir=tmp_path)
    assert f"no COSMOS catalogue (real_galaxy_catalog_*.fits) in {tmp_path}" in one_line_error(e)


@pytest.mark.parametrize("column", ["MAG", "GAL_HDU", "stamp_flux"])
def test_a_catalogue_without_a_column_names_it(tmp_path, column):
    write_cosmos_catalog(tmp_path, drop_columns=(column,))
    with pytest.raises(UserError) as e:
        open_cosmos(tmp_path / CATALOG)
    msg = one_line_error(e)
    assert f"{CATALOG} has no column {column}:" in msg and msg.endswith(
        "galsim_download_cosmos -s 23.5 -d DIR"
    )


@pytest.mark.parametrize("which", ["image", "psf"])
def test_a_missing_image_or_psf_file_is_named(tmp_path, which):
    write_cosmos_catalog(tmp_path)
    name = gal_file(2) if which == "image" else psf_file(2)
    (tmp_path / name).unlink()
    assert idents(open_cosmos(tmp_path / CATALOG, max_num=2)) == [1001, 1002]  # rows of file 1 still read
    with pytest.raises(UserError) as e:
        open_cosmos(tmp_path / CATALOG)
    msg = one_line_error(e)
    column = "GAL_FILENAME" if which == "image" else "PSF_FILENAME"
    assert f"{tmp_path / name} not found ({column} of IDENT 1008" in msg and "galsim_download_cosmos" in msg


def test_missing_or_mismatched_companion_tables(tmp_path):
    write_cosmos_catalog(tmp_path, with_selection=False)
    with pytest.raises(UserError) as e:
        open_cosmos(tmp_path / CATALOG, exclusion_level="bad_stamp")
    assert "real_galaxy_catalog_23.5_selection.fits not found" in one_line_error(e)
    assert len(open_cosmos(tmp_path / CATALOG, exclusion_level="bad_fits")) == 11  # needs no selection table

    other = tmp_path / "other"
    write_cosmos_catalog(other, galaxies=GALAXIES[:6])
    shutil.copy(other / CATALOG.replace(".fits", "_selection.fits"), tmp_path)
    with pytest.raises(UserError) as e:
        open_cosmos(tmp_path / CATALOG)
    assert (
        "_selection.fits does not match real_galaxy_catalog_23.5.fits row for row (6 rows"
        in one_line_error(e)
    )


def test_a_truncated_image_file_is_named_when_read(tmp_path):
    from astropy.io import fits

    write_cosmos_catalog(tmp_path)
    path = tmp_path / gal_file(2)
    with fits.open(path) as hdul:
        short = fits.HDUList([fits.PrimaryHDU(hdul[0].data), fits.ImageHDU(hdul[1].data)])
        short.writeto(path, overwrite=True)
    sel = open_cosmos(tmp_path / CATALOG, exclusion_level="none")
    with pytest.raises(UserError) as e:
        list(sel)
    assert f"cannot read HDU 2 of {path.resolve()} (IDENT 1009)" in one_line_error(e)


def test_getitem_reads_each_position_alone_with_few_files_open(cosmos, monkeypatch):
    import galsim

    from astrogan.data import cosmos as cosmos_module

    monkeypatch.setattr(cosmos_module, "MAX_OPEN_FILES", 1)  # the catalogue has two image files
    root, written = cosmos
    sel = open_cosmos(root / CATALOG, exclusion_level="none")
    in_order = list(sel)
    calls = []
    real_get = galsim.RealGalaxyCatalog.getGalImage
    monkeypatch.setattr(
        galsim.RealGalaxyCatalog, "getGalImage", lambda self, i: calls.append(int(i)) or real_get(self, i)
    )
    for pos in (7, 0, 11, -1, 3, 9, 3):  # back and forth between the two image files
        s = sel[pos]
        expect = in_order[pos]
        assert s.source == expect.source == sel.source_name(pos) and s.params == expect.params
        np.testing.assert_array_equal(s.flux, expect.flux)
        np.testing.assert_array_equal(s.flux[0], written[s.params["ident"]].astype(np.float32))
        assert list(sel._rgc.loaded_files) == [sel._rgc.gal_file_name[pos]]
    assert calls == [7, 0, 11, 11, 3, 9, 3]  # one read per access: no pass over the stamps before it
    assert sel[0].flux[0, 0, 0] == MARKER and sel[np.int64(1)].params["ident"] == 1002
    sel.close()
    assert sel._rgc.loaded_files == {}
    for bad in (12, -13):
        with pytest.raises(IndexError, match="outside the selection of 12"):
            sel[bad]


def test_a_damaged_stamp_raises_for_itself_only(tmp_path):
    from tests.helpers.cosmos_catalog import damage_hdu

    write_cosmos_catalog(tmp_path)
    path = damage_hdu(tmp_path, 2, 2)  # IDENT 1009's pixels are gone; 1010-1012 after it are whole
    sel = open_cosmos(tmp_path / CATALOG, exclusion_level="none")
    pos = ALL.index(1009)
    with pytest.raises(UserError) as e:
        sel[pos]
    msg = one_line_error(e)
    assert f"cannot read HDU 2 of {path.resolve()} (IDENT 1009)" in msg and "galsim_download_cosmos" in msg
    after = [sel[p].params["ident"] for p in range(pos + 1, len(sel))]
    assert after == [1010, 1011, 1012] and sel[pos - 1].params["ident"] == 1008


def test_describe_gives_the_credit_and_licence_of_the_pixels(cosmos):
    d = open_cosmos(cosmos[0] / CATALOG).describe()
    credit = d["credit"]
    assert credit.startswith("COSMOS HST/ACS F814W galaxies, GalSim real-galaxy training sample 23.5 (")
    for paper in (
        "Koekemoer et al. 2007, ApJS 172, 196",
        "Scoville et al. 2007, ApJS 172, 1",
        "Mandelbaum et al. 2012, MNRAS 420, 1518",
        "Mandelbaum et al. 2014, ApJS 212, 5",
    ):
        assert paper in credit
    assert d["licence"].startswith("public domain: NASA/ESA Hubble Space Telescope archive data")
    assert "NASA/ESA data policy" in d["licence"] and "Koekemoer et al. 2007" in d["licence"]
