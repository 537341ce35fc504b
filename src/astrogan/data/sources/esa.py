"""ESA/Hubble, ESA/Webb and ESO image archives (djangoplicity sites): listings, resources, CC BY 4.0 credit.

API shape (the Data2Dome "d2d" image feed that djangoplicity, the sites' public software, serves at
``<site>/images/d2d/``; read from its source: ``media/d2d/views.py`` (pagination),
``media/d2d/serializers.py`` + ``media/d2d/renderers.py`` (item fields and their AVM names) and
``archives/utils.py`` (``get_instance_resources``); no test reaches the real hosts, the tests use a
stub of this shape):

- ``GET <site>/images/d2d/?page=N`` (``&count=K``, default 100 per page) -> ``{"Count": n, "Next":
  URL | null, "Previous": URL | null, "Collections": [ITEM, ...]}``, newest first;
- ``ITEM`` = ``{"Creator", "URL", "Contact": {...}, "ID", "Title", "Description", "Credit" (HTML
  stripped), "PublicationDate" (ISO, UTC), "Subject": {"Category": [AVM taxonomy names such as
  "Milky Way : Nebula : Type : Star Formation"], "Name": ["NGC 2264", ...]}, "ReferenceURL", "Rights",
  "Priority", "Assets": [ASSET]}`` - an image has exactly one asset;
- ``ASSET`` = ``{"MediaType": "Image", "Resources": [RESOURCE, ...], "ObservationData": {...}?}``;
- ``RESOURCE`` = ``{"ResourceType": "Original" | "Large" | "Medium" | "Small" | "Thumbnail" | "Icon",
  "MediaType": "Image", "URL" (absolute, often on the CDN host: ``.../images/large/<id>.jpg``,
  the original a ``.tif``), "FileSize", "Dimensions": [w, h] (floats; left out when unknown),
  "HorizontalFOV"?, "VerticalFOV"?, "ProjectionType"?, "Checksum"?}``. Keys whose value is null are
  left out of every dict.

An item's resources are those of its image assets (``Assets[*].Resources``); the flat
``ITEM["Resources"]`` an earlier version of this module assumed is still read when present.

``--category`` keeps items one of whose ``Subject.Category`` names (or ``Category``/``Categories``)
contains it, case-insensitively, a plural also matching its singular (``nebulae`` and ``nebula``
both match ``Milky Way : Nebula : Type : Star Formation``). From each item the largest image resource
in JPEG/PNG whose longer side is at most ``max_side_px`` is downloaded, chosen from the feed's
``Dimensions`` (a resource without them is judged from its header first, `base.probe_size`);
originals are often 100 MB TIFFs and never downloaded under a limit; ``--max-side 0`` takes the
largest of any kind. Relative resource URLs are resolved against the site; only the site's host
and its CDN are allowed.

When the feed is not there (a mirror made by crawling the site: ``failed:listing-not-found``, or a page
that is not JSON), the site's HTML archive is read instead (`esa_html`): the list pages of the category
(``images/archive/category/<slug>/``, the slug found in the site's menu when ``--category`` is not one)
or of all images (``images/``), then each image's detail page when it is fetched; the download is chosen
as from the feed.

Licence: the images are CC BY 4.0; the ``Credit`` line the licence requires is stored in
``credit`` and in the licence note.
"""

from __future__ import annotations

import warnings
from collections import Counter
from typing import Any
from urllib.parse import urljoin

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
from astrogan.data.sources.esa_html import HTML_ITEM, category_links, parse_detail_page, parse_list_page
from astrogan.data.sources.http import FetchError, PoliteClient
from astrogan.utils.errors import UserError

