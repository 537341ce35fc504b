"""Console output and progress bars (Rich), shared by every command."""

from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings
from collections.abc import Iterator
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True, highlight=False)


def progress(*, transient: bool = False, disable: bool | None = None) -> Progress:
    """A progress bar with count, rate-free ETA and elapsed time; quiet when ASTROGAN_QUIET=1."""
    if disable is None:
        disable = os.environ.get("ASTROGAN_QUIET") == "1"
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
        disable=disable,
    )


class Bar:
    """A counting progress bar, a context manager: ``advance(k, status)`` adds k done and shows the rate.

    Shows ``description``, done/``total`` (None: unknown), "<rate> <unit>/s" and the last status. Counts
    (``done``) but draws nothing when ``enabled`` is False or ASTROGAN_QUIET=1.
    """

    def __init__(
        self, description: str, total: int | None, *, enabled: bool = True, unit: str = "items"
    ) -> None:
        self.description, self.total, self.unit = description, total, unit
        self.enabled = enabled and os.environ.get("ASTROGAN_QUIET") != "1"
        self.done = 0
        self._t0 = time.perf_counter()
        self._bar: Progress | None = None
        self._task: Any = None

    def __enter__(self) -> Bar:
        self._t0 = time.perf_counter()  # the rate counts from the start of the work, not from construction
        if self.enabled:
            self._bar = progress(disable=False)
            self._bar.__enter__()
            self._task = self._bar.add_task(self.description, total=self.total, info="")
        return self

    def advance(self, k: int = 1, status: str | None = None) -> None:
        """Count ``k`` more finished (stamps, items...); ``status`` is shown after the rate."""
        self.done += k
        if self._bar is not None:
            self._bar.update(self._task, advance=k, info=self.rate_text(status))

    def rate_text(self, status: str | None = None) -> str:
        """The rate, e.g. ``12.5 items/s`` (done so far over the time since entering), then ``status``."""
        rate = self.done / max(time.perf_counter() - self._t0, 1e-9)
        return f"{rate:.1f} {self.unit}/s" + (f" {status}" if status else "")

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.__exit__(exc_type, exc, tb)
            self._bar = None


def info(msg: str, *args: Any) -> None:
    """Print a status line to stderr unless quiet."""
    if os.environ.get("ASTROGAN_QUIET") != "1":
        console.print(msg % args if args else msg)


def warn(msg: str) -> None:
    """A data-quality warning: shown once per message, never fatal."""
    warnings.warn(msg, stacklevel=2)
    if os.environ.get("ASTROGAN_QUIET") != "1" and not sys.warnoptions:
        pass


def _one_line_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None
) -> str:
    """`warning: <message>` on one line: no file, line number or source line (those are for developers)."""
    return f"warning: {' '.join(str(message).split())}\n"


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """Within, warnings show as one line, `warning: <message>` (the CLI's format; ASTROGAN_DEBUG=1 keeps Python's).

    Only the text changes: filters, `-W` and recording (`catch_warnings(record=True)`, `pytest.warns`) work as before.
    """
    if os.environ.get("ASTROGAN_DEBUG") == "1":
        yield
        return
    saved = warnings.formatwarning
    warnings.formatwarning = _one_line_warning
    try:
        yield
    finally:
        warnings.formatwarning = saved
