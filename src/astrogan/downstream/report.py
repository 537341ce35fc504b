"""The experiment's answer: metrics.json (MSE/PSNR/SSIM per alpha and condition), plots, example panel, report.html."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from astrogan.downstream.config import alpha_key
from astrogan.downstream.scores import summarise
from astrogan.utils.atomic import atomic_open, atomic_path, write_json

SCHEMA = "astrogan.downstream.denoise/1"

LABELS = {
    "none": "As trained",
    "half-res": "Coarser pixels (2x2 binned)",
    "noise-x4": "Four times the noise",
    "both": "Coarser pixels and four times the noise",
}


def fmt_score(x: float) -> str:
    """The one way a score is printed (4 significant digits), in the page and in the sentences."""
    return f"{x:.4g}"


def _alpha_name(alpha: float, *, lo: float, hi: float) -> str:
    if alpha == 1.0 and alpha == hi:
        return "generated-only (α = 1)"
    if alpha == 0.0 and alpha == lo:
        return "real-only (α = 0)"
    return f"α = {alpha:g}"


def _difference_se(lo: dict[str, Any], hi: dict[str, Any]) -> float:
    """Standard error of mean MSE(hi) - mean MSE(lo) over repeats.

    Paired when both alphas have the same repeats: repeat r of every alpha starts from the same weights and
    draws the same random numbers, so the per-repeat differences are what varies. Unpaired otherwise.
    """
    a, b = lo["mse_per_repeat"], hi["mse_per_repeat"]
    if len(a) == len(b) >= 2:
        d = [y - x for x, y in zip(a, b, strict=True)]
        return summarise(d)[1] / math.sqrt(len(d))
    if min(len(a), len(b)) < 2:
        return 0.0
    return math.sqrt(lo["mse_std"] ** 2 / len(a) + hi["mse_std"] ** 2 / len(b))


def summarise_condition(
    name: str, results: Sequence[dict[str, Any]], alphas: Sequence[float]
) -> dict[str, Any]:
    """One condition's table (mean ± std over repeats per alpha) and its conclusion in one sentence."""
    rows = []
    for alpha in alphas:
        cells = sorted((r for r in results if r["alpha"] == alpha), key=lambda r: r["repeat"])
        row: dict[str, Any] = {"alpha": alpha, "repeats": len(cells)}
        for score in ("mse", "psnr", "ssim", "mse_input"):
            mean, std = summarise([float(c["test"][name][score]) for c in cells])
            row[f"{score}_mean"], row[f"{score}_std"] = mean, std
        row["mse_per_repeat"] = [float(c["test"][name]["mse"]) for c in cells]
        row["steps_done"] = [int(c["steps_done"]) for c in cells if c.get("steps_done") is not None]
        rows.append(row)
    lo, hi = rows[0], rows[-1]
    best = min(rows, key=lambda r: r["mse_mean"])
    doc: dict[str, Any] = {
        "label": LABELS.get(name, name),
        "rows": rows,
        "best_alpha": best["alpha"],
        "reference_alpha": lo["alpha"],
        "compared_alpha": hi["alpha"],
        "num_test_images": int(results[0]["test"][name]["num_images"]),
    }
    if len(rows) == 1:
        doc["conclusion"] = (
            f"{doc['label']}: only α = {lo['alpha']:g} was run (MSE {fmt_score(lo['mse_mean'])}); "
            "run at least two alphas to compare."
        )
        return doc
    pct = round(100.0 * (hi["mse_mean"] / lo["mse_mean"] - 1.0), 1)
    best_pct = round(100.0 * (best["mse_mean"] / lo["mse_mean"] - 1.0), 1)
    doc["compared_vs_reference_pct"] = pct
    doc["best_vs_reference_pct"] = best_pct
    ref_name = _alpha_name(lo["alpha"], lo=lo["alpha"], hi=hi["alpha"])
    top_name = _alpha_name(hi["alpha"], lo=lo["alpha"], hi=hi["alpha"])
    n = min(lo["repeats"], hi["repeats"])
    se = _difference_se(lo, hi)
    scatter = ""
    doc["difference_se"] = se if n >= 2 else None
    doc["difference_is_clear"] = None
    if n >= 2:
        from scipy.stats import t as student_t

        # A 95% t-interval on the mean difference (n - 1 degrees of freedom: paired, or conservative).
        half_width = float(student_t.ppf(0.975, n - 1)) * se
        doc["difference_is_clear"] = bool(abs(hi["mse_mean"] - lo["mse_mean"]) > half_width)
        scatter = (
            f"; a clear difference: its 95% interval over {n} repeats excludes zero"
            if doc["difference_is_clear"]
            else f"; no clear difference: its 95% interval over {n} repeats includes zero"
        )
    how = "level with" if pct == 0 else f"{abs(pct):.1f}% {'worse' if pct > 0 else 'better'} than"
    sentence = (
        f"{doc['label']}: {top_name} is {how} {ref_name} "
        f"(test MSE {fmt_score(hi['mse_mean'])} vs {fmt_score(lo['mse_mean'])}{scatter})"
    )
    if best["alpha"] in (lo["alpha"], hi["alpha"]) and pct == 0:
        sentence += "."  # level: neither end is named the best
    elif best["alpha"] in (lo["alpha"], hi["alpha"]):
        sentence += f"; the best is {_alpha_name(best['alpha'], lo=lo['alpha'], hi=hi['alpha'])}."
    else:
        sentence += (
            f"; the best mix is α = {best['alpha']:g}, "
            + (
                "level with"
                if best_pct == 0
                else f"{abs(best_pct):.1f}% {'better' if best_pct < 0 else 'worse'} than"
            )
            + f" {ref_name}."
        )
    doc["conclusion"] = sentence + _uneven_training(results)
    return doc


