"""`dataset build`: broken inputs, crops, sizes, dedup, hashes, atomicity, catalogs, Galaxy10, FITS."""

from __future__ import annotations

import io
import json
import shutil
import sqlite3

import h5py
import numpy as np
import pytest
from PIL import Image

from astrogan.data import pipeline as pipeline_mod
from astrogan.data.dataset import open_dataset
from astrogan.data.fits_io import unstretch
from astrogan.utils.errors import UserError
from tests.helpers.datasets import build


def smooth_image(seed: int, height: int = 64, width: int = 64) -> np.ndarray:
    """A smooth random RGB picture (low frequencies, so JPEG and perceptual hashes behave as on photos)."""
    small = np.random.default_rng(seed).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC))


def _write_fits(path, data):
    from astropy.io import fits

    fits.PrimaryHDU(data).writeto(path)


def make_broken_folder(root):
    root.mkdir()
    Image.fromarray(smooth_image(1)).save(root / "good.png")
    (root / "corrupt.jpg").write_bytes(
        np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    )
    buf = io.BytesIO()
    Image.fromarray(smooth_image(2)).save(buf, "JPEG")
    (root / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (root / "empty.png").write_bytes(b"")
    Image.fromarray(smooth_image(3)).convert("CMYK").save(root / "cmyk.jpg")
    Image.fromarray(np.full((64, 64), 65535, dtype=np.uint16)).save(root / "sixteen.png")
    Image.fromarray(smooth_image(4)).convert("P", palette=Image.Palette.ADAPTIVE).save(root / "palette.png")
    rgba = np.zeros((64, 64, 4), dtype=np.uint8)
    rgba[..., :3] = 200
    rgba[:, :32, 3] = 0  # transparent left half: must become black sky, not white
    rgba[:, 32:, 3] = 128
    Image.fromarray(rgba).save(root / "rgba.png")
    Image.fromarray(np.full((64, 64), 77, dtype=np.uint8)).save(root / "gray.png")
    Image.fromarray(smooth_image(5, 8, 8)).save(root / "tiny.png")
    (root / "text.png").write_text("this is not a picture\n")
    sub = root / "sub"
    sub.mkdir()
    fits_data = np.random.default_rng(6).gamma(2.0, 5.0, (64, 64)).astype(np.float32)
    fits_data[10:12, 10:12] = np.nan
    _write_fits(sub / "nan.fits", fits_data)
    (root / "notes.txt").write_text("ignored")
    return root


def test_broken_files_never_stop_a_build(tmp_path):
    src = make_broken_folder(tmp_path / "raw")
    with pytest.warns(UserWarning, match="nonfinite-filled"):
        res = build([src], tmp_path / "ds", image_sizes=(64,), min_size_px=16)
    by_name = {r["path"].rsplit("/", 1)[-1]: r for r in res.report}
    assert len(by_name) == 13
    converted = {n for n, r in by_name.items() if r["status"] == "converted"}
    assert converted == {
        "good.png",
        "cmyk.jpg",
        "sixteen.png",
        "palette.png",
        "rgba.png",
        "gray.png",
        "nan.fits",
    }
    expected_reasons = {
        "corrupt.jpg": "not a readable image",
        "truncated.jpg": "truncated file",
        "empty.png": "empty file",
        "tiny.png": "too small",
        "text.png": "not a readable image",
    }
    for name, reason in expected_reasons.items():
        assert by_name[name]["status"] == "skipped" and by_name[name]["reason"].startswith(reason), by_name[
            name
        ]
    assert by_name["notes.txt"]["status"] == "ignored"
    assert "cmyk" in by_name["cmyk.jpg"]["flags"] and "16-bit" in by_name["sixteen.png"]["flags"]
    assert "palette" in by_name["palette.png"]["flags"] and "alpha-on-black" in by_name["rgba.png"]["flags"]
    assert "grayscale" in by_name["gray.png"]["flags"]
    assert any(f.startswith("nonfinite-filled") for f in by_name["nan.fits"]["flags"])

    ds = open_dataset(tmp_path / "ds")
    assert ds.num_images == 7 and ds.channels == 3 and ds.dtype == "uint8"
    imgs = ds.images()
    assert imgs.shape == (7, 64, 64, 3) and imgs.dtype == np.uint8
    idx = {n: by_name[n]["first_index"] for n in converted}
    assert np.all(imgs[idx["rgba.png"]][:, :32] == 0)  # composited on black
    assert np.all(imgs[idx["rgba.png"]][:, 32:] == 100)  # 200 * 128/255, rounded
    assert np.all(imgs[idx["gray.png"]] == 77)  # grey replicated to 3 channels
    assert np.all(imgs[idx["sixteen.png"]] == 255)  # full 16-bit scale -> 255
    report = json.loads((tmp_path / "ds" / "report.json").read_text())
    assert len(report["files"]) == 13
    m = ds.manifest
    assert m["counts"] == {"files": 13, "converted": 7, "skipped": 5, "ignored": 1}
    assert len(m["sources"]) == 7 and all(len(s["sha256"]) == 64 for s in m["sources"])
    meta = ds.meta()
    assert set(meta["source"]) == {
        "good.png",
        "cmyk.jpg",
        "sixteen.png",
        "palette.png",
        "rgba.png",
        "gray.png",
        "sub/nan.fits",
    }


def test_gif_and_webp_pictures_are_built_an_animation_by_its_first_frame(tmp_path):
    """APOD serves about a tenth of its pictures as GIFs, and `fetch` keeps them: a build must not drop them."""
    raw = tmp_path / "raw"
    raw.mkdir()
    frames = [Image.fromarray(np.full((48, 48, 3), c, dtype=np.uint8)) for c in ((200, 30, 0), (0, 0, 250))]
    frames[0].save(raw / "apod.gif", save_all=True, append_images=frames[1:], duration=100)
    Image.fromarray(smooth_image(7, 48, 48)).save(raw / "still.webp", lossless=True)
    res = build([raw], tmp_path / "ds", image_sizes=(32,), min_size_px=16)
    by_name = {r["path"].rsplit("/", 1)[-1]: r for r in res.report}
    assert {n: r["status"] for n, r in by_name.items()} == {
        "apod.gif": "converted",
        "still.webp": "converted",
    }
    assert "animated-first-frame" in by_name["apod.gif"]["flags"]
    imgs = open_dataset(tmp_path / "ds").images()
    assert np.all(imgs[by_name["apod.gif"]["first_index"]] == (200, 30, 0))
    expected = np.asarray(Image.fromarray(smooth_image(7, 48, 48)).resize((32, 32), Image.Resampling.LANCZOS))
    assert np.array_equal(imgs[by_name["still.webp"]["first_index"]], expected)


def test_zero_usable_images_is_a_user_error_and_leaves_nothing(tmp_path):
    src = tmp_path / "raw"
    src.mkdir()
    (src / "a.png").write_text("nope")
    Image.fromarray(smooth_image(0, 8, 8)).save(src / "b.png")
    with pytest.raises(UserError, match="no usable images"):
        build([src], tmp_path / "ds")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]