SITES = {
    # ESA/Hubble's pages of before 2022 (so a crawl of them) name its former domain and CDN.
    "hubble": (
        "esa-hubble",
        "https://esahubble.org/",
        frozenset({"esahubble.org", "cdn.esahubble.org", "www.spacetelescope.org", "cdn.spacetelescope.org"}),
    ),
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


def _singular(word: str) -> str:
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith("ae"):
        return word[:-1]
    if word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def category_matches(want: str, categories: list[str]) -> bool:
    """True when ``want`` (or its singular) occurs in one of ``categories``, case ignored."""
    keys = {want.strip().lower(), _singular(want.strip().lower())} - {""}
    return any(k in c.lower() for k in keys for c in categories)


def _same(want: str, *names: str) -> bool:
    """True when ``want`` names one of ``names`` (case, spaces, punctuation and a plural ignored)."""

    def key(text: str) -> str:
        return _singular("".join(ch for ch in text.lower() if ch.isalnum()))

    return any(key(want) == key(n) for n in names)


def resources_of(item: dict[str, Any]) -> list[dict[str, Any]]:
    """The resources of an item's image assets (``Assets[*].Resources``), else its flat ``Resources``."""
    out: list[dict[str, Any]] = []
    for asset in item.get("Assets") or []:
        if isinstance(asset, dict) and str(asset.get("MediaType", "Image")).lower() == "image":
            out += [r for r in asset.get("Resources") or [] if isinstance(r, dict)]
    return out or [r for r in item.get("Resources") or [] if isinstance(r, dict)]


def side_of(resource: dict[str, Any]) -> int:
    """The longer side the feed gives for a resource (0 when it gives none)."""
    dims = resource.get("Dimensions") or []
    try:
        return max((int(float(d or 0)) for d in dims), default=0)
    except (TypeError, ValueError):
        return 0


def candidate_resources(item: dict[str, Any], max_side_px: int | None) -> list[dict[str, Any]]:
    """Image resources to try, best first: largest known side first, those of unknown size last.

    With a limit: JPEG/PNG only, and none whose known side is over it.
    """
    out = []
    for r in resources_of(item):
        if str(r.get("MediaType", "Image")).lower() != "image" or not r.get("URL"):
            continue
        if max_side_px is not None:
            if not str(r["URL"]).lower().split("?")[0].endswith(_WEB_SUFFIXES) or side_of(r) > max_side_px:
                continue
        out.append(r)
    return sorted(out, key=side_of, reverse=True)


def pick_resource(item: dict[str, Any], max_side_px: int | None) -> dict[str, Any] | None:
    """The largest image resource not over ``max_side_px`` (web formats only when a limit is set)."""
    found = candidate_resources(item, max_side_px)
    return found[0] if found else None


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
            listing = doc["Collections"] if "Collections" in doc else doc["Items"]
            found = [
                it
                for it in listing or []
                if it.get("ID") and (not want or category_matches(want, categories_of(it)))
            ]
            return found, urljoin(url, doc["Next"]) if doc.get("Next") else None

        first = urljoin(self.base_url, "images/d2d/?page=1")
        found, missing = await self._listing(client, summary, first, read_page, ("not-found", "content-type"))
        return found if not missing else await self.html_items(client, summary)

    async def _listing(
        self,
        client: PoliteClient,
        summary: FetchSummary,
        first: str,
        read_page: Any,
        missing: tuple[str, ...],
    ) -> tuple[list[dict[str, Any]], bool]:
        """`list_pages` from ``first``, and whether its first page failed for one of the ``missing``
        reasons (then that failure is not counted: the caller tries another way)."""
        before = summary.statuses.copy()
        html = read_page is parse_list_page
        found = await list_pages(
            client,
            first,
            summary,
            max_items=self.max_items,
            read_page=read_page,
            get=client.get_text if html else None,
        )
        new = summary.statuses - before
        reason = next((r for r in missing if new.get(f"failed:listing-{r}")), None)
        if found or reason is None:
            return found, False
        summary.statuses[f"failed:listing-{reason}"] -= 1
        summary.statuses += Counter()  # drops the zero count
        return found, True

    async def html_items(self, client: PoliteClient, summary: FetchSummary) -> list[dict[str, Any]]:
        """List-page items of the site's HTML archive (`esa_html`): the category's pages, or all images."""
        images = urljoin(self.base_url, "images/")
        if not self.category:
            return (await self._listing(client, summary, images, parse_list_page, ()))[0]
        slug = "".join(ch for ch in self.category.lower() if ch.isalnum())
        first = urljoin(images, f"archive/category/{slug}/")
        found, missing = await self._listing(client, summary, first, parse_list_page, ("not-found",))
        if not missing:
            return found
        try:  # not the site's slug: find the category in the site's menu
            links = category_links(await client.get_text(images), images)
        except FetchError as exc:
            summary.statuses[f"failed:listing-{exc.reason}"] += 1
            return []
        match = [
            u
            for s, name, u in links
            if category_matches(self.category, [s, name]) or _same(self.category, s, name)
        ]
        if not match:
            summary.statuses["failed:listing-not-found"] += 1
            names = ", ".join(s for s, _, _ in links) or "none"
            warnings.warn(f"{images}: no category {self.category!r} (the site has: {names})", stacklevel=1)
            return []
        return (await self._listing(client, summary, match[0], parse_list_page, ()))[0]

    def item_id(self, item: dict[str, Any]) -> str:
        """The archive ``ID``."""
        return str(item["ID"])

    async def fetch_item(self, client: PoliteClient, catalog: Catalog, item: dict[str, Any]) -> str:
        """The largest resource within ``max_side_px``, with the CC BY credit line (an item of the HTML
        archive: read from its detail page first)."""
        if item.get(HTML_ITEM):
            try:
                page = await client.get_text(item["ReferenceURL"])
            except FetchError as exc:
                return record(catalog, self._row(item), exc.status)
            item = parse_detail_page(page, item["ReferenceURL"], item)
        row = self._row(item)
        candidates = candidate_resources(item, self.max_side_px)
        if not candidates:
            return record(catalog, row, "skipped-no-image")
        urls = [(urljoin(self.base_url, str(res["URL"])), bool(side_of(res))) for res in candidates]
        if self.max_side_px is None:
            return (await fetch_image(client, catalog, row, url=urls[0][0]))["status"]
        return await fetch_largest_fitting(client, catalog, row, urls, max_side_px=self.max_side_px)

    def _row(self, item: dict[str, Any]) -> dict[str, Any]:
        """The catalog row of a feed item (no status yet)."""
        credit = item.get("Credit")
        return {
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
