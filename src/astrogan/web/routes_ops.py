"""Operations endpoints: health with pool depth and refill liveness, and Prometheus metrics (pool + HTTP)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from astrogan.web.context import ServeContext
from astrogan.web.middleware import Metrics


def refill_age_s(ctx: ServeContext) -> float | None:
    """Seconds since the refill worker's last heartbeat (None if it never wrote one)."""
    beat = ctx.pool.heartbeat()
    return None if beat is None else max(0.0, time.time() - beat)


def health(ctx: ServeContext) -> tuple[int, dict[str, Any]]:
    """`/healthz`'s status and body: "degraded" (503) when the pool is empty and nothing refills it.

    Nothing refills it when the worker's heartbeat, or this process's start if more recent, is older than
    `refill_stale_s` (a worker that died with its supervisor, or `--no-refill` with a drained pool).
    """
    depth = ctx.pool.depth()
    age = refill_age_s(ctx)
    since = min(age if age is not None else float("inf"), time.time() - ctx.started_at)
    body: dict[str, Any] = {
        "status": "ok",
        "model": ctx.model_id,
        "image_size": ctx.gen.image_size,
        "pool_depth": depth,
        "refill_age_s": None if age is None else round(age, 1),
    }
    if depth == 0 and since > ctx.settings.refill_stale_s:
        body["status"] = "degraded"
        body["reason"] = (
            f"the pool is empty and the refill worker has not reported for over {ctx.settings.refill_stale_s:g} s"
        )
        return 503, body
    return 200, body


def pool_metric_lines(ctx: ServeContext) -> list[str]:
    """The pool's gauges and counters (shared by every process through the pool database), Prometheus text."""
    c = ctx.pool.counters()
    age = refill_age_s(ctx)
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
        "# HELP astrogan_refill_heartbeat_age_seconds Seconds since the refill worker last reported (-1: never).",
        "# TYPE astrogan_refill_heartbeat_age_seconds gauge",
        f"astrogan_refill_heartbeat_age_seconds {-1.0 if age is None else round(age, 3)}",
    ]


def add_ops_routes(app: FastAPI, ctx: ServeContext, metrics: Metrics) -> None:
    """`/healthz` and `/metrics`."""

    @app.get(
        "/healthz",
        summary="Health: pool depth and refill liveness (503 when the pool is empty and not refilling)",
        responses={503: {"description": "degraded: the pool is empty and the refill worker is silent"}},
    )
    def healthz() -> JSONResponse:
        status, body = health(ctx)
        return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})

    @app.get(
        "/metrics", summary="Prometheus metrics (every server process)", response_class=PlainTextResponse
    )
    def prometheus() -> Response:
        text = "\n".join(pool_metric_lines(ctx)).encode() + b"\n" + metrics.render()
        return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")
