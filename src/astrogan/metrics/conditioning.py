"""The closed-loop conditioning metric: the physical conditions a generator was asked for against what
the morphology engine measures on its images, beside the same figures for real images (the floor).

A generator conditioned on, say, Sérsic index and half-light radius is only as good as its images are
at the asked values. Every generated image is measured with the morphology engine (on its luminance
for RGB, else the band mean, as the morphology metric does); per condition column this reports the Spearman rank
correlation and the median absolute and relative error between asked and measured. The real images,
measured the same way against their true parameters, give the floor: PSF, noise, stretch and the
engine's own biases put it below a perfect 1 / above 0, and a perfect generator reaches it, not more.
Images whose measurement failed (flag 2) or whose value is not a measurement (a Sérsic fit on its
bound) are dropped for that column and counted.

`closed_loop` is the plain function (benches call it on arrays; JSON-able figures back),
`measure_conditions` the measured values alone, `agreements` the same as objects that keep the values
for plots; `ConditioningMetric` is the registered metric (`--metrics conditioning`), reading
`Context.cond_spec`, `real_cond` and `fake_cond`.

With a PSF (`psf=`: a spec string such as `moffat:fwhm=2.0,beta=3.0`, or a kernel at the fit's
oversampled scale; `Context.psf` for the metric) the Sérsic columns (n, circularised half-light radius,
axis ratio, ellipticity) come from `morphology.psf_fit.fit_sersic_psf` instead, a 2D Sérsic fit convolved
with that PSF: the engine's fit has none, so the PSF's flattened core and rounded shape read as a lower n
and a higher q (on `synth_sersic`'s 64 px stamps, 1 <= n <= 4, the floor's Spearman for n / radius / q
goes from 0.79 / 0.93 / 0.84 to 0.90 / 0.90 / 0.94, and to 0.92 / 0.94 / 0.94 with `truncate=4`, the
stamps' own truncation). `psf=None` keeps the engine.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from astrogan.metrics.base import Context, Metric, MetricSkipped, Row
from astrogan.utils.errors import UserError

if TYPE_CHECKING:
    from astrogan.conditions import CondSpec
    from astrogan.metrics.morphology.measure import MorphologyResult

#: A PSF for the PSF-aware fit: a spec string or a kernel array (see `morphology.psf_fit`).
PSF = np.ndarray | str | None

__all__ = [
    "MEASUREMENTS",
    "Agreement",
    "ConditioningMetric",
    "agreements",
    "closed_loop",
    "measure_conditions",
    "measurement_for",
]

# The shape of a galaxy: the Sérsic fit's own ellipticity where the engine reports it, else the
# second-moment ellipticity of the segmented light (1 - b/a about the centroid; the PSF makes small
# galaxies look rounder, which the real floor shows).
_ELLIP_SOURCES = ("sersic_ellip", "ellipticity")


def _ellip_source(values: Mapping[str, np.ndarray]) -> str:
    return next(k for k in _ELLIP_SOURCES if k in values)


def _ellip(values: Mapping[str, np.ndarray]) -> np.ndarray:
    return np.asarray(values[_ellip_source(values)], dtype=np.float64)


def _circular_rhalf(values: Mapping[str, np.ndarray]) -> np.ndarray:
    # The engine's Sérsic r_eff (astropy's Sersic2D, as statmorph) is the semi-major axis a; GalSim's
    # half_light_radius sheared with shear(q=...) keeps the area, so it is the circularised sqrt(a b)
    # = a sqrt(1 - e). On real Sérsic stamps this gives a near-identity relation (the semi-major
    # value is ~1.4x the asked one).
    e = _ellip(values)
    return np.asarray(values["sersic_rhalf"], dtype=np.float64) * np.sqrt(np.clip(1.0 - e, 0.0, 1.0))


@dataclass(frozen=True)
class Measurement:
    """How the morphology engine measures one kind of condition column.

    aliases: the column names it answers to (lower case); unit: the unit a column must be in ("px" for
    lengths, "" for a pure number); measured_as: how the value is read, `{ellip}` standing for the
    ellipticity property used; derive: the engine's values (name -> `(N,)`) -> the measured `(N,)`;
    psf_measured_as: how it is read from the PSF-aware fit (whose values `_psf_morphology` gives in the
    engine's names, so `derive` serves both)."""

    aliases: tuple[str, ...]
    quantity: str
    unit: str
    measured_as: str
    derive: Callable[[Mapping[str, np.ndarray]], np.ndarray]
    psf_measured_as: str = ""

    def describe(self, values: Mapping[str, np.ndarray]) -> str:
        """`measured_as` with the ellipticity property the engine's values provide."""
        return self.measured_as.format(ellip=_ellip_source(values))


#: Every column the engine can measure, with its aliases: the one table to extend.
MEASUREMENTS: tuple[Measurement, ...] = (
    Measurement(
        ("sersic_n",),
        "Sérsic index",
        "",
        "sersic_n (2D Sérsic fit)",
        lambda v: np.asarray(v["sersic_n"], dtype=np.float64),
        "sersic_n (2D Sérsic fit convolved with the PSF)",
    ),
    Measurement(
        ("half_light_radius_px", "hlr_px", "r_half_px"),
        "circularised half-light radius",
        "px",
        "sersic_rhalf * sqrt(1 - {ellip}) (2D Sérsic fit, semi-major axis circularised)",
        _circular_rhalf,
        "circularised r_eff = sqrt(a b) (2D Sérsic fit convolved with the PSF)",
    ),
    Measurement(
        ("q", "axis_ratio"),
        "axis ratio b/a",
        "",
        "1 - {ellip}",
        lambda v: 1.0 - _ellip(v),
        "b/a (2D Sérsic fit convolved with the PSF)",
    ),
    Measurement(
        ("ellipticity",),
        "ellipticity 1 - b/a",
        "",
        "{ellip}",
        _ellip,
        "1 - b/a (2D Sérsic fit convolved with the PSF)",
    ),
)
_BY_NAME = {alias: m for m in MEASUREMENTS for alias in m.aliases}
_KNOWN = ", ".join(a for m in MEASUREMENTS for a in m.aliases)


def measurement_for(name: str, unit: str | None = None) -> tuple[Measurement | None, str]:
    """The measurement of column `name` (in `unit`, when known) and "", or None and why not."""
    m = _BY_NAME.get(name.strip().lower())
    if m is None:
        return (
            None,
            f"not measurable: the morphology engine has no measurement for {name!r} (it has {_KNOWN})",
        )
    if m.unit and unit is not None and unit != m.unit:
        return None, f"not measurable: {name} is in {unit or 'no unit'}, the engine measures {m.unit}"
    return m, ""


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation; NaN for fewer than 3 pairs or a constant side."""
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


@dataclass
class Agreement:
    """Asked against measured for one condition column of one image set.

    asked, measured: `(num_used,)` the images kept; num_dropped: images left out (failed measurement,
    flag 2, or a value that is not a measurement, e.g. a Sérsic fit on its bound); num_flagged: those
    of them with flag 2. measured_as is None (and `reason` says why) for a column with no measurement."""

    name: str
    measured_as: str | None
    asked: np.ndarray = field(default_factory=lambda: np.zeros(0))
    measured: np.ndarray = field(default_factory=lambda: np.zeros(0))
    num_dropped: int = 0
    num_flagged: int = 0
    reason: str = ""

    @property
    def measurable(self) -> bool:
        return self.measured_as is not None

    @property
    def num_used(self) -> int:
        return int(self.asked.size)

    @cached_property
    def spearman(self) -> float:
        """Rank correlation of asked and measured (1: the order of the images is kept)."""
        return _spearman(self.asked, self.measured)

    @cached_property
    def median_abs_err(self) -> float:
        """median |measured - asked|, in the column's unit."""
        return float(np.median(np.abs(self.measured - self.asked))) if self.num_used else math.nan

    @cached_property
    def median_rel_err(self) -> float:
        """median |measured - asked| / |asked| over images asked for a non-zero value."""
        nz = self.asked != 0
        if not nz.any():
            return math.nan
        return float(np.median(np.abs(self.measured[nz] - self.asked[nz]) / np.abs(self.asked[nz])))

    @cached_property
    def median_ratio(self) -> float:
        """median measured / asked: the engine's bias (1: none)."""
        nz = self.asked != 0
        return float(np.median(self.measured[nz] / self.asked[nz])) if nz.any() else math.nan

    def to_json(self) -> dict[str, Any]:
        """Plain figures (NaN as None)."""

        def num(v: float) -> float | None:
            return float(v) if math.isfinite(v) else None

        if not self.measurable:
            return {"measurable": False, "reason": self.reason}
        return {
            "measurable": True,
            "measured_as": self.measured_as,
            "spearman": num(self.spearman),
            "median_abs_err": num(self.median_abs_err),
            "median_rel_err": num(self.median_rel_err),
            "median_ratio": num(self.median_ratio),
            "num_used": self.num_used,
            "num_dropped": self.num_dropped,
            "num_flagged": self.num_flagged,
        }


def _measure(images: np.ndarray, engine: str, num_workers: int | None) -> MorphologyResult:
    if engine == "statmorph":
        from astrogan.metrics.morphology.statmorph import measure_morphology_statmorph

        return measure_morphology_statmorph(images, num_workers=num_workers)
    if engine != "fast":
        raise UserError(f"unknown morphology engine {engine!r}; use fast or statmorph")
    from astrogan.metrics.morphology.measure import measure_morphology

    return measure_morphology(images)


def _plan(names: Sequence[str], spec: CondSpec | None) -> list[tuple[Measurement | None, str]]:
    """Per column: its measurement (the spec's unit checked, when a spec names the column) or why none."""
    units = [spec.units[spec.names.index(n)] if spec is not None and n in spec.names else None for n in names]
    return [measurement_for(n, u) for n, u in zip(names, units, strict=True)]


def _psf_morphology(images: np.ndarray, psf: PSF, truncate: float | None = None) -> MorphologyResult:
    """The PSF-aware Sérsic fit of `images` `(N, H, W[, C])` (on the luminance / band mean, as the engine)
    in the engine's names: sersic_n, sersic_rhalf (semi-major), sersic_ellip (1 - q); flag 2 where the
    fit is not a measurement (no galaxy, or a parameter on its bound). truncate: see `fit_sersic_psf`."""
    from astrogan.metrics.morphology.measure import MorphologyResult, luminance
    from astrogan.metrics.morphology.psf_fit import fit_sersic_psf

    fit = fit_sersic_psf(luminance(np.asarray(images)), psf, truncate=truncate)
    values = {"sersic_n": fit["n"], "sersic_rhalf": fit["r_eff_major"], "sersic_ellip": 1.0 - fit["q"]}
    return MorphologyResult(values=values, flag=fit["flag"])


def _morphology(
    images: np.ndarray | None,
    num: int | None,
    morphology: MorphologyResult | None,
    engine: str,
    num_workers: int | None,
    psf: PSF = None,
    truncate: float | None = None,
) -> MorphologyResult:
    """The given morphology, or that of `images` measured now (the PSF-aware fit with a `psf`); its length
    checked against `num` rows."""
    if psf is not None:
        if images is None:
            raise UserError("the PSF-aware Sérsic fit needs the images, not only their morphology")
        morphology = _psf_morphology(images, psf, truncate)
    if morphology is None:
        if images is None:
            raise UserError("pass the images or their morphology")
        morphology = _measure(np.asarray(images), engine, num_workers)
    if num is not None and len(morphology.flag) != num:
        raise UserError(f"{len(morphology.flag)} images but {num} rows of asked conditions")
    return morphology


def _measured_columns(
    plan: Sequence[tuple[Measurement | None, str]], morphology: MorphologyResult, psf_aware: bool = False
) -> tuple[np.ndarray, list[str | None]]:
    """(N, K) measured values (NaN: flag 2, not a measurement, or a column with no measurement) and, per
    column, how it was measured (None: not measurable); psf_aware: `morphology` is `_psf_morphology`'s."""
    values, good = morphology.values, np.asarray(morphology.flag) < 2
    out = np.full((len(good), len(plan)), np.nan)
    how: list[str | None] = []
    for j, (m, _) in enumerate(plan):
        how.append(None if m is None else m.psf_measured_as if psf_aware else m.describe(values))
        if m is not None:
            with np.errstate(invalid="ignore"):
                out[:, j] = np.where(good, m.derive(values), np.nan)
    return out, how


def measure_conditions(
    images: np.ndarray | None,
    names: Sequence[str],
    *,
    spec: CondSpec | None = None,
    morphology: MorphologyResult | None = None,
    engine: str = "fast",
    num_workers: int | None = None,
    psf: PSF = None,
    truncate: float | None = None,
) -> np.ndarray:
    """What the morphology engine measures of each condition column on each image: float64 `(N, K)`.

    images: `(N, H, W[, C])` uint8 or float (or None with `morphology`, the engine's result for them);
    names: the K column names; psf: measure with the PSF-aware Sérsic fit instead (needs the images;
    truncate: its profile's truncation radius in half-light radii, see `fit_sersic_psf`).
    NaN where the measurement failed (flag 2), is not a measurement (a Sérsic fit on its bound) or the
    column has no measurement (see `MEASUREMENTS`)."""
    plan = _plan([str(n) for n in names], spec)
    if images is not None and all(m is None for m, _ in plan) and (morphology is None or psf is not None):
        return np.full((len(images), len(plan)), np.nan)
    morph = _morphology(images, None, morphology, engine, num_workers, psf, truncate)
    return _measured_columns(plan, morph, psf is not None)[0]


def agreements(
    asked: np.ndarray,
    images: np.ndarray | None,
    names: Sequence[str],
    *,
    spec: CondSpec | None = None,
    morphology: MorphologyResult | None = None,
    engine: str = "fast",
    num_workers: int | None = None,
    psf: PSF = None,
    truncate: float | None = None,
) -> dict[str, Agreement]:
    """`closed_loop` as objects that keep the kept images' asked and measured values (for plots)."""
    names = [str(n) for n in names]
    a = np.asarray(asked, dtype=np.float64)
    if a.ndim == 1 and len(names) == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[1] != len(names):
        raise UserError(f"asked conditions must be (N, {len(names)}) for columns {names}, got {a.shape}")
    plan = _plan(names, spec)
    if all(m is None for m, _ in plan):  # nothing to measure: no images needed
        return {n: Agreement(n, None, reason=why) for n, (_, why) in zip(names, plan, strict=True)}
    morph = _morphology(images, len(a), morphology, engine, num_workers, psf, truncate)
    measured, how = _measured_columns(plan, morph, psf is not None)
    num_flagged = int((np.asarray(morph.flag) >= 2).sum())
    out = {}
    for j, (n, (_, why)) in enumerate(zip(names, plan, strict=True)):
        if how[j] is None:
            out[n] = Agreement(n, None, reason=why)
            continue
        keep = np.isfinite(measured[:, j]) & np.isfinite(a[:, j])
        out[n] = Agreement(
            n,
            how[j],
            asked=a[keep, j].copy(),
            measured=measured[keep, j].copy(),
            num_dropped=int((~keep).sum()),
            num_flagged=num_flagged,
        )
    return out


def closed_loop(
    asked: np.ndarray,
    images: np.ndarray | None,
    names: Sequence[str],
    *,
    spec: CondSpec | None = None,
    morphology: MorphologyResult | None = None,
    engine: str = "fast",
    num_workers: int | None = None,
    psf: PSF = None,
    truncate: float | None = None,
) -> dict[str, dict[str, Any]]:
    """Asked vs measured, per condition column: {name: plain JSON-able figures}.

    asked: `(N, K)` the values image i was made at (or, for real images, its true values), in the
    columns' units with lengths in pixels of these images; images: `(N, H, W[, C])` uint8 or float
    (measured on the luminance / band mean, as the morphology metric does); names: the K column names
    (aliases in `MEASUREMENTS`); spec: the columns' CondSpec, whose units are checked (a length must be
    in px); morphology: the engine's result for these images, when measured already (then `images` may
    be None); psf: the images' PSF (a spec string such as `moffat:fwhm=2.0,beta=3.0` or a kernel, see
    `morphology.psf_fit`): the Sérsic columns then come from a 2D Sérsic fit convolved with it (needs the
    images; `morphology` is not used); truncate: that fit's profile truncated at this many half-light
    radii (4 for `synth_sersic`'s stamps, whose half-light radius is the truncated profile's; None: not
    truncated, which reads their radius ~1.1-1.3x high for n >= 2). Each measurable column gets
    `measured_as`, `spearman`, `median_abs_err`, `median_rel_err`, `median_ratio` (measured / asked),
    `num_used`, `num_dropped`, `num_flagged` (NaN figures as None); the others
    `{"measurable": False, "reason": ...}`.
    """
    res = agreements(
        asked,
        images,
        names,
        spec=spec,
        morphology=morphology,
        engine=engine,
        num_workers=num_workers,
        psf=psf,
        truncate=truncate,
    )
    return {n: a.to_json() for n, a in res.items()}


def _key(name: str) -> str:
    """A column name as it appears in scalar names (`cond_<key>_spearman`)."""
    return re.sub(r"\W+", "_", name).strip("_").lower() or "column"


def _nanmean(values: Sequence[float]) -> float:
    vals = [v for v in values if math.isfinite(v)]
    return float(np.mean(vals)) if vals else math.nan


def _measured_with(d: dict[str, Any]) -> str:
    """How the metric measured, in words: 'a Sérsic fit convolved with PSF, truncated at 4 r_e' or the engine."""
    if d.get("psf") is None:
        return f"the {d['engine']} morphology engine, no PSF"
    t = d.get("sersic_truncate")
    cut = f"truncated at {t:g} r_e" if t is not None else "untruncated"
    return f"a Sérsic fit convolved with the PSF {d['psf']}, {cut}"


class ConditioningMetric(Metric):
    name = "conditioning"
    description = "closed loop: conditions asked of a conditional generator vs measured on its images"

    def compute(self, ctx: Context) -> dict[str, Any]:
        spec = ctx.cond_spec
        if spec is None or ctx.fake_cond is None:
            raise MetricSkipped(
                "conditioning skipped: no physical conditions given for the generated images "
                "(pass cond_spec and fake_cond; an unconditional generator has none)"
            )
        plan = {n: measurement_for(n, u) for n, u in zip(spec.names, spec.units, strict=True)}
        if all(m is None for m, _ in plan.values()):
            raise MetricSkipped(
                f"conditioning skipped: none of the columns {', '.join(spec.names)} can be measured on an "
                f"image (measurable: {_KNOWN})"
            )
        generated, real = self._generated_and_real(ctx, spec, ctx.fake_cond)
        grid = None
        if ctx.grid is not None:  # measured here: no other metric looks at the grid set
            images, asked = ctx.grid
            grid = agreements(
                asked,
                images,
                spec.names,
                spec=spec,
                engine=ctx.morphology_engine,
                num_workers=ctx.num_workers,
                psf=ctx.psf,
                truncate=ctx.sersic_truncate,
            )
        return {
            "names": list(spec.names),
            "units": list(spec.units),
            "generated": generated,
            "real": real,
            "grid": grid,
            "engine": ctx.morphology_engine,
            "psf": ctx.psf,
            "sersic_truncate": ctx.sersic_truncate if ctx.psf is not None else None,
        }

    @staticmethod
    def _generated_and_real(
        ctx: Context, spec: CondSpec, fake_cond: np.ndarray
    ) -> tuple[dict[str, Agreement], dict[str, Agreement] | None]:
        """The agreements of the generated and (with true values) real images: from the shared morphology,
        or with `ctx.psf` from the PSF-aware fit of the same planes the morphology metric measures."""
        from astrogan.metrics.morphology.metric import _combined, shared_morphology

        if ctx.psf is not None:

            def fitted(asked: np.ndarray, images: np.ndarray) -> dict[str, Agreement]:
                psf, cut = ctx.psf, ctx.sersic_truncate
                return agreements(asked, _combined(images, ctx), spec.names, spec=spec, psf=psf, truncate=cut)

            generated = fitted(fake_cond, ctx.fake)
            return generated, None if ctx.real_cond is None else fitted(ctx.real_cond, ctx.real)
        real_m, fake_m = shared_morphology(ctx)
        generated = agreements(fake_cond, None, spec.names, spec=spec, morphology=fake_m)
        if ctx.real_cond is None:
            return generated, None
        return generated, agreements(ctx.real_cond, None, spec.names, spec=spec, morphology=real_m)

    @staticmethod
    def _measured(d: dict[str, Any]) -> list[str]:
        return [n for n in d["names"] if d["generated"][n].measurable]

    def scalars(self, d: dict[str, Any]) -> dict[str, float]:
        out: dict[str, float] = {}
        gen, real = d["generated"], d["real"]
        for n in self._measured(d):
            k, g = _key(n), gen[n]
            out[f"cond_{k}_spearman"] = g.spearman
            out[f"cond_{k}_median_abs_err"] = g.median_abs_err
            out[f"cond_{k}_median_rel_err"] = g.median_rel_err
            out[f"cond_{k}_dropped_fraction"] = g.num_dropped / max(g.num_dropped + g.num_used, 1)
            if real is not None:
                r = real[n]
                out[f"cond_{k}_floor_spearman"] = r.spearman
                out[f"cond_{k}_floor_median_abs_err"] = r.median_abs_err
                out[f"cond_{k}_floor_median_rel_err"] = r.median_rel_err
            if d.get("grid") is not None:
                out[f"cond_{k}_grid_spearman"] = d["grid"][n].spearman
                out[f"cond_{k}_grid_median_rel_err"] = d["grid"][n].median_rel_err
        names = self._measured(d)
        out["cond_spearman_mean"] = _nanmean([gen[n].spearman for n in names])
        out["cond_median_rel_err_mean"] = _nanmean([gen[n].median_rel_err for n in names])
        if real is not None:
            out["cond_floor_spearman_mean"] = _nanmean([real[n].spearman for n in names])
            out["cond_floor_median_rel_err_mean"] = _nanmean([real[n].median_rel_err for n in names])
        return out

    def rows(self, d: dict[str, Any], ctx: Context) -> list[Row]:
        gen, real = d["generated"], d["real"]
        names = self._measured(d)
        floor_note = (
            "the floor is the same figure for real images against their true values (it includes what their "
            "noise pulls the fit by, which a locked Sérsic-prior generator, prior_lock, takes out of its images: "
            "those can measure below it)"
            if real is not None
            else "no floor: the real images' true values were not given"
        )

        def counts(ns: Sequence[str]) -> str:
            nf = min(gen[n].num_used for n in ns)
            nr = min(real[n].num_used for n in ns) if real is not None else len(ctx.real)
            return ctx.counts(nr, nf) + " (fewest measured)"

        rows = [
            Row(
                f"conditioning {n}: median relative error",
                gen[n].median_rel_err,
                real[n].median_rel_err if real is not None else None,
                f"median |measured - asked| / asked, measured as {gen[n].measured_as} on each generated "
                f"image, asked the {n} it was generated at; lower is better; {floor_note}",
                counts([n]),
            )
            for n in names
        ]
        s = self.scalars(d)
        rows.append(
            Row(
                f"conditioning rank correlation (mean of {len(names)})",
                s["cond_spearman_mean"],
                s.get("cond_floor_spearman_mean"),
                "Spearman correlation of asked and measured conditions, averaged over the measurable "
                f"columns; 1 keeps the order of the images, 0 ignores the condition; higher is better; "
                f"{floor_note}",
                counts(names),
                lower_is_better=False,
            )
        )
        return rows

    def to_json(self, d: dict[str, Any]) -> dict[str, Any]:
        real = d["real"]
        return {
            "engine": d["engine"],
            "psf": d.get("psf"),
            "sersic_truncate": d.get("sersic_truncate"),
            "measured_with": _measured_with(d),
            "floor": "the same figures for the real images against their true values"
            if real is not None
            else None,
            "columns": {
                n: {
                    "unit": u,
                    "generated": d["generated"][n].to_json(),
                    "real": real[n].to_json() if real is not None else None,
                    "grid": d["grid"][n].to_json() if d.get("grid") is not None else None,
                }
                for n, u in zip(d["names"], d["units"], strict=True)
            },
            "not_measurable": {
                n: d["generated"][n].reason for n in d["names"] if not d["generated"][n].measurable
            },
        }

    def figures(self, d: dict[str, Any], ctx: Context, out_dir: Path) -> list[tuple[str, str]]:
        from astrogan.metrics.plots import Series, save_scatter_panels

        gen, real = d["generated"], d["real"]
        panels = []
        for n, u in zip(d["names"], d["units"], strict=True):
            g = gen[n]
            if not g.measurable:
                continue
            series = [Series(g.asked, g.measured, "generated", "C0")]
            if d.get("grid") is not None and d["grid"][n].measurable:
                series.append(Series(d["grid"][n].asked, d["grid"][n].measured, "grid", "C2"))
            title = f"{n}: Spearman {g.spearman:.2f}"
            if real is not None:
                series.insert(0, Series(real[n].asked, real[n].measured, "real (floor)", "C1"))
                title += f" (real {real[n].spearman:.2f})"
            unit = f" [{u}]" if u else ""
            panels.append((title, f"asked{unit}", f"measured{unit}", series))
        save_scatter_panels(out_dir / "conditioning.png", panels)
        return [
            ("conditioning.png", "conditions asked vs measured: generated images, and real images (floor)")
        ]

    def section(self, d: dict[str, Any]) -> str:
        def f(v: float) -> str:
            return f"{v:.3g}" if math.isfinite(v) else "n/a"

        gen, real = d["generated"], d["real"]
        rows = []
        for n in self._measured(d):
            g = gen[n]
            r = real[n] if real is not None else None

            def pair(attr: str, g: Agreement = g, r: Agreement | None = r) -> str:
                floor = f(getattr(r, attr)) if r is not None else "n/a"
                return f"<td>{f(getattr(g, attr))}</td><td>{floor}</td>"

            used_r = f"{r.num_used} ({r.num_dropped} dropped)" if r is not None else "n/a"
            rows.append(
                f"<tr><td>{html.escape(n)}</td><td>{html.escape(g.measured_as or '')}</td>"
                f"{pair('spearman')}{pair('median_abs_err')}{pair('median_rel_err')}{pair('median_ratio')}"
                f"<td>{g.num_used} ({g.num_dropped} dropped)</td><td>{html.escape(used_r)}</td></tr>"
            )
        skipped = "".join(
            f"<li>{html.escape(n)}: {html.escape(gen[n].reason)}</li>"
            for n in d["names"]
            if not gen[n].measurable
        )
        floor = (
            "The floor is the same figure for the real images against their true values: what the engine "
            "itself gets wrong (PSF, noise, stretch), and so the best a generator can score."
            if real is not None
            else "No floor: the real images' true values were not given."
        )
        return (
            f"<h2>Conditioning (closed loop)</h2><p>Measured with {html.escape(_measured_with(d))}. Each generated "
            "image is measured and compared with the conditions it was asked for. Spearman: rank correlation "
            "(higher is better); errors: medians of |measured - asked| and of that over asked (lower is "
            f"better); ratio: median measured / asked (1: no bias). {floor} Images whose measurement failed "
            "(flag 2) or whose fit ended on a bound are dropped for that column.</p>"
            "<table><tr><th>condition</th><th>measured as</th><th>Spearman</th><th>floor</th>"
            "<th>median abs err</th><th>floor</th><th>median rel err</th><th>floor</th><th>ratio</th>"
            "<th>floor</th><th>generated used</th><th>real used</th></tr>"
            f"{''.join(rows)}</table>"
            + self._grid_note(d)
            + (f"<p>Not measured:</p><ul>{skipped}</ul>" if skipped else "")
        )

    def _grid_note(self, d: dict[str, Any]) -> str:
        """One line on the regular-grid set (conditions spread evenly over the trained ranges), if any."""
        grid = d.get("grid")
        if grid is None:
            return ""
        parts = [
            f"{html.escape(n)}: Spearman {grid[n].spearman:.3g}, median rel err {grid[n].median_rel_err:.3g} "
            f"({grid[n].num_used} used)"
            for n in self._measured(d)
            if grid[n].measurable
        ]
        return (
            "<p>On a regular grid over the trained ranges (every combination, green in the plot): "
            + "; ".join(parts)
            + ".</p>"
        )
