"""Child processes of `astrogan serve` end with their parent: PR_SET_PDEATHSIG on Linux plus a watchdog thread."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
# Environment variable naming the supervisor's pid, for server processes uvicorn starts (they get no arguments).
SUPERVISOR_ENV = "ASTROGAN_SUPERVISOR_PID"


def _set_pdeathsig(sig: int) -> bool:
    """Ask Linux to send `sig` to this process when the thread that started it ends; False elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True) if name else None
    except OSError:
        return False
    return libc is not None and libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0


def _watch(parent_pid: int, sig: int, *, poll_s: float, grace_s: float) -> None:
    while os.getppid() == parent_pid:
        time.sleep(poll_s)
    os.kill(os.getpid(), sig)  # a clean stop first (closes the socket, flushes the pool)
    time.sleep(grace_s)
    os._exit(1)  # it did not stop in time: go now, so the port and the pool are free


def die_with_parent(
    parent_pid: int, *, sig: int = signal.SIGTERM, poll_s: float = 0.5, grace_s: float = 5.0
) -> None:
    """Make this process stop when `parent_pid` ends, even by SIGKILL.

    Linux sends `sig` at once (PR_SET_PDEATHSIG); a daemon thread also polls the parent pid (other systems, or
    a parent that died before the call), sends `sig`, and exits hard `grace_s` later if the process is still up.
    """
    _set_pdeathsig(sig)
    threading.Thread(
        target=_watch,
        args=(parent_pid, sig),
        kwargs={"poll_s": poll_s, "grace_s": grace_s},
        daemon=True,
        name="parent-watchdog",
    ).start()


def supervisor_pid() -> int | None:
    """The pid of the `astrogan serve` supervisor that started this server process, None if it did not."""
    raw = os.environ.get(SUPERVISOR_ENV, "")
    return int(raw) if raw.isdigit() else None
