"""The deterministic image API: the picture for a seed, animated latent walks, grids of seeds.

Pictures are drawn on bounded executors, never in the thread pool the page uses (503 with Retry-After when
a queue is full). Walks and grids are expensive: they have their own executor, a per-client rate limit (429
with Retry-After) and a pixel budget per request.

Models on physical conditions take each condition as a query parameter named like its column
(`/api/image.png?seed=7&sersic_n=2.5&q=0.4`); the ones left out take the training mean. Their names depend
on the model, so they are read from `request.query_params` and described in the schema per model
(`openapi_extra`). Any other unknown query parameter is refused (422), so that a misspelt condition never
silently draws the picture at the training mean.

Science models (model.json has a `science` spec) are drawn as Lupton colour composites of their bands;
`rgb=i,r,g` picks the bands shown as red, green and blue, `band=r` shows one band in grey. `/api/image.png`
also answers `format=fits` or `Accept: image/fits` with the float32 cube in the data's units (the stretch
undone, FITS row order), regenerated from the seed: the pool keeps only the PNGs it serves, since any pooled
picture is redrawn exactly from its seed and cubes would take 4 bytes per band and pixel for files few ask for.
A picture model's cube holds its values in [0, 1] with BUNIT 'display' and PHYSICAL = F, as `astrogan
generate --format fits` writes it: the same request works for every model, and the header says what it holds.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute

from astrogan.imaging import make_grid, slerp
from astrogan.utils.errors import UserError
from astrogan.utils.seeds import MAX_SEED, parse_seeds
from astrogan.web.context import ServeContext
from astrogan.web.imaging import animation_formats, encode_animation, encode_png

TRUNC_QUERY = Query(
    1.0,
    gt=0.0,
    le=2.0,
    description="truncation in (0, 2] (1 = none), applied inside the network like --trunc",
)
# Bounded by the model in ServeContext.check_class, so that an out-of-range label is told the model's range.
CLASS_QUERY = Query(
    None,
    alias="class",
    json_schema_extra={"minimum": 0},
    description="class label for conditional models (0..num_classes-1)",
)
RGB_QUERY = Query(
    None,
    max_length=200,
    description="science models: the bands shown as red,green,blue, e.g. `i,r,g` (G may be empty: the mean of "
    "R and B); default: the model's own mapping",
)
BAND_QUERY = Query(
    None,
    max_length=40,
    description="one band shown alone, in grey: a science model's band name or index, a picture's channel index",
)
_RANGE_RE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")
FITS_MEDIA_TYPE = "image/fits"
_FITS_TYPES = ("image/fits", "application/fits")  # RFC 4047 registers both
_MAX_ACCEPT_ITEMS = 64  # an Accept header longer than this is read no further


def accept_q(header: str) -> dict[str, float]:
    """An Accept header's media ranges (lower case) and their q values in [0, 1] (the highest per range)."""
    out: dict[str, float] = {}
    for part in header.split(",")[:_MAX_ACCEPT_ITEMS]:
        media, *params = part.split(";")
        media = media.strip().lower()
        if not media:
            continue
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
                q = min(max(q, 0.0), 1.0) if math.isfinite(q) else 0.0
        out[media] = max(q, out.get(media, 0.0))
    return out


def negotiate(request: Request, fmt: str | None, *, fits_ok: bool = True, why_not: str = "") -> str:
    """The format a request gets, "png" or "fits": `format=` when given, else by its Accept header, else PNG.

    FITS is chosen from Accept only when a FITS type is named (wildcards never mean FITS, so browsers get
    PNG) with a q at least that of PNG. When FITS is not on offer (`fits_ok` False), `format=fits` is a
    UserError (422) saying `why_not`, and an Accept header that takes FITS but no PNG a 406.
    """
    if fmt is not None:
        if fmt == "fits" and not fits_ok:
            raise UserError(f"format: {why_not}")
        return fmt
    header = request.headers.get("accept")
    if not header:
        return "png"
    q = accept_q(header)
    fits_q = max(q.get(m, 0.0) for m in _FITS_TYPES)
    png_q = next((q[m] for m in ("image/png", "image/*", "*/*") if m in q), 0.0)
    if fits_q > 0 and fits_q >= png_q:
        if fits_ok:
            return "fits"
        if png_q <= 0:
            raise HTTPException(406, f"Accept: {why_not}; ask for image/png")
    return "png"


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


