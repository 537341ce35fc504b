"""The user-facing error type: one clear line, no traceback, non-zero exit."""

from __future__ import annotations


class UserError(ValueError):
    """Bad input from a person (flag, path, file). The CLI prints `error: <message>` and exits 2.

    Subclasses ValueError so that API users can catch it the usual way.
    """
