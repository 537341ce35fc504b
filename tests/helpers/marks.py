"""Marking the heaviest cases of a parametrized test `slow` (the fast loop skips them; CI runs them all)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import Any

import pytest


def slow_cases(values: Iterable[Any], heavy: Collection[Any] | Callable[[Any], bool]) -> list[Any]:
    """`values` for `pytest.mark.parametrize`, those in `heavy` (or for which `heavy(value)` holds) marked slow.

    A tuple value (several argnames) stays several arguments; the test ids are unchanged.
    """
    is_heavy = heavy if callable(heavy) else heavy.__contains__
    out = []
    for v in values:
        if not is_heavy(v):
            out.append(v)
        elif isinstance(v, tuple):
            out.append(pytest.param(*v, marks=pytest.mark.slow))
        else:
            out.append(pytest.param(v, marks=pytest.mark.slow))
    return out
