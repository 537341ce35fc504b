"""The evaluation report: metrics.json, PNG plots (matplotlib, Agg) and a self-contained report.html."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from astrogan.utils.atomic import atomic_dir, write_json

SCHEMA = "astrogan.metrics/1"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _display(images: np.ndarray) -> np.ndarray:
    """(N,H,W,C) uint8/float -> (N,H,W,3 or 1) float in [0,1] for imshow (first three bands)."""
    x = images.astype(np.float64) / 255.0 if images.dtype == np.uint8 else images.astype(np.float64)
    if images.dtype != np.uint8:  # float science data: stretch the 0.5-99.5 percentiles to the screen
        lo, hi = np.percentile(x, [0.5, 99.5])
        x = np.clip((x - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
    if x.shape[-1] > 3:
        x = x[..., :3]
    if x.shape[-1] == 2:
        x = x[..., :1]
    return x


def image_grid(images: np.ndarray, *, num: int = 64) -> np.ndarray:
    """Tile the first `num` images into one square-ish grid `(rows*H, cols*W, C)` with 2-px gaps."""
    x = _display(images[:num])
    n, h, w, c = x.shape
    cols = int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    grid = np.ones((rows * (h + 2), cols * (w + 2), c))
    for i in range(n):
        r, k = divmod(i, cols)
        grid[r * (h + 2) : r * (h + 2) + h, k * (w + 2) : k * (w + 2) + w] = x[i]
    return grid


def _save_grid(path: Path, images: np.ndarray, title: str) -> None:
    plt = _plt()
    g = image_grid(images)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.imshow(g[..., 0] if g.shape[-1] == 1 else g, cmap="gray" if g.shape[-1] == 1 else None)
    ax.set_title(title)
    ax.axis("off")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _save_spectrum(path: Path, comp: Any) -> None:
    plt = _plt()
    c = comp.mean_real.shape[0]
    fig, axes = plt.subplots(2, 1, figsize=(6, 6), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    for b in range(c):
        lab = f" band {b}" if c > 1 else ""
        axes[0].loglog(comp.freqs, comp.mean_real[b], "-", label=f"real{lab}")
        axes[0].loglog(comp.freqs, comp.mean_fake[b], "--", label=f"generated{lab}")
        axes[1].semilogx(comp.freqs, comp.ratio[b], label=lab or None)
    axes[0].set_ylabel("mean power")
    axes[0].legend(fontsize=7)
    axes[1].axhline(1.0, color="k", lw=0.5)
    axes[1].set_ylabel("generated / real")
    axes[1].set_xlabel("spatial frequency (cycles / px)")
    from matplotlib.ticker import NullFormatter

    axes[1].xaxis.set_minor_formatter(NullFormatter())  # minor log labels overlap on short ranges
    fig.suptitle(f"1D power spectrum (mean per-bin W1 of log10 power: {np.mean(comp.w1):.3g})")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _save_morphology(path: Path, morph: dict[str, Any]) -> None:
    from astrogan.metrics.morphology import COMPARED_PROPERTIES

    plt = _plt()
    real, fake = morph["real"], morph["fake"]
    n = len(COMPARED_PROPERTIES)
    cols = 4
    rows = int(math.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.5 * rows))
    for ax, k in zip(axes.ravel(), COMPARED_PROPERTIES, strict=False):
        a = real.values[k][real.good()]
        b = fake.values[k][fake.good()]
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        both = np.concatenate([a, b])
        if both.size:
            lo, hi = np.percentile(both, [1, 99])
            bins = np.linspace(lo, hi if hi > lo else lo + 1, 30)
            ax.hist(a, bins=bins, density=True, alpha=0.5, label="real")
            ax.hist(b, bins=bins, density=True, alpha=0.5, label="generated")
        fl = morph["floor"].get(k, float("nan"))
        ax.set_title(f"{k}: W1 {morph['distances'][k]:.3g} (floor {fl:.3g})", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    axes.ravel()[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _save_pairs(path: Path, res: Any, real: np.ndarray, fake: np.ndarray) -> None:
    plt = _plt()
    pairs = res.closest_pairs[:16]
    fig, axes = plt.subplots(2, max(len(pairs), 1), figsize=(1.3 * max(len(pairs), 1), 3))
    axes = np.asarray(axes).reshape(2, -1)
    fx, rx = _display(fake), _display(real)
    for j, (fi, ri, d) in enumerate(pairs):
        for row, img in ((0, fx[fi]), (1, rx[ri])):
            ax = axes[row, j]
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None)
            ax.axis("off")
        axes[0, j].set_title(f"{d:.2f}", fontsize=7)
    fig.suptitle(
        "closest pairs: generated (top) and nearest training image (bottom), pixel distance", fontsize=8
    )
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def _save_nn_hist(path: Path, res: Any) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3))
    a, b = res.heldout_nn_dist["pixels"], res.fake_nn_dist["pixels"]
    bins = np.linspace(0, max(a.max(), b.max()) * 1.05 + 1e-9, 30)
    ax.hist(a, bins=bins, density=True, alpha=0.5, label="held-out real -> train")
    ax.hist(b, bins=bins, density=True, alpha=0.5, label="generated -> train")
    ax.axvline(res.threshold["pixels"], color="k", ls="--", label="5th percentile (held-out)")
    ax.set_xlabel("nearest-neighbour distance (pixels, reduced size)")
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def _metrics_json(res: Any, real: np.ndarray, fake: np.ndarray, names: Sequence[str], meta: dict) -> dict:
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "metrics_requested": list(names),
        "metrics": {k: (None if not np.isfinite(v) else float(v)) for k, v in res.scalars.items()},
        "skipped": res.skipped,
        "num_real": int(len(real)),
        "num_generated": int(len(fake)),
        "image_shape": list(real.shape[1:]),
        "meta": meta,
    }
    if "inception_sha256" in res.details:
        doc["inception"] = {"sha256": res.details["inception_sha256"], "path": res.details["inception_path"]}
    if "spectrum" in res.details:
        c = res.details["spectrum"]
        doc["spectrum"] = {
            "freqs_cycles_per_px": c.freqs.tolist(),
            "ratio": np.nan_to_num(c.ratio, nan=-1.0).tolist(),
            "w1_log10_power": c.w1.tolist(),
        }
    if "morphology" in res.details:
        m = res.details["morphology"]
        doc["morphology"] = {
            "engine": m["engine"],
            "standardisation": "values standardised by the real set's mean and std before W1",
            "w1": m["distances"],
            "w1_floor_real_halves": m["floor"],
            "num_flag_bad_real": int((m["real"].flag >= 2).sum()),
            "num_flag_bad_generated": int((m["fake"].flag >= 2).sum()),
        }
    if "memorization" in res.details:
        r = res.details["memorization"]
        doc["memorization"] = {
            "fraction": r.fraction,
            "threshold": r.threshold,
            "closest_pairs": [{"generated": a, "train": b, "distance": d} for a, b, d in r.closest_pairs],
        }
    return doc


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def _html(doc: dict, plots: list[tuple[str, str]]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in sorted(doc["metrics"].items())
    )
    skipped = "".join(f"<p class='skip'>{html.escape(v)}</p>" for v in dict.fromkeys(doc["skipped"].values()))
    morph = ""
    if "morphology" in doc:
        m = doc["morphology"]
        morph_rows = "".join(
            f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td><td>{_fmt(m['w1_floor_real_halves'].get(k))}</td></tr>"
            for k, v in m["w1"].items()
        )
        morph = (
            f"<h2>Morphology ({html.escape(m['engine'])} engine)</h2><p>{html.escape(m['standardisation'])}; "
            "the floor is the distance between two disjoint halves of the real set.</p>"
            "<table><tr><th>property</th><th>W1 real vs generated</th><th>W1 floor</th></tr>"
            f"{morph_rows}</table>"
        )
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
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 8px;text-align:left}}
figure{{display:inline-block;margin:6px;vertical-align:top}}img{{max-width:100%}}.skip{{color:#a50}}</style>
</head><body>
<h1>astrogan evaluation</h1>
<p>{doc["num_real"]} real and {doc["num_generated"]} generated images of shape {doc["image_shape"]}.</p>
<ul>{meta}</ul>{skipped}{inc}
<h2>Figures</h2><table>{rows}</table>
{morph}
<h2>Plots</h2>{figs}
</body></html>
"""


