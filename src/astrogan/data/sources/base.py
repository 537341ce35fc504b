"""What every fetcher shares: the `Source` run (catalog, resume, pool, progress, summary), image downloads."""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from astrogan.data.sources import HttpConfig
from astrogan.data.sources.catalog import Catalog, now_utc
from astrogan.data.sources.http import (
    FetchError,
    PoliteClient,
    clean_partials,
    extension_for,
    host_of,
    safe_name,
)
from astrogan.utils.errors import UserError


@dataclass
class FetchSummary:
    """What a fetch run did: per-status counts of the items it handled, items already done, time."""

    source: str
    statuses: Counter[str] = field(default_factory=Counter)
    num_already_done: int = 0
    num_requests: int = 0
    num_retries: int = 0
    elapsed_s: float = 0.0

    @property
    def num_fetched(self) -> int:
        """Items newly fetched (``ok``) in this run."""
        return self.statuses.get("ok", 0)

    @property
    def num_skipped(self) -> int:
        """Items skipped (video, no image, keyword filter) in this run."""
        return sum(n for s, n in self.statuses.items() if s.startswith("skipped"))

    @property
    def failed(self) -> dict[str, int]:
        """Failures by reason (``not-found`` counts as a failure reason here)."""
        out = {s.removeprefix("failed:"): n for s, n in self.statuses.items() if s.startswith("failed:")}
        if self.statuses.get("not-found"):
            out["not-found"] = self.statuses["not-found"]
        return dict(sorted(out.items()))

    def line(self) -> str:
        """One human line: fetched, skipped, failed by reason."""
        failed = ", ".join(f"{k} {v}" for k, v in self.failed.items()) or "none"
        return (
            f"{self.source}: fetched {self.num_fetched}, skipped {self.num_skipped}, "
            f"already done {self.num_already_done}, failed {sum(self.failed.values())} ({failed}) "
            f"in {self.elapsed_s:.1f} s, {self.num_requests} requests, {self.num_retries} retries"
        )


