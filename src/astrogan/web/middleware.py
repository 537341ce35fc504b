"""Pure ASGI middleware: security headers on every response, per-route latency in Prometheus histograms."""

from __future__ import annotations

import threading
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


class Metrics:
    """Per-process request counters and latency histograms, in Prometheus text format.

    `routes` are the paths counted by name, in the order their histograms are written; any other path
    counts as "other" (so a scanner cannot grow the label set).
    """

    def __init__(self, routes: tuple[str, ...]) -> None:
        self.routes = routes
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = {}
        self.buckets = {r: [0] * (len(LATENCY_BUCKETS_S) + 1) for r in (*routes, "other")}
        self.sums = dict.fromkeys((*routes, "other"), 0.0)

    def observe(self, path: str, status: int, seconds: float) -> None:
        route = path if path in self.routes else "other"
        idx = next((i for i, b in enumerate(LATENCY_BUCKETS_S) if seconds <= b), len(LATENCY_BUCKETS_S))
        with self._lock:
            self.requests[(route, status)] = self.requests.get((route, status), 0) + 1
            self.buckets[route][idx] += 1
            self.sums[route] += seconds

    def render(self) -> list[str]:
        lines = [
            "# HELP astrogan_http_requests_total Requests answered by this process.",
            "# TYPE astrogan_http_requests_total counter",
        ]
        with self._lock:
            for (route, status), n in sorted(self.requests.items()):
                lines.append(f'astrogan_http_requests_total{{route="{route}",status="{status}"}} {n}')
            lines += [
                "# HELP astrogan_http_request_duration_seconds Time to answer (this process).",
                "# TYPE astrogan_http_request_duration_seconds histogram",
            ]
            name = "astrogan_http_request_duration_seconds"
            for route, counts in self.buckets.items():
                total = sum(counts)
                if not total:
                    continue
                acc = 0
                for b, n in zip((*LATENCY_BUCKETS_S, float("inf")), counts, strict=True):
                    acc += n
                    le = "+Inf" if b == float("inf") else repr(b)
                    lines.append(f'{name}_bucket{{route="{route}",le="{le}"}} {acc}')
                lines.append(f'{name}_sum{{route="{route}"}} {self.sums[route]:.6f}')
                lines.append(f'{name}_count{{route="{route}"}} {total}')
        return lines


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
