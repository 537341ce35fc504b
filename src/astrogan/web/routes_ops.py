"""Operations endpoints: liveness with pool depth, and Prometheus metrics (pool counters + HTTP latency)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

from astrogan.web.context import ServeContext
from astrogan.web.middleware import Metrics


def pool_metric_lines(ctx: ServeContext) -> list[str]:
    """The pool's gauges and counters (shared by every process through the pool database), Prometheus text."""
    c = ctx.pool.counters()
    return [
        "# HELP astrogan_pool_depth Unseen pictures waiting in the pool (shared by all processes).",
        "# TYPE astrogan_pool_depth gauge",
        f"astrogan_pool_depth {ctx.pool.depth()}",
        "# HELP astrogan_pool_size Target pool size.",
        "# TYPE astrogan_pool_size gauge",
        f"astrogan_pool_size {ctx.settings.pool_size}",
        "# HELP astrogan_pool_low_water Refill starts below this depth.",
        "# TYPE astrogan_pool_low_water gauge",
        f"astrogan_pool_low_water {ctx.settings.low_water}",
        "# HELP astrogan_generated_total Pictures the refill worker added to the pool.",
        "# TYPE astrogan_generated_total counter",
        f"astrogan_generated_total {c.get('generated', 0)}",
        "# HELP astrogan_served_total Pictures shown on the page, by where they came from.",
        "# TYPE astrogan_served_total counter",
        f'astrogan_served_total{{source="pool"}} {c.get("served_pool", 0)}',
        f'astrogan_served_total{{source="reuse"}} {c.get("served_reuse", 0)}',
        f'astrogan_served_total{{source="generated"}} {c.get("served_inline", 0)}',
        "# HELP astrogan_reuse_total Pictures shown again because the pool was dry.",
        "# TYPE astrogan_reuse_total counter",
        f"astrogan_reuse_total {c.get('served_reuse', 0)}",
        "# HELP astrogan_inline_generated_total Pictures drawn inside a request (dry pool).",
        "# TYPE astrogan_inline_generated_total counter",
        f"astrogan_inline_generated_total {c.get('served_inline', 0)}",
    ]


def add_ops_routes(app: FastAPI, ctx: ServeContext, metrics: Metrics) -> None:
    """`/healthz` and `/metrics`."""

    @app.get("/healthz", summary="Liveness and pool depth")
    def healthz() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": ctx.model_id,
            "image_size": ctx.gen.image_size,
            "pool_depth": ctx.pool.depth(),
        }

    @app.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    def prometheus() -> PlainTextResponse:
        lines = [*pool_metric_lines(ctx), *metrics.render()]
        return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")
