"""The deterministic image API: the picture for a seed, animated latent walks, grids of seeds."""

from __future__ import annotations

import re
from typing import Literal

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.responses import Response

from astrogan.imaging import make_grid, slerp
from astrogan.utils.errors import UserError
from astrogan.utils.seeds import MAX_SEED, parse_seeds
from astrogan.web.context import ServeContext
from astrogan.web.imaging import animation_formats, encode_animation, encode_png

TRUNC_QUERY = Query(
    1.0, ge=0.0, le=2.0, description="truncation (0..2, 1 = none), applied inside the network like --trunc"
)
CLASS_QUERY = Query(
    None, alias="class", ge=0, le=9999, description="class label for conditional models (0..num_classes-1)"
)
_RANGE_RE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")


def bounded_seeds(text: str, *, max_count: int) -> list[int]:
    """parse_seeds, but a range is sized before it is expanded (`0-4294967295` must not allocate 4e9 ints)."""
    total = 0
    for part in str(text).split(","):
        m = _RANGE_RE.match(part)
        total += int(m.group(2)) - int(m.group(1)) + 1 if m else 1
        if total > max_count:
            raise UserError(f"at most {max_count} seeds per request")
    return parse_seeds(text, max_count=max_count)


def add_image_routes(app: FastAPI, ctx: ServeContext) -> None:
    """`/api/image.png`, `/api/interpolate` and `/api/grid`: same parameters, same bytes, cached by ETag."""
    _add_image(app, ctx)
    _add_interpolate(app, ctx)
    _add_grid(app, ctx)


def _add_image(app: FastAPI, ctx: ServeContext) -> None:
    gen, settings = ctx.gen, ctx.settings

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
        cls = ctx.check_class(cls)

        def make() -> bytes:
            img = gen.generate([seed], trunc=trunc, labels=ctx.labels([seed], cls))[0]
            return encode_png(img, compress_level=settings.png_compress_level)

        return ctx.images.response(request, ("png", seed, repr(float(trunc)), cls), "image/png", make)


def _add_interpolate(app: FastAPI, ctx: ServeContext) -> None:
    gen, settings = ctx.gen, ctx.settings
    formats = animation_formats()

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
        cls = ctx.check_class(cls)
        if steps > settings.max_steps:
            raise UserError(f"steps: at most {settings.max_steps}")
        kind = fmt or formats[0]
        if kind not in formats:
            raise UserError(f"format: this server writes {', '.join(formats)}")

        def make() -> bytes:
            z = gen.latents([seed_from, seed_to])  # raw z: the network applies the truncation
            path = slerp(z[0], z[1], np.linspace(0.0, 1.0, steps))
            labels = ctx.labels([seed_from] * steps, cls)
            frames = gen.generate_latents(path, labels=labels, trunc=trunc, batch_size=16)
            return encode_animation(frames, fmt=kind, frame_ms=frame_ms)

        key = ("anim", seed_from, seed_to, steps, repr(float(trunc)), cls, kind, frame_ms)
        return ctx.images.response(request, key, f"image/{kind}", make)


def _add_grid(app: FastAPI, ctx: ServeContext) -> None:
    gen, settings = ctx.gen, ctx.settings

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
        cls = ctx.check_class(cls)
        try:
            seed_list = bounded_seeds(seeds, max_count=settings.max_grid)
        except UserError as exc:
            raise UserError(f"seeds: {exc}") from None

        def make() -> bytes:
            imgs = gen.generate(seed_list, trunc=trunc, labels=ctx.labels(seed_list, cls), batch_size=16)
            sheet = make_grid(imgs, ncols=min(cols, len(imgs)) if cols else None, pad_px=2)
            return encode_png(sheet, compress_level=settings.png_compress_level)

        key = ("grid", tuple(seed_list), repr(float(trunc)), cls, cols)
        return ctx.images.response(request, key, "image/png", make)