def test_crop_is_square_before_resize_never_squashed(tmp_path):
    src = tmp_path / "raw"
    src.mkdir()
    wide = np.zeros((64, 128, 3), dtype=np.uint8)
    wide[:, :32, 0] = 255  # red left quarter
    wide[:, 32:96, 1] = 255  # green middle half
    wide[:, 96:, 2] = 255  # blue right quarter
    Image.fromarray(wide).save(src / "wide.png")
    center = open_dataset(build([src], tmp_path / "c", image_sizes=(32,)).path)
    img = center.images()[0].astype(int)
    assert img[..., 1].min() >= 250 and img[..., 0].max() <= 5 and img[..., 2].max() <= 5
    assert tuple(center.meta()[0][["crop_top", "crop_left", "crop_size"]]) == (0, 32, 64)
    top_left = open_dataset(build([src], tmp_path / "t", image_sizes=(32,), crop="top-left").path).images()[0]
    assert (
        top_left[:, :14, 0].min() >= 250 and top_left[:, 18:, 1].min() >= 250 and top_left[..., 2].max() <= 5
    )


def test_random_crops_differ_and_follow_the_seed(tmp_path):
    src = tmp_path / "raw"
    src.mkdir()
    Image.fromarray(smooth_image(7, 64, 96)).save(src / "a.png")
    opts = dict(image_sizes=(16,), crop="random", crops_per_image=4, min_size_px=16)
    a = open_dataset(build([src], tmp_path / "a", seed=3, **opts).path)
    b = open_dataset(build([src], tmp_path / "b", seed=3, **opts).path)
    c = open_dataset(build([src], tmp_path / "c", seed=4, **opts).path)
    boxes = [tuple(r) for r in a.meta()[["crop_top", "crop_left", "crop_size"]].tolist()]
    assert a.num_images == 4 and len(set(boxes)) == 4
    assert all(t + s <= 64 and left + s <= 96 and s >= 32 for t, left, s in boxes)
    assert np.array_equal(a.images(), b.images()) and a.content_hash == b.content_hash
    assert boxes != [tuple(r) for r in c.meta()[["crop_top", "crop_left", "crop_size"]].tolist()]
    assert a.content_hash != c.content_hash
    with pytest.raises(UserError, match="--crop random"):
        build([src], tmp_path / "d", crops_per_image=2)


