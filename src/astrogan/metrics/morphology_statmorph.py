"""The reference morphology engine: statmorph (Rodriguez-Gomez et al. 2019) run in parallel processes.

Uses the same sky subtraction and main-source segmentation as the fast engine, so that the two
engines differ only in the measurements; returns the same `MorphologyResult`.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from astrogan.metrics.morphology import (
    PROPERTIES,
    MorphologyResult,
    SegmentationParams,
    background_and_segmentation,
    drop_implausible,
    input_quantum,
    luminance,
)

_NAME_MAP = {
    "ellipticity": "ellipticity_centroid",
    "elongation": "elongation_centroid",
    "orientation": "orientation_centroid",
}
_SERSIC = ("sersic_n", "sersic_rhalf")


def measure_one_statmorph(img: np.ndarray, seg: np.ndarray, sigma: float) -> tuple[dict[str, float], int]:
    """statmorph on one sky-subtracted image with its main-source mask -> (values, flag)."""
    import statmorph

    rec = {k: float("nan") for k in PROPERTIES}
    if not seg.any():
        return rec, 2
    weight = np.full(img.shape, max(float(sigma), 1e-6))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            m = statmorph.SourceMorphology(img, seg.astype(np.int32), 1, weightmap=weight)
            for k in PROPERTIES:
                v = float(getattr(m, _NAME_MAP.get(k, k)))
                rec[k] = np.nan if v == -99.0 else v
            flag = int(m.flag)
            if int(getattr(m, "flag_sersic", 0)) >= 2:
                rec["sersic_n"] = rec["sersic_rhalf"] = float("nan")
        except Exception:  # statmorph raises on degenerate sources: that is a bad flag, not a crash
            return rec, 2
    return rec, flag


def _worker(args: tuple[np.ndarray, np.ndarray, float]) -> tuple[dict[str, float], int]:
    return measure_one_statmorph(*args)


def measure_morphology_statmorph(
    images: np.ndarray, *, num_workers: int | None = None, params: SegmentationParams | None = None
) -> MorphologyResult:
    """statmorph over a batch `(N,H,W[,C])` in `num_workers` processes (default: all CPUs)."""
    lum = luminance(images)
    img, _, sigma, seg = background_and_segmentation(lum, params=params, quantum=input_quantum(images))
    n = lum.shape[0]
    jobs = [(img[i], seg[i], float(sigma[i])) for i in range(n)]
    workers = num_workers or os.cpu_count() or 1
    if workers <= 1 or n <= 1:
        results = [_worker(j) for j in jobs]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_worker, jobs, chunksize=max(1, n // (4 * workers))))
    values = {k: np.array([r[0][k] for r in results], dtype=np.float64) for k in PROPERTIES}
    drop_implausible(values, diag_px=float(np.hypot(*lum.shape[1:])))
    flags = np.array([r[1] for r in results], dtype=np.int8)
    return MorphologyResult(values=values, flag=flags)
