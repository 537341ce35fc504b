"""FastAPI app factory for "these nebulae do not exist": the page, the image API, health and metrics."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
import secrets
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from astrogan.imaging import make_grid, slerp
from astrogan.utils.errors import UserError
from astrogan.utils.seeds import MAX_SEED, parse_seeds
from astrogan.web.imaging import animation_formats, encode_animation, encode_png
from astrogan.web.onnx_generator import OnnxGenerator
from astrogan.web.pool import Pool
from astrogan.web.settings import ServeSettings
from astrogan.web.worker import model_id, open_pool

WEB_DIR = Path(__file__).resolve().parent
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
IMAGE_CACHE_CONTROL = "public, max-age=86400"
TRUNC_QUERY = Query(
    1.0, ge=0.0, le=2.0, description="truncation (0..2, 1 = none), applied inside the network like --trunc"
)
CLASS_QUERY = Query(
    None, alias="class", ge=0, le=9999, description="class label for conditional models (0..num_classes-1)"
)


class Metrics:
    """Per-process request counters and latency histograms, in Prometheus text format."""

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


class _HeadersAndTiming:
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


_RANGE_RE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")


def _bounded_seeds(text: str, *, max_count: int) -> list[int]:
    """parse_seeds, but a range is sized before it is expanded (`0-4294967295` must not allocate 4e9 ints)."""
    total = 0
    for part in str(text).split(","):
        m = _RANGE_RE.match(part)
        total += int(m.group(2)) - int(m.group(1)) + 1 if m else 1
        if total > max_count:
            raise UserError(f"at most {max_count} seeds per request")
    return parse_seeds(text, max_count=max_count)


def _error(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(reason).split())}, status_code=status)


def _model_card(meta: dict[str, Any]) -> dict[str, Any]:
    """Flatten model.json's model card into display strings for the page."""
    card = meta.get("model_card") or {}
    train = card.get("training") or {}
    parts = []
    if train.get("steps") is not None:
        parts.append(f"{train['steps']:,} steps")
    if train.get("kimg") is not None:
        parts.append(f"{float(train['kimg']):g} kimg")
    data = card.get("dataset") or {}
    sources = []
    for s in data.get("sources") or []:
        if isinstance(s, dict):
            bits = [str(s.get(k)) for k in ("name", "credit", "licence") if s.get(k)]
            sources.append(" — ".join(bits) if bits else str(s))
        else:
            sources.append(str(s))
    extra: dict[str, list[str]] = {}
    for key in ("credits", "licences"):
        value = data.get(key) or []
        if isinstance(value, dict):  # {name: number of images}
            value = [f"{k} ({n} images)" if isinstance(n, int) else f"{k}: {n}" for k, n in value.items()]
        extra[key] = [v if isinstance(v, str) else json.dumps(v, sort_keys=True) for v in value]
    metrics = card.get("metrics") or {}
    parity = meta.get("parity") or {}
    return {
        "arch": card.get("arch") or meta.get("arch") or "unknown",
        "training": ", ".join(parts) or "unknown",
        "dataset": data.get("name") or data.get("path") or "unknown",
        "sources": sources,
        "credits": extra["credits"],
        "licences": extra["licences"],
        "metrics": [(k, f"{v:.4g}" if isinstance(v, float) else v) for k, v in sorted(metrics.items())],
        "parity": (
            f"max |exported − PyTorch| = {parity['max_abs_diff']:.2e} over "
            f"{parity.get('num_seeds', '?')} seeds"
            if isinstance(parity, dict) and parity.get("max_abs_diff") is not None
            else None
        ),
    }


