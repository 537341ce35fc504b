"""FastAPI app factory for "these nebulae do not exist": the page, the image API, health and metrics."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from astrogan.web.caching import ImageCache
from astrogan.web.context import ServeContext
from astrogan.web.errors import add_error_handlers
from astrogan.web.guard import BoundedExecutor, RateLimiter
from astrogan.web.lifecycle import die_with_parent, supervisor_pid
from astrogan.web.middleware import HeadAsGet, HeadersAndTiming, Metrics
from astrogan.web.onnx_generator import OnnxGenerator
from astrogan.web.pool import Pool
from astrogan.web.routes_images import add_image_routes
from astrogan.web.routes_ops import add_ops_routes
from astrogan.web.routes_pages import add_page_routes, add_static_routes, plural, subject_noun
from astrogan.web.settings import ServeSettings
from astrogan.web.worker import model_id, open_pool

# Paths with their own latency histogram, in the order /metrics writes them; any other path counts as "other".
METERED_ROUTES = (
    "/",
    "/api/image.png",
    "/api/interpolate",
    "/api/grid",
    "/healthz",
    "/metrics",
    "/static/style.css",
)


def create_app(
    settings: ServeSettings | None = None, *, generator: OnnxGenerator | None = None, pool: Pool | None = None
) -> FastAPI:
    """Build the app for one server process. With no settings, read them from ASTROGAN_SERVE_SETTINGS.

    The refill worker is a separate process (started by `astrogan serve`); this app only claims from the pool.
    """
    settings = settings or ServeSettings.from_env()
    gen = generator or OnnxGenerator(settings.model_path, num_threads=settings.num_threads)
    pool = pool or open_pool(settings)
    mid = model_id(settings.model_path)
    cache = ImageCache(
        mid, max_items=settings.image_cache_size, max_bytes=int(settings.image_cache_mb * (1 << 20))
    )
    heavy = BoundedExecutor(num_workers=settings.heavy_workers, max_queue=settings.heavy_queue)
    limiter = RateLimiter(per_min=settings.heavy_rate_per_min, burst=settings.heavy_burst)
    single = BoundedExecutor(num_workers=settings.image_workers, max_queue=settings.image_queue, name="image")
    subject = subject_noun(gen.meta, explicit=settings.subject)
    ctx = ServeContext(settings, gen, pool, mid, cache, heavy, limiter, single, time.time(), subject)
    metrics = Metrics(METERED_ROUTES)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        heavy.shutdown()
        single.shutdown()
        metrics.process_exit()

    app = FastAPI(
        title=f"These {plural(subject)} do not exist",
        description="Pictures of the sky drawn by a GAN, served from a pre-generated pool, plus a "
        'deterministic image API. Every parameter is bounded; errors are JSON `{"error": reason}`.',
        version="1",
        docs_url=None,  # the Swagger page loads scripts from a CDN; the schema is at /openapi.json
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.ctx = ctx
    app.state.generator = gen
    app.state.pool = pool
    app.state.metrics = metrics
    add_error_handlers(app)
    # Registered in this order, the routes appear in /openapi.json as they always have.
    add_page_routes(app, ctx)
    add_image_routes(app, ctx)
    add_ops_routes(app, ctx, metrics)
    add_static_routes(app)
    app.add_middleware(HeadAsGet)
    app.add_middleware(HeadersAndTiming, metrics=metrics)  # outermost: sees every answer, 405s included
    return app


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` worker processes: settings come from ASTROGAN_SERVE_SETTINGS.

    A server process started by the `astrogan serve` supervisor ends with it (see `die_with_parent`), so a
    killed supervisor never leaves workers holding the port.
    """
    parent = supervisor_pid()
    if parent is not None and parent != os.getpid():
        die_with_parent(parent)
    return create_app()
