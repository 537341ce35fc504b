"""The one polite HTTP client every archive fetcher shares (async httpx, rate limit, retries, safe downloads).

Behaviour, in one place (its knobs are one ``HttpConfig``, defined in ``astrogan.data.sources`` so the
CLI can read their defaults without importing httpx):

- identifies itself (``User-Agent: astrogan/<version> (+https://github.com/astrogan)``);
- connect/read timeouts, and a slow-body guard (curl's ``--speed-limit``): a body that brings fewer
  than `MIN_SPEED_BPS` bytes a second over any ``timeout_s`` window is a timeout, so a server that
  trickles a byte now and then cannot hold a request forever; at most ``concurrency`` requests in
  flight (a request holds its slot from sending to the end of its body, not while its download is
  checked); a token-bucket rate limit
  (``--rate 2/s``; ``off`` disables it) charged once per attempt, retries included; keep-alive
  connections, kept through a short error answer or redirect (its body is read out);
- retries with exponential backoff on timeouts, dropped connections, 429 (waiting at least the
  ``Retry-After`` it names, seconds or HTTP date, capped at ``max_backoff_s``) and 5xx; never on
  other 4xx (404 is :class:`NotFound`, the rest ``FetchError('http-<code>')``);
- redirects are followed by hand, and only to hosts in ``allowed_hosts``;
- downloads check the content type and the size (a ``Content-Length`` over ``max_bytes`` is
  refused before the body is read; a body growing past it is cut), are received in memory (past
  `SPILL_BYTES`, into a hidden temp file in the target folder), then written to that temp file,
  fsynced, hashed (sha256), given to the caller's ``check`` (the fetchers decode the whole picture
  there) and renamed, all of it in a worker thread, off the event loop: a partial file, or one that
  failed its check, never has the final name. A check that finds the body cut short (a server that
  closed the connection early without a ``Content-Length``) is retried like a dropped connection;
- ``peek`` reads only the start of a body (a ``Range`` request, and the stream closed as soon as the
  caller has what it needs: an image header's size, say), so a rendition can be judged before it is
  downloaded;
- pages are decoded by their declared charset (``decode_html``: the BOM, then valid UTF-8, then the
  ``Content-Type`` header's charset or the page's ``<meta>`` one, Latin-1 labels read as Windows-1252
  as browsers do), so legacy Latin-1 pages keep their accents.
"""

from __future__ import annotations

import asyncio
import codecs
import email.utils
import hashlib
import importlib.util
import os
import random
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from astrogan.data.sources import HttpConfig
from astrogan.imaging import sha256_file
from astrogan.utils.atomic import current_umask

USER_AGENT_URL = "https://github.com/astrogan"
MIN_SPEED_BPS = 1024  # below this for a whole timeout window a body counts as stalled
PART_MARK = ".part-"  # temp downloads are ".<name>.part-XXXX"; cleaned up by fetchers on start


def _remember_that_sniffio_is_absent() -> None:
    """Make the optional ``import sniffio`` that httpcore runs for every lock, event and semaphore it
    sets up (several per request) fail at once when sniffio is not installed.

    anyio >= 4.11 no longer pulls sniffio in, and Python does not cache a failed import: each attempt
    walks ``sys.path`` again, 1-1.5 ms of event-loop CPU per request on a 2-core machine (more with a
    longer path), as much as all the rest of httpx's work (encode/httpcore#1103). ``sys.modules[name]
    = None`` is Python's own "known absent" marker.
    """
    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]


_remember_that_sniffio_is_absent()


def user_agent() -> str:
    """``astrogan/<version> (+https://github.com/astrogan)``."""
    # importlib.metadata rather than `astrogan.__version__`: the package root lazily reaches
    # astrogan.sampling, which the data layer must not import (import-linter contract).
    from importlib.metadata import PackageNotFoundError, version

    try:
        ver = version("astrogan")
    except PackageNotFoundError:
        ver = "0"
    return f"astrogan/{ver} (+{USER_AGENT_URL})"


class FetchError(Exception):
    """A request that failed for good; ``reason`` is short and goes into ``failed:<reason>``.

    ``retry=True`` (raised by a download's check, e.g. a body cut short) makes the client try the
    request again like a dropped connection before giving up with this reason.
    """

    def __init__(self, reason: str, detail: str = "", *, retry: bool = False) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.retry = retry

    @property
    def status(self) -> str:
        """The catalog status it leaves: ``failed:<reason>``."""
        return f"failed:{self.reason}"


