"""One entry point for every metric: `compute_metrics` (scalars, for training) and `evaluate` (full report).

Reference statistics of the real set (radial spectra, morphology arrays, Inception features) are
cached on disk as `.npz`, keyed by the dataset content hash, the metric and its parameters, so that a
training run that evaluates every N steps computes them once.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from astrogan.metrics import METRICS
from astrogan.utils.atomic import atomic_path
from astrogan.utils.errors import UserError
from astrogan.utils.log import console

_CACHE_VERSION = 1


def _note(msg: str) -> None:
    """One unwrapped console line (stderr) unless ASTROGAN_QUIET=1."""
    if os.environ.get("ASTROGAN_QUIET") != "1":
        console.print(msg, soft_wrap=True, markup=False, highlight=False)


class StatsCache:
    """`.npz` files `<dir>/<key>-<metric>-<params hash>.npz`; a no-op when `cache_dir` is None."""

    def __init__(self, cache_dir: str | Path | None, cache_key: str | None):
        self.dir = Path(cache_dir) if cache_dir is not None else None
        self.key = cache_key

    def get(self, metric: str, params: dict[str, Any], fn: Callable[[], dict[str, np.ndarray]]):
        """Return the cached arrays for (metric, params) or compute, store and return them."""
        if self.dir is None or self.key is None:
            return fn()
        tag = hashlib.sha1(json.dumps({**params, "v": _CACHE_VERSION}, sort_keys=True).encode()).hexdigest()[
            :12
        ]
        path = self.dir / f"{self.key}-{metric}-{tag}.npz"
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    return {k: z[k] for k in z.files}
            except (OSError, ValueError):  # a damaged cache file is recomputed, never fatal
                pass
        data = fn()
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, **data)
        return data


def array_key(images: np.ndarray) -> str:
    """A content hash of an image array (used when no dataset hash is given)."""
    h = hashlib.sha256()
    h.update(str((images.shape, str(images.dtype))).encode())
    h.update(np.ascontiguousarray(images).tobytes())
    return h.hexdigest()[:16]


@dataclass
class MetricsOutput:
    """Scalars (flat dict for stats.jsonl/TensorBoard), details for the report, and skip notes."""

    scalars: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def _check_images(name: str, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise UserError(f"{name} images must be (N,H,W,C), got shape {x.shape}")
    if len(x) < 2:
        raise UserError(f"{name} images: need at least 2, got {len(x)}")
    return x


def _inception_scale(real: np.ndarray, fake: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float (FITS) data -> [0,1] with the real set's 0.5/99.5 percentiles, applied to both sets."""
    if real.dtype == np.uint8:
        return real, fake
    lo, hi = np.percentile(real, [0.5, 99.5])
    scale = 1.0 / (hi - lo) if hi > lo else 1.0
    return (np.clip((real - lo) * scale, 0, 1), np.clip((fake - lo) * scale, 0, 1))


def run_metrics(
    names: Sequence[str],
    real: np.ndarray,
    fake: np.ndarray,
    *,
    cache_dir: str | Path | None = None,
    cache_key: str | None = None,
    inception_weights: str | Path | None = None,
    rng_seed: int = 0,
    morphology_engine: str = "fast",
    num_workers: int | None = None,
) -> MetricsOutput:
    """Compute the named metrics of `fake` against `real` (both `(N,H,W,C)`), with details for a report."""
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise UserError(f"unknown metric {unknown[0]!r}; choose from {', '.join(METRICS)}")
    if morphology_engine not in ("fast", "statmorph"):
        raise UserError(f"unknown morphology engine {morphology_engine!r}; use fast or statmorph")
    real = _check_images("real", real)
    fake = _check_images("generated", fake)
    if real.shape[1:] != fake.shape[1:]:
        raise UserError(f"real images are {real.shape[1:]} but generated ones are {fake.shape[1:]}")
    if cache_dir is not None and cache_key is None:
        cache_key = array_key(real)
    cache = StatsCache(cache_dir, cache_key)
    base = {"shape": list(real.shape), "dtype": str(real.dtype)}
    out = MetricsOutput()

    feats: tuple[np.ndarray, np.ndarray] | None = None
    if any(METRICS[n].needs_inception for n in names):
        feats = _inception_features(real, fake, cache, base, inception_weights, out)

    if "fid" in names and feats is not None:
        from astrogan.metrics.fid import fid_from_features

        out.scalars["fid"] = fid_from_features(feats[0], feats[1])
    if "kid" in names and feats is not None:
        from astrogan.metrics.fid import kid_from_features

        m, s = kid_from_features(feats[0], feats[1], rng_seed=rng_seed)
        out.scalars["kid_mean"], out.scalars["kid_std"] = m, s

    if "spectrum" in names:
        from astrogan.metrics.spectrum import compare_spectra, radial_spectrum

        def real_spec() -> dict[str, np.ndarray]:
            f, p = radial_spectrum(real)
            return {"freqs": f, "power": p}

        rs = cache.get("spectrum", base, real_spec)
        _, fp = radial_spectrum(fake)
        comp = compare_spectra(rs["power"], fp, rs["freqs"])
        out.scalars.update(comp.summary())
        out.details["spectrum"] = comp

    if "morphology" in names:
        _morphology(real, fake, cache, base, out, morphology_engine, num_workers, rng_seed)

    if "memorization" in names:
        from astrogan.metrics.memorization import memorization

        if len(real) < 10:
            out.skipped["memorization"] = (
                f"memorization skipped: needs at least 10 real images, got {len(real)}"
            )
        else:
            res = memorization(
                real,
                fake,
                rng_seed=rng_seed,
                train_features=None if feats is None else feats[0],
                fake_features=None if feats is None else feats[1],
            )
            out.scalars.update(res.summary())
            out.details["memorization"] = res
    return out


