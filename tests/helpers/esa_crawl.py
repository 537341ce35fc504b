"""A crawled mirror of ESA/Hubble, ESA/Webb and ESO (their HTML archive pages only, no d2d feed) for the fetch tests.

Pages follow the sites' templates and saved pages (see ``astrogan.data.sources.esa_html``): list pages
``/esa-crawl/<site>/images/`` and ``.../images/archive/category/<slug>/`` (then ``page/N/``, 404 past
the end) with the ``var images = [...]`` script (titles HTML-escaped), a category menu with
root-relative links, and the ``Next`` link in ``div.prev-next``; detail pages ``/images/<id>/`` with
the ``<h1>``, the credit, the ``object-info`` tables (``Release date``, ``Size``, ``Type``,
``Category``) and the downloads: the original TIFF root-relative, the JPEGs absolute on the "CDN"
(``http://localhost:PORT/esa-cdn/...``: another host), ``zoomable/``, wallpapers. Messiness, by item
number: 1 has a title with ``&`` and ``'``; 3's page has no usable download (zoomable and TIFFs only);
4's detail page is missing (404); the Webb list pages carry no script, only the image links.
"""

from __future__ import annotations

import html
import re

HTML_SIZES = {"large": (40, 30), "publicationjpg": (32, 24), "screen": (28, 21), "wallpaper1": (20, 15)}
DECLARED_SIZE = (4000, 3000)  # the original's size, as the page's "Size:" row says
CATEGORIES = {
    "nebulae": ("Nebulae", "Nebula"),
    "galaxies": ("Galaxies", "Galaxy"),
    "starclusters": ("Star Clusters", "Cluster"),
}
PAGE_SIZE = 2


def crawl_title(k: int, site: str) -> str:
    """The title of item ``k`` on the crawled site (item 1's has characters HTML escapes)."""
    return f"{site} picture {k}" + (" & the 'Pillars'" if k == 1 else "")


def _menu(prefix: str) -> str:
    links = "".join(
        f'<li><a href="{prefix}/images/archive/category/{slug}/">{name}\n    </a></li>'
        for slug, (name, _) in CATEGORIES.items()
    )
    return f'<ul class="submenu-aim sublevel">{links}<li><a href="{prefix}/images/viewall/">View All</a></li></ul>'


def _page(title: str, body: str) -> bytes:
    return (
        f'<!DOCTYPE HTML>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"</head><body>{body}</body></html>"
    ).encode()


