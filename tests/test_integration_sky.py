"""Getting the sky end to end: fetch/synth -> `dataset build` -> manifest provenance, un-stretch, a train smoke."""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from astrogan.cli.main import main
from astrogan.data.build import synth_credit
from astrogan.data.dataset import open_dataset
from astrogan.data.fits_io import fits_to_image_order, unstretch
from astrogan.data.sources.catalog import read_catalog
from tests.helpers.apod_mirror import MirrorServer

# 2020-05-01..18 on the real archive: NGC days with pictures (ok), days without NGC (skipped-keyword),
# a video day that mentions NGC (2020-05-18, skipped-video) and a day the archive lacks (not-found).
FIRST, LAST = date(2020, 5, 1), date(2020, 5, 18)
NUM_SYNTH, SYNTH_PX, SYNTH_SEED = 24, 32, 3


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fetch(
    srv: MirrorServer, raw: Path, *extra: str, start: date = FIRST, end: date = LAST, rc: int = 0
) -> None:
    argv = ["fetch", "apod", "--start", start.isoformat(), "--end", end.isoformat(), "--keyword", "NGC"]
    argv += ["--out", str(raw), "--base-url", srv.apod_url, "--rate", "off", "--timeout", "5", *extra]
    assert main(argv) == rc


def test_apod_fetch_to_dataset_keeps_credit_and_licence_of_ok_days_only(shared_data, tmp_path):
    raw, ds_dir = tmp_path / "raw", tmp_path / "ds"
    with MirrorServer(shared_data / "apod-metadata") as srv:
        _fetch(srv, raw)
        first = {r["item_id"]: r for r in read_catalog(raw)}
        ok_days = sorted(d for d, r in first.items() if r["status"] == "ok")
        assert len(ok_days) >= 3, first
        assert first["2020-05-18"]["status"] == "skipped-video"
        assert any(r["status"] == "skipped-keyword" for r in first.values())
        # A re-fetch that fails leaves a stale picture on disk under a row that is no longer `ok`.
        stale_day = ok_days[-1]
        stale = raw / first[stale_day]["local_path"]
        Image.new("RGB", (20, 20), (10, 200, 30)).save(stale, "JPEG")
        entry = srv.archive.entry(date.fromisoformat(stale_day))
        image_path = "/apod/" + (entry.get("hdurl") or entry["url"]).split("/apod/", 1)[1]
        srv.faults[image_path] = ["500"]
        day = date.fromisoformat(stale_day)
        _fetch(srv, raw, "--retries", "0", start=day, end=day, rc=1)  # the one day tried failed
    rows = {r["item_id"]: r for r in read_catalog(raw)}
    assert rows[stale_day]["status"] == "failed:http-500" and stale.is_file()
    ok = {d: r for d, r in rows.items() if r["status"] == "ok"}
    assert sorted(ok) == ok_days[:-1]

    assert (
        main(["dataset", "build", str(raw), "--out", str(ds_dir), "--image-size", "32", "--min-size", "1"])
        == 0
    )
    ds = open_dataset(ds_dir)
    m = ds.manifest
    by_day = {s["item_id"]: s for s in m["sources"]}
    assert sorted(by_day) == sorted(ok)  # exactly the ok days: no video, keyword-skipped or failed day
    for day_id, row in ok.items():
        src = by_day[day_id]
        assert (src["path"], src["sha256"], src["source"]) == (row["local_path"], row["sha256"], "apod")
        for key in ("credit", "copyright", "licence", "title", "page_url"):
            assert src.get(key) == row[key], (day_id, key)
    assert m["credits"] == dict(Counter(r["credit"] or r["copyright"] or "unknown" for r in ok.values()))
    assert m["licences"] == dict(Counter(r["licence"] for r in ok.values()))
    # Per image: the catalog's local_path, credit and licence travel into images.h5's meta table.
    meta = ds.meta()
    by_path = {r["local_path"]: r for r in ok.values()}
    assert ds.num_images == len(ok) and sorted(meta["source_file"]) == sorted(by_path)
    for rec in meta:
        row = by_path[rec["source_file"]]
        assert (rec["credit"], rec["licence"]) == (row["credit"] or row["copyright"], row["licence"])
        assert (rec["params_table"], rec["params_row"]) == (-1, -1)
    report = {Path(r["path"]).name: r for r in json.loads((ds_dir / "report.json").read_text())["files"]}
    assert report[stale.name]["status"] == "skipped"
    assert report[stale.name]["reason"].startswith("catalog status not ok (failed:http-500")