def test_several_sizes_in_one_pass(tmp_path):
    src = tmp_path / "raw"
    src.mkdir()
    for i in range(3):
        Image.fromarray(smooth_image(i, 64, 64)).save(src / f"{i}.png")
    res = build([src], tmp_path / "ds", image_sizes=(16, 32))
    assert res.image_sizes == (32, 16)
    ds = open_dataset(res.path)
    assert ds.image_sizes == [32, 16] and ds.manifest["datasets"] == {"32": "images", "16": "images_16"}
    with h5py.File(res.path / "images.h5", "r") as fh:
        assert fh["images"].shape == (3, 32, 32, 3) and fh["images"].chunks == (1, 32, 32, 3)
        assert fh["images_16"].shape == (3, 16, 16, 3)
    assert ds.images().shape == (3, 32, 32, 3) and ds.images(16).shape == (3, 16, 16, 3)
    # each size is resized from the crop itself, so 16 px equals a direct Lanczos resize of the source
    direct = np.asarray(Image.open(src / "1.png").resize((16, 16), Image.Resampling.LANCZOS))
    assert np.array_equal(ds.images(16)[1], direct)


def test_dedup_drops_exact_and_recompressed_copies_keeps_different(tmp_path):
    src = tmp_path / "raw"
    src.mkdir()
    Image.fromarray(smooth_image(10, 96, 96)).save(src / "a.jpg", quality=95)
    shutil.copy(src / "a.jpg", src / "a_copy.jpg")
    Image.open(src / "a.jpg").save(src / "a_recompressed.jpg", quality=70)
    Image.fromarray(smooth_image(11, 96, 96)).save(src / "b.jpg", quality=95)
    res = build([src], tmp_path / "ds", image_sizes=(32,), dedup=True)
    status = {r["path"].rsplit("/", 1)[-1]: (r["status"], r["reason"]) for r in res.report}
    assert status["a.jpg"][0] == "converted" and status["b.jpg"][0] == "converted"
    assert status["a_copy.jpg"][0] == "skipped" and status["a_copy.jpg"][1].startswith("exact duplicate")
    assert status["a_recompressed.jpg"][1].startswith("near duplicate (of a.jpg")
    assert res.num_images == 2
    assert build([src], tmp_path / "nodedup", image_sizes=(32,)).num_images == 4


@pytest.mark.filterwarnings("ignore:.*flagged 'nonfinite-filled'")
def test_content_hash_is_reproducible_and_tracks_parameters(tmp_path):
    src = make_broken_folder(tmp_path / "raw")
    a = build([src], tmp_path / "a", image_sizes=(32,))
    b = build([src], tmp_path / "b", image_sizes=(32,))
    assert a.content_hash == b.content_hash and a.content_hash.startswith("sha256:")
    assert open_dataset(a.path).content_hash == a.content_hash
    ma, mb = (json.loads((p / "manifest.json").read_text()) for p in (a.path, b.path))
    ma.pop("created_at"), mb.pop("created_at")
    assert ma == mb
    c = build([src], tmp_path / "c", image_sizes=(32,), filter="bicubic")
    assert c.content_hash != a.content_hash


def test_failed_build_leaves_no_output_and_overwrite_rules(tmp_path, monkeypatch):
    src = tmp_path / "raw"
    src.mkdir()
    for i in range(3):
        Image.fromarray(smooth_image(i)).save(src / f"{i}.png")
    calls = {"n": 0}
    real_add = pipeline_mod.PictureBuilder.add

    def failing_add(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk on fire")
        return real_add(self, *args, **kwargs)

    monkeypatch.setattr(pipeline_mod.PictureBuilder, "add", failing_add)
    with pytest.raises(RuntimeError, match="disk on fire"):
        build([src], tmp_path / "ds", image_sizes=(16,))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]
    monkeypatch.setattr(pipeline_mod.PictureBuilder, "add", real_add)

    first = build([src], tmp_path / "ds", image_sizes=(16,))
    with pytest.raises(UserError, match="--overwrite"):
        build([src], tmp_path / "ds", image_sizes=(32,))
    assert open_dataset(first.path).image_sizes == [16]
    build([src], tmp_path / "ds", image_sizes=(32,), overwrite=True)
    assert open_dataset(tmp_path / "ds").image_sizes == [32]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "raw"]


