"""The morphology metric: per-property W1 between real and generated galaxies beside its matched floor, per band too."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import numpy as np

from astrogan.metrics.bands import PerBandMetric, band_table
from astrogan.metrics.base import Context, Row
from astrogan.metrics.distances import compare_properties, mean_distance
from astrogan.metrics.morphology.measure import COMPARED_PROPERTIES, PROPERTIES, MorphologyResult


def _measure(images: np.ndarray, engine: str, num_workers: int | None) -> MorphologyResult:
    if engine == "statmorph":
        from astrogan.metrics.morphology.statmorph import measure_morphology_statmorph

        return measure_morphology_statmorph(images, num_workers=num_workers)
    from astrogan.metrics.morphology.measure import measure_morphology

    return measure_morphology(images)


def _combined(images: np.ndarray, ctx: Context) -> np.ndarray:
    """What the combined figure measures: the picture's luminance; for science data the mean of the bands."""
    if ctx.science is not None and images.shape[-1] == 3:  # g, r, i are no R, G, B: no luminance weights
        return images.mean(axis=-1, keepdims=True)
    return images  # `luminance` takes the mean of any band count but 3


def shared_morphology(ctx: Context) -> tuple[MorphologyResult, MorphologyResult]:
    """(real, generated) morphology of the context, measured once (the real side cached on disk)."""

    def both() -> tuple[MorphologyResult, MorphologyResult]:
        params: dict[str, Any] = {**ctx.base, "engine": ctx.morphology_engine}
        if ctx.science is not None and ctx.real.shape[-1] == 3:
            params["combine"] = "mean"
        ra = ctx.cache.get(
            "morphology",
            params,
            lambda: _measure(_combined(ctx.real, ctx), ctx.morphology_engine, ctx.num_workers).as_arrays(),
        )
        real = MorphologyResult(values={k: ra[k] for k in PROPERTIES}, flag=ra["flag"])
        return real, _measure(_combined(ctx.fake, ctx), ctx.morphology_engine, ctx.num_workers)

    return ctx.shared("morphology", both)


def usable_values(res: MorphologyResult) -> dict[str, np.ndarray]:
    """Per property, the values of galaxies usable for statistics (flag < 2; NaN where not measured)."""
    return {k: v[res.good()] for k, v in res.values.items()}


