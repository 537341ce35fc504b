"""Metrics of generated sky images: FID/KID, power spectra, galaxy morphology (per band for science data),
colours, precision/recall and density/coverage, memorization, and (for conditional generators)
asked-vs-measured conditions; each figure beside its real-data floor.

`METRICS` is the registry: a name, what it reports, and where its `Metric` class lives (imported only
when the metric runs, so `import astrogan.metrics` stays light). Adding a metric is one class in its
family's module plus one line here; see `astrogan.metrics.base`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MetricSpec:
    """One metric family: its name, what it reports, whether it needs the Inception weights, its class."""

    name: str
    description: str
    impl: str  # "module:Class"
    needs_inception: bool = False
    # Generated images `eval` draws by default when this metric is asked for (the largest asked wins):
    # FID is biased by sample size, so it keeps the field's usual 5,000; the others are stable at 1,000.
    num_generated: int = 1000

    def load(self) -> Any:
        """A fresh instance of the metric's class."""
        module, cls = self.impl.split(":")
        return getattr(importlib.import_module(module), cls)()


METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec(
            "fid",
            "Fréchet Inception Distance (2048-d pool features)",
            "astrogan.metrics.fid:FIDMetric",
            True,
            num_generated=5000,
        ),
        MetricSpec(
            "kid", "Kernel Inception Distance (unbiased MMD^2)", "astrogan.metrics.fid:KIDMetric", True
        ),
        MetricSpec(
            "spectrum",
            "power spectra: per-bin Wasserstein and ratio",
            "astrogan.metrics.spectrum:SpectrumMetric",
        ),
        MetricSpec(
            "morphology",
            "statmorph-style morphology, per property",
            "astrogan.metrics.morphology.metric:MorphologyMetric",
        ),
        MetricSpec("prdc", "precision/recall and density/coverage", "astrogan.metrics.prdc:PRDCMetric"),
        MetricSpec(
            "memorization",
            "copy ratio against the real images",
            "astrogan.metrics.memorization:MemorizationMetric",
        ),
        MetricSpec(
            "conditioning",
            "closed loop: physical conditions asked of a conditional generator vs measured on its images",
            "astrogan.metrics.conditioning:ConditioningMetric",
        ),
        MetricSpec(
            "colours",
            "galaxy colours of science data (aperture fluxes, stretch undone): per-colour W1, red fraction",
            "astrogan.metrics.colours:ColoursMetric",
        ),
        MetricSpec(
            "composition",
            "category mix (classes or clusters) of generated vs real images, per-category verdicts",
            "astrogan.metrics.composition:CompositionMetric",
        ),
    )
}

DEFAULT_METRICS: tuple[str, ...] = ("fid", "kid", "spectrum", "morphology", "prdc", "memorization")


def default_num_generated(names: list[str]) -> int:
    """How many images `eval` generates by default for these metrics: the most any of them asks for."""
    return max((METRICS[n].num_generated for n in names), default=1000)


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