def test_catalog_credits_and_licences_reach_the_manifest(tmp_path):
    raw = tmp_path / "raw"
    (raw / "apod").mkdir(parents=True)
    Image.fromarray(smooth_image(1)).save(raw / "apod" / "one.jpg")
    Image.fromarray(smooth_image(2)).save(raw / "apod" / "two.jpg")
    Image.fromarray(smooth_image(3)).save(raw / "apod" / "three.jpg")
    con = sqlite3.connect(raw / "catalog.sqlite")
    con.execute(
        "CREATE TABLE items (source TEXT, item_id TEXT, date TEXT, title TEXT, page_url TEXT, "
        "image_url TEXT, local_path TEXT, sha256 TEXT, bytes INTEGER, width INTEGER, height INTEGER, "
        "credit TEXT, copyright TEXT, licence TEXT, keywords TEXT, explanation TEXT, status TEXT, "
        "fetched_at TEXT)"
    )
    rows = [
        ("apod", "2020-01-01", "Orion", "apod/one.jpg", "ESA/Hubble", "CC BY 4.0"),
        ("apod", "2020-01-02", "Crab", "apod/two.jpg", "NASA", "public domain"),
    ]
    for source, item_id, title, local, credit, licence in rows:
        con.execute(
            "INSERT INTO items (source, item_id, title, local_path, credit, licence, status, keywords) "
            "VALUES (?, ?, ?, ?, ?, ?, 'ok', '[]')",
            (source, item_id, title, local, credit, licence),
        )
    con.commit()
    con.close()
    res = build([raw], tmp_path / "ds", image_sizes=(16,))
    m = open_dataset(res.path).manifest
    by_path = {s["path"]: s for s in m["sources"]}
    assert by_path["apod/one.jpg"]["licence"] == "CC BY 4.0" and by_path["apod/one.jpg"]["title"] == "Orion"
    assert by_path["apod/two.jpg"]["credit"] == "NASA" and by_path["apod/two.jpg"]["item_id"] == "2020-01-02"
    assert "licence" not in by_path["apod/three.jpg"]
    assert m["licences"] == {"CC BY 4.0": 1, "public domain": 1, "unknown": 1}
    assert m["credits"] == {"ESA/Hubble": 1, "NASA": 1, "unknown": 1}
    assert res.num_images == 3  # the catalog itself is not an input picture


def _fake_galaxy10(path, num=12):
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as fh:
        fh["images"] = rng.integers(0, 256, (num, 64, 64, 3), dtype=np.uint8)
        fh["ans"] = (np.arange(num) % 10).astype(np.uint8)
        fh["redshift"] = rng.random(num)


def test_galaxy10_keeps_labels_and_class_names(tmp_path):
    g10 = tmp_path / "Galaxy10_DECals.h5"
    _fake_galaxy10(g10)
    res = build([], tmp_path / "ds", galaxy10_path=g10, image_sizes=(32,))
    ds = open_dataset(res.path)
    assert ds.num_images == 12 and ds.label_names[0] == "Disturbed" and len(ds.label_names) == 10
    assert ds.label_names[9] == "Edge-on with Bulge"
    assert ds.labels().dtype == np.int64 and ds.labels().tolist() == [i % 10 for i in range(12)]
    with h5py.File(g10, "r") as fh:
        first = fh["images"][0]
    direct = np.asarray(Image.fromarray(first).resize((32, 32), Image.Resampling.LANCZOS))
    assert np.array_equal(ds.images()[0], direct)
    assert ds.manifest["label_counts"]["Disturbed"] == 2
    with pytest.raises(UserError, match="zenodo.org/records/10845026"):
        build([], tmp_path / "x", galaxy10_path=tmp_path / "missing.h5")
    with pytest.raises(UserError, match="on its own"):
        build([tmp_path], tmp_path / "y", galaxy10_path=g10)


def test_fits_builds_store_stretched_float32_that_can_be_undone(tmp_path):
    src = tmp_path / "raw"
    src.mkdir()
    rng = np.random.default_rng(3)
    flux = rng.gamma(2.0, 5.0, (2, 48, 48)).astype(np.float32)
    for i in range(2):
        _write_fits(src / f"g{i}.fits", flux[i])
    res = build([src], tmp_path / "ds", image_sizes=(48,))
    ds = open_dataset(res.path)
    assert ds.dtype == "float32" and ds.channels == 1 and ds.manifest["stretch"]["kind"] == "asinh"
    imgs = ds.images()
    assert imgs.dtype == np.float32 and imgs.shape == (2, 48, 48, 1) and 0 <= imgs.min() and imgs.max() <= 1
    params = ds.stretch_params(0)
    back = unstretch(imgs[0, ..., 0], params)
    expected = np.clip(flux[0][::-1], params["black"], params["white"])  # image order = FITS flipped once
    np.testing.assert_allclose(back, expected, rtol=1e-3, atol=1e-3)
    as_bytes = open_dataset(build([src], tmp_path / "u8", image_sizes=(24,), dtype="uint8").path)
    assert as_bytes.dtype == "uint8" and as_bytes.images().dtype == np.uint8
    three = open_dataset(build([src], tmp_path / "rgb", image_sizes=(24,), channels=3).path)
    assert three.channels == 3 and np.array_equal(three.images()[..., 0], three.images()[..., 2])


