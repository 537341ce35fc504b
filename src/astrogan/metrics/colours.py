"""Galaxy colours from aperture fluxes (the stretch undone): real vs generated per colour, beside the real floor.

Photometry, kept simple and robust to noise: each image's fluxes are the data's units again (the
dataset-wide stretch of the science spec undone, `BandStretch.inverse`, the same function
`science.model_to_flux` applies); per band, the flux in a circular aperture of radius
`APERTURE_FRAC` x the stamp side, centred on the stamp (stamps are centred cutouts, and generators learn
that), minus the aperture's area times the sky: the median of the pixels beyond `SKY_FRAC` x the side from
the centre (the corners). A band flux <= 0 (or not finite) gives no magnitude: the galaxy is left out of
every colour that uses that band, and counted.

Colours `a-b = -2.5 log10(F_a / F_b)` for adjacent bands in the spec's order (blue to red, as the build
writes them), plus g-i when the data have g and i (else the widest pair, first - last band). For each colour:
the 1-D Wasserstein
distance (in magnitudes) between the real and generated colours, its real-vs-real floor (two disjoint halves
of the reals, rescaled to the sample sizes: `distances.matched_floor`), their ratio and the medians.

Early and late types (the research seed's check): a galaxy is red (early type) when its g-i (else widest)
colour lies above the median of the real galaxies' one; the real red fraction is then 1/2 by construction and
the figure is |red fraction generated - real|, beside the same difference between halves of the reals.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import wasserstein_distance

from astrogan.metrics.base import Context, Metric, MetricSkipped, Row
from astrogan.metrics.distances import matched_floor_splits
from astrogan.science import ScienceSpec

__all__ = ["APERTURE_FRAC", "SKY_FRAC", "ColoursMetric", "aperture_fluxes", "colour_pairs", "colours_of"]

APERTURE_FRAC = 0.25  # aperture radius / stamp side: a 64 px stamp gets a 16 px radius
SKY_FRAC = 0.45  # pixels farther than this x side from the centre (the corners) measure the sky
NUM_SPLITS = 8  # real halves averaged for the floors, as the other metrics do
_CHUNK = 256  # images unstretched at a time (float64 temporaries stay small)


def _aperture_masks(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """(aperture, sky) boolean masks `(H, W)` for a stamp of this size."""
    yy, xx = np.indices((h, w), dtype=np.float64)
    r = np.hypot(yy - (h - 1) / 2.0, xx - (w - 1) / 2.0)
    side = float(min(h, w))
    return r <= APERTURE_FRAC * side, r > SKY_FRAC * side


def aperture_fluxes(flux: np.ndarray) -> np.ndarray:
    """Sky-subtracted aperture flux per image and band: flux `(N, B, H, W)` -> float64 `(N, B)`.

    Non-finite pixels count as the sky (they add nothing).
    """
    x = np.asarray(flux, dtype=np.float64)
    if x.ndim != 4:
        raise ValueError(f"aperture_fluxes wants (N, B, H, W) fluxes, got shape {x.shape}")
    ap, sky = _aperture_masks(x.shape[2], x.shape[3])
    sky_level = np.nanmedian(np.where(np.isfinite(x[..., sky]), x[..., sky], np.nan), axis=-1)
    sky_level = np.nan_to_num(sky_level, nan=0.0)
    inside = x[..., ap]
    inside = np.where(np.isfinite(inside), inside, sky_level[..., None])
    return inside.sum(axis=-1) - sky_level * float(ap.sum())


def colour_pairs(bands: tuple[str, ...] | list[str]) -> list[tuple[int, int]]:
    """Band index pairs (a, b) of the colours a-b, a the bluer band (`science.blue_to_red`; names it does not
    know keep their given order): neighbours in wavelength, then g-i when the data have g and i (the research
    seed's colour), else the widest pair (bluest - reddest) when not already there. The last pair is the one the
    red/blue split uses."""
    from astrogan.science import blue_to_red

    order = blue_to_red(bands)
    n = len(order)
    pairs = [(order[i], order[i + 1]) for i in range(n - 1)]
    low = [b.lower() for b in bands]
    if "g" in low and "i" in low and low.count("g") == 1 and low.count("i") == 1:
        extra = (low.index("g"), low.index("i"))
    else:
        extra = (order[0], order[-1]) if n else (0, 0)
    if n >= 2 and extra not in pairs:
        pairs.append(extra)
    elif n >= 2:  # already neighbours (g, i with no r between): make it the last, the split's colour
        pairs.remove(extra)
        pairs.append(extra)
    return pairs


def colours_of(fluxes: np.ndarray, pairs: list[tuple[int, int]]) -> np.ndarray:
    """Colours `-2.5 log10(F_a / F_b)` `(N, P)` from fluxes `(N, B)`; NaN where either flux is <= 0 or not finite."""
    f = np.asarray(fluxes, dtype=np.float64)
    ok = np.isfinite(f) & (f > 0)
    mag = np.where(ok, -2.5 * np.log10(np.where(ok, f, 1.0)), np.nan)
    return np.stack([mag[:, a] - mag[:, b] for a, b in pairs], axis=1) if pairs else np.zeros((len(f), 0))


def _fluxes(images: np.ndarray, spec: ScienceSpec) -> np.ndarray:
    """Aperture fluxes `(N, B)` of stretched images `(N, H, W, B)` (uint8 or float in [0, 1]), chunk by chunk."""
    out = []
    for s in range(0, len(images), _CHUNK):
        part = np.asarray(images[s : s + _CHUNK])
        unit = part.astype(np.float64) / 255.0 if part.dtype == np.uint8 else part.astype(np.float64)
        out.append(aperture_fluxes(spec.stretch.inverse(np.moveaxis(unit, -1, 1))))
    return np.concatenate(out) if out else np.zeros((0, spec.num_bands))


@dataclass(frozen=True)
class ColourDistance:
    """One colour: W1 (mag) real vs generated, its floor, the medians and how many galaxies each side used/lost."""

    name: str
    w1: float
    floor: float
    floor_sd: float  # spread of the floor's splits: how much one W1 of these sizes varies by chance
    median_real: float
    median_fake: float
    num_real: int
    num_fake: int
    excluded_real: int
    excluded_fake: int

    @property
    def ratio(self) -> float:
        return self.w1 / self.floor if math.isfinite(self.floor) and self.floor > 0 else math.nan


def _w1(a: np.ndarray, b: np.ndarray) -> float:
    return float(wasserstein_distance(a, b)) if a.size and b.size else math.nan


def _rel(sd: float, floor: float) -> float:
    """sd / floor, NaN where the floor is not positive."""
    return sd / floor if math.isfinite(floor) and floor > 0 else math.nan


def _median(a: np.ndarray) -> float:
    return float(np.median(a)) if a.size else math.nan


def red_fraction_floor(colour: np.ndarray, cut: float, num_fake: int, *, rng_seed: int = 0) -> float:
    """|red fraction (colour > cut) of one half - the other| of the real colours `(N,)`, mean of splits,
    rescaled to a comparison of N real with `num_fake` generated galaxies (as `matched_floor`)."""
    v = colour[np.isfinite(colour)]
    n = v.size
    if n < 4 or num_fake < 1:
        return math.nan
    rng = np.random.default_rng(rng_seed)
    half = n // 2
    scale = math.sqrt((1.0 / n + 1.0 / num_fake) / (2.0 / half))
    diffs = []
    for _ in range(NUM_SPLITS):
        perm = rng.permutation(n)
        diffs.append(
            abs(float(np.mean(v[perm[:half]] > cut)) - float(np.mean(v[perm[half : 2 * half]] > cut)))
        )
    return float(np.mean(diffs)) * scale


class ColoursMetric(Metric):
    """Aperture colours of science images (needs the science spec: band names and the stretch to undo)."""

    name = "colours"
    description = "galaxy colours (aperture photometry, stretch undone): per-colour W1 and red fraction"

    def compute(self, ctx: Context) -> dict[str, Any]:
        spec = ctx.science
        if spec is None:
            raise MetricSkipped(
                "colours: not applicable: these images carry no science spec (band names and the stretch to "
                "undo), so they have no fluxes to form colours from"
            )
        if spec.num_bands < 2:
            raise MetricSkipped(
                f"colours: not applicable: the data have one band ({spec.bands[0]}), no colour"
            )
        fake_spec = ctx.fake_science or spec
        rf = ctx.cache.get(
            "colours",
            {**ctx.base, "stretch": spec.stretch.to_dict(), "aperture": APERTURE_FRAC, "sky": SKY_FRAC},
            lambda: {"flux": _fluxes(ctx.real, spec)},
        )["flux"]
        ff = _fluxes(ctx.fake, fake_spec)
        pairs = colour_pairs(spec.bands)
        rc, fc = colours_of(rf, pairs), colours_of(ff, pairs)
        comps = []
        for p, (a, b) in enumerate(pairs):
            r, f = rc[:, p], fc[:, p]
            rr, ff_ = r[np.isfinite(r)], f[np.isfinite(f)]
            splits = matched_floor_splits(
                rr, ff_.size, num_splits=NUM_SPLITS, rng_seed=ctx.rng_seed, standardise=False
            )
            comps.append(
                ColourDistance(
                    name=f"{spec.bands[a]}-{spec.bands[b]}",
                    w1=_w1(rr, ff_),
                    floor=float(splits.mean()) if splits.size else math.nan,
                    floor_sd=float(splits.std(ddof=1)) if splits.size > 1 else math.nan,
                    median_real=_median(rr),
                    median_fake=_median(ff_),
                    num_real=int(rr.size),
                    num_fake=int(ff_.size),
                    excluded_real=int(r.size - rr.size),
                    excluded_fake=int(f.size - ff_.size),
                )
            )
        wide_r, wide_f = rc[:, -1], fc[:, -1]  # g-i (or the widest pair) is last: the red/blue split's colour
        wr, wf = wide_r[np.isfinite(wide_r)], wide_f[np.isfinite(wide_f)]
        cut = _median(wr)
        red_real = float(np.mean(wr > cut)) if wr.size else math.nan
        red_fake = float(np.mean(wf > cut)) if wf.size else math.nan
        red: dict[str, Any] = {
            "colour": comps[-1].name,
            "cut": cut,
            "real": red_real,
            "fake": red_fake,
            "diff": abs(red_fake - red_real),
            "floor": red_fraction_floor(wr, cut, wf.size, rng_seed=ctx.rng_seed),
        }
        return {
            "bands": list(spec.bands),
            "bunit": spec.bunit,
            "how": spec.stretch.to_dict()["how"],
            "size_px": int(ctx.real.shape[1]),
            "colours": comps,
            "red": red,
            "non_positive_real": {b: int((~(rf[:, i] > 0)).sum()) for i, b in enumerate(spec.bands)},
            "non_positive_fake": {b: int((~(ff[:, i] > 0)).sum()) for i, b in enumerate(spec.bands)},
            "real_colours": rc,
            "fake_colours": fc,
        }

    def scalars(self, d: dict[str, Any]) -> dict[str, float]:
        out: dict[str, float] = {}
        for c in d["colours"]:
            out[f"colour_{c.name}_w1"] = c.w1
            out[f"colour_{c.name}_floor"] = c.floor
            out[f"colour_{c.name}_floor_sd"] = c.floor_sd
            out[f"colour_{c.name}_median_real"] = c.median_real
            out[f"colour_{c.name}_median_fake"] = c.median_fake
        w1 = [c.w1 for c in d["colours"] if math.isfinite(c.w1)]
        floors = [c.floor for c in d["colours"] if math.isfinite(c.floor)]
        out["colours_w1_mean"] = float(np.mean(w1)) if w1 else math.nan
        out["colours_floor_w1_mean"] = float(np.mean(floors)) if floors else math.nan
        red = d["red"]
        out["colours_red_fraction_real"] = red["real"]
        out["colours_red_fraction_fake"] = red["fake"]
        out["colours_red_fraction_diff"] = red["diff"]
        out["colours_red_fraction_floor"] = red["floor"]
        out["colours_excluded_fake"] = float(sum(d["non_positive_fake"].values()))
        return out

    def rows(self, d: dict[str, Any], ctx: Context) -> list[Row]:
        rows = [
            Row(
                f"colour {c.name} W1 (mag)",
                c.w1,
                c.floor,
                f"distance between real and generated distributions of the aperture colour {c.name} "
                f"(median real {c.median_real:.3g}, generated {c.median_fake:.3g} mag); the floor is two halves "
                f"of the real set, +/- {c.floor_sd:.2g} from split to split (one colour's W1 varies that much by "
                f"chance: a ratio within 1 +/- {_rel(c.floor_sd, c.floor):.2g} is as good as the reals)",
                ctx.counts(c.num_real, c.num_fake) + " (flux > 0 in both bands)",
            )
            for c in d["colours"]
        ]
        red = d["red"]
        rows.append(
            Row(
                f"red fraction difference ({red['colour']} > {red['cut']:.3g}, the real median)",
                red["diff"],
                red["floor"],
                f"early (red) vs late (blue) types: {red['fake']:.3g} of the generated galaxies are redder than "
                f"the real median, against {red['real']:.3g} of the real ones; the floor is two halves of the "
                "real set",
                ctx.counts(
                    int(np.isfinite(d["real_colours"][:, -1]).sum()),
                    int(np.isfinite(d["fake_colours"][:, -1]).sum()),
                ),
            )
        )
        return rows

    def to_json(self, d: dict[str, Any]) -> dict[str, Any]:
        def num(v: float) -> float | None:
            return float(v) if math.isfinite(v) else None

        return {
            "bands": d["bands"],
            "bunit": d["bunit"],
            "photometry": {
                "stretch_undone": d["how"],
                "aperture_radius_px": APERTURE_FRAC * d["size_px"],
                "aperture": f"circle of radius {APERTURE_FRAC} x the stamp side, centred on the stamp",
                "sky": f"median of the pixels beyond {SKY_FRAC} x the side from the centre, times the aperture area, "
                "subtracted",
                "colour": "-2.5 log10(F_a / F_b); a galaxy with flux <= 0 in a band is left out of its colours",
            },
            "floor": f"W1 between halves of the real set, mean of {NUM_SPLITS} splits, rescaled to the sample sizes; "
            "floor_sd: the splits' standard deviation (one W1 of these sizes varies that much by chance)",
            "colours": {
                c.name: {
                    "w1_mag": num(c.w1),
                    "floor": num(c.floor),
                    "floor_sd": num(c.floor_sd),
                    "ratio": num(c.ratio),
                    "median_real": num(c.median_real),
                    "median_generated": num(c.median_fake),
                    "num_real": c.num_real,
                    "num_generated": c.num_fake,
                    "excluded_real": c.excluded_real,
                    "excluded_generated": c.excluded_fake,
                }
                for c in d["colours"]
            },
            "red_fraction": {
                "colour": d["red"]["colour"],
                "cut_mag": num(d["red"]["cut"]),
                "cut": "the median of the real galaxies' colour",
                "real": num(d["red"]["real"]),
                "generated": num(d["red"]["fake"]),
                "difference": num(d["red"]["diff"]),
                "floor": num(d["red"]["floor"]),
            },
            "non_positive_flux": {"real": d["non_positive_real"], "generated": d["non_positive_fake"]},
        }

    def figures(self, d: dict[str, Any], ctx: Context, out_dir: Path) -> list[tuple[str, str]]:
        from astrogan.metrics.plots import HistPanel, save_histogram_panels

        panels = [
            HistPanel(
                title=f"{c.name}: W1 {c.w1:.3g} mag (floor {c.floor:.3g})",
                xlabel=f"{c.name} (mag)",
                samples=(("real", d["real_colours"][:, p]), ("generated", d["fake_colours"][:, p])),
                lines=((d["red"]["cut"], "real median"),) if p == len(d["colours"]) - 1 else (),
            )
            for p, c in enumerate(d["colours"])
        ]
        save_histogram_panels(out_dir / "colours.png", panels)
        return [
            (
                "colours.png",
                "aperture colours of real and generated galaxies (the last with the red/blue cut)",
            )
        ]

    def section(self, d: dict[str, Any]) -> str:
        def f(v: float) -> str:
            return f"{v:.3g}" if math.isfinite(v) else "n/a"

        rows = "".join(
            f"<tr><td>{html.escape(c.name)}</td><td>{f(c.w1)}</td><td>{f(c.floor)} ± {f(c.floor_sd)}</td>"
            f"<td>{f(c.ratio)}</td>"
            f"<td>{f(c.median_real)}</td><td>{f(c.median_fake)}</td><td>{c.num_real} ({c.excluded_real} left out)"
            f"</td><td>{c.num_fake} ({c.excluded_fake} left out)</td></tr>"
            for c in d["colours"]
        )
        red = d["red"]
        bad = ", ".join(f"{b} {n}" for b, n in d["non_positive_fake"].items() if n)
        text = (
            f"Fluxes are the data's units ({d['bunit'] or 'no BUNIT recorded'}), the stretch undone. Per band: the "
            f"flux in a circle of radius {APERTURE_FRAC * d['size_px']:.3g} px at the stamp centre, minus the sky "
            "(the median of the corners); colours -2.5 log10(F_a/F_b). A galaxy with flux <= 0 in a band is left "
            "out of that band's colours"
            + (f" (generated, per band: {bad})." if bad else ".")
            + f" Early/late types: {f(red['fake'])} of the generated galaxies have {red['colour']} redder than the "
            f"real median {f(red['cut'])} mag, against {f(red['real'])} of the real ones (difference "
            f"{f(red['diff'])}, floor {f(red['floor'])})."
        )
        return (
            "<h2>Colours</h2><p>"
            + html.escape(text)
            + "</p><table><tr><th>colour</th><th>W1 (mag)</th><th>floor ± split sd</th><th>ratio</th>"
            "<th>median real</th>"
            f"<th>median generated</th><th>real used</th><th>generated used</th></tr>{rows}</table>"
        )
