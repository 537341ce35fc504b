"""NASA Image and Video Library and ESA/Hubble, ESA/Webb, ESO fetchers against loopback API stubs.

The stubs serve the publishers' shapes (see tests/helpers/apod_mirror.py): NASA's Collection+JSON, and
djangoplicity's Data2Dome image feed with each item's resources under ``Assets[0].Resources``.
"""

from __future__ import annotations

import json

import pytest
from PIL import Image

from astrogan.data.sources import SOURCES, HttpConfig
from astrogan.data.sources.catalog import read_catalog, sha256_file
from astrogan.utils.errors import UserError
from tests.helpers.apod_mirror import ESA_FORMATS, NASA_RENDITIONS, MirrorServer

FAST = HttpConfig(rate_per_s=None, timeout_s=0.5, max_retries=2, backoff_s=0.02, max_backoff_s=2.0)


@pytest.fixture(scope="module")
def mirror():
    """The API stubs only (no APOD archive)."""
    with MirrorServer(None) as srv:
        yield srv


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
    assert server.since_mark("/nasa/search") == [
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


def test_nasa_max_side_picks_the_rendition_before_downloading_the_original(server, tmp_path):
    """With --max-side the renditions are judged by their headers (a ``Range`` request of the first
    64 KiB): the 2 MB original and the too-big ``large`` are never downloaded whole, the ``medium``
    that fits is downloaded once."""
    start = len(server.requests)
    _nasa(server, tmp_path, max_items=1, max_side_px=40)
    (row,) = read_catalog(tmp_path)
    assert row["status"] == "ok" and row["image_url"].endswith("~medium.jpg")
    media = [r for r in server.requests[start:] if r["path"].startswith("/nasa/media/")]
    base = "/nasa/media/PIA10000/PIA10000"
    assert [(r["path"], r["range"]) for r in media] == [
        (f"{base}~orig.jpg", "bytes=0-65535"),
        (f"{base}~large.jpg", "bytes=0-65535"),
        (f"{base}~medium.jpg", "bytes=0-65535"),
        (f"{base}~medium.jpg", None),  # the one full download
    ]
    full_orig = server.bytes_sent(f"{base}~orig.jpg", start)
    assert full_orig <= 65536 and row["bytes"] < 65536
    # Without a limit the original is what is wanted, downloaded whole, as before.
    start = len(server.requests)
    _nasa(server, tmp_path / "orig", max_items=1)
    (row,) = read_catalog(tmp_path / "orig")
    assert row["image_url"].endswith("~orig.jpg") and (row["width"], row["height"]) == NASA_RENDITIONS["orig"]
    assert row["bytes"] > 1_000_000 and server.bytes_sent(f"{base}~orig.jpg", start) == row["bytes"]


def test_nasa_no_rendition_within_max_side_downloads_nothing(server, tmp_path):
    start = len(server.requests)
    summary = _nasa(server, tmp_path, max_items=1, max_side_px=4)  # the smallest is 8 px
    (row,) = read_catalog(tmp_path)
    assert row["status"] == "failed:too-big" and row["local_path"] is None and summary.all_failed
    assert not (tmp_path / "nasa-images").exists() or list((tmp_path / "nasa-images").iterdir()) == []
    media = [r for r in server.requests[start:] if r["path"].startswith("/nasa/media/")]
    assert len(media) == 5 and all(r["range"] == "bytes=0-65535" for r in media)  # headers only


def test_nasa_retries_faults_and_resumes(server, tmp_path):
    server.faults["/nasa/search"] = ["429:0"]
    server.faults["/nasa/asset/PIA10001"] = ["503"]
    server.faults["/nasa/media/PIA10002/PIA10002~orig.jpg"] = ["html"]  # not retried: one is enough
    summary = _nasa(server, tmp_path, max_items=3)
    status = {r["item_id"]: r["status"] for r in read_catalog(tmp_path)}
    assert status == {"PIA10000": "ok", "PIA10001": "ok", "PIA10002": "failed:content-type"}
    assert len(server.since_mark("/nasa/asset/PIA10001")) == 2 and summary.num_retries >= 2
    server.mark = len(server.log)
    again = _nasa(server, tmp_path, max_items=3)
    assert again.num_already_done == 2 and again.num_fetched == 1
    assert server.since_mark("/nasa/asset/") == ["/nasa/asset/PIA10002"]


def test_nasa_reads_the_hits_own_manifest_when_the_asset_endpoint_is_missing(server, tmp_path):
    """A mirror that serves the search hits' ``href`` manifests (``collection.json``, a bare JSON array
    of URLs, as images-assets.nasa.gov serves it) but not ``/asset/NASA_ID``: fetched all the same."""
    server.nasa_asset_endpoint = False
    try:
        summary = _nasa(server, tmp_path, max_items=2, max_side_px=40)
    finally:
        server.nasa_asset_endpoint = True
    rows = read_catalog(tmp_path)
    assert [(r["status"], r["image_url"].rsplit("/", 1)[1]) for r in rows] == [
        ("ok", "PIA10000~medium.jpg"),
        ("ok", "PIA10001~medium.jpg"),
    ]
    assert summary.num_fetched == 2
    assert server.since_mark("/nasa/media/PIA10000/collection.json") == [
        "/nasa/media/PIA10000/collection.json"
    ]


@pytest.mark.parametrize("body", ["[]", "null", '{"collection": {"items": ["x"]}}', '{"Collections": [3]}'])
@pytest.mark.parametrize("source", ["nasa", "esa"])
def test_a_listing_of_another_shape_is_one_failed_row_and_a_warning(server, tmp_path, source, body):
    """JSON that is not the listing (an array, null, items that are not objects) ends the listing with
    ``failed:listing-bad-shape`` and a warning naming the page: never a traceback."""
    path = "/nasa/search" if source == "nasa" else "/esa/hubble/images/d2d/"
    server.faults[path] = [f"json:{body}"]
    with pytest.warns(UserWarning, match="listing not in the expected shape"):
        if source == "nasa":
            summary = _nasa(server, tmp_path)
        else:
            summary = _esa(tmp_path, site="hubble", base_url=f"{server.root}/esa/hubble/")
    assert summary.statuses == {"failed:listing-bad-shape": 1} and summary.all_failed
    assert read_catalog(tmp_path) == []


def test_a_listing_whose_next_link_comes_back_ends(server, tmp_path):
    """A ``Next`` link to a page already read (a page linking to itself, a cycle) ends the listing: one
    request, not an endless loop of them."""
    path = "/esa/hubble/images/d2d/"
    page = {"Count": 0, "Next": f"{server.root}{path}?page=1", "Previous": None, "Collections": []}
    server.faults[path] = [f"json:{json.dumps(page)}"] * 20
    summary = _esa(tmp_path, site="hubble", base_url=f"{server.root}/esa/hubble/")
    assert server.since_mark(path) == [f"{path}?page=1"]
    assert summary.num_attempted == 0 and read_catalog(tmp_path) == []


def test_an_item_listed_twice_by_a_shifting_listing_is_fetched_once(server, tmp_path):
    """A new item published during the crawl pushes page 1's last hit to the top of page 2: the same
    ``nasa_id`` comes twice. It is fetched, counted and recorded once, in listing order."""
    listing = server.nasa
    server.nasa = [*listing[:3], listing[2], *listing[3:]]  # pages of 3: PIA10002 ends page 1, starts page 2
    try:
        summary = _nasa(server, tmp_path, max_items=6)
    finally:
        server.nasa = listing
    rows = read_catalog(tmp_path)
    assert [r["item_id"] for r in rows] == [f"PIA{10000 + k}" for k in range(5)]
    assert server.since_mark("/nasa/asset/PIA10002") == ["/nasa/asset/PIA10002"]
    assert summary.num_fetched == 5 and summary.num_attempted == 5


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
    assert len(server.since_mark(f"/esa/{site}/images/d2d/")) == 3  # followed "Next" to the end
    assert summary.num_fetched == 3
    for r in rows:
        assert r["source"] == source and r["status"] == "ok"
        # The largest web-format resource within --max-side 4096: not the TIFF original.
        assert r["image_url"] == f"{server.root}/esa/{site}/archives/images/large/{r['item_id']}.jpg"
        assert (r["width"], r["height"]) == (40, 30)
        assert r["licence"].startswith("CC BY 4.0") and r["credit"] in r["licence"]
        assert r["credit"].startswith("ESA/Hubble & NASA")
        assert "Milky Way : Nebula : Type : Star Formation" in json.loads(r["keywords"])
        assert r["page_url"] == f"{server.root}/esa/{site}/images/{r['item_id']}/"
        assert sha256_file(tmp_path / r["local_path"]) == r["sha256"]


def test_esa_max_items_limit_and_small_max_side(server, tmp_path):
    _esa(tmp_path, site="hubble", max_items=3, max_side_px=25, base_url=f"{server.root}/esa/hubble/")
    rows = read_catalog(tmp_path)
    assert len(rows) == 3 and all(r["image_url"].endswith(f"/potwmedium/{r['item_id']}.jpg") for r in rows)
    with pytest.raises(UserError, match="--site"):
        _esa(tmp_path, site="spitzer")


def test_esa_stub_serves_the_d2d_shape(server):
    """The stub follows djangoplicity's feed (media/d2d views + serializers, archives/utils), not the
    parser: four top-level keys; per item one image asset whose ``Resources`` carry the files."""
    import httpx

    doc = httpx.get(f"{server.root}/esa/eso/images/d2d/?page=2").json()
    assert set(doc) == {"Count", "Next", "Previous", "Collections"}
    assert doc["Previous"].endswith("/esa/eso/images/d2d/") and doc["Next"].endswith("?page=3")
    item = doc["Collections"][0]
    assert "Resources" not in item and len(item["Assets"]) == 1
    (asset,) = item["Assets"]
    assert asset["MediaType"] == "Image" and "ObservationData" in asset
    kinds = [r["ResourceType"] for r in asset["Resources"]]
    assert kinds == ["Original", "Large", "Medium", "Small", "Thumbnail", "Icon"] == list(ESA_FORMATS)
    for r in asset["Resources"]:
        assert r["URL"].startswith(f"{server.root}/esa/eso/archives/images/") and r["MediaType"] == "Image"
        assert all(isinstance(d, float) for d in r["Dimensions"])


# One item as the real feed serves it (ESO's eso2215a: ids, sizes, URLs and AVM category as published),
# typed here from djangoplicity's serializers; the parser must read it as it comes.
D2D_ITEM = {
    "Creator": "ESO",
    "URL": "https://www.eso.org/",
    "ID": "eso2215a",
    "Title": "ESO's 60th anniversary image: the Cone Nebula as seen by the VLT",
    "Description": "The Cone Nebula is part of a star-forming region of space, NGC 2264.",
    "Credit": "ESO",
    "PublicationDate": "2022-11-10T14:00:00Z",
    "Subject": {
        "Category": ["Milky Way : Nebula : Type : Star Formation"],
        "Name": ["Cone Nebula", "NGC 2264"],
    },
    "ReferenceURL": "https://www.eso.org/public/images/eso2215a/",
    "Rights": "Creative Commons Attribution 4.0 International License",
    "Priority": 91,
    "Assets": [
        {
            "MediaType": "Image",
            "Resources": [
                {
                    "ResourceType": "Original",
                    "MediaType": "Image",
                    "URL": "https://cdn.eso.org/images/original/eso2215a.tif",
                    "FileSize": 16534488,
                    "Dimensions": [1639.0, 1682.0],
                    "ProjectionType": "Tan",
                },
                {
                    "ResourceType": "Large",
                    "MediaType": "Image",
                    "URL": "https://cdn.eso.org/images/large/eso2215a.jpg",
                    "FileSize": 1003210,
                    "Dimensions": [1639.0, 1682.0],
                },
                {
                    "ResourceType": "Small",
                    "MediaType": "Image",
                    "URL": "https://cdn.eso.org/images/screen/eso2215a.jpg",
                    "FileSize": 230211,
                    "Dimensions": [1247.0, 1280.0],
                },
                {
                    "ResourceType": "Thumbnail",
                    "MediaType": "Image",
                    "URL": "https://cdn.eso.org/images/potwmedium/eso2215a.jpg",
                    "FileSize": 40123,
                    "Dimensions": [320.0, 180.0],
                },
            ],
        }
    ],
}


def test_esa_parser_reads_the_real_item_shape():
    from astrogan.data.sources.esa import candidate_resources, categories_of, category_matches, pick_resource

    assert pick_resource(D2D_ITEM, 4096)["URL"].endswith("/large/eso2215a.jpg")  # not the TIFF
    assert pick_resource(D2D_ITEM, 1300)["URL"].endswith("/screen/eso2215a.jpg")
    assert pick_resource(D2D_ITEM, None)["URL"].endswith("/original/eso2215a.tif")  # --max-side 0
    assert [r["ResourceType"] for r in candidate_resources(D2D_ITEM, 1300)] == ["Small", "Thumbnail"]
    cats = categories_of(D2D_ITEM)
    for want in ("nebulae", "Nebula", "star formation"):
        assert category_matches(want, cats)
    assert not category_matches("galaxies", cats)
    assert category_matches("galaxies", ["Local Universe : Galaxy : Type : Spiral"])
    # The flat shape an earlier version assumed is still read (cheap to keep).
    flat = {"ID": "x", "Resources": D2D_ITEM["Assets"][0]["Resources"]}
    assert pick_resource(flat, 1300)["URL"].endswith("/screen/eso2215a.jpg")


def test_esa_resources_without_dimensions_are_judged_by_their_header(server, tmp_path):
    """A resource the feed gives no ``Dimensions`` for (djangoplicity leaves them out when unknown) is
    probed (first 64 KiB) before it is downloaded; only the one within --max-side is fetched whole."""
    saved = json.loads(json.dumps(server.esa["hubble"]))
    try:
        for it in server.esa["hubble"]:
            for r in it["Assets"][0]["Resources"]:
                del r["Dimensions"]
        start = len(server.requests)
        _esa(tmp_path, site="hubble", max_items=1, max_side_px=25, base_url=f"{server.root}/esa/hubble/")
    finally:
        server.esa["hubble"] = saved
    (row,) = read_catalog(tmp_path)
    assert row["status"] == "ok" and row["image_url"].endswith("/potwmedium/heic2000a.jpg")
    media = [
        (r["path"].rsplit("/", 2)[1], r["range"])
        for r in server.requests[start:]
        if "/archives/" in r["path"]
    ]
    assert media == [
        ("large", "bytes=0-65535"),
        ("wallpaper5", "bytes=0-65535"),
        ("screen", "bytes=0-65535"),
        ("potwmedium", "bytes=0-65535"),
        ("potwmedium", None),
    ]


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
