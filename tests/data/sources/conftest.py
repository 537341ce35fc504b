"""Fixtures of the fetcher tests: each module opens its own loopback `mirror` (module scope, a MirrorServer)."""

from __future__ import annotations

import pytest


@pytest.fixture()
def server(mirror):
    """The module's `mirror`, without faults or latency, its request log marked where this test starts."""
    mirror.faults.clear()
    mirror.latency_s = 0.0
    mirror.mark = len(mirror.log)
    yield mirror
    mirror.faults.clear()
    mirror.latency_s = 0.0