def image_size_of(path: Path) -> tuple[int, int] | None:
    """(width, height) from the file header, or None when Pillow cannot read it as an image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return int(im.width), int(im.height)
    except (UnidentifiedImageError, OSError, ValueError):
        return None


def record(catalog: Catalog, row: dict[str, Any], status: str) -> str:
    """Store ``row`` with ``status`` and the time now; returns ``status``."""
    row.update(status=status, fetched_at=now_utc())
    catalog.upsert(row)
    return status


async def list_pages(
    client: PoliteClient,
    url: str | None,
    summary: FetchSummary,
    *,
    max_items: int,
    read_page: Callable[[Any, str], tuple[list[Any], str | None]],
) -> list[Any]:
    """Up to ``max_items`` items of a paginated JSON listing from ``url`` on.

    ``read_page(doc, url) -> (items, next_url or None)``. A page that fails ends the listing with what
    the earlier pages gave, counted as ``failed:listing-<reason>`` in ``summary``.
    """
    items: list[Any] = []
    while url and len(items) < max_items:
        try:
            doc = await client.get_json(url)
        except FetchError as exc:
            summary.statuses[f"failed:listing-{exc.reason}"] += 1
            break
        found, url = read_page(doc, url)
        items.extend(found[: max_items - len(items)])
    return items


async def fetch_image(
    client: PoliteClient,
    catalog: Catalog,
    row: dict[str, Any],
    *,
    url: str,
    max_side_px: int | None = None,
) -> dict[str, Any]:
    """Download ``url`` as ``<source>/<safe id>.<ext>``, fill ``row`` (status, sha256, size) and store it."""
    folder = catalog.root / row["source"]
    stem = safe_name(row["item_id"])
    row = {**row, "image_url": url}
    try:
        dl = await client.download(
            url, folder / f"{stem}.bin", dest_for_type=lambda ctype: folder / f"{stem}{extension_for(ctype)}"
        )
    except FetchError as exc:
        row["status"] = exc.status
    else:
        size = image_size_of(dl.path)
        if size is None:
            dl.path.unlink(missing_ok=True)
            row["status"] = "failed:not-an-image"
        elif max_side_px is not None and max(size) > max_side_px:
            dl.path.unlink(missing_ok=True)
            row.update(width=size[0], height=size[1], status="failed:too-big")
        else:
            row.update(
                local_path=dl.path.relative_to(catalog.root).as_posix(),
                sha256=dl.sha256,
                bytes=dl.num_bytes,
                width=size[0],
                height=size[1],
                status="ok",
            )
    row["fetched_at"] = now_utc()
    catalog.upsert(row)
    return row


async def run_pool(
    items: Iterable[Any] | AsyncIterator[Any],
    work: Callable[[Any], Awaitable[str | None]],
    *,
    num_workers: int,
    on_done: Callable[[str | None], None] | None = None,
) -> None:
    """Run ``work(item)`` over ``items`` with ``num_workers`` tasks; ``on_done(status)`` after each."""
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=num_workers * 2)
    stop = object()

    async def feeder() -> None:
        if hasattr(items, "__aiter__"):
            async for it in items:
                await queue.put(it)
        else:
            for it in items:
                await queue.put(it)
        for _ in range(num_workers):
            await queue.put(stop)

    async def worker() -> None:
        while True:
            it = await queue.get()
            if it is stop:
                return
            status = await work(it)
            if on_done is not None:
                on_done(status)

    tasks = [asyncio.create_task(worker()) for _ in range(num_workers)]
    feed = asyncio.create_task(feeder())
    try:
        await asyncio.gather(feed, *tasks)
    finally:
        for t in (feed, *tasks):
            t.cancel()


class Progress:
    """A Rich progress bar with a per-status tally and a rate, or nothing when ``enabled`` is False."""

    def __init__(self, description: str, total: int | None, *, enabled: bool) -> None:
        self.enabled = enabled
        self.description, self.total = description, total
        self.t0 = time.perf_counter()
        self.done = 0
        self._bar: Any = None

    def __enter__(self) -> Progress:
        if self.enabled:
            from astrogan.utils.log import progress

            self._bar = progress()
            self._bar.__enter__()
            self._task = self._bar.add_task(self.description, total=self.total, info="")
        return self

    def advance(self, status: str | None) -> None:
        """Count one finished item."""
        self.done += 1
        if self._bar is not None:
            rate = self.done / max(time.perf_counter() - self.t0, 1e-9)
            self._bar.update(self._task, advance=1, info=f"{rate:.1f} items/s {status or ''}")

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)


class Source(ABC):
    """An archive fetcher: one shared ``HttpConfig`` plus the archive's own options; ``fetch(out)`` runs it.

    A subclass checks its options in ``__init__`` (UserError), then calls this one with its catalog
    source name, base URL and extra hosts (a CDN); it says what to fetch (``items``), each item's id
    and how one item becomes a catalog row (``fetch_item``, returning the status). This class runs the
    rest the same way for all: catalog, resume (items already done are skipped), temp files of a killed
    run removed, ``http.concurrency`` workers, progress bar, summary. Build one through
    ``SOURCES[name].build`` (``astrogan.data.sources``), which fills in the defaults.
    """

    def __init__(
        self,
        http: HttpConfig,
        *,
        source: str,
        base_url: str,
        hosts: Iterable[str] = (),
        label: str,
        total: int | None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise UserError(f"--base-url must be an http(s) URL, got {base_url!r}")
        self.source = source  # the catalog's source name (ESA's depends on the site)
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.http = http.allowing({*hosts, host_of(base_url)})
        self.label, self.total = label, total  # progress bar text and length

    @abstractmethod
    async def items(self, client: PoliteClient, summary: FetchSummary) -> list[Any]:
        """What this run fetches (days, search hits, listing items), in order."""

    @abstractmethod
    def item_id(self, item: Any) -> str:
        """The catalog id of an item (what resuming checks)."""

    @abstractmethod
    async def fetch_item(self, client: PoliteClient, catalog: Catalog, item: Any) -> str:
        """Fetch one item into the catalog; returns the status the summary counts."""

    def fetch(self, out: str | Path, *, progress: bool = False) -> FetchSummary:
        """Fetch every item not done yet: files in ``out/<source>/``, rows in ``out/catalog.sqlite``."""
        return asyncio.run(self._fetch(Path(out), progress))

    async def _fetch(self, out: Path, progress: bool) -> FetchSummary:
        summary = FetchSummary(self.source)
        t0 = time.perf_counter()
        clean_partials(out / self.source)
        with Catalog(out) as catalog, Progress(self.label, self.total, enabled=progress) as bar:
            async with PoliteClient(self.http) as client:

                async def one(item: Any) -> str | None:
                    if catalog.is_done(self.source, self.item_id(item)):
                        summary.num_already_done += 1
                        return None
                    status = await self.fetch_item(client, catalog, item)
                    summary.statuses[status] += 1
                    return status

                items = await self.items(client, summary)
                await run_pool(items, one, num_workers=self.http.concurrency, on_done=bar.advance)
                summary.num_requests, summary.num_retries = client.num_requests, client.num_retries
        summary.elapsed_s = time.perf_counter() - t0
        return summary
