"""Where things are, in one place: the checkout's root, the tests folder and the real data in ../shared/data."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent  # the checkout: pyproject.toml, src/, tests/, bench/
SHARED_DATA = ROOT.parent / "shared" / "data"  # beside the checkout, not in it
HELPERS = TESTS / "helpers"