def _uneven_training(results: Sequence[dict[str, Any]]) -> str:
    """A caution when the time cap stopped networks at different step counts (the arms did not train alike)."""
    steps = [int(r["steps_done"]) for r in results if r.get("steps_done") is not None]
    capped = sum(r.get("stopped_by") == "time" for r in results)
    if not capped or not steps or min(steps) == max(steps):
        return ""
    return (
        f" Caution: the --max-minutes cap stopped {capped} of {len(results)} networks, which trained "
        f"{min(steps)}-{max(steps)} steps, so the alphas did not get the same training; for a fair comparison "
        "give --steps and a time cap that does not bind."
    )


def build_metrics(
    results: Sequence[dict[str, Any]],
    *,
    alphas: Sequence[float],
    conditions: Sequence[str],
    header: dict[str, Any],
) -> dict[str, Any]:
    """The metrics.json document: `header` (settings, sets, splits) + per-condition tables + per-cell lines."""
    return {
        "schema": SCHEMA,
        **header,
        "train_seconds_total": round(sum(float(r.get("train_seconds") or 0) for r in results), 1),
        "alphas": list(alphas),
        "conditions": {name: summarise_condition(name, results, alphas) for name in conditions},
        "cells": [
            {
                k: r.get(k)
                for k in (
                    "key",
                    "alpha",
                    "repeat",
                    "steps_done",
                    "best_step",
                    "best_val_mse",
                    "stopped_by",
                    "train_seconds",
                    "status",
                )
            }
            for r in sorted(results, key=lambda r: (r["alpha"], r["repeat"]))
        ],
    }


def _pyplot():  # noqa: ANN202
    from astrogan.metrics.plots import pyplot

    return pyplot()


