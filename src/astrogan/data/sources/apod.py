"""Astronomy Picture of the Day: scrape day pages ``apYYMMDD.html`` into the fetch catalog.

A day page carries the picture as ``<a href="FULL"><img src="DISPLAY"></a>``; we take the link
when it points at an image file and fall back to the ``<img>`` otherwise. Video and interactive days
(an ``<iframe>``/``<embed>``/``<video>``/``<object>``, whether or not the page also shows a thumbnail
picture) are recorded as ``skipped-video``; a page with no picture as ``skipped-no-image``; a missing
page (404) as ``not-found``; a page the parser cannot read as ``failed:parse:<ExceptionType>:
<message>``, with a warning naming the day (its page is fetched again on the next run).

Pages are decoded by the charset they declare (``http.decode_html``; legacy pages are Latin-1).

The keyword filter: a day is kept when a keyword occurs in the day's page, case-sensitively
(``ignore_case`` to relax; ``regex`` to treat each keyword as a Python regular expression).
``match_in="text"`` (the default) looks at the page's words only (`page_text`: what a reader sees,
entities decoded, no markup or link targets); ``match_in="html"`` at the raw page, links and markup
included, which is what the original APOD-scraping project did (``NGC`` in an image's file name
keeps the day). Kept days fetch their image; the others are recorded as ``skipped-keyword``.

Resume without requests: every parsed page is stored in the catalog (``page_text`` and the page
itself, compressed, in ``page_html``), whatever the day's status. A re-run decides each day it has
a page for locally: a ``skipped-keyword`` day still outside the filter costs nothing, one the new
filter keeps fetches its picture only (a day already ``ok`` stays so, whatever the filter); a day
whose picture failed, went missing or was interrupted (``pending``: a kept day is recorded so
before its picture is fetched) fetches the picture only.

Licence: APOD pictures with a copyright line belong to their authors (stored in ``copyright`` and
``licence``); the others are NASA / public domain with the credit line requested.
"""

from __future__ import annotations

import asyncio
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from urllib.parse import urljoin

from astrogan.data.sources import HttpConfig
from astrogan.data.sources.base import FetchSummary, Source, fetch_image, record
from astrogan.data.sources.catalog import Catalog, pack_page, unpack_page
from astrogan.data.sources.http import Body, FetchError, PoliteClient, decode_html
from astrogan.utils.errors import UserError

SOURCE = "apod"
MATCH_IN = ("text", "html")
_VIDEO_TAGS = ("iframe", "embed", "video", "object")
_PAGE_TYPES = ("text/html", "text/plain", "application/xhtml")
FIRST_DAY = date(1995, 6, 16)
_IMAGE_SUFFIX = re.compile(r"\.(jpe?g|png|gif|tiff?|webp)$", re.IGNORECASE)
_REASON_MAX_CHARS = 120  # of an exception message kept in a failed:parse:<reason> status


@dataclass
class ApodPage:
    """What a day page says: title, picture URL, whether it is a video day, credit, explanation, text.

    ``image_url`` may be set on a video day (a thumbnail); ``is_video`` decides. ``text`` is the
    page's visible text, whitespace squashed (what ``--match-in text`` searches).
    """

    title: str | None
    image_url: str | None
    display_url: str | None
    is_video: bool
    credit: str | None
    copyright: str | None
    explanation: str | None
    text: str = ""


def page_url_for(day: date, base_url: str) -> str:
    """``<base>/apYYMMDD.html`` for a day."""
    return urljoin(base_url if base_url.endswith("/") else base_url + "/", f"ap{day:%y%m%d}.html")


def _squash(text: str | None) -> str | None:
    if text is None:
        return None
    out = " ".join(text.split())
    return out or None


