"""Continuous labels in `dataset build`: CSV matching, synth pickup, px rescaling, unmatched rows, errors, CLI."""

from __future__ import annotations

import csv
import json
import random
import shutil

import numpy as np
import pytest
from PIL import Image

from astrogan.data.dataset import open_dataset
from astrogan.data.synthetic import synth_sersic
from astrogan.utils.errors import UserError
from tests.helpers.datasets import build

NUM = 12


def _pictures(root, num=NUM, size=32):
    """`gal_XX.png`, uniform grey 10 + 15 i: the stored pixels tell which picture an image came from."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(num):
        Image.fromarray(np.full((size, size), 10 + 15 * i, np.uint8)).save(root / f"gal_{i:02d}.png")
    return root


def _picture_index(images):
    """(N,) index of the picture each stored image `(N, S, S, C)` came from (inverse of `_pictures`)."""
    return np.rint((images.reshape(len(images), -1).mean(axis=1) - 10) / 15).astype(int)


def _truth(i):
    """The labels of picture i: sersic_n, half_light_radius_px, q."""
    return [0.5 + 0.25 * i, 2.0 + i, 0.2 + 0.05 * i]


def _write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def _labels_csv(path, indices, *, key="file", name=lambda i: f"gal_{i:02d}.png", extra=None):
    rows = [[name(i), *_truth(i), "a note"] for i in indices]
    random.Random(0).shuffle(rows)  # the table's order must not matter
    return _write_csv(path, [key, "sersic_n", "half_light_radius_px", "q", "notes"], rows + (extra or []))


def _build(inputs, out, *, labels=None, label_columns=None, **opts):
    opts = {"image_sizes": (32,), "min_size_px": 8, **opts}
    return build(inputs, out, labels=labels, label_columns=label_columns, **opts)


@pytest.fixture(scope="module")
def synth_folder(tmp_path_factory):
    """12 Sérsic stamps at 32 px (PNG) with their params.csv."""
    return synth_sersic(
        tmp_path_factory.mktemp("synth") / "raw", num=NUM, image_size=32, seed=3, fmt="png", num_workers=1
    )


def _params(folder):
    with open(folder / "params.csv", newline="", encoding="utf-8") as fh:
        return {r["file"]: r for r in csv.DictReader(fh)}


# ----------------------------------------------------------------------------------------------------------
# Matching and alignment


def test_values_land_on_the_right_images_whatever_the_key_form(tmp_path):
    raw = _pictures(tmp_path / "raw")
    # Key column `filename`; keys with an extension, without one, and with folders in front.
    forms = [lambda i: f"gal_{i:02d}.png", lambda i: f"gal_{i:02d}", lambda i: f"some/dir/gal_{i:02d}.png"]
    csv_path = _labels_csv(
        tmp_path / "labels.csv", range(NUM), key="filename", name=lambda i: forms[i % 3](i)
    )
    res = _build([raw], tmp_path / "ds", labels=csv_path)
    ds = open_dataset(res.path)
    values, spec = ds.cond()
    # `notes` is text: left out; every numeric column that varies is stored.
    assert spec.names == ("sersic_n", "half_light_radius_px", "q") and spec.units == ("", "px", "")
    assert values.dtype == np.float32 and values.shape == (NUM, 3)
    index = _picture_index(ds.images())
    assert sorted(index) == list(range(NUM))
    np.testing.assert_allclose(values, np.array([_truth(i) for i in index]), rtol=1e-6)
    # The same join through the meta table's file names.
    by_name = {f"gal_{i:02d}.png": _truth(i) for i in range(NUM)}
    np.testing.assert_allclose(values, [by_name[s] for s in ds.meta()["source"]], rtol=1e-6)
    assert ds.manifest["cond"]["source"]["tables"][0]["key_column"] == "filename"
    assert res.cond_spec == spec


def test_label_columns_choose_and_order_the_stored_columns(tmp_path):
    raw = _pictures(tmp_path / "raw", num=6)
    csv_path = _labels_csv(tmp_path / "labels.csv", range(6))
    ds = open_dataset(_build([raw], tmp_path / "ds", labels=csv_path, label_columns="q, sersic_n").path)
    values, spec = ds.cond()
    assert spec.names == ("q", "sersic_n")
    index = _picture_index(ds.images())
    np.testing.assert_allclose(values, [[_truth(i)[2], _truth(i)[0]] for i in index], rtol=1e-6)


def test_same_named_files_in_two_folders_take_the_rows_their_folders_name(tmp_path):
    """Surveys in subfolders often reuse file names: a table keyed by path under the input must build."""
    raw = tmp_path / "raw"
    _pictures(raw / "sdss", num=3)  # gal_00..02, grey 10, 25, 40
    (raw / "decals").mkdir()
    for i in range(3):  # the same names, other pictures: grey 55, 70, 85 (indices 3..5)
        Image.fromarray(np.full((32, 32), 10 + 15 * (i + 3), np.uint8)).save(
            raw / "decals" / f"gal_{i:02d}.png"
        )
    rows = [
        [f"{s}/gal_{i:02d}.png", *_truth(i + 3 * k)]
        for k, s in enumerate(("sdss", "./decals"))
        for i in range(3)
    ]
    csv_path = _write_csv(tmp_path / "labels.csv", ["path", "sersic_n", "half_light_radius_px", "q"], rows)
    ds = open_dataset(_build([raw], tmp_path / "ds", labels=csv_path).path)
    values, _ = ds.cond()
    index = _picture_index(ds.images())
    assert sorted(index) == list(range(6))
    np.testing.assert_allclose(values, [_truth(i) for i in index], rtol=1e-6)
    # A file whose folders match neither row is refused in one line, not given one of them.
    (raw / "other").mkdir()
    shutil.copy(raw / "sdss" / "gal_00.png", raw / "other" / "gal_00.png")
    with pytest.raises(UserError, match=r"lines 2 and 5 both name gal_00.png"):
        _build([raw], tmp_path / "ds2", labels=csv_path)
    assert not (tmp_path / "ds2").exists()


def test_one_bare_named_row_for_two_same_named_files_is_refused(tmp_path):
    """Before: both sdss/gal_00.png and decals/gal_00.png took the one row 'gal_00.png' (two pictures, one label)."""
    raw = tmp_path / "raw"
    _pictures(raw / "sdss", num=2)
    (raw / "decals").mkdir()
    shutil.copy(raw / "sdss" / "gal_01.png", raw / "decals" / "gal_00.png")
    rows = [[f"gal_{i:02d}.png", *_truth(i)] for i in range(2)]
    csv_path = _write_csv(tmp_path / "labels.csv", ["file", "sersic_n", "half_light_radius_px", "q"], rows)
    with pytest.raises(
        UserError, match=r"line 2 \(gal_00.png\) names both .*gal_00.png and .*gal_00.png: give each"
    ):
        _build([raw], tmp_path / "ds", labels=csv_path)
    assert not (tmp_path / "ds").exists()


def test_synth_folder_is_picked_up_and_px_columns_follow_the_stored_size(synth_folder, tmp_path):
    truth = _params(synth_folder)
    res = _build([synth_folder], tmp_path / "ds16", image_sizes=(16,))  # no --labels
    ds = open_dataset(res.path)
    values, spec = ds.cond()
    assert {"sersic_n", "half_light_radius_px", "half_light_radius_arcsec", "q"} <= set(spec.names)
    # Index and seed never; constant columns (PSF, pixel scale, noise) carry nothing.
    assert not {"index", "seed", "psf_fwhm_px", "pixel_scale_arcsec", "noise_sigma"} & set(spec.names)
    assert ds.manifest["cond"]["source"]["kind"] == "synth"
    assert "16 / crop side" in ds.manifest["cond"]["rescale"]
    col = {n: i for i, n in enumerate(spec.names)}
    rows = [truth[s] for s in ds.meta()["source_file"]]
    # 32 px stamps stored at 16 px: the radius in pixels halves, the one in arcsec and the shape stay.
    want_px = np.array([float(r["half_light_radius_px"]) * 0.5 for r in rows])
    np.testing.assert_allclose(values[:, col["half_light_radius_px"]], want_px, rtol=1e-6)
    np.testing.assert_allclose(
        values[:, col["half_light_radius_arcsec"]],
        [float(r["half_light_radius_arcsec"]) for r in rows],
        rtol=1e-6,
    )
    np.testing.assert_allclose(values[:, col["sersic_n"]], [float(r["sersic_n"]) for r in rows], rtol=1e-6)

    # Stored at 32 and 16 px: the reader rescales to the size asked for, and agrees with the 16 px build.
    both = open_dataset(_build([synth_folder], tmp_path / "ds32", image_sizes=(32, 16)).path)
    v32, s32 = both.cond()
    v16, s16 = both.cond(image_size=16)
    np.testing.assert_allclose(v32[:, col["half_light_radius_px"]], want_px * 2, rtol=1e-6)
    np.testing.assert_allclose(v16, values, rtol=1e-6)
    assert s16.high[col["half_light_radius_px"]] == pytest.approx(s32.high[col["half_light_radius_px"]] / 2)


def test_synth_table_without_a_file_column_matches_by_index(synth_folder, tmp_path):
    folder = tmp_path / "raw"
    shutil.copytree(synth_folder, folder)
    truth = _params(folder)
    header = [h for h in next(iter(truth.values())) if h != "file"]
    rows = [[r[h] for h in header] for r in truth.values()]
    random.Random(1).shuffle(rows)
    _write_csv(folder / "params.csv", header, rows)
    res = _build([folder], tmp_path / "ds", label_columns="sersic_n,half_light_radius_px")
    ds = open_dataset(res.path)
    values, _ = ds.cond()
    assert res.num_images == NUM and ds.manifest["cond"]["source"]["tables"][0]["key_column"] == "index"
    want = [
        [float(truth[s]["sersic_n"]), float(truth[s]["half_light_radius_px"])] for s in ds.meta()["source"]
    ]
    np.testing.assert_allclose(values, want, rtol=1e-6)


def test_random_crops_rescale_px_columns_per_crop(tmp_path):
    raw = _pictures(tmp_path / "raw", num=4, size=32)
    csv_path = _labels_csv(tmp_path / "labels.csv", range(4))
    ds = open_dataset(
        _build(
            [raw],
            tmp_path / "ds",
            labels=csv_path,
            image_sizes=(16,),
            crop="random",
            crops_per_image=3,
            random_crop_min_scale=0.5,
        ).path
    )
    values, _ = ds.cond()
    meta = ds.meta()
    assert len(values) == 12 and len(set(meta["crop_size"].tolist())) > 1  # crops of several sides
    truth = np.array([_truth(int(s[4:6])) for s in meta["source"]])
    np.testing.assert_allclose(values[:, 1], truth[:, 1] * 16 / meta["crop_size"], rtol=1e-6)
    np.testing.assert_allclose(values[:, [0, 2]], truth[:, [0, 2]], rtol=1e-6)


def test_skipped_and_duplicate_pictures_keep_values_aligned(tmp_path):
    raw = _pictures(tmp_path / "raw", num=8)
    shutil.copy(raw / "gal_03.png", raw / "gal_03_copy.png")  # exact duplicate: dropped, after gal_03
    Image.fromarray(np.full((4, 4), 10 + 15 * 5, np.uint8)).save(raw / "gal_05.png")  # too small
    extra = [["gal_03_copy.png", 99.0, 99.0, 0.99, ""]]
    res = _build(
        [raw], tmp_path / "ds", labels=_labels_csv(tmp_path / "l.csv", range(8), extra=extra), dedup=True
    )
    ds = open_dataset(res.path)
    index = _picture_index(ds.images())
    assert sorted(index) == [0, 1, 2, 3, 4, 6, 7]
    np.testing.assert_allclose(ds.cond()[0], [_truth(i) for i in index], rtol=1e-6)


# ----------------------------------------------------------------------------------------------------------
# Unmatched images and rows


def test_images_without_a_row_are_skipped_and_rows_without_an_image_listed(tmp_path):
    raw = _pictures(tmp_path / "raw", num=10)
    extra = [["ghost_1.png", 1, 2, 0.5, ""], ["ghost_2.png", 1, 2, 0.5, ""]]
    csv_path = _labels_csv(tmp_path / "labels.csv", range(7), extra=extra)
    with pytest.warns(UserWarning) as record:
        res = _build([raw], tmp_path / "ds", labels=csv_path)
    messages = [str(w.message) for w in record]
    assert sum("3 input picture(s) have no row" in m for m in messages) == 1
    assert sum("2 row(s)" in m for m in messages) == 1
    assert res.num_images == 7 and res.num_unmatched_images == 3 and res.num_unmatched_rows == 2
    ds = open_dataset(res.path)
    assert sorted(_picture_index(ds.images())) == list(range(7))
    assert ds.cond()[0].shape == (7, 3)
    report = json.loads((res.path / "report.json").read_text())
    skipped = {r["path"].rsplit("/", 1)[-1] for r in report["files"] if r["reason"] == "no row in labels CSV"}
    assert skipped == {"gal_07.png", "gal_08.png", "gal_09.png"}
    assert report["labels"]["num_unmatched_rows"] == 2
    assert {r["key"] for r in report["labels"]["unmatched_rows"]} == {"ghost_1.png", "ghost_2.png"}
    cond = ds.manifest["cond"]
    assert cond["num_unmatched_images"] == 3 and cond["num_unmatched_rows"] == 2


# ----------------------------------------------------------------------------------------------------------
# Errors: one line each


def _bad_csv(tmp_path, case):
    """(labels, label_columns, inputs, expected message part) of one mistake."""
    raw = _pictures(tmp_path / "raw", num=4)
    good = [[f"gal_{i:02d}.png", 1.0 + i, 2.0, 0.5] for i in range(4)]
    header = ["file", "sersic_n", "half_light_radius_px", "q"]
    p = tmp_path / "labels.csv"
    if case == "missing":
        return tmp_path / "nope.csv", None, "does not exist"
    if case == "no-key":
        _write_csv(p, ["image", "sersic_n"], [["gal_00.png", 1.0]])
        return p, None, "no key column"
    if case == "unknown-column":
        _write_csv(p, header, good)
        return p, "sersic_n,mass", "unknown label column 'mass'"
    if case == "non-numeric":
        _write_csv(p, header, [*good[:2], ["gal_02.png", "abc", 2.0, 0.5]])
        return p, "sersic_n,q", "line 4 (gal_02.png), column sersic_n: 'abc' is not a number"
    if case in ("nan", "inf"):
        _write_csv(p, header, [*good[:3], ["gal_03.png", 1.0, 2.0, case]])
        return p, "sersic_n,q", "column q: '" + case + "' is not a finite number"
    if case == "duplicate":
        _write_csv(p, header, [*good, ["sub/gal_01.png", 9.0, 2.0, 0.5]])
        return p, None, "lists 'gal_01.png' twice (lines 3 and 6)"
    if case == "columns-without-labels":
        return None, "sersic_n", "--label-columns needs --labels"
    assert case == "no-match"
    _write_csv(p, header, [[f"other_{i}.png", 1.0 + i, 2.0, 0.5] for i in range(4)])
    assert raw.is_dir()
    return p, None, "no input image has a row"


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "no-key",
        "unknown-column",
        "non-numeric",
        "nan",
        "inf",
        "duplicate",
        "columns-without-labels",
        "no-match",
    ],
)
def test_label_mistakes_are_one_line_user_errors(tmp_path, case):
    labels, columns, message = _bad_csv(tmp_path, case)
    with pytest.raises(UserError) as exc:
        _build([tmp_path / "raw"], tmp_path / "ds", labels=labels, label_columns=columns)
    assert message in str(exc.value) and "\n" not in str(exc.value)
    assert not (tmp_path / "ds").exists()


def test_unknown_column_names_the_available_ones(tmp_path):
    labels, columns, _ = _bad_csv(tmp_path, "unknown-column")
    with pytest.raises(UserError, match="it has file, sersic_n, half_light_radius_px, q"):
        _build([tmp_path / "raw"], tmp_path / "ds", labels=labels, label_columns=columns)


# ----------------------------------------------------------------------------------------------------------
# Content hash


def test_content_hash_is_stable_and_follows_the_values(tmp_path):
    raw = _pictures(tmp_path / "raw", num=6)
    a = _build([raw], tmp_path / "a", labels=_labels_csv(tmp_path / "a.csv", range(6)))
    b = _build([raw], tmp_path / "b", labels=_labels_csv(tmp_path / "b.csv", range(6)))
    assert a.content_hash == b.content_hash
    plain = _build([raw], tmp_path / "plain")
    assert plain.content_hash != a.content_hash  # the conditions are part of the data
    changed = tmp_path / "c.csv"
    text = (tmp_path / "a.csv").read_text().replace("gal_03.png,1.25,", "gal_03.png,1.2501,")
    assert text != (tmp_path / "a.csv").read_text()
    changed.write_text(text)
    c = _build([raw], tmp_path / "c", labels=changed)
    assert c.content_hash != a.content_hash
    # Same pixels: only the conditions' digest moved.
    digests = [open_dataset(r.path).manifest["preprocessing"]["digests"] for r in (a, c)]
    assert digests[0]["images"] == digests[1]["images"] and digests[0]["cond"] != digests[1]["cond"]


# ----------------------------------------------------------------------------------------------------------
# CLI


def test_cli_build_prints_the_conditions_and_info_shows_them(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from astrogan.cli.main import app, main

    monkeypatch.setenv("ASTROGAN_QUIET", "0")
    monkeypatch.setenv("COLUMNS", "200")
    raw = _pictures(tmp_path / "raw", num=8)
    csv_path = _labels_csv(tmp_path / "params.csv", range(6), extra=[["ghost.png", 1, 2, 0.5, ""]])
    args = ["dataset", "build", str(raw), "--labels", str(csv_path), "--out", str(tmp_path / "ds")]
    args += ["--label-columns", "sersic_n,half_light_radius_px,q", "--image-size", "16", "--min-size", "8"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    out = result.output
    # 32 px pictures stored at 16 px: radii 2..7 px become 1..3.5 px.
    assert "half_light_radius_px" in out and "1 .. 3.5 px" in out
    assert "sersic_n" in out and "0.5 .. 1.75" in out
    assert "pictures without a labels row" in out and "labels rows without a picture" in out
    values, spec = open_dataset(tmp_path / "ds").cond()
    assert spec.names == ("sersic_n", "half_light_radius_px", "q") and values.shape == (6, 3)
    info = CliRunner().invoke(app, ["dataset", "info", str(tmp_path / "ds")])
    assert info.exit_code == 0 and "half_light_radius_px" in info.output
    help_text = CliRunner().invoke(app, ["dataset", "build", "--help"]).output
    assert "--labels" in help_text and "--label-columns" in help_text
    # A mistake: one `error:` line, status 2.
    bad = ["dataset", "build", str(raw), "--labels", str(tmp_path / "none.csv"), "--out", str(tmp_path / "x")]
    assert main(bad) == 2
