"""Galaxy morphology: the fast batched engine, its statmorph twin and the morphology metric.

Modules: `measure` (the batched pipeline: segmentation, CAS/Gini-M20, radii, shapes, flags), its
phases `asymmetry` (asymmetry centres in lockstep), `growth` (curves of growth) and `sersic` (batched
2D Sérsic fits); `statmorph` (the reference engine: statmorph itself, in parallel processes);
`metric` (the registered `MorphologyMetric`); and `_reference` (the plain per-galaxy pipeline the
batched one is tested against; private, used only by the tests).

The public names of `measure` are re-exported here, so `from astrogan.metrics.morphology import X`
works for them. Importing this package imports SciPy; `astrogan.metrics` itself imports it only when
a morphology name is used (the registry names `astrogan.metrics.morphology.metric` by string).
"""

from __future__ import annotations

from astrogan.metrics.morphology.measure import (
    COMPARED_PROPERTIES,
    PLAUSIBLE_RANGES,
    PROPERTIES,
    MorphologyResult,
    SegmentationParams,
    background_and_segmentation,
    drop_implausible,
    gini,
    input_quantum,
    luminance,
    m20,
    measure_batch,
    measure_morphology,
    sersic_bn,
    sersic_profile,
)

__all__ = [
    "COMPARED_PROPERTIES",
    "PLAUSIBLE_RANGES",
    "PROPERTIES",
    "MorphologyResult",
    "SegmentationParams",
    "background_and_segmentation",
    "drop_implausible",
    "gini",
    "input_quantum",
    "luminance",
    "m20",
    "measure_batch",
    "measure_morphology",
    "sersic_bn",
    "sersic_profile",
]
