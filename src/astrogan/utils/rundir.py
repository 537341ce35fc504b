"""Run directories: numbered `00003-name` folders under a results directory."""

from __future__ import annotations

import re
from pathlib import Path

from astrogan.utils.errors import UserError

_RUN_RE = re.compile(r"^(\d{5})-")


def next_run_dir(results_dir: str | Path, name: str) -> Path:
    """Return a new, not yet created run path: `results_dir/NNNNN-name` with NNNNN one past the highest."""
    root = Path(results_dir)
    ids = [int(m.group(1)) for p in root.glob("*") if p.is_dir() and (m := _RUN_RE.match(p.name))]
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "run"
    return root / f"{max(ids, default=-1) + 1:05d}-{safe}"


def make_run_dir(results_dir: str | Path, name: str) -> Path:
    """Create and return a new run directory, one past the highest: claimed by mkdir, so runs started at the
    same time in one results directory each get their own."""
    Path(results_dir).mkdir(parents=True, exist_ok=True)
    while True:
        path = next_run_dir(results_dir, name)
        try:
            path.mkdir()
            return path
        except FileExistsError:
            if not path.is_dir():  # a file of that name: next_run_dir would offer it again
                raise UserError(f"{path} is in the way of a new run: it is not a directory") from None


def latest_run_dir(results_dir: str | Path, name: str | None = None) -> Path | None:
    """The highest-numbered run in `results_dir` (optionally with that name), or None."""
    root = Path(results_dir)
    runs = []
    for p in root.glob("*"):
        m = _RUN_RE.match(p.name)
        if p.is_dir() and m and (name is None or p.name[6:] == name):
            runs.append((int(m.group(1)), p))
    return max(runs)[1] if runs else None
