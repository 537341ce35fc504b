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

import asyncio
import time
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from astrogan.data.sources.base import FetchSummary, Progress, fetch_image
from astrogan.data.sources.catalog import Catalog, now_utc
from astrogan.data.sources.http import (
    FetchError,
    HttpConfig,
    PoliteClient,
    clean_partials,
    host_of,
    parse_rate,
)
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


def fetch_esa(
    out: str | Path,
    *,
    site: str,
    category: str | None = None,
    max_items: int = 100,
    max_side_px: int | None = 4096,
    base_url: str | None = None,
    concurrency: int = 4,
    rate: str | float | None = "2/s",
    timeout_s: float = 30.0,
    max_retries: int = 4,
    backoff_s: float = 1.0,
    max_backoff_s: float = 60.0,
    max_bytes: int = 200 * 1024 * 1024,
    progress: bool = False,
) -> FetchSummary:
    """Fetch up to ``max_items`` archive images of ``site`` (hubble, webb, eso) into ``out/<source>/``."""
    if site not in SITES:
        raise UserError(f"--site must be one of {', '.join(SITES)}, got {site!r}")
    if max_items < 1:
        raise UserError(f"--max must be >= 1, got {max_items}")
    source, default_base, hosts = SITES[site]
    base = base_url or default_base
    if not base.startswith(("http://", "https://")):
        raise UserError(f"--base-url must be an http(s) URL, got {base!r}")
    base = base if base.endswith("/") else base + "/"
    config = HttpConfig(
        concurrency=concurrency,
        rate_per_s=parse_rate(rate),
        timeout_s=timeout_s,
        max_retries=max_retries,
        backoff_s=backoff_s,
        max_backoff_s=max_backoff_s,
        max_bytes=max_bytes,
        allowed_hosts=hosts | {host_of(base)},
    )
    return asyncio.run(_fetch(Path(out), source, base, category, max_items, max_side_px, config, progress))


async def _fetch(
    out: Path,
    source: str,
    base: str,
    category: str | None,
    max_items: int,
    max_side_px: int | None,
    config: HttpConfig,
    progress: bool,
) -> FetchSummary:
    summary = FetchSummary(source)
    t0 = time.perf_counter()
    clean_partials(out / source)
    want = category.lower() if category else None
    with Catalog(out) as catalog, Progress(f"{source} images", max_items, enabled=progress) as bar:
        async with PoliteClient(config) as client:
            items: list[dict[str, Any]] = []
            url: str | None = urljoin(base, "images/d2d/?page=1")
            while url and len(items) < max_items:
                try:
                    doc = await client.get_json(url)
                except FetchError as exc:  # keep what the earlier pages gave; report the listing failure
                    summary.statuses[f"failed:listing-{exc.reason}"] += 1
                    break
                for it in doc.get("Collections") or doc.get("Items") or []:
                    if not it.get("ID") or len(items) >= max_items:
                        continue
                    if want and not any(want == c.lower() or want in c.lower() for c in categories_of(it)):
                        continue
                    items.append(it)
                url = urljoin(url, doc["Next"]) if doc.get("Next") else None

            sem = asyncio.Semaphore(config.concurrency)

            async def one(it: dict[str, Any]) -> None:
                async with sem:
                    item_id = str(it["ID"])
                    if catalog.is_done(source, item_id):
                        summary.num_already_done += 1
                        bar.advance(None)
                        return
                    credit = it.get("Credit")
                    row: dict[str, Any] = {
                        "source": source,
                        "item_id": item_id,
                        "date": str(it.get("PublicationDate") or it.get("Date") or "")[:10] or None,
                        "title": it.get("Title"),
                        "page_url": urljoin(base, it["ReferenceURL"]) if it.get("ReferenceURL") else None,
                        "credit": credit,
                        "copyright": credit,
                        "licence": licence_for(credit),
                        "keywords": categories_of(it)
                        + [str(n) for n in (it.get("Subject") or {}).get("Name", [])],
                        "explanation": it.get("Description"),
                    }
                    res = pick_resource(it, max_side_px)
                    if res is None:
                        row.update(status="skipped-no-image", fetched_at=now_utc())
                        catalog.upsert(row)
                        status = row["status"]
                    else:
                        url = urljoin(base, str(res["URL"]))
                        status = (await fetch_image(client, catalog, row, url=url, max_side_px=max_side_px))[
                            "status"
                        ]
                    summary.statuses[status] += 1
                    bar.advance(status)

            await asyncio.gather(*(one(it) for it in items))
            summary.num_requests, summary.num_retries = client.num_requests, client.num_retries
    summary.elapsed_s = time.perf_counter() - t0
    return summary