def list_page(server, site: str, items: list[dict], prefix: str, base: str, page: int) -> bytes | None:
    """List page ``page`` of ``items`` (None past the end)."""
    chunk = items[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    if page > 1 and not chunk:
        return None
    if site == "webb":  # no script: the image links (as the Webb template also writes them)
        listing = "".join(
            f'<div><a href="{prefix}/images/{it["ID"]}/"><img alt="{html.escape(it["Title"])}" '
            f'src="http://localhost:{server.port}/esa-cdn/{site}/archives/images/screen/{it["ID"]}.jpg"/></a></div>'
            for it in chunk
        )
    else:
        objs = "".join(
            f"{{id: '{it['ID']}', title: '{html.escape(it['Title'])}', width: {DECLARED_SIZE[0]}, "
            f"height: {DECLARED_SIZE[1]}, src: '/esa-cdn/{site}/archives/images/thumb300y/{it['ID']}.jpg', "
            f"url: '{prefix}/images/{it['ID']}/', potw: ''}},"
            for it in chunk
        )
        listing = f'<script>\nvar images = [{objs}];\n</script><div class="image-list image-list-300"></div>'
    nav = ""
    if page > 1:
        nav += f'<a href="{base}page/{page - 1}/">Previous</a>'
    if page * PAGE_SIZE < len(items):
        nav += f'<a href="{base}page/{page + 1}/">Next</a>'
    pages = "".join(
        f'<li><a href="{base}page/{n}/">{n}</a></li>' for n in range(1, len(items) // PAGE_SIZE + 2)
    )
    body = (
        f'{_menu(prefix)}<h1>Images</h1>{listing}<div class="row statusbar"><ul class="pagination">{pages}'
        f'</ul><div class="col-md-3 prev-next">{nav}</div></div>'
    )
    return _page("Images", body)


def detail_page(server, site: str, k: int, item: dict, prefix: str) -> bytes | None:
    """Detail page of item ``k`` (None: missing from the crawl)."""
    if k == 4:
        return None
    ident = item["ID"]
    cdn = f"http://localhost:{server.port}/esa-cdn/{site}/archives/images"
    category = next(slug for slug, (_, word) in CATEGORIES.items() if word in item["Subject"]["Category"][0])
    name = CATEGORIES[category][0]
    formats = [("Fullsize Original", f"{prefix}/media/archives/images/original/{ident}.tif")]
    if k != 3:
        formats += [
            ("Large JPEG", f"{cdn}/large/{ident}.jpg"),
            ("Publication TIFF 4K", f"{prefix}/media/archives/images/publicationtiff/{ident}.tif"),
            ("Publication JPEG", f"{cdn}/publicationjpg/{ident}.jpg"),
            ("Screensize JPEG", f"{cdn}/screen/{ident}.jpg"),
        ]
    dls = "".join(
        '<div class="archive_download"><span class="archive_dl_icon"><img src="/assets/icons/icon_phot.png" />'
        f'</span><span class="archive_dl_text"><a href="{url}">{title}</a></span><span class="archive_dl_size">'
        "<div>1.2 MB</div></span></div>"
        for title, url in formats
    )
    zoom = '<div class="archive_download"><span class="archive_dl_text"><a href="zoomable/">Zoomable</a></span></div>'
    walls = (
        ""
        if k == 3
        else f'<span class="archive_dl_text"><a href="{cdn}/wallpaper1/{ident}.jpg">1024x768</a></span>'
    )
    credit = html.escape(item["Credit"])
    day = int(item["PublicationDate"][8:10])
    body = (
        f'{_menu(prefix)}<div class="col-md-9"><h1>{html.escape(crawl_title(k, site))}</h1>'
        # The description as djangoplicity writes it: paragraphs nested in a <p>, links inside.
        f'<p><p>{html.escape(item["Description"])} A <a href="{prefix}/wordbank/nebula/">nebula</a>, '
        "seen.</p>\n<p>[<em>Image description:</em> a glowing cloud.]</p></p>"
        f'<strong>Credit:</strong><div class="credit"><p>{credit}</p></div>'
        f'<div class="copyright"><a href="/copyright/">Usage of Images</a></div></div>'
        '<div class="col-md-3 right-column"><div class="object-info"><h3>About the Image</h3><div><table>'
        f'<tr><td class="title">Id:</td><td>{ident}</td></tr><tr><td class="title">Type:</td><td>Observation</td></tr>'
        f'<tr><td class="title">Release date:</td><td>{day} February 2020, 12:00</td></tr>'
        f'<tr><td class="title">Size:</td><td>{DECLARED_SIZE[0]} x {DECLARED_SIZE[1]} px</td></tr></table></div>'
        "<hr><h3>About the Object</h3><div><table>"
        f'<tr><td class="title">Name:</td><td><a href="http://simbad.example/?Ident={k}">NGC {100 + k}</a></td></tr>'
        f'<tr><td class="title">Type:</td><td>{item["Subject"]["Category"][0]}</td></tr>'
        f'<tr><td class="title">Category:</td><td><a href="{prefix}/images/archive/category/{category}/">{name}</a>'
        "<br></td></tr></table></div><hr></div>"
        f'<div><h3 class="archivegrouptitle">Image Formats</h3>{dls}<hr class="esohr" /></div>'
        f'<div><h3 class="archivegrouptitle">Zoomable</h3>{zoom}</div>'
        f'<div><h3 class="archivegrouptitle">Wallpapers</h3><div class="archive_download">{walls}</div></div></div>'
    )
    return _page(crawl_title(k, site), body)


def route(server, path: str) -> tuple[bytes, str, int]:
    """Answer a ``/esa-crawl/<site>/...`` or ``/esa-cdn/<site>/...`` path."""
    not_found = (b"<html><body><h1>Page not found</h1></body></html>", "text/html; charset=utf-8", 404)
    m = re.fullmatch(r"/esa-cdn/(hubble|webb|eso)/archives/images/(\w+)/(\w+)\.jpg", path)
    if m:
        if m.group(2) not in HTML_SIZES:
            return not_found
        from tests.helpers.apod_mirror import tiny_image

        body, ctype = tiny_image(path, ".jpg", size=HTML_SIZES[m.group(2)])
        return body, ctype, 200
    m = re.fullmatch(
        r"/esa-crawl/(hubble|webb|eso)(/images/(?:archive/category/(\w+)/)?)(?:page/(\d+)/)?", path
    )
    if m:
        site, slug = m.group(1), m.group(3)
        prefix = f"/esa-crawl/{site}"
        items = [{**it, "Title": crawl_title(k, site)} for k, it in enumerate(server.esa[site])]
        if slug is not None:
            if slug not in CATEGORIES:
                return not_found
            items = [it for it in items if CATEGORIES[slug][1] in it["Subject"]["Category"][0]]
        page = list_page(server, site, items, prefix, prefix + m.group(2), int(m.group(4) or 1))
        return (page, "text/html; charset=utf-8", 200) if page is not None else not_found
    m = re.fullmatch(r"/esa-crawl/(hubble|webb|eso)/images/([A-Za-z0-9_-]+)/", path)
    if m:
        site = m.group(1)
        found = [(k, it) for k, it in enumerate(server.esa[site]) if it["ID"] == m.group(2)]
        page = detail_page(server, site, *found[0], f"/esa-crawl/{site}") if found else None
        return (page, "text/html; charset=utf-8", 200) if page is not None else not_found
    return not_found
