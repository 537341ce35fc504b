"""A self-contained HTML page that shows a run's pictures with captions (the demo's index.html)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from astrogan.utils.atomic import atomic_open


@dataclass(frozen=True)
class Figure:
    """One picture on the page: a path relative to the page, a title and a caption."""

    src: str
    title: str
    caption: str = ""
    pixelated: bool = False  # small GAN images look better scaled without smoothing
    width_px: int | None = None  # display width (e.g. to enlarge a single 64 px picture)


_CSS = """
body{background:#05070d;color:#dfe6f3;font:15px/1.5 system-ui,-apple-system,Segoe UI,sans-serif;margin:0}
header{padding:28px 36px 8px}h1{margin:0 0 4px;font-weight:600;letter-spacing:.02em}
.sub{color:#8fa0bf}.grid{display:flex;flex-wrap:wrap;gap:22px;padding:18px 36px 40px}
figure{margin:0;background:#0c1120;border:1px solid #1c2742;border-radius:10px;padding:14px;max-width:100%}
figure img{display:block;max-width:100%;height:auto;border-radius:4px;background:#000}
figure img.px{image-rendering:pixelated}figcaption{margin-top:8px;max-width:560px}
figcaption b{display:block;color:#fff}.pair{display:flex;gap:14px;flex-wrap:wrap}
table{border-collapse:collapse;margin:0 36px 30px}td{padding:2px 14px 2px 0;color:#b5c2db}
"""


def write_page(
    path: Path,
    *,
    title: str,
    subtitle: str,
    figures: Sequence[Figure | Sequence[Figure]],
    facts: Sequence[tuple[str, str]] = (),
) -> Path:
    """Write an HTML page; a nested sequence of figures is shown side by side in one card."""
    parts = [
        f"<!doctype html><html lang=en><meta charset=utf-8><title>{html.escape(title)}</title>",
        f"<meta name=viewport content='width=device-width,initial-scale=1'><style>{_CSS}</style>",
        f"<header><h1>{html.escape(title)}</h1><div class=sub>{html.escape(subtitle)}</div></header>",
    ]
    if facts:
        rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in facts)
        parts.append(f"<table>{rows}</table>")
    parts.append("<div class=grid>")
    for item in figures:
        group = [item] if isinstance(item, Figure) else list(item)
        cells = []
        for fig in group:
            cls = " class=px" if fig.pixelated else ""
            if fig.width_px:
                cls += f" width={int(fig.width_px)}"
            cells.append(
                f"<div><img{cls} src='{html.escape(fig.src, quote=True)}' alt='{html.escape(fig.title)}'"
                f" loading=lazy><figcaption><b>{html.escape(fig.title)}</b>{html.escape(fig.caption)}"
                "</figcaption></div>"
            )
        parts.append(f"<figure><div class=pair>{''.join(cells)}</div></figure>")
    parts.append("</div></html>\n")
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write("".join(parts))
    return path