def parse_apod_page(html: str, page_url: str) -> ApodPage:
    """Parse one APOD day page (URLs made absolute against ``page_url``)."""
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(html)
    full = display = None
    for a in tree.css("a"):
        img = a.css_first("img")
        href = (a.attributes.get("href") or "").strip()
        if img is not None and href:
            display = (img.attributes.get("src") or "").strip() or None
            full = href if _IMAGE_SUFFIX.search(href.split("?")[0]) else display
            break
    if full is None:
        img = tree.css_first("img")
        if img is not None:
            display = full = (img.attributes.get("src") or "").strip() or None
    # A video day may show a thumbnail picture too: the player decides.
    is_video = any(tree.css_first(t) is not None for t in _VIDEO_TAGS)

    title = None
    t = tree.css_first("title")
    if t is not None and " - " in t.text():
        title = _squash(t.text().split(" - ", 1)[1])
    if title is None:
        for b in tree.css("center b"):
            txt = _squash(b.text())
            if txt and "Credit" not in txt and "Explanation" not in txt:
                title = txt
                break

    credit = copyright_ = None
    for c in tree.css("center"):
        txt = _squash(c.text(separator=" "))
        if txt and "Credit" in txt:
            after = txt.split("Credit", 1)[1]
            credit = _squash(after.split(":", 1)[1] if ":" in after else after)
            if "Copyright" in txt:
                copyright_ = credit
            break

    explanation = None
    body = tree.body.text(separator=" ") if tree.body is not None else tree.text(separator=" ")
    if "Explanation:" in body:
        rest = body.split("Explanation:", 1)[1]
        explanation = _squash(re.split(r"Tomorrow's picture", rest, maxsplit=1)[0])
    return ApodPage(
        title=title,
        image_url=urljoin(page_url, full) if full else None,
        display_url=urljoin(page_url, display) if display else None,
        is_video=is_video,
        credit=credit,
        copyright=copyright_,
        explanation=explanation,
        text=page_text(tree),
    )


def page_text(page: Any) -> str:
    """The visible text of a page (an HTML string, or a parsed tree, whose scripts it removes), squashed."""
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(page) if isinstance(page, str) else page
    for node in tree.css("script, style, noscript"):
        node.decompose()
    return " ".join(tree.text(separator=" ").split())


def parse_failure_reason(exc: BaseException, *, max_chars: int = _REASON_MAX_CHARS) -> str:
    """``"<ExceptionType>: <message>"`` on one line, the message cut to ``max_chars``."""
    msg = " ".join(str(exc).split())
    if len(msg) > max_chars:
        msg = msg[: max_chars - 3] + "..."
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def licence_note(copyright_: str | None, credit: str | None) -> str:
    """The licence line stored for an APOD picture."""
    if copyright_:
        return f"copyright {copyright_}; not public domain, reuse needs the owner's permission (APOD)"
    return f"public domain (NASA) unless stated; credit: {credit or 'NASA'}"


def make_matcher(keywords: list[str] | None, *, regex: bool = False, ignore_case: bool = False):
    """A function ``page -> list of matching keywords`` (an empty list when there is no filter)."""
    if not keywords:
        return lambda text: []
    flags = re.IGNORECASE if ignore_case else 0
    try:
        patterns = [re.compile(k if regex else re.escape(k), flags) for k in keywords]
    except re.error as exc:
        raise UserError(f"bad --keyword regular expression: {exc}") from None

    def match(text: str) -> list[str]:
        return [k for k, p in zip(keywords, patterns, strict=True) if p.search(text)]

    return match


def parse_day(text: str | date, what: str) -> date:
    """An ISO date from a flag (UserError when malformed)."""
    if isinstance(text, date):
        return text
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UserError(f"{what} must be a date like 2015-01-01, got {text!r}") from None


