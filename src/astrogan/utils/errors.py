"""The user-facing error type: one clear line, no traceback, non-zero exit."""

from __future__ import annotations


class UserError(ValueError):
    """Bad input from a person (flag, path, file). The CLI prints `error: <message>` and exits 2.

    Subclasses ValueError so that API users can catch it the usual way.
    """


class Interrupted(Exception):
    """A long job stopped cleanly on SIGTERM/SIGINT after saving; the CLI prints the message and exits
    with `exit_code` (128 + the signal number, as a shell reports a process stopped by that signal)."""

    def __init__(self, message: str, *, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum
