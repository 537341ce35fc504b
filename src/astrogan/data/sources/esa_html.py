"""ESA/Hubble, ESA/Webb and ESO archive HTML pages (a mirror without the d2d feed): list and detail pages.

Shape (read from djangoplicity's templates and the sites' own, and checked against saved pages:
``archives/image/index_normal.html`` and ``paginator_tag.html`` of github.com/esawebb-hubble/esahubble
and github.com/esawebb/esawebb, ``archives/object_resources.html``, ``archives/views.py``
(``process_object_downloads``) and ``media/options/images.py`` (``ImageOptions.downloads``) of
github.com/djangoplicity/djangoplicity, and the saved detail pages ``esahubble/potw2319a.html``,
``esawebb/WLMb.html``, ``eso/images_eso2215a.html`` of github.com/toolforge/tool-spacemedia):

- list pages: ``<site>/images/`` (all images) and ``<site>/images/archive/category/<slug>/``
  (``nebulae``, ``galaxies``, ``starclusters``...), then ``.../page/N/``; 50 a page; the next page is
  the ``Next`` link of ``div.prev-next`` (none on the last page; a page past the end is 404). Each page
  embeds ``<script>var images = [{id: '<id>', title: '<title, HTML-escaped>', width: W, height: H,
  src: '<thumbnail>', url: '/images/<id>/', potw: ''}, ...];</script>`` (only images with a known
  size); the Webb pages also link each image (``<a href="/images/<id>/"><img ...></a>``), which is read
  when the script is absent. The site's menu links every category (``/images/archive/category/<slug>/``).
- detail page ``<site>/images/<id>/``: ``<h1>`` title, ``<div class="credit">`` (HTML), tables in
  ``div.object-info`` whose rows are ``<td|th class="title">Label:</td><td>value</td>`` (``Release
  date: 8 May 2023, 06:00``, ``Size: 2839 x 2389 px``, ``Name:``, ``Type:`` (AVM, e.g. ``Milky Way :
  Nebula : Type : Star Formation``), ``Category:`` (links)), and the downloads, each ``<div
  class="archive_download"><span class="archive_dl_text"><a href="URL">Title</a></span>...``:
  ``Fullsize Original`` (``.tif``/``.psb``, often root-relative ``/media/archives/images/original/``),
  ``Large JPEG`` (full size, on the CDN), ``Publication TIFF 4K``, ``Publication JPEG`` (4000 px),
  ``Screensize JPEG`` (1280 px), ``Zoomable`` (``zoomable/``), wallpapers (``1024x768``..., crops).

A detail page becomes an item of the d2d feed's shape (``esa.py``), so the choice of a download is the
same: the original and the large JPEG carry the page's ``Size``; the other renditions are judged by
their header.
"""

from __future__ import annotations

import html
import re
from datetime import datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

HTML_ITEM = "_html"  # marks an item read from a list page (its detail page is read when it is fetched)
_SCRIPT = re.compile(r"var\s+images\s*=\s*\[(.*?)\]\s*;", re.DOTALL)
_OBJECT = re.compile(r"\{(.*?)\}", re.DOTALL)
_FIELD = re.compile(r"""(\w+)\s*:\s*(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)"|(-?\d+(?:\.\d+)?))""")
_DETAIL = re.compile(r"(?:^|/)images/([A-Za-z0-9_-]+)/?$")
_CATEGORY = re.compile(r"(?:^|/)images/archive/category/([A-Za-z0-9_-]+)/?$")
_SIZE = re.compile(r"(\d+)\s*x\s*(\d+)\s*px", re.IGNORECASE)
_WALLPAPER = re.compile(r"^\s*\d+\s*x\s*\d+\s*$")
_NOT_IDS = {"archive", "viewall", "potw", "search", "zoomable", "d2d", "page"}


def _squash(text: str | None) -> str | None:
    out = " ".join((text or "").split())
    return out or None


