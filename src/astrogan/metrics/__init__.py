"""Metrics of generated sky images: FID/KID, power spectra, galaxy morphology, distances, memorization.

`METRICS` lists the metric names accepted by `astrogan eval --metrics` and by
`astrogan.metrics.compute.compute_metrics`; heavy modules are imported only when a metric runs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricSpec:
    """One metric family: its name, what it reports, and whether it needs the Inception weights."""

    name: str
    description: str
    needs_inception: bool = False


METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec("fid", "Fréchet Inception Distance (2048-d pool features)", needs_inception=True),
        MetricSpec("kid", "Kernel Inception Distance (unbiased cubic-kernel MMD^2)", needs_inception=True),
        MetricSpec("spectrum", "azimuthally averaged power spectra: ratio and per-bin Wasserstein"),
        MetricSpec("morphology", "statmorph-style morphology: per-property Wasserstein and real floor"),
        MetricSpec("memorization", "nearest training image of each generated image vs held-out reals"),
    )
}

DEFAULT_METRICS: tuple[str, ...] = ("fid", "kid", "spectrum", "morphology", "memorization")


def parse_metric_names(text: str | None) -> list[str]:
    """`"fid,spectrum"` -> ["fid", "spectrum"]; empty -> all; unknown names raise UserError."""
    from astrogan.utils.errors import UserError

    if not text:
        return list(DEFAULT_METRICS)
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in METRICS]
    if bad:
        raise UserError(f"unknown metric {bad[0]!r}; choose from {', '.join(METRICS)}")
    return list(dict.fromkeys(names))
