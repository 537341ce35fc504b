"""Shared test helpers: plain functions and data builders the test modules import (fixtures live in conftest.py).

Import them as ``from tests.helpers.<module> import ...``: ``tests`` is a package, so pytest puts the checkout's
root on ``sys.path`` (rootdir-based "prepend" import mode) and every test module is ``tests.<area>.test_*``.
"""
