"""`astrogan fetch ...`: pull pictures and their provenance from APOD, NASA and ESA/ESO archives."""

from __future__ import annotations

from pathlib import Path

import typer

fetch_app = typer.Typer(
    help="Fetch images and their licences into RAW/ with RAW/catalog.sqlite.", no_args_is_help=True
)

_OUT = typer.Option(
    Path("raw"), "--out", help="Folder for the images and catalog.sqlite (created; resumable)."
)
_CONC = typer.Option(4, "--concurrency", help="Requests in flight at most.")
_RATE = typer.Option("2/s", "--rate", help="Polite request rate, e.g. '2/s', '30/min' or 'off'.")
_TIMEOUT = typer.Option(30.0, "--timeout", help="Seconds to wait for a server before retrying.")
_RETRIES = typer.Option(4, "--retries", help="Retries on timeouts, 429 and 5xx (exponential backoff).")
_MAX_BYTES = typer.Option(
    200 * 1024 * 1024, "--max-bytes", help="Refuse downloads larger than this many bytes."
)


def _report(summary) -> None:  # noqa: ANN001
    from astrogan.utils.log import info

    info(summary.line())


@fetch_app.command("apod")
def apod(
    start: str = typer.Option(..., "--start", help="First day, YYYY-MM-DD (APOD began 1995-06-16)."),
    end: str = typer.Option(..., "--end", help="Last day, YYYY-MM-DD (inclusive)."),
    keyword: list[str] = typer.Option(
        None, "--keyword", help="Keep days whose page contains this text (repeatable; any one matches)."
    ),
    regex: bool = typer.Option(False, "--regex", help="Treat each --keyword as a regular expression."),
    ignore_case: bool = typer.Option(False, "--ignore-case", help="Match --keyword without regard to case."),
    out: Path = _OUT,
    concurrency: int = _CONC,
    rate: str = _RATE,
    timeout: float = _TIMEOUT,
    retries: int = _RETRIES,
    max_bytes: int = _MAX_BYTES,
    base_url: str = typer.Option(
        "https://apod.nasa.gov/apod/", "--base-url", help="APOD base URL (a mirror; tests use a local one)."
    ),
) -> None:
    """Scrape Astronomy Picture of the Day pages and their full-size pictures."""
    from astrogan.data.sources.apod import fetch_apod

    _report(
        fetch_apod(
            out,
            start=start,
            end=end,
            keywords=list(keyword or []),
            regex=regex,
            ignore_case=ignore_case,
            base_url=base_url,
            concurrency=concurrency,
            rate=rate,
            timeout_s=timeout,
            max_retries=retries,
            max_bytes=max_bytes,
            progress=True,
        )
    )


@fetch_app.command("nasa-images")
def nasa_images(
    query: str = typer.Option(..., "--query", help="Search text, e.g. 'nebula'."),
    max_items: int = typer.Option(100, "--max", help="Stop after this many images."),
    max_side: int = typer.Option(
        0, "--max-side", help="Largest rendition whose longer side is at most this many px (0 = original)."
    ),
    out: Path = _OUT,
    concurrency: int = _CONC,
    rate: str = _RATE,
    timeout: float = _TIMEOUT,
    retries: int = _RETRIES,
    max_bytes: int = _MAX_BYTES,
    base_url: str = typer.Option(
        "https://images-api.nasa.gov/", "--base-url", help="NASA Image and Video Library API base URL."
    ),
) -> None:
    """Search the NASA Image and Video Library and download images with their credit."""
    from astrogan.data.sources.nasa_images import fetch_nasa_images

    _report(
        fetch_nasa_images(
            out,
            query=query,
            max_items=max_items,
            max_side_px=max_side or None,
            base_url=base_url,
            concurrency=concurrency,
            rate=rate,
            timeout_s=timeout,
            max_retries=retries,
            max_bytes=max_bytes,
            progress=True,
        )
    )


@fetch_app.command("esa")
def esa(
    site: str = typer.Option(
        ..., "--site", help="hubble (esahubble.org), webb (esawebb.org) or eso (eso.org)."
    ),
    category: str = typer.Option(None, "--category", help="Keep only this archive category, e.g. nebulae."),
    max_items: int = typer.Option(100, "--max", help="Stop after this many images."),
    max_side: int = typer.Option(4096, "--max-side", help="Largest image resource not over this many px."),
    out: Path = _OUT,
    concurrency: int = _CONC,
    rate: str = _RATE,
    timeout: float = _TIMEOUT,
    retries: int = _RETRIES,
    max_bytes: int = _MAX_BYTES,
    base_url: str = typer.Option(None, "--base-url", help="Archive base URL (default: the site's own)."),
) -> None:
    """Download ESA/Hubble, ESA/Webb or ESO archive images (CC BY 4.0) with their credit lines."""
    from astrogan.data.sources.esa import fetch_esa

    _report(
        fetch_esa(
            out,
            site=site,
            category=category,
            max_items=max_items,
            max_side_px=max_side or None,
            base_url=base_url,
            concurrency=concurrency,
            rate=rate,
            timeout_s=timeout,
            max_retries=retries,
            max_bytes=max_bytes,
            progress=True,
        )
    )


def register(app: typer.Typer) -> None:
    """Add `astrogan fetch` to the root app."""
    app.add_typer(fetch_app, name="fetch")
