"""The page: one picture nobody saw before (from the pool), the model card, and its stylesheet."""

from __future__ import annotations

import base64
import json
import random
import re
import secrets
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response

from astrogan.conditions import CondSpec
from astrogan.science import ScienceSpec
from astrogan.utils.seeds import MAX_SEED
from astrogan.web.caching import conditional_response, content_etag
from astrogan.web.context import ServeContext
from astrogan.web.imaging import encode_png
from astrogan.web.middleware import HEAD_SCOPE_KEY
from astrogan.web.worker import pool_cond_rows, pool_conditions

WEB_DIR = Path(__file__).resolve().parent
STYLE_CACHE_CONTROL = "public, max-age=3600"


# Lines the model card shows per list (credits, licences, sources) before "and N more".
MAX_CARD_LINES = 12
# An absolute local path inside a display string (POSIX, home-relative or Windows): never published.
_LOCAL_PATH_RE = re.compile(r"(?<![\w:/.])(?:~|[A-Za-z]:)?[/\\](?:[^\s/\\]+[/\\])+[^\s/\\]*")
# Words in a dataset's name or its sources' titles that name what the pictures show, and the noun they give.
_SUBJECT_WORDS = (
    ("galax", "galaxy"),
    ("sersic", "galaxy"),
    ("sérsic", "galaxy"),
    ("decals", "galaxy"),
    ("nebul", "nebula"),
    ("cluster", "star cluster"),
    ("planet", "planet"),
    ("comet", "comet"),
    ("aurora", "aurora"),
)
_PLURALS = {"galaxy": "galaxies", "nebula": "nebulae", "sky": "skies", "aurora": "aurorae"}
DEFAULT_SUBJECT = "sky"


def _display(value: Any, *, max_len: int = 200) -> str:
    """One line of text for the page: whitespace collapsed, local paths replaced, length capped."""
    text = " ".join(str(value).split())
    text = _LOCAL_PATH_RE.sub("(local path)", text)
    return text if len(text) <= max_len else text[: max_len - 1] + "…"


def _capped(lines: list[str]) -> list[str]:
    if len(lines) <= MAX_CARD_LINES:
        return lines
    return [*lines[:MAX_CARD_LINES], f"and {len(lines) - MAX_CARD_LINES:,} more"]


def _num_images(entry: dict[str, Any]) -> int:
    n = entry.get("num_images")
    return n if isinstance(n, int) and not isinstance(n, bool) and n >= 0 else 1


def _counted(value: Any) -> list[str]:
    """Credits or licences as display lines, most images first: `{name: count}` or a list of strings."""
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: (-kv[1] if isinstance(kv[1], int) else 0, str(kv[0])))
        lines = [
            f"{_display(k)} ({n:,} image{'s' if n != 1 else ''})"
            if isinstance(n, int)
            else f"{_display(k)}: {n}"
            for k, n in items
        ]
    elif isinstance(value, list | tuple):
        lines = [_display(v if isinstance(v, str) else json.dumps(v, sort_keys=True)) for v in value]
    else:
        lines = [_display(value)] if value else []
    return _capped(lines)


def _source_name(entry: Any) -> str:
    """The archive an entry of the dataset's source list came from (never its file path)."""
    if isinstance(entry, dict):
        name = entry.get("source") or entry.get("archive") or entry.get("title")
        return _display(name, max_len=60) if name else "unlisted files"
    text = str(entry)
    return _display(Path(text).name if ("/" in text or "\\" in text) else text, max_len=60)


def source_summary(sources: Any) -> list[str]:
    """The dataset's sources aggregated by archive: images and licences per archive, most images first."""
    if not isinstance(sources, list):
        return []
    images: Counter[str] = Counter()
    licences: dict[str, Counter[str]] = {}
    for entry in sources:
        name = _source_name(entry)
        n = _num_images(entry) if isinstance(entry, dict) else 1
        images[name] += n
        if isinstance(entry, dict) and entry.get("licence"):
            licences.setdefault(name, Counter())[_display(entry["licence"], max_len=60)] += n
    lines = []
    for name, n in images.most_common():
        line = f"{name}: {n:,} image{'s' if n != 1 else ''}"
        by_licence = licences.get(name)
        if by_licence:
            top = [f"{lic} ({k:,})" for lic, k in by_licence.most_common(3)]
            more = len(by_licence) - len(top)
            line += "; licences: " + ", ".join(top) + (f" and {more} more" if more > 0 else "")
        lines.append(line)
    return _capped(lines)


def _mapping(value: Any) -> dict[str, Any]:
    """`value` if it is a JSON object, else {} (model.json is read from disk: any shape may turn up)."""
    return value if isinstance(value, dict) else {}