def test_fits_build_headroom_reaches_the_stretch_the_manifest_and_the_cli(tmp_path, capsys):
    from astrogan.cli.main import main

    src = tmp_path / "raw"
    src.mkdir()
    flux = np.random.default_rng(4).gamma(2.0, 5.0, (2, 32, 32)).astype(np.float32)
    for i in range(2):
        _write_fits(src / f"g{i}.fits", flux[i])
    kw = {"image_sizes": (32,), "stretch": "linear", "white_percentile": 100.0}
    ds = open_dataset(build([src], tmp_path / "ds", headroom=1.25, **kw).path)
    imgs = ds.images()
    assert np.allclose(imgs.reshape(2, -1).max(1), 0.8, atol=1e-3)  # every peak at 1 / 1.25
    assert (
        ds.manifest["stretch"]["headroom"] == 1.25
        and ds.manifest["preprocessing"]["params"]["headroom"] == 1.25
    )
    assert "headroom" in " ".join(ds.manifest["preprocessing"]["steps"])
    with pytest.raises(UserError, match="--headroom"):
        build([src], tmp_path / "bad", headroom=0.9, **kw)
    args = [
        "dataset",
        "build",
        str(src),
        "--image-size",
        "32",
        "--stretch",
        "linear",
        "--white-percentile",
        "100",
    ]
    assert main([*args, "-o", str(tmp_path / "cli"), "--headroom", "1.5"]) == 0
    assert np.allclose(open_dataset(tmp_path / "cli").images().reshape(2, -1).max(1), 1 / 1.5, atol=1e-3)
    capsys.readouterr()
    assert main([*args, "-o", str(tmp_path / "sci"), "--bands", "g", "--headroom", "1.5"]) == 2
    assert "--headroom is for FITS picture builds" in capsys.readouterr().err


def test_channels_luminance_matches_pillow_and_tiff_and_fits_cubes_are_read(tmp_path):
    from astrogan.data.preprocess import to_channels

    rgb = smooth_image(12)
    lum = to_channels(rgb, 1)
    pil = np.asarray(Image.fromarray(rgb).convert("L")).astype(int)
    assert lum.shape == (64, 64, 1) and np.abs(lum[..., 0].astype(int) - pil).max() <= 1
    src = tmp_path / "raw"
    src.mkdir()
    Image.fromarray(rgb).save(src / "pic.tif")
    res = build([src], tmp_path / "tif", image_sizes=(64,), channels=1)
    assert np.abs(open_dataset(res.path).images()[0, ..., 0].astype(int) - pil).max() <= 1
    cube_dir = tmp_path / "cube"
    cube_dir.mkdir()
    cube = np.random.default_rng(2).gamma(2.0, 3.0, (3, 40, 40)).astype(np.float32)
    cube[2] *= 10.0  # a brighter band keeps its weight: one black/white pair for all bands
    _write_fits(cube_dir / "c.fits", cube)
    ds = open_dataset(build([cube_dir], tmp_path / "cube_ds", image_sizes=(40,)).path)
    imgs = ds.images()
    assert ds.channels == 3 and imgs.shape == (1, 40, 40, 3)
    assert imgs[0, ..., 2].mean() > imgs[0, ..., 0].mean() + 0.2


def test_galaxy10_is_read_in_chunks(tmp_path):
    from astrogan.data import galaxy10

    g10 = tmp_path / "g.h5"
    _fake_galaxy10(g10, num=11)
    chunks = list(galaxy10.iter_chunks(g10, chunk_size=4))
    assert [(start, len(imgs)) for start, imgs, _ in chunks] == [(0, 4), (4, 4), (8, 3)]
    assert np.concatenate([lab for _, _, lab in chunks]).tolist() == [i % 10 for i in range(11)]
    with h5py.File(tmp_path / "bad.h5", "w") as fh:
        fh["pixels"] = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    with pytest.raises(UserError, match="not a Galaxy10 file"):
        galaxy10.check_file(tmp_path / "bad.h5")
