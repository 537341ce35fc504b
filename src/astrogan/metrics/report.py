"""The evaluation report: metrics.json, PNG plots (matplotlib, Agg) and a self-contained report.html.

The page leads with one table (metric, value, real-vs-real floor, ratio, what it means, how many
images) and says which generator was evaluated (run, step, kimg); every metric then adds its own
section and figures (`Metric.section`, `Metric.figures`).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from astrogan.metrics import METRICS
from astrogan.utils.atomic import atomic_dir, write_json

SCHEMA = "astrogan.metrics/2"


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float, np.floating)) and math.isfinite(float(v)) else None


def _metrics_json(res: Any, names: Sequence[str], meta: dict) -> dict:
    ctx = res.context
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "metrics_requested": list(names),
        "summary": [r.to_json() for r in res.rows],
        "metrics": {k: _num(v) for k, v in res.scalars.items()},
        "skipped": res.skipped,
        "num_real": int(len(ctx.real)),
        "num_generated": int(len(ctx.fake)),
        "image_shape": list(ctx.real.shape[1:]),
        "meta": meta,
    }
    if ctx.science is not None:  # which plane is which band, and what the per-band figures measured
        doc["science"] = {
            "bands": list(ctx.science.bands),
            "bunit": ctx.science.bunit,
            "band_measured": None if ctx.band is None else ctx.band_name(ctx.band),
            "per_band": "spectrum and morphology: each band alone (the single-band metric on its plane) beside "
            "the combined figure (spectrum: the mean over bands; morphology: measured on the mean of the bands)",
        }
    weights = ctx.peek("inception_weights")
    if weights:
        doc["inception"] = weights
    for name, details in res.details.items():
        doc[name] = METRICS[name].load().to_json(details)
    return doc


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def _summary_table(rows: list[dict[str, Any]]) -> str:
    body = "".join(
        f"<tr><td>{html.escape(r['metric'])}</td><td>{_fmt(r['value'])}</td><td>{_fmt(r['floor'])}</td>"
        f"<td>{_fmt(r['ratio'])}</td><td>{html.escape(r['meaning'])}</td><td>{html.escape(r['images'])}</td></tr>"
        for r in rows
    )
    return (
        "<table class='summary'><tr><th>metric</th><th>value</th><th>floor (real vs real)</th>"
        "<th>ratio</th><th>what it means</th><th>images</th></tr>"
        f"{body}</table><p class='note'>The floor is what a perfect generator would score with as many "
        "images: the same figure between two halves of the real set. A ratio near 1 is as good as real data "
        "gets; for distances larger is worse, for precision/recall/density/coverage smaller is worse.</p>"
    )


def _evaluated(meta: dict[str, Any]) -> str:
    """One sentence naming the generator evaluated: run, step, kimg."""
    parts = [f"Generator: {meta.get('generator', 'unknown')}"]
    if meta.get("step") is not None:
        parts.append(f"step {meta['step']}")
    if meta.get("kimg") is not None:  # an early run's 0.032 kimg read "0.0 kimg"
        kimg = float(meta["kimg"])
        parts.append(f"{kimg:.1f} kimg" if kimg >= 1 else f"{kimg:.2g} kimg")
    return ", ".join(parts) + "."


def _html(doc: dict, sections: list[str], plots: list[tuple[str, str]]) -> str:
    skipped = "".join(f"<p class='skip'>{html.escape(v)}</p>" for v in dict.fromkeys(doc["skipped"].values()))
    inc = ""
    if "inception" in doc:
        inc = f"<p>Inception weights sha256: <code>{html.escape(doc['inception']['sha256'])}</code></p>"
    figs = "".join(
        f"<figure><img src='{html.escape(f)}' alt='{html.escape(t)}'>"
        f"<figcaption>{html.escape(t)}</figcaption></figure>"
        for f, t in plots
    )
    meta = "".join(f"<li>{html.escape(str(k))}: {html.escape(str(v))}</li>" for k, v in doc["meta"].items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>astrogan evaluation</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}}
table{{border-collapse:collapse;margin:.5em 0}}td,th{{border:1px solid #ccc;padding:2px 8px;text-align:left}}
.summary td:nth-child(5){{font-size:85%;color:#444}}.note{{font-size:85%;color:#555}}
figure{{display:inline-block;margin:6px;vertical-align:top}}img{{max-width:100%}}.skip{{color:#a50}}</style>
</head><body>
<h1>astrogan evaluation</h1>
<p>{html.escape(_evaluated(doc["meta"]))} {doc["num_real"]} real and {doc["num_generated"]} generated images of
shape {doc["image_shape"]}.</p>
{_summary_table(doc["summary"])}{skipped}{inc}
{"".join(sections)}
<h2>Plots</h2>{figs}
<h2>Details</h2><ul>{meta}</ul>
</body></html>
"""


def write_report(
    out_dir: str | Path,
    res: Any,
    *,
    names: Sequence[str],
    meta: dict[str, Any],
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write metrics.json, the PNG plots and report.html into `out_dir` (atomically); return the JSON.

    res: a `compute.MetricsOutput` (its context holds the real and generated images)."""
    from astrogan.metrics.plots import save_grid

    ctx = res.context
    doc = _metrics_json(res, names, meta)
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        save_grid(tmp / "real_grid.png", ctx.real, "real", science=ctx.science)
        save_grid(tmp / "generated_grid.png", ctx.fake, "generated", science=ctx.fake_science or ctx.science)
        plots: list[tuple[str, str]] = [
            ("real_grid.png", "real images"),
            ("generated_grid.png", "generated images"),
        ]
        sections = []
        for name, details in res.details.items():
            metric = METRICS[name].load()
            plots += metric.figures(details, ctx, tmp)
            sections.append(metric.section(details))
        doc["plots"] = [p for p, _ in plots]
        write_json(tmp / "metrics.json", doc)
        (tmp / "report.html").write_text(_html(doc, sections, plots), encoding="utf-8")
    return doc
