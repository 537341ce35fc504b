"""ESA/Hubble, ESA/Webb, ESO fetcher against a crawled mirror: no d2d feed, only the sites' HTML pages."""

from __future__ import annotations

import warnings

import pytest

from astrogan.data.sources import SOURCES, HttpConfig
from astrogan.data.sources.catalog import read_catalog
from tests.helpers.apod_mirror import MirrorServer
from tests.helpers.esa_crawl import crawl_title

FAST = HttpConfig(rate_per_s=None, timeout_s=0.5, max_retries=2, backoff_s=0.02, max_backoff_s=2.0)


@pytest.fixture(scope="module")
def mirror():
    """The API stubs and the crawled mirror (no APOD archive)."""
    with MirrorServer(None) as srv:
        yield srv


def _crawl(server, out, site, *, cdn=True, **kw):
    """Fetch from the crawl of ``site``; its "CDN" (localhost) allowed as the real CDN host is."""
    http = FAST.allowing({f"localhost:{server.port}"}) if cdn else FAST
    return SOURCES["esa"].build(http, site=site, base_url=f"{server.root}/esa-crawl/{site}/", **kw).fetch(out)


def _rows(out):
    return {r["item_id"]: r for r in read_catalog(out)}


@pytest.mark.parametrize("site", ["hubble", "webb", "eso"])
def test_esa_reads_the_html_archive_when_the_d2d_feed_is_not_found(server, tmp_path, site):
    summary = _crawl(server, tmp_path, site, category="nebulae")
    prefix = f"/esa-crawl/{site}"
    assert server.since_mark(f"{prefix}/images/d2d/")  # the feed first
    listing = f"{prefix}/images/archive/category/nebulae/"
    assert [p for p in server.since_mark(listing) if "page/" in p or p == listing] == [
        listing,
        listing + "page/2/",
    ]
    assert summary.num_fetched == 2 and summary.failed == {"not-found": 1}  # item 4's page is missing
    rows = _rows(tmp_path)
    ident = server.esa[site][0]["ID"]
    r = rows[ident]
    assert r["status"] == "ok" and r["width"] == 40  # the large JPEG: the page's Size (4000) fits 4096
    assert (
        r["image_url"] == f"http://localhost:{server.port}/esa-cdn/{site}/archives/images/large/{ident}.jpg"
    )
    assert r["credit"] == "ESA/Hubble & NASA, author 0" and "author 0" in r["licence"]
    assert r["title"] == crawl_title(0, site) and r["date"] == "2020-02-01"
    assert r["explanation"] == (
        f"Description of {ident}. A nebula, seen.\n\n[Image description: a glowing cloud.]"
    )  # the page's paragraphs, up to the credit
    assert r["page_url"] == f"{server.root}{prefix}/images/{ident}/"
    assert "Milky Way : Nebula : Type : Star Formation" in r["keywords"] and "NGC 100" in r["keywords"]
    assert rows[server.esa[site][4]["ID"]]["status"] == "not-found"
    assert not [p for p in server.since_mark("/") if p.endswith(".tif") or "/wallpaper" in p]


def test_esa_html_all_images_largest_fitting_rendition_and_odd_pages(server, tmp_path):
    summary = _crawl(server, tmp_path, "hubble", max_side_px=30)
    rows = _rows(tmp_path)
    ids = [it["ID"] for it in server.esa["hubble"]]
    assert [rows[i]["status"] for i in ids] == ["ok", "ok", "ok", "skipped-no-image", "not-found"]
    assert rows[ids[0]]["image_url"].endswith(f"/screen/{ids[0]}.jpg")  # publicationjpg (32 px) is over 30
    assert rows[ids[1]]["title"] == "hubble picture 1 & the 'Pillars'"  # entities read
    sent = server.since_mark("/")
    assert not [p for p in sent if "/large/" in p or p.endswith(".tif")]  # judged by the page's Size
    assert summary.num_skipped == 1 and summary.failed == {"not-found": 1}
    assert "/esa-crawl/hubble/images/page/3/" in sent and "/esa-crawl/hubble/images/page/4/" not in sent


def test_esa_html_category_by_name_from_the_site_menu(server, tmp_path):
    summary = _crawl(server, tmp_path, "eso", category="Nebula", max_items=1)
    assert summary.num_fetched == 1 and not summary.failed
    assert "/esa-crawl/eso/images/archive/category/nebula/" in server.since_mark("/")  # the guess first
    assert _rows(tmp_path)[server.esa["eso"][0]["ID"]]["status"] == "ok"


def test_esa_html_unknown_category_names_the_sites_categories(server, tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = _crawl(server, tmp_path, "hubble", category="comets")
    assert summary.all_failed and summary.failed == {"listing-not-found": 1}
    assert any("comets" in str(w.message) and "starclusters" in str(w.message) for w in caught)


def test_esa_html_resume_reads_no_page_twice(server, tmp_path):
    _crawl(server, tmp_path, "webb")
    server.mark = len(server.log)
    summary = _crawl(server, tmp_path, "webb")
    assert summary.num_fetched == 0 and summary.num_already_done >= 3
    ok = [i for i, r in _rows(tmp_path).items() if r["status"] == "ok"]
    assert not [
        p for p in server.since_mark("/") if any(f"/images/{i}/" in p or f"/{i}.jpg" in p for i in ok)
    ]


def test_esa_html_links_to_hosts_not_allowed_are_never_followed(server, tmp_path):
    summary = _crawl(server, tmp_path, "hubble", cdn=False, max_items=2)
    assert summary.num_fetched == 0 and summary.failed == {"host-not-allowed": 2}
    assert not server.since_mark("/esa-cdn/")


def test_esa_html_when_the_feed_url_answers_an_html_page(server, tmp_path):
    """A mirror that answers every unknown path with a page (200 text/html) has no feed either."""
    server.faults["/esa-crawl/eso/images/d2d/"] = ["html"]
    summary = _crawl(server, tmp_path, "eso", max_items=1)
    assert summary.num_fetched == 1 and not summary.failed


def test_esa_hubble_allows_its_former_domain_and_cdn():
    """Saved ESA/Hubble pages (toolforge/tool-spacemedia's potw2319a.html) link the large JPEG on
    cdn.spacetelescope.org: a crawl of them must be able to download it."""
    from astrogan.data.sources.esa_html import parse_detail_page

    page = (
        '<h1>Cosmic leviathan</h1><div class="object-info"><table><tr><td class="title">Size:</td>'
        '<td>2839 x 2389 px</td></tr></table></div><div class="archive_download"><span class="archive_dl_text">'
        '<a href="https://cdn.spacetelescope.org/archives/images/large/potw2319a.jpg">Large JPEG</a></span></div>'
    )
    item = parse_detail_page(page, "https://www.spacetelescope.org/images/potw2319a/", {"ID": "potw2319a"})
    (res,) = item["Assets"][0]["Resources"]
    assert res["Dimensions"] == [2839.0, 2389.0]
    hosts = SOURCES["esa"].build(FAST, site="hubble").http.allowed_hosts
    assert {"cdn.spacetelescope.org", "www.spacetelescope.org"} <= hosts