def cond_docs(ctx: ServeContext) -> tuple[str, dict[str, Any] | None]:
    """What the schema says of the model's conditions: a description paragraph and `openapi_extra`."""
    spec = ctx.cond_spec
    if spec is None:
        return "This model takes no physical conditions; unknown query parameters are refused (422).", None
    lines = [
        "Physical conditions, each an optional query parameter named like the column (the training mean "
        "when left out; a value outside the trained range, or an unknown parameter, is refused with 422):"
    ]
    params = []
    for i, name in enumerate(spec.names):
        unit = f" {spec.units[i]}" if spec.units[i] else ""
        lines.append(
            f"- `{name}`: {spec.low[i]:.4g} to {spec.high[i]:.4g}{unit} (training mean {spec.mean[i]:.4g})"
        )
        params.append(
            {
                "name": name,
                "in": "query",
                "required": False,
                "description": f"physical condition: {spec.describe_range(i)} (the trained range); "
                f"default: the training mean {spec.mean[i]:.4g}",
                "schema": {
                    "type": "number",
                    "minimum": spec.low[i],
                    "maximum": spec.high[i],
                    "default": spec.mean[i],
                },
            }
        )
    return "\n\n".join([lines[0], "\n".join(lines[1:])]), {"parameters": params}


def _declared_query(app: FastAPI, path: str, ctx: ServeContext) -> frozenset[str]:
    """The query parameter names (aliases) the route at `path` declares: any other must be a condition."""
    for route in app.routes:
        if isinstance(route, APIRoute) and route.path == path:
            declared = frozenset(p.alias for p in route.dependant.query_params)
            clash = sorted(declared & set(ctx.cond_spec.names if ctx.cond_spec else ()))
            if clash:
                raise UserError(
                    f"the model's condition {clash[0]!r} clashes with {path}'s parameter of that name"
                )
            return declared
    raise AssertionError(f"no route {path}")


def _add_image(app: FastAPI, ctx: ServeContext) -> None:
    gen, settings = ctx.gen, ctx.settings
    description, extra = cond_docs(ctx)
    declared: frozenset[str] = frozenset()

    @app.get(
        "/api/image.png",
        summary="The deterministic picture for a seed",
        description=description,
        openapi_extra=extra,
        response_class=Response,
        responses={200: {"content": {"image/png": {}, FITS_MEDIA_TYPE: {}}}, 304: {}, 406: {}},
    )
    async def image_png(
        request: Request,
        seed: int = Query(..., ge=0, le=MAX_SEED, description=f"seed, 0..{MAX_SEED}"),
        trunc: float = TRUNC_QUERY,
        cls: int | None = CLASS_QUERY,
        fmt: Literal["png", "fits"] | None = Query(
            None,
            alias="format",
            description="png (default), or fits: the float32 cube (B, H, W) in the data's units (science "
            "models; picture models: values in [0, 1], BUNIT 'display'); `Accept: image/fits` asks for it too",
        ),
        rgb: str | None = RGB_QUERY,
        band: str | None = BAND_QUERY,
    ) -> Response:
        cls = ctx.check_class(cls)
        cond = ctx.conditions(request.query_params, declared=declared)
        kind = negotiate(request, fmt)
        vary = {"Vary": "Accept"}  # the same URL answers PNG or FITS by the Accept header
        if kind == "fits":
            if rgb is not None or band is not None:
                raise UserError("rgb, band: they choose what a PNG shows; a FITS cube holds every band")

            def make_fits() -> bytes:
                return gen.fits(seed, trunc=trunc, label=cls, cond=cond)

            key = ("fits", seed, repr(float(trunc)), cls, *ctx.cond_key(cond))
            disposition = {"Content-Disposition": f'attachment; filename="astrogan-seed{seed}.fits"'}
            return await ctx.drawn_response(
                request, key, FITS_MEDIA_TYPE, make_fits, heavy=False, headers={**vary, **disposition}
            )
        view = ctx.view(rgb, band)

        def make() -> bytes:
            img = gen.generate([seed], trunc=trunc, labels=ctx.labels([seed], cls), cond=cond, view=view)[0]
            return encode_png(img, compress_level=settings.png_compress_level)

        key = ("png", seed, repr(float(trunc)), cls, *ctx.cond_key(cond), *ctx.view_key(view))
        return await ctx.drawn_response(request, key, "image/png", make, heavy=False, headers=vary)

    # Read by the handler at request time (a closure variable): the names exist once the route does.
    declared = _declared_query(app, "/api/image.png", ctx)


