"""Console output and progress bars (Rich), shared by every command."""

from __future__ import annotations

import os
import sys
import warnings
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


def info(msg: str, *args: Any) -> None:
    """Print a status line to stderr unless quiet."""
    if os.environ.get("ASTROGAN_QUIET") != "1":
        console.print(msg % args if args else msg)


def warn(msg: str) -> None:
    """A data-quality warning: shown once per message, never fatal."""
    warnings.warn(msg, stacklevel=2)
    if os.environ.get("ASTROGAN_QUIET") != "1" and not sys.warnoptions:
        pass