def write_report(
    out_dir: str | Path,
    res: Any,
    real: np.ndarray,
    fake: np.ndarray,
    *,
    names: Sequence[str],
    meta: dict[str, Any],
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write metrics.json, the PNG plots and report.html into `out_dir` (atomically); return the JSON."""
    real = real if real.ndim == 4 else real[..., None]
    fake = fake if fake.ndim == 4 else fake[..., None]
    doc = _metrics_json(res, real, fake, names, meta)
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        plots: list[tuple[str, str]] = []
        _save_grid(tmp / "real_grid.png", real, "real")
        _save_grid(tmp / "generated_grid.png", fake, "generated")
        plots += [("real_grid.png", "real images"), ("generated_grid.png", "generated images")]
        if "spectrum" in res.details:
            _save_spectrum(tmp / "spectrum.png", res.details["spectrum"])
            plots.append(("spectrum.png", "1D power spectra and their ratio"))
        if "morphology" in res.details:
            _save_morphology(tmp / "morphology.png", res.details["morphology"])
            plots.append(("morphology.png", "morphological properties, real vs generated"))
        if "memorization" in res.details:
            _save_pairs(tmp / "closest_pairs.png", res.details["memorization"], real, fake)
            _save_nn_hist(tmp / "memorization.png", res.details["memorization"])
            plots += [
                ("closest_pairs.png", "16 closest generated/training pairs"),
                ("memorization.png", "nearest-neighbour distances"),
            ]
        doc["plots"] = [p for p, _ in plots]
        write_json(tmp / "metrics.json", doc)
        (tmp / "report.html").write_text(_html(doc, plots), encoding="utf-8")
    return doc