def _inception_features(real, fake, cache, base, weights, out) -> tuple[np.ndarray, np.ndarray] | None:
    from astrogan.metrics.inception import (
        WEIGHTS_HINT,
        extract_features,
        load_inception,
        resolve_weights_path,
    )

    path = resolve_weights_path(weights)
    if path is None:
        _note(WEIGHTS_HINT)
        out.skipped["fid"] = out.skipped["kid"] = WEIGHTS_HINT
        return None
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, sha = load_inception(path, device=device)
    _note(f"Inception weights {path} sha256 {sha}")
    out.details["inception_sha256"] = sha
    out.details["inception_path"] = str(path)
    r, f = _inception_scale(real, fake)
    rf = cache.get(
        "inception", {**base, "sha": sha}, lambda: {"features": extract_features(model, r, device=device)}
    )
    return rf["features"], extract_features(model, f, device=device)


def _morphology(real, fake, cache, base, out, engine, num_workers, rng_seed) -> None:
    from astrogan.metrics.distances import mean_distance, property_distances, real_floor
    from astrogan.metrics.morphology import COMPARED_PROPERTIES, PROPERTIES, MorphologyResult

    def measure(x: np.ndarray) -> MorphologyResult:
        if engine == "statmorph":
            from astrogan.metrics.morphology_statmorph import measure_morphology_statmorph

            return measure_morphology_statmorph(x, num_workers=num_workers)
        from astrogan.metrics.morphology import measure_morphology

        return measure_morphology(x)

    def real_morph() -> dict[str, np.ndarray]:
        return measure(real).as_arrays()

    ra = cache.get("morphology", {**base, "engine": engine}, real_morph)
    rres = MorphologyResult(values={k: ra[k] for k in PROPERTIES}, flag=ra["flag"])
    fres = measure(fake)
    rgood = {k: v[rres.good()] for k, v in rres.values.items()}
    fgood = {k: v[fres.good()] for k, v in fres.values.items()}
    dist = property_distances(rgood, fgood, COMPARED_PROPERTIES)
    floor = real_floor(rgood, COMPARED_PROPERTIES, rng_seed=rng_seed) if len(rgood["gini"]) >= 4 else {}
    for k, v in dist.items():
        out.scalars[f"morph_w1_{k}"] = v
    out.scalars["morph_w1_mean"] = mean_distance(dist)
    if floor:
        out.scalars["morph_floor_w1_mean"] = mean_distance(floor)
    out.scalars["morph_bad_fraction_real"] = float(np.mean(rres.flag >= 2))
    out.scalars["morph_bad_fraction_fake"] = float(np.mean(fres.flag >= 2))
    out.details["morphology"] = {
        "real": rres,
        "fake": fres,
        "distances": dist,
        "floor": floor,
        "engine": engine,
    }


def compute_metrics(
    names: Sequence[str],
    real: np.ndarray,
    fake: np.ndarray,
    *,
    cache_dir: Path | None = None,
    cache_key: str | None = None,
    inception_weights: str | None = None,
    rng_seed: int = 0,
) -> dict[str, float]:
    """Flat dict of scalar figures (e.g. `fid`, `kid_mean`, `spectrum_w1_mean`, `morph_w1_mean`,
    `memorization_fraction`) of generated `fake` against `real`, both `(N,H,W,C)` uint8 (or float32).

    Metrics that cannot run (no Inception weights) are left out with one line on the console.
    """
    res = run_metrics(
        names,
        real,
        fake,
        cache_dir=cache_dir,
        cache_key=cache_key,
        inception_weights=inception_weights,
        rng_seed=rng_seed,
    )
    return {k: float(v) for k, v in res.scalars.items()}


def evaluate(
    real: np.ndarray,
    fake: np.ndarray,
    out_dir: str | Path,
    *,
    names: Sequence[str] | None = None,
    cache_dir: str | Path | None = None,
    cache_key: str | None = None,
    inception_weights: str | Path | None = None,
    morphology_engine: str = "fast",
    num_workers: int | None = None,
    rng_seed: int = 0,
    meta: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Full evaluation: metrics.json, PNG plots and report.html in `out_dir` (built atomically).

    Returns the metrics.json content.
    """
    from astrogan.metrics import DEFAULT_METRICS
    from astrogan.metrics.report import write_report

    names = list(names) if names else list(DEFAULT_METRICS)
    res = run_metrics(
        names,
        real,
        fake,
        cache_dir=cache_dir,
        cache_key=cache_key,
        inception_weights=inception_weights,
        rng_seed=rng_seed,
        morphology_engine=morphology_engine,
        num_workers=num_workers,
    )
    return write_report(out_dir, res, real, fake, names=names, meta=meta or {}, overwrite=overwrite)