def _synth(out: Path, fmt: str) -> dict:
    argv = ["synth", "sersic", "--num", str(NUM_SYNTH), "--image-size", str(SYNTH_PX), "--format", fmt]
    assert main([*argv, "--seed", str(SYNTH_SEED), "--workers", "1", "--out", str(out)]) == 0
    return json.loads((out / "synth.json").read_text())


@pytest.fixture(scope="module")
def rendered():
    """The same stamps rendered in memory (FITS order, row 0 at the bottom): (N, 1, H, W) flux, params."""
    from astrogan.data.synthetic import render_sersic

    return render_sersic(NUM_SYNTH, image_size=SYNTH_PX, seed=SYNTH_SEED, num_workers=1)


@pytest.fixture(scope="module")
def fits_build(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth-fits")
    settings = _synth(root / "raw", "fits")
    assert main(["dataset", "build", str(root / "raw"), "--out", str(root / "ds"), "--image-size", "32"]) == 0
    return root, settings


def _check_synth_provenance(ds, raw: Path, settings: dict) -> list[dict[str, str]]:
    """Manifest and per-image meta carry the synth credit, licence and the params table; returns its rows."""
    m = ds.manifest
    credit = synth_credit(settings)
    assert "synthetic" in credit and settings["licence"]
    assert m["credits"] == {credit: NUM_SYNTH} and m["licences"] == {settings["licence"]: NUM_SYNTH}
    (table,) = m["synthetic"]
    params_csv = (raw / "params.csv").resolve()
    assert table["params"]["path"] == str(params_csv) and table["params"]["sha256"] == _sha256(params_csv)
    assert table["settings"] == settings and table["num_images"] == NUM_SYNTH
    with open(params_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert table["params"]["num_rows"] == len(rows) == NUM_SYNTH
    meta = ds.meta()
    assert list(meta["params_table"]) == [0] * NUM_SYNTH
    for rec in meta:  # the join a metric does: params.csv row `params_row` describes this image
        assert rows[rec["params_row"]]["file"] == rec["source_file"] == Path(rec["source"]).name
        assert (rec["credit"], rec["licence"]) == (credit, settings["licence"])
    assert all(s["source"] == "synthetic" and s["credit"] == credit for s in m["sources"])
    return rows


def test_synth_fits_to_float32_dataset_unstretches_to_rendered_flux(fits_build, rendered):
    root, settings = fits_build
    ds = open_dataset(root / "ds")
    assert (ds.dtype, ds.channels, ds.num_images, ds.image_sizes) == ("float32", 1, NUM_SYNTH, [SYNTH_PX])
    assert ds.manifest["stretch"]["kind"] == "asinh"
    rows = _check_synth_provenance(ds, root / "raw", settings)
    flux_all, params = rendered
    images, meta = ds.images(), ds.meta()
    for i, rec in enumerate(meta):
        k = int(rec["params_row"])
        assert float(rows[k]["sersic_n"]) == pytest.approx(params["sersic_n"][k], rel=1e-12)
        flux = fits_to_image_order(flux_all[k, 0])  # the dataset is in image order (row 0 at the top)
        st = ds.stretch_params(i)
        back = unstretch(images[i, ..., 0], st)
        # Inside [black, white] the stretch is a bijection and only float32 rounding of the stored value
        # remains: |dflux/dy| <= a*asinh(1/a)*cosh(asinh(1/a)) * (white - black) ~ 3 (white - black) for
        # a = 0.1, times 2**-24 for y and the float32 result, so 1e-5 of the range is a generous bound.
        # Pixels the percentile clip pushed outside come back as black or white, as unstretch documents.
        tol = 1e-5 * (st["white"] - st["black"])
        inside = (flux >= st["black"]) & (flux <= st["white"])
        assert inside.mean() > 0.95
        np.testing.assert_allclose(back[inside], flux[inside], rtol=0, atol=tol)
        np.testing.assert_allclose(back[flux < st["black"]], st["black"], rtol=0, atol=tol)
        np.testing.assert_allclose(back[flux > st["white"]], st["white"], rtol=0, atol=tol)


def test_synth_png_to_uint8_dataset_unstretches_within_quantisation(tmp_path, rendered):
    settings = _synth(tmp_path / "raw", "png")
    argv = ["dataset", "build", str(tmp_path / "raw"), "--out", str(tmp_path / "ds"), "--image-size", "32"]
    assert main([*argv, "--channels", "1"]) == 0
    ds = open_dataset(tmp_path / "ds")
    assert (ds.dtype, ds.channels, ds.num_images) == ("uint8", 1, NUM_SYNTH)
    _check_synth_provenance(ds, tmp_path / "raw", settings)
    # synth's PNG stretch u = asinh(x/s)/asinh(vmax/s) is fits_io's asinh with black 0, white vmax, a = s/vmax.
    st = ds.manifest["synthetic"][0]["settings"]["stretch"]
    params = {"kind": "asinh", "a": st["softening"] / st["vmax"], "black": 0.0, "white": st["vmax"]}
    flux_all, _ = rendered
    images = ds.images()
    for i, rec in enumerate(ds.meta()):
        flux = fits_to_image_order(flux_all[int(rec["params_row"]), 0]).astype(np.float64)
        u8 = images[i, ..., 0].astype(np.float64)
        # The stored value is round(255 u): the true flux lies in the flux interval of [u8 - 0.5, u8 + 0.5]
        # (open-ended at 0 and 255, where the stretch clips); the slack covers float32 rounding only.
        lo = np.where(u8 == 0, -np.inf, unstretch((u8 - 0.5) / 255.0, params))
        hi = np.where(u8 == 255, np.inf, unstretch((u8 + 0.5) / 255.0, params))
        slack = 1e-5 * st["vmax"]
        assert np.all(flux >= lo - slack) and np.all(flux <= hi + slack)
        mid = unstretch(u8 / 255.0, params)
        assert np.all(np.abs(mid - flux)[(u8 > 0) & (u8 < 255)] <= (hi - lo)[(u8 > 0) & (u8 < 255)])


def test_train_smoke_on_the_float32_fits_dataset(fits_build, tmp_path):
    from astrogan.training.loop import train
    from tests.helpers.training import tiny_train_config

    root, _ = fits_build
    cfg = tiny_train_config(
        root / "ds",
        tmp_path / "runs",
        image_size=32,
        log_every=1,
        name="fits-smoke",
        model={"ngf": 8, "ndf": 8},
    )
    run = train(cfg, show_progress=False)
    manifest = open_dataset(root / "ds").manifest
    config = json.loads((run / "config.json").read_text())
    assert config["dataset"]["content_hash"] == manifest["content_hash"]
    assert (
        config["dataset"]["credits"] == manifest["credits"]
        and config["dataset"]["stretch"]["kind"] == "asinh"
    )
    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines() if line.strip()]
    assert [s["step"] for s in stats][-1] == 2
    assert all(np.isfinite(s["loss_d"]) and np.isfinite(s["loss_g"]) for s in stats)
    assert (run / "checkpoints" / "generator.safetensors").is_file()
