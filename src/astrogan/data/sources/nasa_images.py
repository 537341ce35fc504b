"""NASA Image and Video Library (images-api.nasa.gov): search, pick a rendition, download with credit.

API shapes assumed (public docs at https://images.nasa.gov/docs/images.nasa.gov_api_docs.pdf; no
test reaches the real host, the tests use a stub of these shapes):

- ``GET <base>/search?q=QUERY&media_type=image&page=N`` -> ``{"collection": {"items": [{"href":
  ..., "data": [{"nasa_id", "title", "description", "keywords": [...], "media_type", "center",
  "date_created", "secondary_creator"?, "photographer"?}], "links": [...]}], "metadata":
  {"total_hits"}, "links": [{"rel": "next", "href": NEXT_PAGE_URL}]}}``; pages end when there is no
  ``next`` link.
- ``GET <base>/asset/NASA_ID`` -> ``{"collection": {"items": [{"href": ".../ID~orig.jpg"},
  {"href": "...~large.jpg"}, "~medium", "~small", "~thumb", "metadata.json", ...]}}``.

Renditions are tried from the largest (``orig`` > ``large`` > ``medium`` > ``small`` > ``thumb``)
down; a rendition whose longer side is over ``max_side_px`` (measured on the downloaded file, since
the manifest does not say) is discarded and the next smaller one tried. Media other than images
are ignored. Allowed hosts: the base URL's host and ``images-assets.nasa.gov``.

Licence: NASA media are generally not subject to copyright in the United States; the credit
(``secondary_creator``/``photographer``, else ``NASA/<center>``) is kept, and third-party material
named in the credit may have its own rights.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

from astrogan.data.sources.base import FetchSummary, Progress, fetch_image
from astrogan.data.sources.catalog import Catalog, now_utc
from astrogan.data.sources.http import (
    FetchError,
    HttpConfig,
    NotFound,
    PoliteClient,
    clean_partials,
    host_of,
    parse_rate,
)
from astrogan.utils.errors import UserError

SOURCE = "nasa-images"
DEFAULT_BASE_URL = "https://images-api.nasa.gov/"
ASSET_HOSTS = frozenset({"images-assets.nasa.gov"})
RENDITIONS = ("orig", "large", "medium", "small", "thumb")
LICENCE = (
    "NASA media: generally not copyrighted in the US (credit NASA); check the credit for third-party rights"
)
_IMAGE_SUFFIX = re.compile(r"\.(jpe?g|png|gif|tiff?)$", re.IGNORECASE)


def renditions_by_size(manifest: dict[str, Any]) -> list[str]:
    """Image URLs of an asset manifest, largest rendition first (unknown renditions last)."""
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


def fetch_nasa_images(
    out: str | Path,
    *,
    query: str,
    max_items: int = 100,
    max_side_px: int | None = None,
    base_url: str = DEFAULT_BASE_URL,
    concurrency: int = 4,
    rate: str | float | None = "2/s",
    timeout_s: float = 30.0,
    max_retries: int = 4,
    backoff_s: float = 1.0,
    max_backoff_s: float = 60.0,
    max_bytes: int = 200 * 1024 * 1024,
    progress: bool = False,
) -> FetchSummary:
    """Search for ``query`` and fetch up to ``max_items`` images into ``out/nasa-images/``."""
    if not query.strip():
        raise UserError("--query must not be empty")
    if max_items < 1:
        raise UserError(f"--max must be >= 1, got {max_items}")
    if not base_url.startswith(("http://", "https://")):
        raise UserError(f"--base-url must be an http(s) URL, got {base_url!r}")
    config = HttpConfig(
        concurrency=concurrency,
        rate_per_s=parse_rate(rate),
        timeout_s=timeout_s,
        max_retries=max_retries,
        backoff_s=backoff_s,
        max_backoff_s=max_backoff_s,
        max_bytes=max_bytes,
        allowed_hosts=ASSET_HOSTS | {host_of(base_url)},
    )
    base = base_url if base_url.endswith("/") else base_url + "/"
    return asyncio.run(_fetch(Path(out), query, max_items, max_side_px, base, config, progress))


async def _fetch(
    out: Path,
    query: str,
    max_items: int,
    max_side_px: int | None,
    base: str,
    config: HttpConfig,
    progress: bool,
) -> FetchSummary:
    summary = FetchSummary(SOURCE)
    t0 = time.perf_counter()
    clean_partials(out / SOURCE)
    with Catalog(out) as catalog, Progress("nasa images", max_items, enabled=progress) as bar:
        async with PoliteClient(config) as client:
            hits: list[dict[str, Any]] = []
            url: str | None = urljoin(base, f"search?q={quote(query)}&media_type=image&page=1")
            while url and len(hits) < max_items:
                try:
                    doc = await client.get_json(url)
                except FetchError as exc:  # keep what the earlier pages gave; report the listing failure
                    summary.statuses[f"failed:listing-{exc.reason}"] += 1
                    break
                coll = doc.get("collection", {})
                for item in coll.get("items", []):
                    data = (item.get("data") or [{}])[0]
                    if data.get("media_type") == "image" and data.get("nasa_id") and len(hits) < max_items:
                        hits.append(data)
                nxt = [ln.get("href") for ln in coll.get("links", []) if ln.get("rel") == "next"]
                url = nxt[0] if nxt else None

            sem = asyncio.Semaphore(config.concurrency)

            async def one(data: dict[str, Any]) -> None:
                async with sem:
                    nasa_id = str(data["nasa_id"])
                    if catalog.is_done(SOURCE, nasa_id):
                        summary.num_already_done += 1
                        bar.advance(None)
                        return
                    status = await _fetch_one(client, catalog, base, data, max_side_px)
                    summary.statuses[status] += 1
                    bar.advance(status)

            await asyncio.gather(*(one(d) for d in hits))
            summary.num_requests, summary.num_retries = client.num_requests, client.num_retries
    summary.elapsed_s = time.perf_counter() - t0
    return summary


async def _fetch_one(
    client: PoliteClient, catalog: Catalog, base: str, data: dict[str, Any], max_side_px: int | None
) -> str:
    nasa_id = str(data["nasa_id"])
    kw = data.get("keywords") or []
    row: dict[str, Any] = {
        "source": SOURCE,
        "item_id": nasa_id,
        "date": str(data.get("date_created") or "")[:10] or None,
        "title": data.get("title"),
        "page_url": f"https://images.nasa.gov/details/{quote(nasa_id)}",
        "credit": credit_of(data),
        "copyright": None,
        "licence": LICENCE,
        "keywords": [str(k) for k in kw] if isinstance(kw, list) else [str(kw)],
        "explanation": data.get("description"),
    }
    try:
        manifest = await client.get_json(urljoin(base, f"asset/{quote(nasa_id)}"))
    except NotFound:
        row.update(status="not-found", fetched_at=now_utc())
        catalog.upsert(row)
        return "not-found"
    except FetchError as exc:
        row.update(status=f"failed:{exc.reason}", fetched_at=now_utc())
        catalog.upsert(row)
        return row["status"]
    candidates = renditions_by_size(manifest)
    if not candidates:
        row.update(status="skipped-no-image", fetched_at=now_utc())
        catalog.upsert(row)
        return row["status"]
    result: dict[str, Any] = {}
    for url in candidates:
        result = await fetch_image(client, catalog, row, url=url, max_side_px=max_side_px)
        if result["status"] != "failed:too-big":
            break
    return result["status"]