def _parser(page: str) -> Any:
    from selectolax.lexbor import LexborHTMLParser

    return LexborHTMLParser(page)


def _number(value: str | None) -> int:
    try:
        return int(float(value or 0))
    except ValueError:
        return 0


def parse_list_page(page: str, url: str) -> tuple[list[dict[str, Any]], str | None]:
    """Items of one list page (``ID``, ``Title``, ``ReferenceURL``, the original's ``Dimensions``) and the
    next page's URL (None on the last page)."""
    items: list[dict[str, Any]] = []
    tree = _parser(page)
    script = next((m for s in tree.css("script") if (m := _SCRIPT.search(s.text() or ""))), None)
    if script is not None:
        for obj in _OBJECT.finditer(script.group(1)):
            fields = {
                m.group(1): next(g for g in m.groups()[1:] if g is not None)
                for m in _FIELD.finditer(obj.group(1))
            }
            ident = html.unescape(fields.get("id", "")).strip()
            if not ident:
                continue
            dims = [_number(fields.get("width")), _number(fields.get("height"))]
            items.append(
                {
                    "ID": ident,
                    "Title": _squash(html.unescape(fields.get("title", ""))),
                    "ReferenceURL": urljoin(url, html.unescape(fields.get("url") or f"../{ident}/")),
                    "Dimensions": dims if all(dims) else None,
                    HTML_ITEM: True,
                }
            )
    else:  # the image links themselves (a thumbnail inside each)
        seen: set[str] = set()
        for a in tree.css("a"):
            href = (a.attributes.get("href") or "").strip()
            m = _DETAIL.search(urlsplit(href).path)
            if m and a.css_first("img") is not None and m.group(1) not in _NOT_IDS | seen:
                seen.add(m.group(1))
                img = a.css_first("img")
                title = img.attributes.get("alt") if img is not None else None
                items.append(
                    {
                        "ID": m.group(1),
                        "Title": _squash(title),
                        "ReferenceURL": urljoin(url, href),
                        HTML_ITEM: True,
                    }
                )
    return items, next_link(tree, url)


def next_link(tree: Any, url: str) -> str | None:
    """The ``Next`` link of a list page (``div.prev-next`` first, then any link named Next or rel=next)."""
    for a in [*tree.css("div.prev-next a"), *tree.css("a")]:
        href = (a.attributes.get("href") or "").strip()
        text = (_squash(a.text()) or "").lower()
        rel = (a.attributes.get("rel") or "").lower()
        if href and not href.startswith("#") and (text.startswith("next") or "next" in rel.split()):
            return urljoin(url, href)
    return None


def category_links(page: str, url: str) -> list[tuple[str, str, str]]:
    """The category list pages a page links to: (slug, name, absolute URL), in page order, once each."""
    out: dict[str, tuple[str, str, str]] = {}
    for a in _parser(page).css("a"):
        href = (a.attributes.get("href") or "").strip()
        m = _CATEGORY.search(urlsplit(href).path)
        if m and m.group(1) not in out:
            out[m.group(1)] = (m.group(1), _squash(a.text()) or m.group(1), urljoin(url, href))
    return list(out.values())


def _rows(tree: Any) -> dict[str, list[Any]]:
    """``div.object-info`` table rows: label (lower case, no colon) -> the value cells, in page order."""
    rows: dict[str, list[Any]] = {}
    for tr in tree.css("div.object-info tr"):
        cells = [c for c in tr.iter() if c.tag in ("td", "th")]
        if len(cells) >= 2:
            label = (_squash(cells[0].text()) or "").rstrip(":").strip().lower()
            rows.setdefault(label, []).append(cells[-1])
    return rows


