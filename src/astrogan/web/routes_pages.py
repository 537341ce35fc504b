"""The page: one picture nobody saw before (from the pool), the model card, and its stylesheet."""

from __future__ import annotations

import base64
import json
import random
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response

from astrogan.conditions import CondSpec
from astrogan.utils.seeds import MAX_SEED
from astrogan.web.caching import conditional_response, content_etag
from astrogan.web.context import ServeContext
from astrogan.web.imaging import encode_png
from astrogan.web.worker import pool_cond_rows, pool_conditions

WEB_DIR = Path(__file__).resolve().parent
STYLE_CACHE_CONTROL = "public, max-age=3600"


def model_card(meta: dict[str, Any]) -> dict[str, Any]:
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


def condition_ranges(spec: CondSpec | None) -> list[dict[str, str]]:
    """The model's conditions for the model card: name, unit, trained range and mean, as display strings."""
    if spec is None:
        return []
    return [
        {
            "name": name,
            "unit": spec.units[i],
            "range": f"{spec.low[i]:.4g} to {spec.high[i]:.4g}",
            "mean": f"{spec.mean[i]:.4g}",
        }
        for i, name in enumerate(spec.names)
    ]


def picture_conditions(spec: CondSpec | None, seed: int) -> list[tuple[str, str, str]]:
    """The conditions a pool picture was drawn at, `(name, value, unit)`; the value parses back exactly."""
    if spec is None:
        return []
    values = pool_conditions(spec, seed)
    return [(name, repr(values[name]), spec.units[i]) for i, name in enumerate(spec.names)]


def claim_picture(ctx: ServeContext, rng: random.Random) -> tuple[int, float, bytes, str]:
    """A picture for the page: `(seed, trunc, png, source)`, source "pool", "reuse" or "generated"."""
    settings, pool = ctx.settings, ctx.pool
    picture = pool.claim()
    if picture is not None:
        return picture.seed, picture.trunc, picture.png, "pool"
    if settings.when_empty == "reuse":
        picture = pool.reuse(num_recent=settings.reservoir_size, rng=rng)
        if picture is not None:
            return picture.seed, picture.trunc, picture.png, "reuse"
    # Dry pool and nothing to reuse (or policy `generate`): draw one now.
    seed = secrets.randbelow(MAX_SEED + 1)
    cond = pool_cond_rows(ctx.gen, [seed])  # at its own conditions, like the pool's pictures
    img = ctx.gen.generate([seed], trunc=settings.trunc, labels=ctx.labels([seed], None), cond=cond)[0]
    pool.incr("served_inline")
    return seed, settings.trunc, encode_png(img, compress_level=settings.png_compress_level), "generated"


def add_page_routes(app: FastAPI, ctx: ServeContext) -> None:
    """`/`: a fresh picture with its seed and the model card (never cached)."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(WEB_DIR / "templates"), autoescape=select_autoescape(["html"]))
    template = env.get_template("index.html")
    card = model_card(ctx.gen.meta)
    conditions = condition_ranges(ctx.cond_spec)
    rng = random.Random()

    @app.get(
        "/",
        response_class=HTMLResponse,
        summary="The page: one picture nobody saw before",
        responses={200: {"content": {"text/html": {}}}},
    )
    def index() -> HTMLResponse:
        seed, trunc, png, source = claim_picture(ctx, rng)
        drawn_at = picture_conditions(ctx.cond_spec, seed)
        # The API URL that draws this very picture (its conditions included); repr(trunc) parses back exactly.
        query = urlencode([("seed", seed), ("trunc", repr(float(trunc))), *((n, v) for n, v, _ in drawn_at)])
        html = template.render(
            image_b64=base64.b64encode(png).decode("ascii"),
            seed=seed,
            trunc=f"{trunc:g}",
            image_url=f"/api/image.png?{query}",
            source=source,
            image_size=ctx.gen.image_size,
            channels=ctx.gen.channels,
            labels=ctx.gen.label_names,
            card=card,
            conditions=conditions,
            drawn_at=drawn_at,
        )
        headers = {"Cache-Control": "no-store", "X-Astrogan-Seed": str(seed), "X-Astrogan-Source": source}
        if drawn_at:
            headers["X-Astrogan-Conditions"] = ",".join(f"{n}={v}" for n, v, _ in drawn_at)
        return HTMLResponse(html, headers=headers)


def add_static_routes(app: FastAPI) -> None:
    """`/static/style.css`, read once, revalidated by its content ETag (left out of the API schema)."""
    css = (WEB_DIR / "static" / "style.css").read_bytes()
    css_etag = content_etag(css)

    @app.get("/static/style.css", include_in_schema=False)
    def style(request: Request) -> Response:
        return conditional_response(
            request, etag=css_etag, cache_control=STYLE_CACHE_CONTROL, media_type="text/css", body=lambda: css
        )
