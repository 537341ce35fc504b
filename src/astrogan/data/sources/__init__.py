"""Archive fetchers (APOD, NASA images, ESA/Hubble, ESA/Webb, ESO): the shared `HttpConfig` and the registry `SOURCES`.

Every source is built from one `HttpConfig` (the polite client's knobs, the same for all) plus its own
options, and fetched with ``.fetch(out)``::

    SOURCES["apod"].build(HttpConfig(rate_per_s=1.0), start="2015-01-01", end="2015-01-31").fetch("raw")

`SOURCES` holds each source's name, its help, its own options (flag, default, help: the CLI's
``astrogan fetch <name>`` is made from them) and where its class lives, imported only when it runs so
that the CLI starts without httpx. Adding a source is one module here (a `Source` subclass, see
`astrogan.data.sources.base`) plus one `SourceSpec` below.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from astrogan.utils.errors import UserError

if TYPE_CHECKING:
    from astrogan.data.sources.base import Source


def parse_rate(spec: str | float | None) -> float | None:
    """``'2/s'``, ``'30/min'``, ``'0.5'`` -> requests per second; ``'off'``/``0``/None -> None (no limit)."""
    if spec is None:
        return None
    if isinstance(spec, int | float):
        return float(spec) if spec > 0 else None
    text = spec.strip().lower()
    if text in ("off", "none", "0", "inf", "unlimited"):
        return None
    m = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*(?:/\s*(s|sec|second|m|min|minute|h|hour))?", text)
    if not m:
        raise UserError(f"bad --rate {spec!r}; use e.g. '2/s', '30/min' or 'off'")
    per = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}
    value = float(m.group(1)) / per[m.group(2) or "s"]
    return value if value > 0 else None


@dataclass(frozen=True)
class HttpConfig:
    """The polite client's knobs, one set for every source (the CLI builds it once from its shared flags).

    ``rate_per_s`` None means no rate limit; ``allowed_hosts`` are added to by each source (its archive
    and CDN hosts). ``max_bytes`` bounds a download's size on the wire, ``max_pixels`` its size decoded
    (width x height; a larger picture, a decompression bomb included, is ``failed:too-large`` and never
    decoded). Tests shrink the timeouts and backoffs.
    """

    concurrency: int = 4
    rate_per_s: float | None = 2.0
    timeout_s: float = 30.0
    connect_timeout_s: float = 10.0
    max_retries: int = 4
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    max_bytes: int = 200 * 1024 * 1024
    max_pixels: int = 8192 * 8192
    allowed_hosts: frozenset[str] = frozenset()
    max_redirects: int = 5

    def __post_init__(self) -> None:
        # Flag names where the CLI has the knob, field names where only the API does.
        checks = (
            (self.concurrency >= 1, f"--concurrency must be >= 1, got {self.concurrency}"),
            (
                self.rate_per_s is None or self.rate_per_s > 0,
                f"--rate must be > 0 or 'off', got {self.rate_per_s}",
            ),
            (self.timeout_s > 0, f"--timeout must be > 0 seconds, got {self.timeout_s}"),
            (self.connect_timeout_s > 0, f"connect_timeout_s must be > 0, got {self.connect_timeout_s}"),
            (self.max_retries >= 0, f"--retries must be >= 0, got {self.max_retries}"),
            (self.backoff_s >= 0, f"backoff_s must be >= 0, got {self.backoff_s}"),
            (self.max_backoff_s >= 0, f"max_backoff_s must be >= 0, got {self.max_backoff_s}"),
            (self.max_bytes >= 1, f"--max-bytes must be >= 1, got {self.max_bytes}"),
            (self.max_pixels >= 1, f"--max-pixels must be >= 1, got {self.max_pixels}"),
            (self.max_redirects >= 0, f"max_redirects must be >= 0, got {self.max_redirects}"),
        )
        for ok, message in checks:
            if not ok:
                raise UserError(message)
        object.__setattr__(self, "allowed_hosts", frozenset(h.lower() for h in self.allowed_hosts))

    def allowing(self, hosts: Iterable[str]) -> HttpConfig:
        """This config with ``hosts`` allowed as well."""
        return replace(self, allowed_hosts=self.allowed_hosts | frozenset(hosts))


@dataclass(frozen=True)
class SourceOption:
    """One option of a source: its keyword, its command-line flag, type, default (``...``: required), help."""

    name: str
    flag: str
    type: Any
    default: Any
    help: str


@dataclass(frozen=True)
class SourceSpec:
    """One source: its command name and help, its class (``"module:Class"``), its own options, its base URL.

    ``base_url`` is the default that ``--base-url`` overrides; None lets the class pick (ESA: per site).
    """

    name: str
    summary: str
    impl: str
    options: tuple[SourceOption, ...]
    base_url: str | None
    base_url_help: str

    @property
    def base_url_option(self) -> SourceOption:
        """``--base-url``: every source has one (a mirror, a local test server)."""
        return SourceOption("base_url", "--base-url", str, self.base_url, self.base_url_help)

    def build(self, http: HttpConfig | None = None, **options: Any) -> Source:
        """The source, from the shared ``http`` config (default ``HttpConfig()``) and its own ``options``.

        Options not given take their defaults here (the one place they are written); the class checks
        the values (UserError).
        """
        every = (*self.options, self.base_url_option)
        known = {o.name for o in every}
        if unknown := sorted(set(options) - known):
            raise TypeError(
                f"source {self.name!r} has no option {', '.join(unknown)}; it has {sorted(known)}"
            )
        if missing := [o.flag for o in every if o.default is ... and o.name not in options]:
            raise UserError(f"{self.name} needs {', '.join(missing)}")
        values = {o.name: o.default for o in every} | options
        module, cls = self.impl.split(":")
        return getattr(importlib.import_module(module), cls)(http or HttpConfig(), **values)


def _max_items() -> SourceOption:
    return SourceOption("max_items", "--max", int, 100, "Stop after this many images.")


SOURCES: dict[str, SourceSpec] = {
    spec.name: spec
    for spec in (
        SourceSpec(
            "apod",
            "Scrape Astronomy Picture of the Day pages and their full-size pictures.",
            "astrogan.data.sources.apod:ApodSource",
            (
                SourceOption("start", "--start", str, ..., "First day, YYYY-MM-DD (APOD began 1995-06-16)."),
                SourceOption("end", "--end", str, ..., "Last day, YYYY-MM-DD (inclusive)."),
                SourceOption(
                    "keywords",
                    "--keyword",
                    list[str],
                    None,
                    "Keep days whose page contains this text (repeatable; any one matches).",
                ),
                SourceOption(
                    "regex", "--regex", bool, False, "Treat each --keyword as a regular expression."
                ),
                SourceOption(
                    "ignore_case", "--ignore-case", bool, False, "Match --keyword without regard to case."
                ),
                SourceOption(
                    "match_in",
                    "--match-in",
                    str,
                    "text",
                    "Where --keyword looks: 'text' (the page's words) or 'html' (the raw page, links and "
                    "markup included, as the original APOD project matched).",
                ),
            ),
            "https://apod.nasa.gov/apod/",
            "APOD base URL (a mirror; tests use a local one).",
        ),
        SourceSpec(
            "nasa-images",
            "Search the NASA Image and Video Library and download images with their credit.",
            "astrogan.data.sources.nasa_images:NasaImagesSource",
            (
                SourceOption("query", "--query", str, ..., "Search text, e.g. 'nebula'."),
                _max_items(),
                SourceOption(
                    "max_side_px",
                    "--max-side",
                    int,
                    0,
                    "Largest rendition whose longer side is at most this many px, chosen from the "
                    "renditions' headers before any full download (0 = the original).",
                ),
            ),
            "https://images-api.nasa.gov/",
            "NASA Image and Video Library API base URL.",
        ),
        SourceSpec(
            "esa",
            "Download ESA/Hubble, ESA/Webb or ESO archive images (CC BY 4.0) with their credit lines.",
            "astrogan.data.sources.esa:EsaSource",
            (
                SourceOption(
                    "site", "--site", str, ..., "hubble (esahubble.org), webb (esawebb.org) or eso (eso.org)."
                ),
                SourceOption(
                    "category",
                    "--category",
                    str,
                    None,
                    "Keep only items whose subject category names this, e.g. nebula or galaxies "
                    "(a plural matches its singular; case is ignored).",
                ),
                _max_items(),
                SourceOption(
                    "max_side_px", "--max-side", int, 4096, "Largest image resource not over this many px."
                ),
            ),
            None,
            "Archive base URL (default: the site's own).",
        ),
    )
}