class MorphologyMetric(PerBandMetric):
    """Morphology of the main galaxy; for multi-band science data also band by band (`PerBandMetric`)."""

    name = "morphology"
    description = "statmorph-style morphology: per-property Wasserstein distance beside its real floor"
    prefix = "morph"

    def compute_one(self, ctx: Context) -> dict[str, Any]:
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

    def combined_how(self, names: list[str]) -> str:
        return f"measured on the mean of bands {', '.join(names)}"

    def scalars_one(self, d: dict[str, Any]) -> dict[str, float]:
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

    def rows_one(self, d: dict[str, Any], ctx: Context, where: str) -> list[Row]:
        s = self.scalars_one(d)
        comp = d["comparisons"]
        nr = min(c.num_real for c in comp.values())
        nf = min(c.num_fake for c in comp.values())
        if where.startswith("band "):
            label = f"morphology W1, {where} (mean of 12 properties)"
        else:
            label = "morphology W1 (mean of 12 properties" + (f", {where})" if where else ")")
        return [
            Row(
                label,
                s["morph_w1_mean"],
                s["morph_floor_w1_mean"],
                "distance between real and generated distributions of Gini, M20, C, A, S, radii, shape and "
                "Sérsic fit, in units of the real spread; the floor is two halves of the real set",
                ctx.counts(nr, nf) + " (fewest measured)",
            )
        ]

    def to_json_one(self, d: dict[str, Any]) -> dict[str, Any]:
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
        if d["only"] is not None:
            _histograms(d, out_dir / "morphology.png", f"band {d['only']}")
            return [("morphology.png", f"morphological properties on band {d['only']}, real vs generated")]
        where = self.combined_how(d["band_names"]) if d["bands"] else ""
        _histograms(d, out_dir / "morphology.png", where)
        out = [
            (
                "morphology.png",
                "morphological properties, real vs generated" + (f" ({where})" if where else ""),
            )
        ]
        if d["bands"]:  # one compact panel: twelve histograms per band would cost seconds each
            _band_ratios(d["bands"], out_dir / "morphology_bands.png")
            out.append(("morphology_bands.png", "per-property distance / floor, each band measured alone"))
        return out

    def section(self, d: dict[str, Any]) -> str:
        def f(v: float) -> str:
            return f"{v:.3g}" if math.isfinite(v) else "n/a"

        rows = "".join(
            f"<tr><td>{html.escape(k)}</td><td>{f(c.w1)}</td><td>{f(c.floor)}</td><td>{f(c.ratio)}</td>"
            f"<td>{c.num_real} ({c.dropped_real} dropped)</td><td>{c.num_fake} ({c.dropped_fake} dropped)</td></tr>"
            for k, c in d["comparisons"].items()
        )
        if d["only"] is not None:
            where = f"Measured on band {d['only']} only (eval --band). "
        elif d["bands"]:
            where = (
                f"The table below is the combined figure, {self.combined_how(d['band_names'])} (their stretched "
                "values); the table after it gives each band measured alone, beside its own floor. "
            )
        else:
            where = ""
        out = (
            f"<h2>Morphology ({html.escape(d['engine'])} engine)</h2><p>{html.escape(where)}Values standardised by "
            "the real set's mean and std; the floor is the distance between halves of the real set, rescaled to "
            "these sample sizes (a perfect generator scores a ratio of about 1). A property a galaxy could not be "
            "measured for (a Sérsic fit on its bounds, a radius beyond the stamp) is dropped for that property "
            "only.</p><table><tr><th>property</th><th>W1</th><th>floor</th><th>ratio</th><th>real used</th>"
            f"<th>generated used</th></tr>{rows}</table>"
        )
        if d["bands"]:
            out += band_table(
                [(name, self.scalars_one(bd)) for name, bd in d["bands"].items()],
                (
                    "morph_w1_mean",
                    "morph_floor_w1_mean",
                    "morph_bad_fraction_real",
                    "morph_bad_fraction_fake",
                ),
                ("W1 (mean of 12 properties)", "floor", "unmeasured real", "unmeasured generated"),
            )
        return out


def _histograms(d: dict[str, Any], path: Path, where: str) -> None:
    """A PNG of the compared properties' histograms, real vs generated, with each W1 and floor."""
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
            for values, label in ((a, "real"), (b, "generated")):
                if values.size:  # a side with no value would be a density of 0/0
                    # Clipped into the end bins, as `plots.save_histogram_panels` does: a few generated values
                    # beyond the 1-99th percentiles (dominated by the reals) left no bar and a 0/0 density.
                    ax.hist(
                        np.clip(values, bins[0], bins[-1]), bins=bins, density=True, alpha=0.5, label=label
                    )
        c = d["comparisons"][k]
        ax.set_title(f"{k}: W1 {c.w1:.3g} (floor {c.floor:.3g})", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    axes.ravel()[0].legend(fontsize=7)
    if where:
        fig.suptitle(where, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _band_ratios(bands: dict[str, dict[str, Any]], path: Path) -> None:
    """One panel: per property, W1 / floor of every band measured alone (1 = as close as real halves)."""
    from astrogan.metrics.plots import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.2))
    x = np.arange(len(COMPARED_PROPERTIES))
    width = 0.8 / max(len(bands), 1)
    for i, (name, d) in enumerate(bands.items()):
        ratios = [d["comparisons"][k].ratio for k in COMPARED_PROPERTIES]
        ax.bar(x + (i - (len(bands) - 1) / 2) * width, ratios, width, label=f"band {name}")
    ax.axhline(1.0, color="0.2", lw=0.8, ls="--")
    ax.set_xticks(x, COMPARED_PROPERTIES, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("W1 / floor")
    ax.set_yscale("log")
    ax.legend(fontsize=7, ncol=min(len(bands), 6))
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