def create_app(
    settings: ServeSettings | None = None, *, generator: OnnxGenerator | None = None, pool: Pool | None = None
) -> FastAPI:
    """Build the app for one server process. With no settings, read them from ASTROGAN_SERVE_SETTINGS.

    The refill worker is a separate process (started by `astrogan serve`); this app only claims from the pool.
    """
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    settings = settings or ServeSettings.from_env()
    gen = generator or OnnxGenerator(settings.model_path, num_threads=settings.num_threads)
    pool = pool or open_pool(settings)
    mid = model_id(settings.model_path)
    env = Environment(loader=FileSystemLoader(WEB_DIR / "templates"), autoescape=select_autoescape(["html"]))
    template = env.get_template("index.html")
    card = _model_card(gen.meta)
    css = (WEB_DIR / "static" / "style.css").read_bytes()
    css_etag = '"' + hashlib.sha256(css).hexdigest()[:20] + '"'
    formats = animation_formats()
    rng = random.Random()
    cache: OrderedDict[tuple, bytes] = OrderedDict()
    cache_lock = threading.Lock()
    routes = (
        "/",
        "/api/image.png",
        "/api/interpolate",
        "/api/grid",
        "/healthz",
        "/metrics",
        "/static/style.css",
    )
    metrics = Metrics(routes)

    app = FastAPI(
        title="These nebulae do not exist",
        description="Pictures of the sky drawn by a GAN, served from a pre-generated pool, plus a "
        'deterministic image API. Every parameter is bounded; errors are JSON `{"error": reason}`.',
        version="1",
        docs_url=None,  # the Swagger page loads scripts from a CDN; the schema is at /openapi.json
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.generator = gen
    app.state.pool = pool
    app.state.metrics = metrics

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "path", "header"))
        return _error(422, f"{loc}: {err.get('msg', 'invalid value')}" if loc else err.get("msg", "invalid"))

    @app.exception_handler(UserError)
    async def _user_error(_: Request, exc: UserError) -> JSONResponse:
        return _error(422, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        return _error(500, "internal error")

    def _check_class(cls: int | None) -> int | None:
        if cls is None:
            return None
        if gen.num_classes <= 0:
            raise UserError("class: this model is unconditional; leave `class` out")
        if cls >= gen.num_classes:
            raise UserError(f"class: must lie in 0..{gen.num_classes - 1}")
        return cls

    def _labels(seeds: list[int], cls: int | None) -> np.ndarray | None:
        if gen.num_classes <= 0:
            return None
        if cls is None:
            return gen.default_labels(seeds)
        return np.full(len(seeds), cls, dtype=np.int64)

    def _etag(*parts: object) -> str:
        return '"' + hashlib.sha256("|".join(map(str, (mid, *parts))).encode()).hexdigest()[:32] + '"'

    def _not_modified(request: Request, etag: str) -> bool:
        inm = request.headers.get("if-none-match")
        if not inm:
            return False
        tags = {t.strip().removeprefix("W/") for t in inm.split(",")}
        return "*" in tags or etag in tags

    def _cached(key: tuple, make: Any) -> bytes:
        with cache_lock:
            if key in cache:
                cache.move_to_end(key)
                return cache[key]
        data = make()
        if settings.image_cache_size:
            with cache_lock:
                cache[key] = data
                while len(cache) > settings.image_cache_size:
                    cache.popitem(last=False)
        return data

    def _image_response(request: Request, key: tuple, media_type: str, make: Any) -> Response:
        etag = _etag(*key)
        headers = {"ETag": etag, "Cache-Control": IMAGE_CACHE_CONTROL}
        if _not_modified(request, etag):
            return Response(status_code=304, headers=headers)
        return Response(_cached(key, make), media_type=media_type, headers=headers)

    def _claim_picture() -> tuple[int, float, bytes, str]:
        picture = pool.claim()
        if picture is not None:
            return picture.seed, picture.trunc, picture.png, "pool"
        if settings.when_empty == "reuse":
            picture = pool.reuse(num_recent=settings.reservoir_size, rng=rng)
            if picture is not None:
                return picture.seed, picture.trunc, picture.png, "reuse"
        # Dry pool and nothing to reuse (or policy `generate`): draw one now.
        seed = secrets.randbelow(MAX_SEED + 1)
        img = gen.generate([seed], trunc=settings.trunc, labels=_labels([seed], None))[0]
        pool.incr("served_inline")
        return seed, settings.trunc, encode_png(img, compress_level=settings.png_compress_level), "generated"

    @app.get(
        "/",
        response_class=HTMLResponse,
        summary="The page: one picture nobody saw before",
        responses={200: {"content": {"text/html": {}}}},
    )
    def index() -> HTMLResponse:
        seed, trunc, png, source = _claim_picture()
        html = template.render(
            image_b64=base64.b64encode(png).decode("ascii"),
            seed=seed,
            trunc=f"{trunc:g}",
            source=source,
            image_size=gen.image_size,
            channels=gen.channels,
            labels=gen.label_names,
            card=card,
        )
        return HTMLResponse(
            html,
            headers={"Cache-Control": "no-store", "X-Astrogan-Seed": str(seed), "X-Astrogan-Source": source},
        )

    @app.get(
        "/api/image.png",
        summary="The deterministic picture for a seed",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}, 304: {}},
    )
    def image_png(
        request: Request,
        seed: int = Query(..., ge=0, le=MAX_SEED, description=f"seed, 0..{MAX_SEED}"),
        trunc: float = TRUNC_QUERY,
        cls: int | None = CLASS_QUERY,
    ) -> Response:
        cls = _check_class(cls)

        def make() -> bytes:
            img = gen.generate([seed], trunc=trunc, labels=_labels([seed], cls))[0]
            return encode_png(img, compress_level=settings.png_compress_level)

        return _image_response(request, ("png", seed, repr(float(trunc)), cls), "image/png", make)

    @app.get(
        "/api/interpolate",
        summary="An animated walk through latent space (slerp in z)",
        response_class=Response,
        responses={200: {"content": {"image/webp": {}, "image/gif": {}}}, 304: {}},
    )
    def interpolate(
        request: Request,
        seed_from: int = Query(..., alias="from", ge=0, le=MAX_SEED, description="seed at the start"),
        seed_to: int = Query(..., alias="to", ge=0, le=MAX_SEED, description="seed at the end"),
        steps: int = Query(16, ge=2, le=64, description="frames, 2..64"),
        trunc: float = TRUNC_QUERY,
        cls: int | None = CLASS_QUERY,
        fmt: Literal["webp", "gif"] | None = Query(None, alias="format", description="webp (default) or gif"),
        frame_ms: int = Query(80, ge=20, le=2000, description="milliseconds per frame"),
    ) -> Response:
        cls = _check_class(cls)
        if steps > settings.max_steps:
            raise UserError(f"steps: at most {settings.max_steps}")
        fmt = fmt or formats[0]
        if fmt not in formats:
            raise UserError(f"format: this server writes {', '.join(formats)}")

        def make() -> bytes:
            z = gen.latents([seed_from, seed_to])  # raw z: the network applies the truncation
            path = slerp(z[0], z[1], np.linspace(0.0, 1.0, steps))
            labels = _labels([seed_from] * steps, cls)
            frames = gen.generate_latents(path, labels=labels, trunc=trunc, batch_size=16)
            return encode_animation(frames, fmt=fmt, frame_ms=frame_ms)

        key = ("anim", seed_from, seed_to, steps, repr(float(trunc)), cls, fmt, frame_ms)
        return _image_response(request, key, f"image/{fmt}", make)

    @app.get(
        "/api/grid",
        summary="A grid of pictures for a list of seeds",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}, 304: {}},
    )
    def grid(
        request: Request,
        seeds: str = Query("0-15", max_length=200, description="seed list like 0-15 or 1,5,9 (at most 64)"),
        trunc: float = TRUNC_QUERY,
        cls: int | None = CLASS_QUERY,
        cols: int | None = Query(None, ge=1, le=64, description="columns (default: square)"),
    ) -> Response:
        cls = _check_class(cls)
        try:
            seed_list = _bounded_seeds(seeds, max_count=settings.max_grid)
        except UserError as exc:
            raise UserError(f"seeds: {exc}") from None

        def make() -> bytes:
            imgs = gen.generate(seed_list, trunc=trunc, labels=_labels(seed_list, cls), batch_size=16)
            sheet = make_grid(imgs, ncols=min(cols, len(imgs)) if cols else None, pad_px=2)
            return encode_png(sheet, compress_level=settings.png_compress_level)

        key = ("grid", tuple(seed_list), repr(float(trunc)), cls, cols)
        return _image_response(request, key, "image/png", make)

    @app.get("/healthz", summary="Liveness and pool depth")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "model": mid, "image_size": gen.image_size, "pool_depth": pool.depth()}

    @app.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    def prometheus() -> PlainTextResponse:
        c = pool.counters()
        lines = [
            "# HELP astrogan_pool_depth Unseen pictures waiting in the pool (shared by all processes).",
            "# TYPE astrogan_pool_depth gauge",
            f"astrogan_pool_depth {pool.depth()}",
            "# HELP astrogan_pool_size Target pool size.",
            "# TYPE astrogan_pool_size gauge",
            f"astrogan_pool_size {settings.pool_size}",
            "# HELP astrogan_pool_low_water Refill starts below this depth.",
            "# TYPE astrogan_pool_low_water gauge",
            f"astrogan_pool_low_water {settings.low_water}",
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
            *metrics.render(),
        ]
        return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")

    @app.get("/static/style.css", include_in_schema=False)
    def style(request: Request) -> Response:
        headers = {"ETag": css_etag, "Cache-Control": "public, max-age=3600"}
        if _not_modified(request, css_etag):
            return Response(status_code=304, headers=headers)
        return Response(css, media_type="text/css", headers=headers)

    app.add_middleware(_HeadersAndTiming, metrics=metrics)
    return app


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` worker processes: settings come from ASTROGAN_SERVE_SETTINGS."""
    return create_app()
