"""NASA Image and Video Library and ESA/Hubble, ESA/Webb, ESO fetchers against loopback API stubs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from apod_mirror import NASA_RENDITIONS, MirrorServer  # noqa: E402
from astrogan.data.sources import SOURCES, HttpConfig  # noqa: E402
from astrogan.data.sources.catalog import read_catalog, sha256_file  # noqa: E402
from astrogan.utils.errors import UserError  # noqa: E402

FAST = HttpConfig(rate_per_s=None, timeout_s=0.5, max_retries=2, backoff_s=0.02, max_backoff_s=2.0)


@pytest.fixture(scope="module")
def stub():
    with MirrorServer(None) as srv:
        yield srv


@pytest.fixture()
def server(stub):
    stub.faults.clear()
    stub.mark = len(stub.log)
    yield stub
    stub.faults.clear()


def _since(server, prefix):
    return [p for p, _ in server.log[server.mark :] if p.startswith(prefix)]


def _nasa(server, out, **kw):
    return (
        SOURCES["nasa-images"]
        .build(FAST, base_url=f"{server.root}/nasa/", **{"query": "nebula", **kw})
        .fetch(out)
    )


def _esa(out, **kw):
    return SOURCES["esa"].build(FAST, **kw).fetch(out)


def test_nasa_images_only_paginated_with_metadata(server, tmp_path):
    summary = _nasa(server, tmp_path, max_items=5)
    rows = read_catalog(tmp_path)
    assert [r["item_id"] for r in rows] == [f"PIA{10000 + k}" for k in range(5)]  # no video
    assert summary.num_fetched == 5
    assert _since(server, "/nasa/search") == [
        "/nasa/search?q=nebula&media_type=image&page=1",
        "/nasa/search?q=nebula&media_type=image&page=2",
    ]
    for k, r in enumerate(rows):
        assert r["status"] == "ok" and r["title"] == f"Nebula number {k}"
        assert r["credit"] == "NASA/JPL-Caltech" and "NASA" in r["licence"]
        assert json.loads(r["keywords"]) == ["nebula", f"kw{k}"]
        assert r["explanation"] == f"A glowing nebula, picture {k}." and r["date"] == f"2010-01-{k + 1:02d}"
        assert (r["width"], r["height"]) == NASA_RENDITIONS["orig"]  # no limit: the original
        assert r["image_url"].endswith("~orig.jpg") and r["local_path"] == f"nasa-images/{r['item_id']}.jpg"
        assert sha256_file(tmp_path / r["local_path"]) == r["sha256"]


def test_nasa_largest_rendition_within_max_side(server, tmp_path):
    _nasa(server, tmp_path, max_items=2, max_side_px=40)
    for r in read_catalog(tmp_path):
        assert r["status"] == "ok" and r["image_url"].endswith("~medium.jpg")
        assert (r["width"], r["height"]) == NASA_RENDITIONS["medium"]
        assert Image.open(tmp_path / r["local_path"]).size == NASA_RENDITIONS["medium"]
    assert sorted(p.name for p in (tmp_path / "nasa-images").iterdir()) == ["PIA10000.jpg", "PIA10001.jpg"]


def test_nasa_retries_faults_and_resumes(server, tmp_path):
    server.faults["/nasa/search"] = ["429:0"]
    server.faults["/nasa/asset/PIA10001"] = ["503"]
    server.faults["/nasa/media/PIA10002/PIA10002~orig.jpg"] = ["html"]  # not retried: one is enough
    summary = _nasa(server, tmp_path, max_items=3)
    status = {r["item_id"]: r["status"] for r in read_catalog(tmp_path)}
    assert status == {"PIA10000": "ok", "PIA10001": "ok", "PIA10002": "failed:content-type"}
    assert len(_since(server, "/nasa/asset/PIA10001")) == 2 and summary.num_retries >= 2
    server.mark = len(server.log)
    again = _nasa(server, tmp_path, max_items=3)
    assert again.num_already_done == 2 and again.num_fetched == 1
    assert _since(server, "/nasa/asset/") == ["/nasa/asset/PIA10002"]


def test_nasa_bad_input(server, tmp_path):
    with pytest.raises(UserError, match="--query"):
        _nasa(server, tmp_path, query="  ")
    with pytest.raises(UserError, match="--max"):
        _nasa(server, tmp_path, max_items=0)


@pytest.mark.parametrize(("site", "source"), [("hubble", "esa-hubble"), ("webb", "esa-webb"), ("eso", "eso")])
def test_esa_category_pagination_and_cc_by_credit(server, tmp_path, site, source):
    summary = _esa(tmp_path, site=site, category="nebulae", base_url=f"{server.root}/esa/{site}/")
    rows = read_catalog(tmp_path)
    prefix = {"hubble": "heic", "webb": "weic", "eso": "eso"}[site]
    assert [r["item_id"] for r in rows] == [f"{prefix}{2000 + k}a" for k in (0, 2, 4)]
    assert len(_since(server, f"/esa/{site}/images/d2d/")) == 3  # followed "Next" to the end
    assert summary.num_fetched == 3
    for r in rows:
        assert r["source"] == source and r["status"] == "ok"
        assert r["image_url"].endswith("/large.jpg")  # the 4000 px TIFF original is over --max-side
        assert (r["width"], r["height"]) == (40, 30)
        assert r["licence"].startswith("CC BY 4.0") and r["credit"] in r["licence"]
        assert r["credit"].startswith("ESA/Hubble & NASA")
        assert "Nebulae" in json.loads(r["keywords"])
        assert sha256_file(tmp_path / r["local_path"]) == r["sha256"]


def test_esa_max_items_limit_and_small_max_side(server, tmp_path):
    _esa(tmp_path, site="hubble", max_items=3, max_side_px=25, base_url=f"{server.root}/esa/hubble/")
    rows = read_catalog(tmp_path)
    assert len(rows) == 3 and all(r["image_url"].endswith("/thumb.jpg") for r in rows)
    with pytest.raises(UserError, match="--site"):
        _esa(tmp_path, site="spitzer")


def test_cli_fetch_nasa_and_esa(server, tmp_path, capsys):
    from astrogan.cli.main import main

    rc = main(
        [
            "fetch",
            "nasa-images",
            "--query",
            "nebula",
            "--max",
            "2",
            "--max-side",
            "20",
            "--out",
            str(tmp_path),
            "--base-url",
            f"{server.root}/nasa/",
            "--rate",
            "off",
        ]
    )
    assert rc == 0
    rc = main(
        [
            "fetch",
            "esa",
            "--site",
            "webb",
            "--max",
            "1",
            "--out",
            str(tmp_path),
            "--base-url",
            f"{server.root}/esa/webb/",
            "--rate",
            "off",
        ]
    )
    assert rc == 0
    rows = read_catalog(tmp_path)
    assert sorted((r["source"], r["status"]) for r in rows) == [
        ("esa-webb", "ok"),
        ("nasa-images", "ok"),
        ("nasa-images", "ok"),
    ]
    assert main(["fetch", "esa", "--site", "nope", "--out", str(tmp_path)]) == 2
    assert "error: --site must be one of" in capsys.readouterr().err
