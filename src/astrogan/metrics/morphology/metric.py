"""The morphology metric: per-property W1 between real and generated galaxies beside its matched floor."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import numpy as np

from astrogan.metrics.base import Context, Metric, Row
from astrogan.metrics.distances import compare_properties, mean_distance
from astrogan.metrics.morphology.measure import COMPARED_PROPERTIES, PROPERTIES, MorphologyResult


def _measure(images: np.ndarray, engine: str, num_workers: int | None) -> MorphologyResult:
    if engine == "statmorph":
        from astrogan.metrics.morphology.statmorph import measure_morphology_statmorph

        return measure_morphology_statmorph(images, num_workers=num_workers)
    from astrogan.metrics.morphology.measure import measure_morphology

    return measure_morphology(images)


def shared_morphology(ctx: Context) -> tuple[MorphologyResult, MorphologyResult]:
    """(real, generated) morphology of the context, measured once (the real side cached on disk)."""

    def both() -> tuple[MorphologyResult, MorphologyResult]:
        ra = ctx.cache.get(
            "morphology",
            {**ctx.base, "engine": ctx.morphology_engine},
            lambda: _measure(ctx.real, ctx.morphology_engine, ctx.num_workers).as_arrays(),
        )
        real = MorphologyResult(values={k: ra[k] for k in PROPERTIES}, flag=ra["flag"])
        return real, _measure(ctx.fake, ctx.morphology_engine, ctx.num_workers)

    return ctx.shared("morphology", both)


def usable_values(res: MorphologyResult) -> dict[str, np.ndarray]:
    """Per property, the values of galaxies usable for statistics (flag < 2; NaN where not measured)."""
    return {k: v[res.good()] for k, v in res.values.items()}


class MorphologyMetric(Metric):
    name = "morphology"
    description = "statmorph-style morphology: per-property Wasserstein distance beside its real floor"

    def compute(self, ctx: Context) -> dict[str, Any]:
        real, fake = shared_morphology(ctx)
        rv, fv = usable_values(real), usable_values(fake)
        comp = compare_properties(rv, fv, COMPARED_PROPERTIES, rng_seed=ctx.rng_seed)
        out: dict[str, Any] = {
            "real": real,
            "fake": fake,
            "comparisons": comp,
            "engine": ctx.morphology_engine,
        }
        if ctx.protocol == "holzschuh2022":
            from astrogan.metrics.protocols import holzschuh_morphology_distance

            out["holzschuh2022"] = holzschuh_morphology_distance(rv, fv)
        return out

    def scalars(self, d: dict[str, Any]) -> dict[str, float]:
        comp = d["comparisons"]
        out = {f"morph_w1_{k}": c.w1 for k, c in comp.items()}
        out["morph_w1_mean"] = mean_distance({k: c.w1 for k, c in comp.items()})
        out["morph_floor_w1_mean"] = mean_distance({k: c.floor for k, c in comp.items()})
        out["morph_ratio_mean"] = mean_distance({k: c.ratio for k, c in comp.items()})
        out["morph_bad_fraction_real"] = (
            float(np.mean(d["real"].flag >= 2)) if len(d["real"].flag) else math.nan
        )
        out["morph_bad_fraction_fake"] = (
            float(np.mean(d["fake"].flag >= 2)) if len(d["fake"].flag) else math.nan
        )
        if "holzschuh2022" in d:
            out["holzschuh2022_morph_w1_mean"] = d["holzschuh2022"]["mean"]
        return out

    def rows(self, d: dict[str, Any], ctx: Context) -> list[Row]:
        s = self.scalars(d)
        comp = d["comparisons"]
        nr = min(c.num_real for c in comp.values())
        nf = min(c.num_fake for c in comp.values())
        return [
            Row(
                "morphology W1 (mean of 12 properties)",
                s["morph_w1_mean"],
                s["morph_floor_w1_mean"],
                "distance between real and generated distributions of Gini, M20, C, A, S, radii, shape and "
                "Sérsic fit, in units of the real spread; the floor is two halves of the real set",
                ctx.counts(nr, nf) + " (fewest measured)",
            )
        ]

    def to_json(self, d: dict[str, Any]) -> dict[str, Any]:
        def num(v: float) -> float | None:
            return float(v) if math.isfinite(v) else None

        out = {
            "engine": d["engine"],
            "standardisation": "values standardised by the real set's mean and std before W1",
            "floor": "W1 between halves of the real set, mean of 8 splits, rescaled to the sample sizes",
            "properties": {
                k: {
                    "w1": num(c.w1),
                    "floor": num(c.floor),
                    "ratio": num(c.ratio),
                    "num_real": c.num_real,
                    "num_generated": c.num_fake,
                    "dropped_real": c.dropped_real,
                    "dropped_generated": c.dropped_fake,
                }
                for k, c in d["comparisons"].items()
            },
            "num_flag_bad_real": int((d["real"].flag >= 2).sum()),
            "num_flag_bad_generated": int((d["fake"].flag >= 2).sum()),
        }
        if "holzschuh2022" in d:
            out["holzschuh2022"] = {k: num(v) for k, v in d["holzschuh2022"].items()}
        return out

    def figures(self, d: dict[str, Any], ctx: Context, out_dir: Path) -> list[tuple[str, str]]:
        from astrogan.metrics.plots import pyplot

        plt = pyplot()
        rv, fv = usable_values(d["real"]), usable_values(d["fake"])
        n, cols = len(COMPARED_PROPERTIES), 4
        rows = int(math.ceil(n / cols))
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.5 * rows))
        for ax, k in zip(axes.ravel(), COMPARED_PROPERTIES, strict=False):
            a, b = rv[k][np.isfinite(rv[k])], fv[k][np.isfinite(fv[k])]
            both = np.concatenate([a, b])
            if both.size:
                lo, hi = np.percentile(both, [1, 99])
                bins = np.linspace(lo, hi if hi > lo else lo + 1, 30)
                ax.hist(a, bins=bins, density=True, alpha=0.5, label="real")
                ax.hist(b, bins=bins, density=True, alpha=0.5, label="generated")
            c = d["comparisons"][k]
            ax.set_title(f"{k}: W1 {c.w1:.3g} (floor {c.floor:.3g})", fontsize=8)
            ax.tick_params(labelsize=7)
        for ax in axes.ravel()[n:]:
            ax.axis("off")
        axes.ravel()[0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out_dir / "morphology.png", dpi=100)
        plt.close(fig)
        return [("morphology.png", "morphological properties, real vs generated")]

    def section(self, d: dict[str, Any]) -> str:
        def f(v: float) -> str:
            return f"{v:.3g}" if math.isfinite(v) else "n/a"

        rows = "".join(
            f"<tr><td>{html.escape(k)}</td><td>{f(c.w1)}</td><td>{f(c.floor)}</td><td>{f(c.ratio)}</td>"
            f"<td>{c.num_real} ({c.dropped_real} dropped)</td><td>{c.num_fake} ({c.dropped_fake} dropped)</td></tr>"
            for k, c in d["comparisons"].items()
        )
        return (
            f"<h2>Morphology ({html.escape(d['engine'])} engine)</h2><p>Values standardised by the real set's "
            "mean and std; the floor is the distance between halves of the real set, rescaled to these sample "
            "sizes (a perfect generator scores a ratio of about 1). A property a galaxy could not be measured "
            "for (a Sérsic fit on its bounds, a radius beyond the stamp) is dropped for that property only."
            "</p><table><tr><th>property</th><th>W1</th><th>floor</th><th>ratio</th><th>real used</th>"
            f"<th>generated used</th></tr>{rows}</table>"
        )