class ApodSource(Source):
    """APOD days ``start..end`` (inclusive), kept by the keyword filter: images in ``out/apod/``."""

    def __init__(
        self,
        http: HttpConfig,
        *,
        start: str | date,
        end: str | date,
        keywords: Sequence[str] | None,
        regex: bool,
        ignore_case: bool,
        base_url: str,
        match_in: str = "text",
    ) -> None:
        first, last = parse_day(start, "--start"), parse_day(end, "--end")
        if last < first:
            raise UserError(f"--end {last} is before --start {first}")
        if match_in not in MATCH_IN:
            raise UserError(f"--match-in must be text or html, got {match_in!r}")
        self.days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
        super().__init__(http, source=SOURCE, base_url=base_url, label="apod days", total=len(self.days))
        self.filtering = bool(keywords)
        self.match_in = match_in
        self.match = make_matcher(list(keywords or []), regex=regex, ignore_case=ignore_case)

    def matches(self, *, text: str | None, html: str | None) -> list[str]:
        """The keywords found where ``--match-in`` looks (text, or the raw page)."""
        return self.match((text if self.match_in == "text" else html) or "")

    def is_done(self, catalog: Catalog, item: date, row: dict[str, Any]) -> bool:
        """Final states and intact ``ok`` files, plus ``skipped-keyword`` days the filter still leaves out
        (decided on the stored page: no request)."""
        if catalog.is_done_row(row):
            return True
        if row["status"] != "skipped-keyword" or not self.filtering:
            return False
        if self.match_in == "text":
            if row.get("page_text") is None:
                return False
            return not self.matches(text=row["page_text"], html=None)
        html = unpack_page(row.get("page_html"))
        return html is not None and not self.matches(text=None, html=html)

    async def items(self, client: PoliteClient, summary: FetchSummary) -> list[date]:
        """The days of the range."""
        return self.days

    def item_id(self, item: date) -> str:
        """The ISO date."""
        return item.isoformat()

    def read_page(
        self, page_url: str, html: str | None, body: Body | None
    ) -> tuple[ApodPage, list[str], bytes | None]:
        """A day page, stored (``html``) or just fetched (``body``, decoded by its declared charset):
        the parsed page, the keywords it matches and, for a fetched one, the page packed for the catalog.
        Runs in a worker thread."""
        packed = None
        if html is None:
            assert body is not None
            html = decode_html(body.content, body.charset)
            packed = pack_page(html)
        page = parse_apod_page(html, page_url)
        return page, self.matches(text=page.text, html=html), packed

    async def fetch_item(self, client: PoliteClient, catalog: Catalog, item: date) -> str:
        """The day page (from the catalog when a run stored it), then its picture when the filter keeps the day."""
        page_url = page_url_for(item, self.base_url)
        row: dict = {
            "source": SOURCE,
            "item_id": item.isoformat(),
            "date": item.isoformat(),
            "page_url": page_url,
        }
        before = catalog.get(SOURCE, item.isoformat())
        stored = before.get("page_html") if before else None
        html = unpack_page(stored)
        body = None
        if html is None:
            try:
                body = await client.get_body(page_url, accept=_PAGE_TYPES)
            except FetchError as exc:
                return record(catalog, row, exc.status)
        try:
            # Off the event loop (lexbor parses without the GIL): the other transfers go on meanwhile.
            page, matched, packed = await asyncio.to_thread(self.read_page, page_url, html, body)
        except Exception as exc:  # a page we cannot read is a data problem, never fatal for the run
            reason = parse_failure_reason(exc)
            warnings.warn(f"APOD {item.isoformat()} ({page_url}): page not parsed, {reason}", stacklevel=1)
            # The reason rides in the status (the catalog has no message column); a re-run retries every
            # status but ok and the final ones, so it is retried like any failed:<reason>. The run summary
            # counts it as plain failed:parse.
            record(catalog, row, f"failed:parse:{reason}")
            return "failed:parse"
        row.update(
            title=page.title,
            credit=page.credit,
            copyright=page.copyright,
            licence=licence_note(page.copyright, page.credit),
            explanation=page.explanation,
            keywords=matched,
            image_url=page.image_url,
            page_text=page.text,
            page_html=packed or stored,
        )
        if self.filtering and not matched:
            return record(catalog, row, "skipped-keyword")
        if page.is_video:
            return record(catalog, row, "skipped-video")
        if page.image_url is None:
            return record(catalog, row, "skipped-no-image")
        record(catalog, row, "pending")  # the page is safe: a stopped run resumes with the picture only
        return (await fetch_image(client, catalog, row, url=page.image_url))["status"]