def plot_condition(path: Path, name: str, cond: dict[str, Any]) -> None:
    """MSE against alpha with error bars (standard deviation over repeats), one PNG."""
    plt = _pyplot()
    rows = cond["rows"]
    a = [r["alpha"] for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.errorbar(a, [r["mse_mean"] for r in rows], yerr=[r["mse_std"] for r in rows], marker="o", capsize=4)
    for r in rows:  # each repeat, faint, so a reader sees the scatter the bars summarise
        ax.plot([r["alpha"]] * len(r["mse_per_repeat"]), r["mse_per_repeat"], ".", color="0.6", ms=4)
    ax.set_xlabel("α (fraction of training batches from the generated set)")
    ax.set_ylabel("test MSE (unit scale)")
    ax.set_title(f"{cond['label']} ({name})", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def _display(img: np.ndarray) -> tuple[np.ndarray, str | None]:
    """`(C, H, W)` unit-scale -> an imshow array clipped to [0, 1]: grey for 1 band (or band 0 of >3), RGB for 3."""
    x = np.clip(img, 0.0, 1.0)
    if x.shape[0] == 3:
        return x.transpose(1, 2, 0), None
    return x[0], "gray"


def plot_examples(
    path: Path,
    examples_lo: dict[str, np.ndarray],
    examples_hi: dict[str, np.ndarray],
    *,
    alphas: tuple[float, float],
    conditions: Sequence[str],
) -> bool:
    """Truth, degraded input, prediction at the lowest and at the highest alpha, per condition; False if none."""
    rows = []
    for name in conditions:
        if f"{name}.truth" not in examples_lo or f"{name}.pred" not in examples_hi:
            continue
        for i in range(len(examples_lo[f"{name}.truth"])):
            rows.append((name, i))
    if not rows:
        return False
    from matplotlib.patches import Rectangle

    plt = _pyplot()
    titles = ["truth", "degraded input", f"prediction, α = {alphas[0]:g}", f"prediction, α = {alphas[1]:g}"]
    fig, axes = plt.subplots(len(rows), 4, figsize=(8, 2.1 * len(rows)), squeeze=False)
    for r, (name, i) in enumerate(rows):
        y0, y1, x0, x1 = (int(v) for v in examples_lo[f"{name}.box"])
        panels = [
            examples_lo[f"{name}.truth"][i],
            examples_lo[f"{name}.input"][i],
            examples_lo[f"{name}.pred"][i],
            examples_hi[f"{name}.pred"][i],
        ]
        for c, img in enumerate(panels):
            ax = axes[r][c]
            shown, cmap = _display(img)
            ax.imshow(shown, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
            if (y1 - y0, x1 - x0) != img.shape[1:]:  # half-res: the scored (binned) region
                ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="red", lw=0.8))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=9)
            if c == 0:
                ax.set_ylabel(name, fontsize=9)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return True


def _table(name: str, cond: dict[str, Any]) -> str:
    body = []
    for r in cond["rows"]:
        k = f"{name}-{alpha_key(r['alpha'])}"
        best = " class='best'" if r["alpha"] == cond["best_alpha"] else ""
        body.append(
            f"<tr{best}><td>{r['alpha']:g}</td>"
            f"<td><span id='mse-{k}'>{fmt_score(r['mse_mean'])}</span> ± "
            f"<span id='mse-std-{k}'>{fmt_score(r['mse_std'])}</span></td>"
            f"<td><span id='psnr-{k}'>{fmt_score(r['psnr_mean'])}</span> ± {fmt_score(r['psnr_std'])}</td>"
            f"<td><span id='ssim-{k}'>{fmt_score(r['ssim_mean'])}</span> ± {fmt_score(r['ssim_std'])}</td>"
            f"<td>{fmt_score(r['mse_input_mean'])}</td><td>{r['repeats']}</td><td>{_steps(r)}</td></tr>"
        )
    return (
        "<table><tr><th>α</th><th>test MSE (mean ± std)</th><th>PSNR dB</th><th>SSIM</th>"
        "<th>MSE of the degraded input</th><th>repeats</th><th>steps trained</th></tr>"
        + "".join(body)
        + "</table>"
    )