def _date(text: str | None) -> str | None:
    """``8 May 2023, 06:00`` (or ``8 May 2023``) -> ``2023-05-08``; None when it is not such a date."""
    head = (text or "").split(",")[0].strip()
    for fmt in ("%d %B %Y", "%d %b %Y", "%B %d %Y", "%Y-%m-%d"):
        try:
            return datetime.strptime(head, fmt).date().isoformat()
        except ValueError:
            continue
    return None


def downloads(tree: Any, url: str, size: list[int] | None) -> list[dict[str, Any]]:
    """The page's picture downloads as d2d resources (``ResourceType``, ``URL``, ``Dimensions`` when the
    page tells: the original and the large JPEG are the image's ``Size``); no zoomable, no wallpapers."""
    out = []
    for span in tree.css(".archive_dl_text"):
        a = span.css_first("a")
        if a is None:  # a broken page: the link follows the span's parent (seen on heic1103a)
            parent = span.parent
            sib = parent.next if parent is not None else None
            while sib is not None and sib.tag != "a":
                sib = sib.next
            a = sib
        if a is None:
            continue
        href = (a.attributes.get("href") or "").strip()
        title = _squash(a.text()) or ""
        path = urlsplit(href).path.lower()
        if not href or href.startswith("#") or path.endswith("zoomable/") or _WALLPAPER.match(title):
            continue
        if "/wallpaper" in path:
            continue
        full = "original" in title.lower() or "/original/" in path
        large = title.lower().startswith("large") or "/large/" in path
        res: dict[str, Any] = {"ResourceType": title, "MediaType": "Image", "URL": urljoin(url, href)}
        if size and (full or large):
            res["Dimensions"] = [float(size[0]), float(size[1])]
        out.append(res)
    return out


def _description(tree: Any) -> str | None:
    """The text under the ``<h1>`` up to the credit: its paragraphs, one blank line apart.

    djangoplicity writes them as ``<p><p>...</p><p>...</p></p>`` beside the ``<h1>``, which an HTML
    parser reads as sibling paragraphs; the ``<strong>Credit:</strong><div class="credit">`` ends them.
    """
    h1 = tree.css_first("h1")
    parts = []
    node = h1.next if h1 is not None else None
    while node is not None:
        if node.tag == "div" and "credit" in (node.attributes.get("class") or "").split():
            break
        if node.tag == "strong" and "Credit" in node.text():
            break
        if node.tag == "p" and (text := _squash(node.text())):
            parts.append(text)
        node = node.next
    return "\n\n".join(parts) or None


def parse_detail_page(page: str, url: str, listed: dict[str, Any]) -> dict[str, Any]:
    """A detail page as a d2d feed item (``ID``, ``Title``, ``Description``, ``Credit``, ``PublicationDate``,
    ``Subject``, ``ReferenceURL``, ``Assets[0].Resources``), the list page's ``listed`` item filling what it
    lacks."""
    tree = _parser(page)
    rows = _rows(tree)

    def text(label: str) -> str | None:
        cells = rows.get(label)
        return _squash(cells[0].text(separator=" ")) if cells else None

    size = listed.get("Dimensions")
    if m := _SIZE.search(text("size") or ""):
        size = [int(m.group(1)), int(m.group(2))]
    h1 = tree.css_first("h1")
    credit = tree.css_first("div.credit")
    categories = [t for c in rows.get("category", []) for a in c.css("a") if (t := _squash(a.text()))]
    types = [t for c in rows.get("type", []) if " : " in (t := _squash(c.text(separator=" ")) or "")]
    names = [n.strip() for n in (text("name") or "").split(",") if n.strip()]
    return {
        "ID": listed["ID"],
        "Title": _squash(h1.text()) if h1 is not None else listed.get("Title"),
        "Description": _description(tree),
        "Credit": _squash(credit.text(separator=" ")) if credit is not None else None,
        "PublicationDate": _date(text("release date")),
        "Subject": {"Category": types + categories, "Name": names},
        "ReferenceURL": url,
        "Assets": [{"MediaType": "Image", "Resources": downloads(tree, url, size)}],
    }
