"""NASA Image and Video Library (images-api.nasa.gov): search, pick a rendition, download with credit.

API shapes (the public API documentation, https://images.nasa.gov/docs/images.nasa.gov_api_docs.pdf:
Collection+JSON documents; reviewed against it, these are what the API serves; no test reaches the
real host, the tests use a stub of these shapes):

- ``GET <base>/search?q=QUERY&media_type=image&page=N`` -> ``{"collection": {"version", "href",
  "items": [{"href": ".../collection.json", "data": [{"nasa_id", "title", "description",
  "keywords": [...], "media_type", "center", "date_created", "secondary_creator"?,
  "photographer"?}], "links": [{"href", "rel": "preview", "render": "image"}]}], "metadata":
  {"total_hits"}, "links": [{"rel": "next", "prompt": "Next", "href": NEXT_PAGE_URL}]}}``; pages
  end when there is no ``next`` link.
- ``GET <base>/asset/NASA_ID`` -> ``{"collection": {"version", "href", "items": [{"href":
  ".../ID~orig.jpg"}, {"href": "...~large.jpg"}, "~medium", "~small", "~thumb", "metadata.json",
  ...]}}``: rendition URLs only, no sizes (the original may be a 100 MB TIFF).
- each search hit's own ``href`` (``https://images-assets.nasa.gov/image/NASA_ID/collection.json``) is
  the same list as a bare JSON array of URLs; it is read when ``/asset/NASA_ID`` is not found (a
  mirror that serves only what the search hits name).

Renditions rank ``orig`` > ``large`` > ``medium`` > ``small`` > ``thumb``. Without ``max_side_px``
the original is downloaded. With it, the rendition is chosen before anything is downloaded whole:
from the largest down, each one's size is read from the start of its body (`base.probe_size`: a
``Range`` request for the header, the connection closed once the size is known), and the first
whose longer side is at most ``max_side_px`` is downloaded - the largest that fits, so the smallest
download that satisfies the limit, and never an original over it. A rendition whose header does not
tell its size is downloaded and measured (and dropped when over). Media other than images are
ignored. Allowed hosts: the base URL's host and ``images-assets.nasa.gov``.

Licence: NASA media are generally not subject to copyright in the United States; the credit
(``secondary_creator``/``photographer``, else ``NASA/<center>``) is kept, and third-party material
named in the credit may have its own rights.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

from astrogan.data.sources import HttpConfig
from astrogan.data.sources.base import (
    FetchSummary,
    Source,
    fetch_image,
    fetch_largest_fitting,
    list_pages,
    record,
)
from astrogan.data.sources.catalog import Catalog
from astrogan.data.sources.http import FetchError, NotFound, PoliteClient
from astrogan.utils.errors import UserError

SOURCE = "nasa-images"
ASSET_HOSTS = frozenset({"images-assets.nasa.gov"})
RENDITIONS = ("orig", "large", "medium", "small", "thumb")
LICENCE = (
    "NASA media: generally not copyrighted in the US (credit NASA); check the credit for third-party rights"
)
_IMAGE_SUFFIX = re.compile(r"\.(jpe?g|png|gif|tiff?)$", re.IGNORECASE)


MANIFEST = "collection_href"  # where a hit keeps its search item's ``href`` (its asset manifest)


def renditions_by_size(manifest: dict[str, Any] | list[Any]) -> list[str]:
    """Image URLs of an asset manifest (Collection+JSON, or a bare array of URLs), largest rendition first
    (unknown renditions last)."""
    if isinstance(manifest, list):
        urls = [u for u in manifest if isinstance(u, str)]
    else:
        urls = [it.get("href", "") for it in manifest.get("collection", {}).get("items", [])]
    urls = [u for u in urls if _IMAGE_SUFFIX.search(urlsplit(u).path)]

    def rank(u: str) -> int:
        m = re.search(r"~(\w+)\.\w+$", urlsplit(u).path)
        return RENDITIONS.index(m.group(1)) if m and m.group(1) in RENDITIONS else len(RENDITIONS)

    return sorted(urls, key=rank)


def credit_of(data: dict[str, Any]) -> str:
    """The credit line of a search hit."""
    for key in ("secondary_creator", "photographer"):
        if data.get(key):
            return str(data[key])
    return f"NASA/{data['center']}" if data.get("center") else "NASA"


class NasaImagesSource(Source):
    """Up to ``max_items`` images matching ``query``, each the largest rendition within ``max_side_px``."""

    def __init__(
        self, http: HttpConfig, *, query: str, max_items: int, max_side_px: int | None, base_url: str
    ) -> None:
        if not query.strip():
            raise UserError("--query must not be empty")
        if max_items < 1:
            raise UserError(f"--max must be >= 1, got {max_items}")
        super().__init__(
            http, source=SOURCE, base_url=base_url, hosts=ASSET_HOSTS, label="nasa images", total=max_items
        )
        self.query, self.max_items = query, max_items
        self.max_side_px = max_side_px or None  # 0: the original, however large

    async def items(self, client: PoliteClient, summary: FetchSummary) -> list[dict[str, Any]]:
        """The ``data`` of the image hits, following the ``next`` links."""

        def read_page(doc: Any, url: str) -> tuple[list[dict[str, Any]], str | None]:
            coll = doc["collection"]
            hits = [
                {
                    **(item.get("data") or [{}])[0],
                    MANIFEST: urljoin(url, item["href"]) if item.get("href") else None,
                }
                for item in coll["items"]
            ]
            images = [d for d in hits if d.get("media_type") == "image" and d.get("nasa_id")]
            nxt = [ln.get("href") for ln in coll.get("links") or [] if ln.get("rel") == "next"]
            return images, nxt[0] if nxt else None

        first = urljoin(self.base_url, f"search?q={quote(self.query)}&media_type=image&page=1")
        return await list_pages(client, first, summary, max_items=self.max_items, read_page=read_page)

    def item_id(self, item: dict[str, Any]) -> str:
        """The ``nasa_id``."""
        return str(item["nasa_id"])

    async def fetch_item(self, client: PoliteClient, catalog: Catalog, item: dict[str, Any]) -> str:
        """The asset manifest, then the largest rendition within ``max_side_px`` (judged by its header)."""
        nasa_id = str(item["nasa_id"])
        kw = item.get("keywords") or []
        row: dict[str, Any] = {
            "source": SOURCE,
            "item_id": nasa_id,
            "date": str(item.get("date_created") or "")[:10] or None,
            "title": item.get("title"),
            "page_url": f"https://images.nasa.gov/details/{quote(nasa_id)}",
            "credit": credit_of(item),
            "copyright": None,
            "licence": LICENCE,
            "keywords": [str(k) for k in kw] if isinstance(kw, list) else [str(kw)],
            "explanation": item.get("description"),
        }
        try:
            manifest = await client.get_json(urljoin(self.base_url, f"asset/{quote(nasa_id)}"))
        except NotFound as exc:
            if not item.get(MANIFEST):
                return record(catalog, row, exc.status)
            try:
                manifest = await client.get_json(item[MANIFEST])
            except FetchError as exc2:
                return record(catalog, row, exc2.status)
        except FetchError as exc:
            return record(catalog, row, exc.status)
        candidates = renditions_by_size(manifest)
        if not candidates:
            return record(catalog, row, "skipped-no-image")
        if self.max_side_px is None:
            return (await fetch_image(client, catalog, row, url=candidates[0]))["status"]
        urls = [(url, False) for url in candidates]  # sizes unknown: each judged by its header
        return await fetch_largest_fitting(client, catalog, row, urls, max_side_px=self.max_side_px)
