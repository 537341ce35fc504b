"""Pure ASGI middleware: security headers, HEAD as GET, per-route counts and latency for Prometheus."""

from __future__ import annotations

import os
import time
from typing import Any

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; img-src 'self' data:; style-src 'self'; base-uri 'none'; form-action 'self'; "
        b"frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]


# Set in the scope of a HEAD request that is routed as a GET (see HeadAsGet).
HEAD_SCOPE_KEY = "astrogan.head"


def multiprocess_dir() -> str | None:
    """The folder prometheus_client's multiprocess mode keeps its files in (set by `astrogan serve`), or None."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    """Request counters and latency histograms in Prometheus text format, summed over every server process.

    With several server processes, `astrogan serve` points PROMETHEUS_MULTIPROC_DIR at a fresh folder and
    prometheus_client keeps each process's values there, so a scrape answered by any process reports all of
    them. `routes` are the paths counted by name; any other path counts as "other" (so a scanner cannot grow
    the label set). Each app gets its own registry, so several apps can live in one process (tests).
    """

    def __init__(self, routes: tuple[str, ...]) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.routes = routes
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "astrogan_http_requests",
            "Requests answered (all server processes).",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "astrogan_http_request_duration_seconds",
            "Time to answer (all server processes).",
            ["route"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        # One sample per live server process: in multiprocess mode labelled by pid, so a scrape shows them all.
        self.process_up = Gauge(
            "astrogan_server_process_up",
            "1 for each live server process.",
            multiprocess_mode="liveall",
            registry=self.registry,
        )
        self.process_up.set(1)

    def observe(self, path: str, status: int, seconds: float) -> None:
        route = path if path in self.routes else "other"
        self.requests.labels(route=route, status=str(status)).inc()
        self.latency.labels(route=route).observe(seconds)

    def render(self) -> bytes:
        """The exposition text: every process's values in multiprocess mode, else this process's."""
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.multiprocess import MultiProcessCollector

        if multiprocess_dir() is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)

    def process_exit(self) -> None:
        """Forget this process's live gauges (call when a server process stops)."""
        if multiprocess_dir() is not None:
            from prometheus_client.multiprocess import mark_process_dead

            mark_process_dead(os.getpid())


class HeadAsGet:
    """Pure ASGI middleware: HEAD is answered wherever GET is, routed as GET, with the same headers and no body.

    Routes that must not act on a HEAD (the page claims a pool picture) look for HEAD_SCOPE_KEY in the scope.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") != "HEAD":
            await self.app(scope, receive, send)
            return

        async def _send(message: dict) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET", HEAD_SCOPE_KEY: True}, receive, _send)


class HeadersAndTiming:
    """Pure ASGI middleware: security headers on every response, latency into the histogram."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def _send(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            await send(message)

        try:
            await self.app(scope, receive, _send)
        finally:
            self.metrics.observe(scope.get("path", ""), status, time.perf_counter() - t0)
