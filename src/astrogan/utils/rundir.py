"""Run directories: numbered `00003-name` folders under a results directory."""

from __future__ import annotations

import json
import os
import re
import socket
import time
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


LOCK_NAME = ".training.lock"  # in a run directory while a process trains it


def _alive(pid: int) -> bool:
    """True when a process of that id runs on this machine (or may: one we may not signal)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """Who trains a run directory now: a `.training.lock` file (pid, host, since) made with O_EXCL, so a second
    `train --resume` of a run in progress is refused instead of writing into the same checkpoints.

    A lock left by a process that died on this machine is taken over; one from another host (a shared file
    system) is only ever refused, since its process cannot be checked from here."""

    def __init__(self) -> None:
        self.path: Path | None = None

    def take(self, run_dir: str | Path) -> None:
        """Hold `run_dir` for this process; UserError (one line) when another live process holds it."""
        path = Path(run_dir) / LOCK_NAME
        mine = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder(path)
                if holder.get("host") == mine["host"] and not _alive(int(holder.get("pid", -1))):
                    path.unlink(missing_ok=True)  # its process is gone (killed): take the run over
                    continue
                raise UserError(
                    f"run {run_dir} is being trained by process {holder.get('pid', '?')} on "
                    f"{holder.get('host', '?')} since {holder.get('since', '?')}: wait for it or stop it "
                    f"(if no such process runs, delete {path})"
                ) from None
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(mine, fh)
            self.path = path
            return
        raise UserError(
            f"could not lock run {run_dir}: another process took it at the same moment; try again"
        )

    @staticmethod
    def _holder(path: Path) -> dict:
        try:
            found = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}  # being written right now, or unreadable: treated as held
        return found if isinstance(found, dict) else {}

    def release(self) -> None:
        """Let the run go (only a lock this process still holds is removed)."""
        if self.path is not None and self._holder(self.path).get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)
        self.path = None
