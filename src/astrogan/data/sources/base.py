"""What every fetcher shares: the `Source` run (catalog, resume, pool, progress, summary), image downloads.

A picture is catalogued ``ok`` only after it decoded completely (`check_picture`, run in a worker
thread before the downloaded file gets its final name): every frame loaded by Pillow (FITS: every
HDU's data read by astropy), within ``HttpConfig.max_pixels`` (checked from the header before any
pixel is decoded, so a decompression bomb is one ``failed:too-large`` row, never a crash) and, when
the source asks, ``--max-side``. A body that ends early is ``failed:truncated`` (retried first, like
a dropped connection), one whose data does not decode ``failed:corrupt``. A failed download leaves
no file behind, and removes debris under the item's name (a bomb an older version renamed into place).
"""

from __future__ import annotations

import asyncio
import io
import mmap
import time
import warnings
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from astrogan.data.sources import HttpConfig
from astrogan.data.sources.catalog import Catalog, now_utc
from astrogan.data.sources.http import (
    KNOWN_EXTENSIONS,
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

    @property
    def num_attempted(self) -> int:
        """Items (and listing pages) this run tried, whatever became of them."""
        return sum(self.statuses.values())

    @property
    def all_failed(self) -> bool:
        """True when this run tried something and nothing ended ``ok`` or skipped: the CLI exits 1."""
        return self.num_attempted > 0 and self.num_fetched + self.num_skipped == 0

    def line(self) -> str:
        """One human line, the verdict first: all failed, nothing new, or fetched/skipped/failed counts."""
        failed = ", ".join(f"{k} {v}" for k, v in self.failed.items()) or "none"
        num_failed = sum(self.failed.values())
        done = f", already done {self.num_already_done}" if self.num_already_done else ""
        if self.all_failed:
            head = f"FAILED, nothing fetched: {num_failed} of {self.num_attempted} failed ({failed}){done}"
        elif self.num_attempted == 0 and self.num_already_done:
            head = f"nothing new: {self.num_already_done} already done"
        elif self.num_attempted == 0:
            head = "nothing to fetch: no items"
        else:
            head = (
                f"fetched {self.num_fetched}, skipped {self.num_skipped}, failed {num_failed} "
                f"({failed}){done}"
            )
        return (
            f"{self.source}: {head} in {self.elapsed_s:.1f} s, "
            f"{self.num_requests} requests, {self.num_retries} retries"
        )


# What Pillow may open a download as: the raster formats the archives serve. (Not every format Pillow
# knows: EPS, for one, runs Ghostscript on load.)
PICTURE_FORMATS = ("JPEG", "PNG", "GIF", "TIFF", "WEBP", "BMP")  # JPEG's opener also yields MPO
_EXT_BY_FORMAT = {
    "JPEG": ".jpg",
    "MPO": ".jpg",
    "PNG": ".png",
    "GIF": ".gif",
    "TIFF": ".tif",
    "WEBP": ".webp",
}
# The media types a picture is accepted under: images, FITS, and the generic binary type that plain file
# servers and object stores give files (S3's default); `check_picture` then decides what the body is (an
# HTML error page under a binary type is ``not-an-image``), and `picture_extension` names the file.
PICTURE_TYPES = ("image/", "application/fits", "application/octet-stream", "binary/octet-stream")


def picture_extension(path: Path, content_type: str) -> str:
    """The file extension of a checked picture: from its media type, or its content under a generic type."""
    ext = extension_for(content_type)
    if ext != ".bin":
        return ext
    if _is_fits(path, content_type):
        return ".fits"
    from PIL import Image

    try:
        with Image.open(path, formats=PICTURE_FORMATS) as im:
            return _EXT_BY_FORMAT.get(str(im.format), ".bin")
    except Exception:  # noqa: BLE001 - checked already; an unnamed format keeps .bin
        return ".bin"


def _is_fits(path: Path, content_type: str) -> bool:
    if "fits" in content_type:
        return True
    with open(path, "rb") as fh:
        return fh.read(9) == b"SIMPLE  ="


def _fits_size(path: Path, max_pixels: int) -> tuple[int, int]:
    """(width, height) of the first 2D+ HDU of a FITS file after reading every HDU's data whole."""
    from astropy.io import fits

    size: tuple[int, int] | None = None
    try:
        # (No warnings.catch_warnings here: it is not thread-safe, and this runs in worker threads.
        # astropy only warns that a file "may have been truncated"; reading its data then fails.)
        with fits.open(path, memmap=False) as hdul:
            for hdu in hdul:
                shape = tuple(int(n) for n in (getattr(hdu, "shape", None) or ()))
                if len(shape) >= 2 and size is None:
                    size = (shape[-1], shape[-2])
                    if size[0] * size[1] > max_pixels:
                        raise FetchError("too-large", f"{size[0]}x{size[1]} px > {max_pixels}")
                _ = hdu.data
    except FetchError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader error means the file is not a whole FITS
        text = str(exc).lower()
        truncated = "truncat" in text or "reshape" in text or isinstance(exc, EOFError)
        raise FetchError("truncated" if truncated else "corrupt", str(exc), retry=truncated) from None
    if size is None:
        raise FetchError("not-an-image", "FITS without a 2D image")
    return size


def jpeg_problem(data: bytes | mmap.mmap) -> str | None:
    """``None`` when a JPEG's marker structure is whole, else ``"truncated"`` or ``"corrupt"``.

    libjpeg decodes junk entropy data without an error (it fills the picture with whatever the bits
    say), so a valid header followed by junk would pass a plain decode. This walks the segments:
    every marker must be a JPEG marker, every scan's data may hold only stuffed ``FF 00`` and restart
    markers, and the stream must reach its end-of-image marker (bytes after it are allowed).
    """
    n = len(data)
    if data[:2] != b"\xff\xd8":
        return "corrupt"
    i = 2
    while True:
        if i >= n:
            return "truncated"
        if data[i] != 0xFF:
            return "corrupt"
        while i < n and data[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            return "truncated"
        marker = data[i]
        i += 1
        if marker == 0xD9:  # end of image
            return None
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # standalone markers
            continue
        if marker < 0xC0 or marker == 0xD8:
            return "corrupt"
        if i + 2 > n:
            return "truncated"
        length = int.from_bytes(data[i : i + 2], "big")
        if length < 2:
            return "corrupt"
        i += length
        if i > n:
            return "truncated"
        if marker != 0xDA:  # not start-of-scan: the next marker follows
            continue
        while True:  # entropy-coded data up to the next real marker
            j = data.find(b"\xff", i)
            if j < 0 or j + 1 >= n:
                return "truncated"
            follower = data[j + 1]
            if follower == 0x00 or 0xD0 <= follower <= 0xD7:
                i = j + 2
                continue
            i = j
            break


def check_picture(
    path: Path, content_type: str = "", *, max_pixels: int, max_side_px: int | None = None
) -> tuple[int, int]:
    """(width, height) of a downloaded picture once it decoded completely; `FetchError` otherwise.

    The size comes from the header and is checked against ``max_pixels`` (``too-large``) and
    ``max_side_px`` (``too-big``) before any pixel is decoded; then every frame is loaded. Pillow's
    own bomb guard (``DecompressionBombError``/``Warning``) also reads as ``too-large``. Only the
    `PICTURE_FORMATS` are opened (anything else is ``not-an-image``). Ends early:
    ``truncated`` (retryable); undecodable data: ``corrupt``; no picture at all: ``not-an-image``.
    JPEGs also have their segment structure walked (`jpeg_problem`), since libjpeg decodes junk.
    FITS files (by media type or their ``SIMPLE  =`` card) are read with astropy. Slow on big
    pictures: run it off the event loop (the download does, in a worker thread).
    """
    from PIL import Image, UnidentifiedImageError

    if _is_fits(path, content_type):
        size = _fits_size(path, max_pixels)
    else:
        try:
            with Image.open(path, formats=PICTURE_FORMATS) as im:
                size = (int(im.width), int(im.height))
                if size[0] * size[1] > max_pixels:
                    raise FetchError("too-large", f"{size[0]}x{size[1]} px > {max_pixels}")
                if max_side_px is not None and max(size) > max_side_px:
                    raise FetchError("too-big", f"{size[0]}x{size[1]} px > --max-side {max_side_px}")
                for frame in range(getattr(im, "n_frames", 1)):
                    im.seek(frame)
                    if im.width * im.height > max_pixels:
                        raise FetchError("too-large", f"frame {frame}: {im.width}x{im.height} px")
                    im.load()
                if im.format in ("JPEG", "MPO"):
                    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
                        problem = jpeg_problem(data)
                    if problem is not None:
                        raise FetchError(problem, "JPEG structure", retry=problem == "truncated")
        except FetchError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise FetchError("too-large", str(exc)) from None
        except UnidentifiedImageError:
            raise FetchError("not-an-image", path.name) from None
        except Exception as exc:  # noqa: BLE001 - a malformed file may raise anything; never fatal
            truncated = "truncated" in str(exc).lower() or isinstance(exc, EOFError)
            raise FetchError("truncated" if truncated else "corrupt", str(exc), retry=truncated) from None
    if max_side_px is not None and max(size) > max_side_px:
        raise FetchError("too-big", f"{size[0]}x{size[1]} px > --max-side {max_side_px}")
    return size


def header_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) from the first bytes of a picture, or None while they do not say yet.

    A header that declares a decompression bomb raises ``FetchError('too-large')``.
    """
    from PIL import Image

    try:
        with Image.open(io.BytesIO(head), formats=PICTURE_FORMATS) as im:
            return int(im.width), int(im.height)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise FetchError("too-large", str(exc)) from None
    except Exception:  # noqa: BLE001 - not enough bytes yet (or not a picture): read on
        return None


PROBE_BYTES = (64 * 1024, 1024 * 1024)  # a header is nearly always in the first 64 KiB; else try 1 MiB


async def probe_size(client: PoliteClient, url: str) -> tuple[int, int] | None:
    """A picture's (width, height) read from the start of its body only (`PoliteClient.peek`).

    Asks for the first 64 KiB, then (a header behind big metadata blocks) the first MiB; None when
    that does not tell. Raises `FetchError` as a download would (``too-large`` for a header over
    ``max_pixels``).
    """
    size = None
    seen = 0

    def read(head: bytes) -> tuple[int, int] | None:
        nonlocal seen
        seen = len(head)
        return header_size(head)

    for num_bytes in PROBE_BYTES:
        size = await client.peek(url, read, max_bytes=num_bytes, accept=PICTURE_TYPES)
        if size is not None or seen < num_bytes:  # found, or the whole body did not tell
            break
    if size is not None and size[0] * size[1] > client.config.max_pixels:
        raise FetchError("too-large", f"{size[0]}x{size[1]} px > {client.config.max_pixels}")
    return size


async def fetch_largest_fitting(
    client: PoliteClient,
    catalog: Catalog,
    row: dict[str, Any],
    candidates: list[tuple[str, bool]],
    *,
    max_side_px: int,
) -> str:
    """Fetch the first of `candidates` (url, size_known), largest first, whose picture fits `max_side_px`.

    A candidate whose size the listing does not give is judged by its header first (`probe_size`), so an
    original of 100 MB is never downloaded to learn that it is too big; one that cannot be read, or turns
    out too big after all, gives way to the next one down. Returns the item's status (recorded).
    """
    status, url = "failed:too-big", candidates[-1][0]
    for url, size_known in candidates:
        if not size_known:
            try:
                size = await probe_size(client, url)
            except FetchError as exc:  # a rendition that cannot be read (or a bomb): the next one down
                status = exc.status
                continue
            if size is not None and max(size) > max_side_px:
                status = "failed:too-big"
                continue
        got = await fetch_image(client, catalog, row, url=url, max_side_px=max_side_px)
        status = got["status"]
        if status != "failed:too-big":  # the listing's size was wrong: try the next one down
            return status
    return record(catalog, {**row, "image_url": url}, status)


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
    get: Callable[[str], Awaitable[Any]] | None = None,
) -> list[Any]:
    """Up to ``max_items`` items of a paginated listing from ``url`` on (JSON; HTML with ``get=client.get_text``).

    ``read_page(doc, url) -> (items, next_url or None)``; ``get(url)`` reads a page (default
    ``client.get_json``). A page that fails ends the listing with what the earlier pages gave, counted
    as ``failed:listing-<reason>`` in ``summary``; a page that ``read_page`` cannot read as a listing
    (JSON: an array, null, items that are not objects: it raises) is ``failed:listing-bad-shape``, with
    a warning naming the page. A next link to a page already read
    (a page naming itself, a cycle) ends the listing.
    """
    items: list[Any] = []
    seen: set[str] = set()
    get = get or client.get_json
    while url and url not in seen and len(items) < max_items:
        seen.add(url)
        try:
            doc = await get(url)
        except FetchError as exc:
            summary.statuses[f"failed:listing-{exc.reason}"] += 1
            break
        try:
            found, next_url = read_page(doc, url)
        except (AttributeError, TypeError, KeyError, IndexError, ValueError) as exc:
            summary.statuses["failed:listing-bad-shape"] += 1
            warnings.warn(
                f"{url}: listing not in the expected shape ({type(exc).__name__}: {exc})", stacklevel=1
            )
            break
        url = next_url
        items.extend(found[: max_items - len(items)])
    return items


def remove_debris(folder: Path, stem: str, *, max_pixels: int) -> list[Path]:
    """Delete the files under an item's name (``<stem>.<ext>``) that are not acceptable pictures.

    Debris an older version left (a decompression bomb renamed into place before the check that
    crashed the run, a partial file); a whole picture an earlier run fetched stays, its row saying
    it is not ``ok`` (the dataset builder skips it). Returns what was removed.
    """
    removed = []
    for ext in sorted(KNOWN_EXTENSIONS):
        path = folder / f"{stem}{ext}"
        if not path.is_file():
            continue
        try:
            check_picture(path, max_pixels=max_pixels)
        except FetchError:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


async def fetch_image(
    client: PoliteClient,
    catalog: Catalog,
    row: dict[str, Any],
    *,
    url: str,
    max_side_px: int | None = None,
) -> dict[str, Any]:
    """Download ``url`` as ``<source>/<safe id>.<ext>``, fill ``row`` (status, sha256, size) and store it.

    ``ok`` only once the picture decoded whole (`check_picture`); a failed download leaves no file,
    and removes debris an older run left under the item's name (`remove_debris`).
    """
    folder = catalog.root / row["source"]
    stem = safe_name(row["item_id"])
    row = {**row, "image_url": url}
    max_pixels = client.config.max_pixels
    ext: dict[str, str] = {}  # the checked picture's extension, for the final name (same thread, just after)

    def check(path: Path, ctype: str) -> tuple[int, int]:
        size = check_picture(path, ctype, max_pixels=max_pixels, max_side_px=max_side_px)
        ext["found"] = picture_extension(path, ctype)
        return size

    def remove_other_types(path: Path) -> None:  # an earlier run's file of another type
        for ext in KNOWN_EXTENSIONS - {path.suffix}:
            (folder / f"{stem}{ext}").unlink(missing_ok=True)

    try:
        dl = await client.download(
            url,
            folder / f"{stem}.bin",
            accept=PICTURE_TYPES,
            dest_for_type=lambda ctype: folder / f"{stem}{ext.get('found') or extension_for(ctype)}",
            check=check,
            saved=remove_other_types,
        )
    except FetchError as exc:
        await asyncio.to_thread(remove_debris, folder, stem, max_pixels=max_pixels)
        row.update(local_path=None, sha256=None, bytes=None, width=None, height=None, status=exc.status)
    else:
        width, height = dl.checked
        row.update(
            local_path=dl.path.relative_to(catalog.root).as_posix(),
            sha256=dl.sha256,
            bytes=dl.num_bytes,
            width=width,
            height=height,
            status="ok",
        )
    row["fetched_at"] = now_utc()
    catalog.upsert(row)
    return row


def items_in_progress(http: HttpConfig) -> int:
    """How many items a run works on at once: twice the request slots (``http.concurrency``).

    The client bounds the requests in flight to ``concurrency`` (what the server sees); the extra
    items are ready with their next request while the others parse, hash, check or write, so every
    slot is busy and a run reaches ``concurrency`` round trips at a time, not fewer.
    """
    return 2 * http.concurrency


def worker_threads(http: HttpConfig) -> int:
    """Threads for the work taken off the event loop: one per item in progress, at most 32."""
    return min(32, items_in_progress(http) + 4)


def _first_of_each(items: list[Any], key: Callable[[Any], str]) -> list[Any]:
    """``items`` without repeats of a key, each kept where it first came."""
    seen: set[str] = set()
    unique = []
    for item in items:
        if (k := key(item)) not in seen:
            seen.add(k)
            unique.append(item)
    return unique


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


class Source(ABC):
    """An archive fetcher: one shared ``HttpConfig`` plus the archive's own options; ``fetch(out)`` runs it.

    A subclass checks its options in ``__init__`` (UserError), then calls this one with its catalog
    source name, base URL and extra hosts (a CDN); it says what to fetch (``items``), each item's id
    and how one item becomes a catalog row (``fetch_item``, returning the status). This class runs the
    rest the same way for all: catalog, resume (items already done, by ``is_done``, are skipped with
    no request; a source may decide more locally, as APOD does from its stored pages), temp files of a
    killed run removed, ``2 * http.concurrency`` items at a time over ``http.concurrency`` request slots
    (`items_in_progress`; an unexpected error in one item is that item's ``failed:internal-<Type>``
    row and a warning, never the end of the run), progress bar, summary.
    Build one through ``SOURCES[name].build`` (``astrogan.data.sources``), which fills in the defaults.
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

    def is_done(self, catalog: Catalog, item: Any, row: dict[str, Any]) -> bool:
        """True when this run need not touch an item the catalog has ``row`` for (no request is made).

        Default: a final status, or ``ok`` with its file intact. A source may decide more locally
        (APOD re-reads the keyword filter on the stored page).
        """
        return catalog.is_done_row(row)

    def fetch(self, out: str | Path, *, progress: bool = False) -> FetchSummary:
        """Fetch every item not done yet: files in ``out/<source>/``, rows in ``out/catalog.sqlite``."""
        return asyncio.run(self._fetch(Path(out), progress))

    async def _fetch(self, out: Path, progress: bool) -> FetchSummary:
        from astrogan.utils.log import Bar  # Rich loads when a fetch runs, not when a source is imported

        summary = FetchSummary(self.source)
        t0 = time.perf_counter()
        # The worker threads behind asyncio.to_thread (hash + fsync + picture check, APOD's page parse,
        # DNS): one per request slot, so a slow disk's fsyncs never queue behind each other.
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=worker_threads(self.http), thread_name_prefix="astrogan-fetch")
        )
        # The client's TLS setup (loading the CA bundle: tens of ms, without the GIL) runs in a thread
        # while the catalog opens (a new one switches to WAL and creates its table: tens of ms more).
        making_client = asyncio.ensure_future(asyncio.to_thread(PoliteClient, self.http))
        try:
            clean_partials(out / self.source)
            catalog = Catalog(out)
        finally:
            client = await making_client
        with catalog, Bar(self.label, self.total, enabled=progress) as bar:
            async with client:

                async def one(item: Any) -> str | None:
                    item_id = self.item_id(item)
                    row = catalog.get(self.source, item_id)
                    if row is not None and self.is_done(catalog, item, row):
                        summary.num_already_done += 1
                        return None
                    try:
                        status = await self.fetch_item(client, catalog, item)
                    except Exception as exc:  # noqa: BLE001 - one bad item never ends the run
                        status = f"failed:internal-{type(exc).__name__}"
                        warnings.warn(f"{self.source} {item_id}: {type(exc).__name__}: {exc}", stacklevel=1)
                        record(catalog, {**(row or {}), "source": self.source, "item_id": item_id}, status)
                    summary.statuses[status] += 1
                    return status

                # A listing that shifts while it is read (a new item published at its head) shows the
                # last item of one page again at the top of the next: fetch each item once.
                items = _first_of_each(await self.items(client, summary), self.item_id)
                await run_pool(
                    items,
                    one,
                    num_workers=items_in_progress(self.http),
                    on_done=lambda status: bar.advance(status=status),  # status None: done before this run
                )
                summary.num_requests, summary.num_retries = client.num_requests, client.num_retries
        summary.elapsed_s = time.perf_counter() - t0
        return summary
