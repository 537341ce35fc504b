"""ESA/Hubble, ESA/Webb and ESO image archives (djangoplicity sites): listings, resources, CC BY 4.0 credit.

API shapes assumed (the sites run djangoplicity and publish a paginated Data2Dome JSON listing of
their image archive; no test reaches the real hosts, the tests use a stub of these shapes):

- ``GET <site>/images/d2d/?page=N`` -> ``{"Count": n, "Next": URL | null, "Previous": ...,
  "Collections": [ITEM, ...]}`` (``"Items"`` is accepted as well);
- ``ITEM`` = ``{"ID", "Title", "Description", "Credit", "PublicationDate", "ReferenceURL",
  "Subject": {"Category": [...], "Name": [...]}, "Resources": [{"ResourceType": "Original" |
  "Large" | "Screen" | "Thumbnail" ..., "MediaType": "Image", "URL", "Dimensions": [w, h],
  "FileSize"}]}``.

``--category`` keeps items whose ``Subject.Category`` (or ``Category``/``Categories``) names it,
case-insensitively (``nebulae`` matches ``Nebulae``). From each item the largest image resource
in JPEG/PNG whose longer side is at most ``max_side_px`` is downloaded (originals are often
100 MB TIFFs; ``--max-side 0`` takes the largest of any kind). Relative resource URLs are resolved
against the site; only the site's host and its CDN are allowed.

Licence: the images are CC BY 4.0; the ``Credit`` line the licence requires is stored in
``credit`` and in the licence note.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urljoin

from astrogan.data.sources import HttpConfig
from astrogan.data.sources.base import FetchSummary, Source, fetch_image, list_pages, record
from astrogan.data.sources.catalog import Catalog
from astrogan.data.sources.http import PoliteClient
from astrogan.utils.errors import UserError

SITES = {
    "hubble": ("esa-hubble", "https://esahubble.org/", frozenset({"esahubble.org", "cdn.esahubble.org"})),
    "webb": ("esa-webb", "https://esawebb.org/", frozenset({"esawebb.org", "cdn.esawebb.org"})),
    "eso": ("eso", "https://www.eso.org/public/", frozenset({"www.eso.org", "cdn.eso.org"})),
}
_WEB_SUFFIXES = (".jpg", ".jpeg", ".png")


def licence_for(credit: str | None) -> str:
    """The CC BY 4.0 note with the credit line it requires."""
    return f"CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/); credit: {credit or 'ESA'}"


def categories_of(item: dict[str, Any]) -> list[str]:
    """Category names of a listing item, wherever the site put them."""
    subject = item.get("Subject") or {}
    cats = subject.get("Category") if isinstance(subject, dict) else None
    cats = cats or item.get("Category") or item.get("Categories") or []
    return [str(c) for c in (cats if isinstance(cats, list) else [cats])]


def pick_resource(item: dict[str, Any], max_side_px: int | None) -> dict[str, Any] | None:
    """The largest image resource not over ``max_side_px`` (web formats only when a limit is set)."""
    best, best_side = None, -1
    for r in item.get("Resources") or []:
        if str(r.get("MediaType", "Image")).lower() != "image" or not r.get("URL"):
            continue
        dims = r.get("Dimensions") or [0, 0]
        side = max(int(d or 0) for d in dims) if dims else 0
        if max_side_px is not None:
            if not str(r["URL"]).lower().split("?")[0].endswith(_WEB_SUFFIXES) or side > max_side_px:
                continue
        if side > best_side:
            best, best_side = r, side
    return best


class EsaSource(Source):
    """Up to ``max_items`` archive images of ``site`` (hubble, webb, eso), optionally of one ``category``."""

    def __init__(
        self,
        http: HttpConfig,
        *,
        site: str,
        category: str | None,
        max_items: int,
        max_side_px: int | None,
        base_url: str | None,
    ) -> None:
        if site not in SITES:
            raise UserError(f"--site must be one of {', '.join(SITES)}, got {site!r}")
        if max_items < 1:
            raise UserError(f"--max must be >= 1, got {max_items}")
        source, default_base, hosts = SITES[site]
        super().__init__(
            http,
            source=source,
            base_url=base_url or default_base,
            hosts=hosts,
            label=f"{source} images",
            total=max_items,
        )
        self.category, self.max_items = category, max_items
        self.max_side_px = max_side_px or None  # 0: the largest resource of any kind

    async def items(self, client: PoliteClient, summary: FetchSummary) -> list[dict[str, Any]]:
        """Listing items with an ID (of ``category`` when one is given), following ``Next``."""
        want = self.category.lower() if self.category else None

        def read_page(doc: Any, url: str) -> tuple[list[dict[str, Any]], str | None]:
            found = [
                it
                for it in doc.get("Collections") or doc.get("Items") or []
                if it.get("ID")
                and (not want or any(want == c.lower() or want in c.lower() for c in categories_of(it)))
            ]
            return found, urljoin(url, doc["Next"]) if doc.get("Next") else None

        first = urljoin(self.base_url, "images/d2d/?page=1")
        return await list_pages(client, first, summary, max_items=self.max_items, read_page=read_page)

    def item_id(self, item: dict[str, Any]) -> str:
        """The archive ``ID``."""
        return str(item["ID"])

    async def fetch_item(self, client: PoliteClient, catalog: Catalog, item: dict[str, Any]) -> str:
        """The largest resource within ``max_side_px``, with the CC BY credit line."""
        credit = item.get("Credit")
        row: dict[str, Any] = {
            "source": self.source,
            "item_id": str(item["ID"]),
            "date": str(item.get("PublicationDate") or item.get("Date") or "")[:10] or None,
            "title": item.get("Title"),
            "page_url": urljoin(self.base_url, item["ReferenceURL"]) if item.get("ReferenceURL") else None,
            "credit": credit,
            "copyright": credit,
            "licence": licence_for(credit),
            "keywords": categories_of(item) + [str(n) for n in (item.get("Subject") or {}).get("Name", [])],
            "explanation": item.get("Description"),
        }
        res = pick_resource(item, self.max_side_px)
        if res is None:
            return record(catalog, row, "skipped-no-image")
        url = urljoin(self.base_url, str(res["URL"]))
        return (await fetch_image(client, catalog, row, url=url, max_side_px=self.max_side_px))["status"]