class NotFound(FetchError):
    """HTTP 404/410: the item is not there (recorded as ``not-found``, not retried)."""

    def __init__(self, detail: str = "") -> None:
        super().__init__("not-found", detail)

    @property
    def status(self) -> str:
        """``not-found``: a final status, not a failure to retry."""
        return "not-found"


class _Retryable(Exception):
    def __init__(self, reason: str, wait_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.wait_s = reason, wait_s


class TokenBucket:
    """Token bucket: ``rate`` tokens per second, bursts of at most ``capacity``."""

    def __init__(self, rate_per_s: float | None, *, capacity: float = 1.0) -> None:
        self.rate = rate_per_s
        self.capacity = max(1.0, capacity)
        self.tokens = self.capacity
        self.last = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        """Wait for one token (returns at once when the limit is off)."""
        if self.rate is None:
            return
        async with self._lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
                self.last = now
                if self.tokens >= 1.0:
                    self.tokens -= 1.0
                    return
                await asyncio.sleep((1.0 - self.tokens) / self.rate)


def host_of(url: str) -> str:
    """Lower-case host (with port when one is given) of an absolute URL."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    return f"{host}:{parts.port}" if parts.port else host


def safe_name(item_id: str, *, max_len: int = 80) -> str:
    """A file-name stem made from an id alone: ``[A-Za-z0-9._-]``, no leading dot, bounded length.

    When characters had to be replaced a short hash of the id is appended, so two ids never
    collide on one name.
    """
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", item_id).lstrip(".")[:max_len] or "item"
    if stem != item_id:
        stem = f"{stem}-{hashlib.sha256(item_id.encode()).hexdigest()[:8]}"
    return stem


_EXT_BY_TYPE = {
    "image/jpeg": ".jpg",
    "image/jpg": ".jpg",
    "image/pjpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "image/tiff": ".tif",
    "image/webp": ".webp",
    "image/fits": ".fits",
    "application/fits": ".fits",
}


KNOWN_EXTENSIONS = frozenset({*_EXT_BY_TYPE.values(), ".bin"})  # every name a download may get


def extension_for(content_type: str) -> str:
    """File extension from a media type (never from the remote path)."""
    return _EXT_BY_TYPE.get(content_type.split(";")[0].strip().lower(), ".bin")


_META_CHARSET = re.compile(rb"""<meta\b[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_LATIN1_FAMILY = {"iso8859-1", "ascii", "cp1252", "latin-1"}  # codecs' names; browsers read all as cp1252
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def declared_charsets(content: bytes, header_charset: str | None = None) -> list[str]:
    """The charsets a page declares, in order: its ``Content-Type`` header's, then its ``<meta>``'s."""
    found = [header_charset] if header_charset else []
    found += [m.group(1).decode("ascii") for m in _META_CHARSET.finditer(content[:4096])]
    return [c.strip().lower() for c in found if c.strip()]


def decode_html(content: bytes, header_charset: str | None = None) -> str:
    """A page's text, decoded by what it declares (legacy APOD pages are Latin-1).

    Order: a byte-order mark; pure ASCII; valid UTF-8 (a Latin-1 page with accents is never valid
    UTF-8, while a UTF-8 page mislabelled Latin-1 would decode to mojibake, so UTF-8 that validates
    wins over a label); then each declared charset (header, then ``<meta>``) that decodes the bytes
    without error, the Latin-1 family read as Windows-1252 like browsers do; last Windows-1252, else
    Latin-1, which never fail.
    """
    for bom, codec in _BOMS:
        if content.startswith(bom):
            return content.decode(codec, errors="replace")
    if content.isascii():
        return content.decode("ascii")
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        pass
    for label in declared_charsets(content, header_charset):
        try:
            name = codecs.lookup(label).name
        except LookupError:
            continue
        for codec in ("cp1252", "latin-1") if name in _LATIN1_FAMILY else (name,):
            try:
                return content.decode(codec)
            except (UnicodeDecodeError, LookupError):
                continue
    try:
        return content.decode("cp1252")
    except UnicodeDecodeError:
        return content.decode("latin-1")


def _retry_after_s(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass
class Download:
    """A finished download: where it is, its sha256, size and media type, what its check returned."""

    path: Path
    sha256: str
    num_bytes: int
    content_type: str
    url: str
    checked: Any = None


# A download's first bytes are kept in memory (at most this much for each of the 2 x concurrency items in
# progress, 64 MiB at --concurrency 16); past it, the body goes on to its temp file.
SPILL_BYTES = 2 * 1024 * 1024


class _Received:
    """A download's body as it arrives: in memory, then (past `SPILL_BYTES`) in its temp file.

    Every file operation (creating the temp file, writing what memory held, fsync, hashing, the
    caller's check, the rename) runs in a worker thread: creating a file is a journal write, milliseconds
    on a busy disk, which the event loop must not wait for.
    """

    def __init__(self, dest: Path, content_type: str, url: str) -> None:
        self.dest, self.content_type, self.url = dest, content_type, url
        self.head = bytearray()
        self.num_bytes = 0
        self.path: Path | None = None
        self.file: Any = None

    def spill(self) -> None:
        """Create the hidden temp file beside ``dest`` and move what memory holds into it (a thread)."""
        fd, name = tempfile.mkstemp(prefix=f".{self.dest.name}{PART_MARK}", dir=self.dest.parent)
        self.path, self.file = Path(name), os.fdopen(fd, "wb")
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp's 0600 would hide RAW/ from colleagues
        self.file.write(self.head)
        self.head = bytearray()

    def save(self) -> str:
        """Write, fsync and close the temp file; returns the sha256 of the body (a thread)."""
        digest = None
        if self.file is None:  # all of it in memory: hashed there, then written
            digest = hashlib.sha256(self.head).hexdigest()
            self.spill()
        with self.file as fh:
            fh.flush()
            os.fsync(fh.fileno())
        assert self.path is not None
        return digest if digest is not None else sha256_file(self.path)

    def discard(self) -> None:
        """Remove the temp file (a failed or abandoned download)."""
        if self.file is not None:
            self.file.close()
        if self.path is not None:
            self.path.unlink(missing_ok=True)


@dataclass
class Body:
    """A small document read whole: its bytes, media type and the charset its header names (or None)."""

    content: bytes
    content_type: str
    charset: str | None
    url: str


class _Pace:
    """The slow-body guard: ``feed(n)`` per chunk raises ``httpx.ReadTimeout`` when the last window of
    ``window_s`` seconds brought fewer than ``MIN_SPEED_BPS * window_s`` bytes.

    httpx's read timeout is per read, so a byte every ``timeout_s - 1`` seconds would never trip it.
    """

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self.start = time.monotonic()
        self.got = 0

    def feed(self, num_bytes: int) -> None:
        self.got += num_bytes
        elapsed = time.monotonic() - self.start
        if elapsed < self.window_s:
            return
        if self.got < MIN_SPEED_BPS * elapsed:
            raise httpx.ReadTimeout(f"body slower than {MIN_SPEED_BPS} B/s for {elapsed:.0f} s")
        self.start, self.got = time.monotonic(), 0


class PoliteClient:
    """Async HTTP client shared by the fetchers; use as ``async with PoliteClient(cfg) as client``."""

    def __init__(self, config: HttpConfig, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        self._sem = asyncio.Semaphore(config.concurrency)
        self._bucket = TokenBucket(config.rate_per_s)
        timeout = httpx.Timeout(config.timeout_s, connect=config.connect_timeout_s)
        limits = httpx.Limits(
            max_connections=config.concurrency, max_keepalive_connections=config.concurrency
        )
        self._client = httpx.AsyncClient(
            headers={"User-Agent": user_agent()},
            timeout=timeout,
            limits=limits,
            follow_redirects=False,
            transport=transport,
        )
        self.num_requests = 0
        self.num_retries = 0

    async def __aenter__(self) -> PoliteClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.aclose()

    def check_host(self, url: str) -> None:
        """Raise ``FetchError('host-not-allowed')`` unless ``url`` is http(s) on an allowed host."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise FetchError("bad-url", url)
        host = host_of(url)
        if host not in self.config.allowed_hosts and (parts.hostname or "") not in self.config.allowed_hosts:
            raise FetchError("host-not-allowed", host)

    async def _send(self, url: str, *, stream: bool, headers: dict[str, str] | None = None) -> httpx.Response:
        """One logical GET: host check, redirects by hand, status triage. Caller closes the response."""
        for _ in range(self.config.max_redirects + 1):
            self.check_host(url)
            await self._bucket.acquire()
            self.num_requests += 1
            req = self._client.build_request("GET", url, headers=headers)
            resp = await self._client.send(req, stream=stream)
            if resp.is_redirect and "location" in resp.headers:
                await _discard(resp)
                url = urljoin(url, resp.headers["location"])
                continue
            code = resp.status_code
            if code < 400:
                return resp
            await _discard(resp)
            if code == 429:
                raise _Retryable("http-429", _retry_after_s(resp.headers.get("retry-after")))
            if code >= 500:
                raise _Retryable(f"http-{code}", _retry_after_s(resp.headers.get("retry-after")))
            if code in (404, 410):
                raise NotFound(url)
            raise FetchError(f"http-{code}", url)
        raise FetchError("too-many-redirects", url)

    async def _with_retries(self, url: str, fn: Any, finish: Any = None) -> Any:
        """``fn(url)`` under a request slot, then ``finish(what fn returned)`` outside it, retried as one.

        ``finish`` is the work after the response is read (a download's hash, fsync and check): it
        frees the slot for the next request meanwhile, and a `FetchError` it raises with ``retry``
        set asks for the request again like a dropped connection.
        """
        cfg = self.config
        last = "unknown"
        for attempt in range(cfg.max_retries + 1):
            wait: float | None = None
            try:
                async with self._sem:
                    got = await fn(url)
                return got if finish is None else await finish(got)
            except _Retryable as exc:
                last, wait = exc.reason, exc.wait_s
            except FetchError as exc:
                if not exc.retry:
                    raise
                last = exc.reason
            except httpx.TimeoutException:
                last = "timeout"
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                last = "truncated" if "incomplete" in str(exc) or "closed" in str(exc) else "connection"
            except httpx.TransportError:
                last = "connection"
            if attempt == cfg.max_retries:
                break
            self.num_retries += 1
            backoff = min(cfg.max_backoff_s, cfg.backoff_s * 2**attempt) * (0.75 + 0.5 * random.random())
            await asyncio.sleep(min(cfg.max_backoff_s, max(backoff, wait or 0.0)))
        raise FetchError(last, url)

    async def get_body(self, url: str, *, accept: Iterable[str] = ("text/",)) -> Body:
        """GET a small document whole, as bytes; checks its media type and size."""
        accept = tuple(accept)

        async def once(u: str) -> Body:
            resp = await self._send(u, stream=True)
            try:
                ctype = _check_type(resp, accept)
                _check_length(resp, self.config.max_bytes)
                body = bytearray()
                pace = _Pace(self.config.timeout_s)
                async for chunk in resp.aiter_bytes():
                    pace.feed(len(chunk))
                    body += chunk
                    if len(body) > self.config.max_bytes:
                        raise FetchError("too-large", u)
                return Body(bytes(body), ctype, resp.charset_encoding, str(resp.url))
            finally:
                await resp.aclose()

        return await self._with_retries(url, once)

    async def get_text(self, url: str, *, accept: Iterable[str] = ("text/",)) -> str:
        """GET a small text document (HTML, JSON text), decoded by its declared charset (`decode_html`)."""
        body = await self.get_body(url, accept=accept)
        return decode_html(body.content, body.charset)

    async def get_json(self, url: str) -> Any:
        """GET and parse a JSON document (``FetchError('bad-json')`` when it is not JSON)."""
        import json

        text = await self.get_text(
            url, accept=("application/json", "text/json", "application/vnd", "text/plain")
        )
        try:
            return json.loads(text)
        except ValueError:
            raise FetchError("bad-json", url) from None

    async def peek(
        self,
        url: str,
        read: Callable[[bytes], Any],
        *,
        max_bytes: int = 1 << 20,
        accept: Iterable[str] = ("image/",),
    ) -> Any:
        """The first thing ``read(start of body)`` returns that is not None, reading at most ``max_bytes``.

        Asks for ``Range: bytes=0-<max_bytes-1>`` and stops reading as soon as ``read`` answers (the
        connection is closed, so a server that ignores the range sends little more); None when the
        start of the body never satisfies ``read``. ``read`` may raise `FetchError`.
        """
        accept = tuple(accept)

        async def once(u: str) -> Any:
            resp = await self._send(u, stream=True, headers={"Range": f"bytes=0-{max_bytes - 1}"})
            try:
                _check_type(resp, accept)
                head = bytearray()
                pace = _Pace(self.config.timeout_s)
                async for chunk in resp.aiter_bytes():
                    pace.feed(len(chunk))
                    head += chunk[: max_bytes - len(head)]
                    found = read(bytes(head))
                    if found is not None:
                        return found
                    if len(head) >= max_bytes:
                        break
                return None
            finally:
                await resp.aclose()

        return await self._with_retries(url, once)

    async def download(
        self,
        url: str,
        dest: Path,
        *,
        accept: Iterable[str] = ("image/",),
        dest_for_type: Any = None,
        check: Callable[[Path, str], Any] | None = None,
        saved: Callable[[Path], Any] | None = None,
    ) -> Download:
        """Stream ``url`` to ``dest`` (temp file, sha256, fsync, ``check``, rename).

        ``dest_for_type(content_type) -> Path`` may choose the final name from the media type
        (the extension is never taken from the remote path). ``check(temp_path, content_type)`` runs
        before the rename; what it returns is ``Download.checked``, a `FetchError` it raises fails the
        download (retried when its ``retry`` is set) and the temp file is removed. ``saved(final_path)``
        runs after the rename, in the same thread (tidying up what an earlier run left).

        The event loop only moves bytes, under a request slot that is freed once the body is read; the
        temp file, fsync, sha256 and ``check`` run in a worker thread (hashlib, Pillow, fsync and file
        creation release the GIL), so a slow disk or a big picture never stalls the other transfers.
        """
        accept = tuple(accept)
        dest.parent.mkdir(parents=True, exist_ok=True)

        async def once(u: str) -> _Received:
            resp = await self._send(u, stream=True)
            try:
                got = _Received(dest, _check_type(resp, accept), str(resp.url))
                _check_length(resp, self.config.max_bytes)
                try:
                    pace = _Pace(self.config.timeout_s)
                    async for chunk in resp.aiter_bytes():
                        pace.feed(len(chunk))
                        got.num_bytes += len(chunk)
                        if got.num_bytes > self.config.max_bytes:
                            raise FetchError("too-large", u)
                        if got.file is not None:
                            got.file.write(chunk)
                        else:
                            got.head += chunk
                            if len(got.head) > SPILL_BYTES:
                                await asyncio.to_thread(got.spill)
                except BaseException:
                    got.discard()
                    raise
                return got
            finally:
                await resp.aclose()  # the body is read: the connection goes back to the pool

        def settle(got: _Received) -> Download:  # in a worker thread
            try:
                digest = got.save()
                assert got.path is not None
                checked = check(got.path, got.content_type) if check is not None else None
                final = dest_for_type(got.content_type) if dest_for_type else dest
                os.replace(got.path, final)
            finally:
                got.discard()  # a check that failed (after the rename: nothing left to remove)
            if saved is not None:
                saved(final)
            return Download(final, digest, got.num_bytes, got.content_type, got.url, checked)

        async def finish(got: _Received) -> Download:
            return await asyncio.to_thread(settle, got)

        return await self._with_retries(url, once, finish)


_DRAIN_BYTES = 64 * 1024  # an error page or a redirect this small is read out to keep its connection


async def _discard(resp: httpx.Response) -> None:
    """Close a response we do not want; a short body (a 404 page) is read first, so that the connection
    goes back to the pool instead of being closed (a new one costs a handshake, and a DNS look-up)."""
    length = resp.headers.get("content-length", "")
    try:
        if length.isdigit() and int(length) <= _DRAIN_BYTES:
            await resp.aread()
    except httpx.HTTPError:
        pass  # the connection is closed below: nothing lost
    finally:
        await resp.aclose()


def _check_type(resp: httpx.Response, accept: tuple[str, ...]) -> str:
    ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
    if not any(ctype.startswith(a) for a in accept):
        raise FetchError("content-type", ctype or "missing")
    return ctype


def _check_length(resp: httpx.Response, max_bytes: int) -> None:
    length = resp.headers.get("content-length")
    if length and length.isdigit() and int(length) > max_bytes:
        raise FetchError("too-large", f"Content-Length {length} > {max_bytes}")


def clean_partials(folder: Path) -> int:
    """Remove temp downloads left by a killed run; returns how many were removed."""
    if not folder.is_dir():
        return 0
    n = 0
    for p in folder.iterdir():
        if p.name.startswith(".") and PART_MARK in p.name:
            p.unlink(missing_ok=True)
            n += 1
    return n