def _card_parts(meta: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """model.json's model card and its dataset block, each {} when absent or not an object."""
    card = _mapping(meta.get("model_card"))
    return card, _mapping(card.get("dataset"))


def subject_noun(meta: dict[str, Any], *, explicit: str | None = None) -> str:
    """What the pictures show, for the title: `explicit`, else model.json's `subject`, else a word of the
    dataset's name, else the word most of its images' source titles share, else "sky"."""
    card, data = _card_parts(meta)
    for given in (explicit, meta.get("subject"), card.get("subject"), data.get("subject")):
        if isinstance(given, str) and re.fullmatch(r"[A-Za-z][A-Za-z \-]{0,39}", given.strip()):
            return given.strip().lower()

    def noun(text: Any) -> str | None:
        low = str(text).lower()
        return next((n for word, n in _SUBJECT_WORDS if word in low), None)

    from_name = noun(data.get("name") or "")
    if from_name:
        return from_name
    votes: Counter[str] = Counter()
    total = 0
    for entry in data.get("sources") or []:
        n = _num_images(entry) if isinstance(entry, dict) else 1
        total += n
        text = (
            " ".join(str(entry.get(k, "")) for k in ("title", "source")) if isinstance(entry, dict) else entry
        )
        found = noun(text)
        if found:
            votes[found] += n
    if votes:
        best, n = votes.most_common(1)[0]
        if 2 * n >= total:
            return best
    return DEFAULT_SUBJECT


def plural(noun: str) -> str:
    """English plural of a subject noun ("galaxy" -> "galaxies", "nebula" -> "nebulae")."""
    if noun in _PLURALS:
        return _PLURALS[noun]
    head, _, last = noun.rpartition(" ")
    if last in _PLURALS:
        return f"{head} {_PLURALS[last]}".strip()
    if last.endswith("y") and last[-2:-1] not in ("a", "e", "i", "o", "u"):
        return noun[:-1] + "ies"
    return noun + ("es" if last.endswith(("s", "x", "ch", "sh")) else "s")


def model_card(meta: dict[str, Any]) -> dict[str, Any]:
    """Flatten model.json's model card into display strings for the page.

    Sources, credits and licences are aggregated (one line per archive, credit or licence, capped): a
    dataset of thousands of files gives a short card, and no local path of the machine that built it.
    """
    card, data = _card_parts(meta)
    train = _mapping(card.get("training"))
    parts = []
    if isinstance(train.get("steps"), int | float):
        parts.append(f"{train['steps']:,} steps")
    if isinstance(train.get("kimg"), int | float):
        parts.append(f"{float(train['kimg']):g} kimg")
    metrics = _mapping(card.get("metrics"))
    parity = _mapping(meta.get("parity"))
    name = data.get("name") or (Path(str(data["path"])).name if data.get("path") else None)
    return {
        "arch": _display(card.get("arch") or meta.get("arch") or "unknown", max_len=80),
        "training": ", ".join(parts) or "unknown",
        "dataset": _display(name or "unknown", max_len=80),
        "sources": source_summary(data.get("sources")),
        "credits": _counted(data.get("credits") or []),
        "licences": _counted(data.get("licences") or []),
        "metrics": [
            (_display(k, max_len=40), f"{v:.4g}" if isinstance(v, float) else _display(v, max_len=40))
            for k, v in sorted(metrics.items())[:MAX_CARD_LINES]
        ],
        "parity": (
            f"max |exported − PyTorch| = {parity['max_abs_diff']:.2e} over "
            f"{parity.get('num_seeds', '?')} seeds"
            if isinstance(parity.get("max_abs_diff"), int | float)
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


def science_summary(spec: ScienceSpec | None) -> dict[str, Any] | None:
    """What the page says of a science model's output: bands, units, pixel scale, colours in words (None: pictures)."""
    if spec is None:
        return None
    if spec.num_bands > 1:
        r, g, b = spec.display_or_default().rgb
        green = g or f"the mean of {r} and {b}"
        colours = f"red = {r}, green = {green}, blue = {b} (Lupton et al. 2004 colour composite)"
    else:
        colours = f"the one band, {spec.bands[0]}, in grey"
    return {
        "bands": list(spec.bands),
        "unit": _display(spec.bunit, max_len=40) if spec.bunit else None,
        "pixel_scale": f"{spec.pixel_scale_arcsec:g} arcsec/px"
        if spec.pixel_scale_arcsec is not None
        else None,
        "colours": colours,
    }


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
    science = science_summary(ctx.science)
    subject = ctx.subject
    rng = random.Random()

    @app.get(
        "/",
        response_class=HTMLResponse,
        summary="The page: one picture nobody saw before",
        responses={200: {"content": {"text/html": {}}}},
    )
    def index(request: Request) -> Response:
        if request.scope.get(HEAD_SCOPE_KEY):
            # A HEAD (a monitor, a link checker) must not use up a picture nobody will see.
            head = Response(media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-store"})
            del head.headers["content-length"]
            return head
        seed, trunc, png, source = claim_picture(ctx, rng)
        drawn_at = picture_conditions(ctx.cond_spec, seed)
        # The API URL that draws this very picture (its conditions included); repr(trunc) parses back exactly.
        query = urlencode([("seed", seed), ("trunc", repr(float(trunc))), *((n, v) for n, v, _ in drawn_at)])
        # Science models: the same seed as a FITS cube (the pool keeps PNGs; the API redraws the seed exactly)
        # and each band alone.
        fits_url = f"/api/image.png?{query}&format=fits" if science else None
        band_urls = (
            [(b, f"/api/image.png?{query}&{urlencode([('band', b)])}") for b in science["bands"]]
            if science
            else []
        )
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
            subject=subject,
            science=science,
            fits_url=fits_url,
            band_urls=band_urls,
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
