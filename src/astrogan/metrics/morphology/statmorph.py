"""The reference morphology engine: statmorph (Rodriguez-Gomez et al. 2019) run in parallel processes.

Uses the same sky subtraction and main-source segmentation as the fast engine, so that the two
engines differ only in the measurements; returns the same `MorphologyResult`. A galaxy statmorph raises
on gets flag 2 and NaN values, and each batch with such galaxies warns once, counting them by
exception type.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from astrogan.metrics.morphology.measure import (
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
    rec, flag, _ = _measure_one(img, seg, sigma)
    return rec, flag


def _measure_one(img: np.ndarray, seg: np.ndarray, sigma: float) -> tuple[dict[str, float], int, str | None]:
    """(values, flag, error): error is the exception type name when statmorph raised (flag 2, NaN values)."""
    import statmorph

    rec = {k: float("nan") for k in PROPERTIES}
    if not seg.any():
        return rec, 2, None
    weight = np.full(img.shape, max(float(sigma), 1e-6))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statmorph's per-galaxy chatter; its verdict is in m.flag
        try:
            m = statmorph.SourceMorphology(img, seg.astype(np.int32), 1, weightmap=weight)
            for k in PROPERTIES:
                v = float(getattr(m, _NAME_MAP.get(k, k)))
                rec[k] = np.nan if v == -99.0 else v
            flag = int(m.flag)
            if int(getattr(m, "flag_sersic", 0)) >= 2:
                rec["sersic_n"] = rec["sersic_rhalf"] = float("nan")
        except Exception as exc:  # statmorph raises on degenerate sources: a bad flag, counted, not a crash
            return {k: float("nan") for k in PROPERTIES}, 2, type(exc).__name__
    return rec, flag, None


def _worker(args: tuple[np.ndarray, np.ndarray, float]) -> tuple[dict[str, float], int, str | None]:
    return _measure_one(*args)


def _failure_message(errors: list[str | None]) -> str | None:
    """One line for a batch: how many galaxies statmorph raised on, by exception type; None when none."""
    counts = Counter(e for e in errors if e is not None)
    if not counts:
        return None
    kinds = ", ".join(f"{name} x{n}" for name, n in counts.most_common())
    first = [i for i, e in enumerate(errors) if e is not None][:10]
    at = ", ".join(map(str, first)) + (", ..." if sum(counts.values()) > len(first) else "")
    return (
        f"statmorph failed on {sum(counts.values())} of {len(errors)} galaxies ({kinds}); they are flagged "
        f"bad (flag 2, NaN values) and left out of the statistics (galaxy index {at})"
    )


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
    message = _failure_message([r[2] for r in results])
    if message is not None:
        warnings.warn(message, stacklevel=2)
    return MorphologyResult(values=values, flag=flags)
