"""SIGTERM/SIGINT during training: finish the step, save, and stop (a second Ctrl-C stops at once)."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

from astrogan.utils.log import info

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequests:
    """While active, SIGTERM and SIGINT set `signum` instead of killing the process.

    The loop polls `signum` after each step, saves and stops; a second SIGINT raises KeyboardInterrupt
    and a second SIGTERM ends the process the default way (the last save on disk stays intact). Outside
    the main thread (signals cannot be caught there) it does nothing.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:  # asked twice: stop now
            signal.signal(signum, signal.SIG_DFL)
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            signal.raise_signal(signum)
            return
        self.signum = signum
        info(
            f"[yellow]{signal.Signals(signum).name}: saving after this step, then stopping (again: stop now)"
        )

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for sig in _SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