def _steps(row: dict[str, Any]) -> str:
    """The steps the row's networks trained: one number, or the range over repeats."""
    steps = row.get("steps_done") or []
    if not steps:
        return "?"
    return str(min(steps)) if min(steps) == max(steps) else f"{min(steps)}-{max(steps)}"


def render_html(doc: dict[str, Any], figures: Sequence[tuple[str, str]]) -> str:
    """report.html: the conclusions first (one sentence per condition), then tables, plots and settings."""
    conclusions = "".join(
        f"<li id='conclusion-{html.escape(n)}'>{html.escape(c['conclusion'])}</li>"
        for n, c in doc["conditions"].items()
    )
    sections = "".join(
        f"<h2>{html.escape(c['label'])} <small>({html.escape(n)})</small></h2>{_table(n, c)}"
        for n, c in doc["conditions"].items()
    )
    figs = "".join(
        f"<figure><img src='{html.escape(f)}' alt='{html.escape(t)}'><figcaption>{html.escape(t)}</figcaption></figure>"
        for f, t in figures
    )
    s = doc["settings"]
    settings = "".join(f"<li>{html.escape(str(k))}: {html.escape(str(v))}</li>" for k, v in sorted(s.items()))
    real, gen = doc["real"], doc["generated"]
    seeds = f", seeds {html.escape(gen['seeds'])}" if gen.get("seeds") else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>astrogan downstream denoise</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}}
table{{border-collapse:collapse;margin:.5em 0}}td,th{{border:1px solid #ccc;padding:2px 8px;text-align:left}}
tr.best td{{font-weight:bold}}figure{{display:inline-block;margin:6px;vertical-align:top}}img{{max-width:100%}}
.note{{font-size:85%;color:#555}}</style></head><body>
<h1>Denoising with generated galaxies</h1>
<p>A denoiser (Holzschuh et al. 2022: residual CNN, 5x5 convolutions) was trained to undo the PSF
{html.escape(str(s["psf"]))} and noise {html.escape(str(s["noise"]))} (unit scale), each batch drawn from
the generated set with probability α, else from the real training split; {doc["repeats"]} networks per α,
tested on {doc["splits"]["test"]} held-out real images under each condition.</p>
<ul class="conclusions">{conclusions}</ul>
<p class="note">Real set: {html.escape(str(real["name"]))} ({real["num_images"]} images, split
{doc["splits"]["train"]}/{doc["splits"]["val"]}/{doc["splits"]["test"]}); generated set:
{html.escape(str(gen["name"]))} ({gen["num_images"]} images{seeds}).
Scores are per image on the unit scale, averaged over the test images, then mean ± standard deviation over
repeats. Half-res scores cover the binned region only. Training took {doc["train_seconds_total"]:.0f} s over
{len(doc["cells"])} networks; this run's wall time was {doc["wall_seconds"]:.0f} s.</p>
{sections}
<h2>Plots</h2>{figs}
<h2>Settings</h2><ul>{settings}</ul>
</body></html>
"""


def write_report(
    out: Path,
    doc: dict[str, Any],
    *,
    examples: tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | None,
) -> dict[str, Any]:
    """Write the per-condition plots, examples.png, report.html and metrics.json into `out`, each atomically."""
    figures: list[tuple[str, str]] = []
    for name, cond in doc["conditions"].items():
        file = f"mse-{name}.png"
        plot_condition(out / file, name, cond)
        figures.append((file, f"test MSE against α: {cond['label'].lower()}"))
    alphas = doc["alphas"]
    if examples is not None and plot_examples(
        out / "examples.png", *examples, alphas=(alphas[0], alphas[-1]), conditions=list(doc["conditions"])
    ):
        figures.append(
            ("examples.png", f"truth, degraded input, predictions at α = {alphas[0]:g} and {alphas[-1]:g}")
        )
    doc = {**doc, "plots": [f for f, _ in figures]}
    with atomic_open(out / "report.html", "w", encoding="utf-8") as fh:
        fh.write(render_html(doc, figures))
    write_json(out / "metrics.json", doc)
    return doc