def _add_interpolate(app: FastAPI, ctx: ServeContext) -> None:
    gen, settings = ctx.gen, ctx.settings
    formats = animation_formats()
    description, extra = cond_docs(ctx)
    declared: frozenset[str] = frozenset()

    @app.get(
        "/api/interpolate",
        summary="An animated walk through latent space (slerp in z)",
        description=("Every frame shares the class and the conditions. " if extra else "") + description,
        openapi_extra=extra,
        response_class=Response,
        responses={200: {"content": {"image/webp": {}, "image/gif": {}}}, 304: {}},
    )
    async def interpolate(
        request: Request,
        seed_from: int = Query(..., alias="from", ge=0, le=MAX_SEED, description="seed at the start"),
        seed_to: int = Query(..., alias="to", ge=0, le=MAX_SEED, description="seed at the end"),
        steps: int = Query(16, ge=2, le=64, description="frames, 2..64"),
        trunc: float = TRUNC_QUERY,
        cls: int | None = CLASS_QUERY,
        fmt: Literal["webp", "gif"] | None = Query(None, alias="format", description="webp (default) or gif"),
        frame_ms: int = Query(80, ge=20, le=2000, description="milliseconds per frame"),
        rgb: str | None = RGB_QUERY,
        band: str | None = BAND_QUERY,
    ) -> Response:
        cls = ctx.check_class(cls)
        cond = ctx.conditions(request.query_params, declared=declared)
        view = ctx.view(rgb, band)
        if steps > settings.max_steps:
            raise UserError(f"steps: at most {settings.max_steps}")
        ctx.check_pictures(steps, what="steps")
        kind = fmt or formats[0]
        if kind not in formats:
            raise UserError(f"format: this server writes {', '.join(formats)}")

        def make() -> bytes:
            z = gen.latents([seed_from, seed_to])  # raw z: the network applies the truncation
            path = slerp(z[0], z[1], np.linspace(0.0, 1.0, steps))
            labels = ctx.labels([seed_from] * steps, cls)
            frames = gen.generate_latents(
                path, labels=labels, cond=cond, trunc=trunc, batch_size=16, view=view
            )
            return encode_animation(frames, fmt=kind, frame_ms=frame_ms)

        key = (
            "anim",
            seed_from,
            seed_to,
            steps,
            repr(float(trunc)),
            cls,
            kind,
            frame_ms,
            *ctx.cond_key(cond),
            *ctx.view_key(view),
        )
        return await ctx.drawn_response(request, key, f"image/{kind}", make, heavy=True)

    # Read by the handler at request time (a closure variable): the names exist once the route does.
    declared = _declared_query(app, "/api/interpolate", ctx)


def _add_grid(app: FastAPI, ctx: ServeContext) -> None:
    gen, settings = ctx.gen, ctx.settings
    description, extra = cond_docs(ctx)
    declared: frozenset[str] = frozenset()

    @app.get(
        "/api/grid",
        summary="A grid of pictures for a list of seeds",
        description=("Every picture shares the class and the conditions. " if extra else "") + description,
        openapi_extra=extra,
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}, 304: {}, 406: {}},
    )
    async def grid(
        request: Request,
        seeds: str = Query("0-15", max_length=200, description="seed list like 0-15 or 1,5,9 (at most 64)"),
        trunc: float = TRUNC_QUERY,
        cls: int | None = CLASS_QUERY,
        cols: int | None = Query(None, ge=1, le=64, description="columns (default: square)"),
        fmt: Literal["png", "fits"] | None = Query(
            None, alias="format", description="png; FITS cubes come one seed at a time from /api/image.png"
        ),
        rgb: str | None = RGB_QUERY,
        band: str | None = BAND_QUERY,
    ) -> Response:
        cls = ctx.check_class(cls)
        cond = ctx.conditions(request.query_params, declared=declared)
        why_not = "a grid is a picture; FITS cubes come one seed at a time: /api/image.png?seed=N&format=fits"
        negotiate(request, fmt, fits_ok=False, why_not=why_not)
        view = ctx.view(rgb, band)
        try:
            seed_list = bounded_seeds(seeds, max_count=settings.max_grid)
        except UserError as exc:
            raise UserError(f"seeds: {exc}") from None
        ctx.check_pictures(len(seed_list), what="seeds")

        def make() -> bytes:
            labels = ctx.labels(seed_list, cls)
            imgs = gen.generate(seed_list, trunc=trunc, labels=labels, cond=cond, batch_size=16, view=view)
            sheet = make_grid(imgs, ncols=min(cols, len(imgs)) if cols else None, pad_px=2)
            return encode_png(sheet, compress_level=settings.png_compress_level)

        key = (
            "grid",
            tuple(seed_list),
            repr(float(trunc)),
            cls,
            cols,
            *ctx.cond_key(cond),
            *ctx.view_key(view),
        )
        return await ctx.drawn_response(
            request, key, "image/png", make, heavy=True, headers={"Vary": "Accept"}
        )

    # Read by the handler at request time (a closure variable): the names exist once the route does.
    declared = _declared_query(app, "/api/grid", ctx)
