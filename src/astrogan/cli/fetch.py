"""`astrogan fetch ...`: pull pictures and their provenance from APOD, NASA and ESA/ESO archives.

One command per entry of `astrogan.data.sources.SOURCES`: the source's own flags (from its spec), then
``--out`` and the polite client's flags that every source shares (built into one `HttpConfig` per run),
then ``--base-url``.

The run ends with one summary line, its verdict first (`FetchSummary.line`). Exit status: 0 when
something this run tried ended ``ok`` or skipped, or when it had nothing new to do (a re-run where
every item is already done: ``nothing new: N already done``); 1 when it tried items and every one
failed (the line, on stderr even when quiet, starts with ``FAILED``); 2 for a usage error.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from astrogan.data.sources import SOURCES, HttpConfig, SourceOption, SourceSpec, parse_rate

fetch_app = typer.Typer(
    help="Fetch images and their licences into RAW/ with RAW/catalog.sqlite.", no_args_is_help=True
)

_OUT = typer.Option(
    Path("raw"), "--out", help="Folder for the images and catalog.sqlite (created; resumable)."
)

_DEFAULT = HttpConfig()  # the flags' defaults are the config's own


class FetchFailed(Exception):
    """A run that tried items and fetched none: `cli.main.main` shows the summary line and exits 1.

    (Shaped like Click's own exits, ``show()`` and ``exit_code``, which ``main`` honours; a
    ``typer.Exit`` would be swallowed by Click's non-standalone mode.)
    """

    exit_code = 1

    def __init__(self, line: str) -> None:
        super().__init__(line)
        self.line = line

    def show(self) -> None:
        """Print the summary line to stderr (even when quiet)."""
        typer.echo(self.line, err=True)


# The polite client's flags, shared by every source: (type, typer option) by keyword of `_http_config`.
_HTTP_FLAGS: dict[str, tuple[type, Any]] = {
    "concurrency": (
        int,
        typer.Option(_DEFAULT.concurrency, "--concurrency", help="Requests in flight at most."),
    ),
    "rate": (
        str,
        typer.Option(
            f"{_DEFAULT.rate_per_s:g}/s", "--rate", help="Polite request rate, e.g. '2/s', '30/min' or 'off'."
        ),
    ),
    "timeout": (
        float,
        typer.Option(_DEFAULT.timeout_s, "--timeout", help="Seconds to wait for a server before retrying."),
    ),
    "retries": (
        int,
        typer.Option(
            _DEFAULT.max_retries, "--retries", help="Retries on timeouts, 429 and 5xx (exponential backoff)."
        ),
    ),
    "max_bytes": (
        int,
        typer.Option(_DEFAULT.max_bytes, "--max-bytes", help="Refuse downloads larger than this many bytes."),
    ),
    "max_pixels": (
        int,
        typer.Option(
            _DEFAULT.max_pixels,
            "--max-pixels",
            help="Refuse pictures of more pixels (width x height) than this, before decoding them.",
        ),
    ),
}


def _http_config(
    *, concurrency: int, rate: str, timeout: float, retries: int, max_bytes: int, max_pixels: int
) -> HttpConfig:
    """The one `HttpConfig` of a run, from the shared flags (UserError on a bad value)."""
    return HttpConfig(
        concurrency=concurrency,
        rate_per_s=parse_rate(rate),
        timeout_s=timeout,
        max_retries=retries,
        max_bytes=max_bytes,
        max_pixels=max_pixels,
    )


def _command(spec: SourceSpec) -> Callable[..., None]:
    """The `astrogan fetch <spec.name>` command: one `HttpConfig` from the shared flags, then the source."""

    def command(**flags: Any) -> None:
        from astrogan.utils.log import info

        out = flags.pop("out")
        http = _http_config(**{name: flags.pop(name) for name in _HTTP_FLAGS})
        summary = spec.build(http, **flags).fetch(out, progress=True)
        if summary.all_failed:
            raise FetchFailed(summary.line())
        info(summary.line())

    def param(name: str, annotation: Any, option: Any) -> inspect.Parameter:
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=option)

    def own(o: SourceOption) -> inspect.Parameter:
        return param(o.name, o.type, typer.Option(o.default, o.flag, help=o.help))

    # Typer reads the parameters from the signature.
    command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            *map(own, spec.options),
            param("out", Path, _OUT),
            *(param(name, t, option) for name, (t, option) in _HTTP_FLAGS.items()),
            own(spec.base_url_option),
        ]
    )
    command.__name__ = spec.name.replace("-", "_")
    return command


for _spec in SOURCES.values():
    fetch_app.command(_spec.name, help=_spec.summary)(_command(_spec))


def register(app: typer.Typer) -> None:
    """Add `astrogan fetch` to the root app."""
    app.add_typer(fetch_app, name="fetch")
