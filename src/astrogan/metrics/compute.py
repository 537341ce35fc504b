"""One entry point for every metric: `compute_metrics` (scalars, for training) and `evaluate` (full report).

Each metric is an object from the `METRICS` registry (`astrogan.metrics.base.Metric`); this module only
builds the shared context, runs the metrics asked for, and collects what they report. Reference
statistics of the real set (radial spectra, morphology arrays, Inception features) are cached on disk
as `.npz`, keyed by the dataset content hash, the metric and its parameters, so that a training run
that evaluates every N steps computes them once.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from astrogan.metrics import METRICS
from astrogan.metrics.base import Context, MetricSkipped, Row, StatsCache
from astrogan.utils.errors import UserError
from astrogan.utils.log import console

if TYPE_CHECKING:
    from astrogan.conditions import CondSpec
    from astrogan.science import ScienceSpec

__all__ = ["MetricsOutput", "StatsCache", "compute_metrics", "evaluate", "run_metrics"]


def _note(msg: str) -> None:
    """One unwrapped console line (stderr) unless ASTROGAN_QUIET=1."""
    if os.environ.get("ASTROGAN_QUIET") != "1":
        console.print(msg, soft_wrap=True, markup=False, highlight=False)


def array_key(images: np.ndarray) -> str:
    """A content hash of an image array (used when no dataset hash is given)."""
    h = hashlib.sha256()
    h.update(str((images.shape, str(images.dtype))).encode())
    h.update(np.ascontiguousarray(images).tobytes())
    return h.hexdigest()[:16]


@dataclass
class MetricsOutput:
    """Scalars (flat dict for stats.jsonl/TensorBoard), per-metric details and rows, and skip notes."""

    scalars: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    context: Context | None = None


def _check_images(name: str, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise UserError(f"{name} images must be (N,H,W,C), got shape {x.shape}")
    if len(x) < 2:
        raise UserError(f"{name} images: need at least 2, got {len(x)}")
    bad = _num_nonfinite(x)  # NaN/inf would turn every distance into NaN and every copy flag into "no"
    if bad:
        raise UserError(
            f"{name} images: {bad} of {len(x)} hold NaN or infinite pixels (a diverged generator, or unmasked "
            "data?); the metrics compare finite values only"
        )
    return x


def _num_nonfinite(x: np.ndarray) -> int:
    """How many images of `(N, ...)` float images hold a NaN or infinite value (0 for integer images)."""
    x = np.asarray(x)
    if x.dtype.kind not in "fc":
        return 0
    return int((~np.isfinite(x)).reshape(len(x), -1).any(axis=1).sum())


def _check_cond(name: str, values: np.ndarray | None, num: int, spec: CondSpec | None) -> np.ndarray | None:
    """Conditions `(num, K)` as float64, K the spec's column count; None stays None."""
    if values is None:
        return None
    if spec is None:
        raise UserError(
            f"{name} conditions given without cond_spec: pass the CondSpec that names their columns"
        )
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1 and spec.dim == 1:
        v = v[:, None]
    if v.shape != (num, spec.dim):
        raise UserError(
            f"{name} conditions must have shape ({num}, {spec.dim}) (one row per image, columns "
            f"{', '.join(spec.names)}), got {v.shape}"
        )
    return v


def _check_grid(
    grid: tuple[np.ndarray, np.ndarray] | None, spec: CondSpec | None, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray] | None:
    """The grid set as given, or a UserError when its images or conditions do not fit."""
    if grid is None:
        return None
    images, asked = np.asarray(grid[0]), np.asarray(grid[1], dtype=np.float64)
    if spec is None or asked.shape != (len(images), spec.dim) or images.shape[1:] != shape:
        raise UserError(
            f"cond_grid must be (images (M, {', '.join(map(str, shape))}), conditions (M, K)) with a "
            f"cond_spec, got {images.shape} and {asked.shape}"
        )
    return images, asked


def _check_labels(labels: np.ndarray | None, num: int) -> np.ndarray | None:
    """Real class labels as int64 `(num,)`, non-negative; None stays None."""
    if labels is None:
        return None
    y = np.asarray(labels)
    if y.shape != (num,) or (y.size and (y.dtype.kind not in "iu" or int(y.min()) < 0)):
        raise UserError(
            f"real labels must be non-negative integers, one per real image ({num},), got {y.dtype} {y.shape}"
        )
    return y.astype(np.int64)


def _check_psf(psf: str | None, sersic_truncate: float | None) -> None:
    """A malformed PSF spec or truncation radius refused with one line, before any image is measured."""
    if psf is not None:
        from astrogan.data.synthetic import parse_psf

        parse_psf(psf)
    if sersic_truncate is not None and not sersic_truncate > 1.0:
        raise UserError(
            f"the Sérsic truncation is in half-light radii and must be > 1, got {sersic_truncate}"
        )


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
    protocol: str = "astrogan",
    cond_spec: CondSpec | None = None,
    real_cond: np.ndarray | None = None,
    fake_cond: np.ndarray | None = None,
    cond_grid: tuple[np.ndarray, np.ndarray] | None = None,
    real_labels: np.ndarray | None = None,
    label_names: Sequence[str] | None = None,
    category_names: dict[int, str] | None = None,
    num_clusters: int | None = None,
    science: ScienceSpec | None = None,
    fake_science: ScienceSpec | None = None,
    band: str | int | None = None,
    psf: str | None = None,
    sersic_truncate: float | None = None,
) -> MetricsOutput:
    """Compute the named metrics of `fake` against `real` (both `(N,H,W,C)`), with details for a report.

    For a generator conditioned on physical parameters (the `conditioning` metric): cond_spec names
    the K columns, real_cond `(N_real, K)` holds the real images' true values and fake_cond
    `(N_fake, K)` the values each generated image was made at; cond_grid (images (M,H,W,C), asked
    (M, K)) optionally a second generated set made on a regular grid of conditions.

    For the `composition` metric: real_labels `(N_real,)` the real images' classes and label_names their
    names (class mix compared by a classifier; without labels, clusters are), category_names names a
    person gave its categories (number -> name), num_clusters its k (None: automatic).

    Multi-band data: science is the data's `ScienceSpec` (band names, the stretch the `colours` metric
    undoes; fake_science the generator's when it differs); spectrum and morphology then also report each
    band alone, or only `band` (a band name, or a plane index) when one is named.

    psf: the images' PSF at this size (a spec string, `moffat:fwhm=2.0,beta=3.0`): `conditioning` then
    measures with a Sérsic fit convolved with it, the profile truncated at `sersic_truncate` half-light
    radii (None: untruncated; used only with a PSF)."""
    from astrogan.metrics.bands import resolve_band
    from astrogan.metrics.protocols import PROTOCOLS

    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise UserError(f"unknown metric {unknown[0]!r}; choose from {', '.join(METRICS)}")
    if morphology_engine not in ("fast", "statmorph"):
        raise UserError(f"unknown morphology engine {morphology_engine!r}; use fast or statmorph")
    if protocol not in PROTOCOLS:
        raise UserError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    real = _check_images("real", real)
    fake = _check_images("generated", fake)
    if real.shape[1:] != fake.shape[1:]:
        raise UserError(f"real images are {real.shape[1:]} but generated ones are {fake.shape[1:]}")
    real_cond = _check_cond("real", real_cond, len(real), cond_spec)
    fake_cond = _check_cond("generated", fake_cond, len(fake), cond_spec)
    real_labels = _check_labels(real_labels, len(real))
    if num_clusters is not None and num_clusters < 2:
        raise UserError(f"the number of clusters must be at least 2, got {num_clusters}")
    for what, spec in (("the data's", science), ("the generator's", fake_science)):
        if spec is not None and spec.num_bands != real.shape[-1]:
            raise UserError(
                f"{what} science spec names {spec.num_bands} band(s) ({', '.join(spec.bands)}) but the images "
                f"have {real.shape[-1]}"
            )
    band_index = resolve_band(band, science, int(real.shape[-1]))
    _check_psf(psf, sersic_truncate)
    if cache_dir is not None and cache_key is None:
        cache_key = array_key(real)
    ctx = Context(
        real=real,
        fake=fake,
        cache=StatsCache(cache_dir, cache_key),
        rng_seed=rng_seed,
        inception_weights=inception_weights,
        morphology_engine=morphology_engine,
        num_workers=num_workers,
        protocol=protocol,
        cond_spec=cond_spec,
        real_cond=real_cond,
        fake_cond=fake_cond,
        grid=_check_grid(cond_grid, cond_spec, real.shape[1:]),
        real_labels=real_labels,
        label_names=None if label_names is None else [str(n) for n in label_names],
        category_names=None if category_names is None else dict(category_names),
        num_clusters=num_clusters,
        science=science,
        fake_science=fake_science,
        band=band_index,
        psf=psf,
        sersic_truncate=sersic_truncate if psf is not None else None,
    )
    out = MetricsOutput(context=ctx)
    # Inception metrics first: the memorization check reuses their features when there are any.
    for name in sorted(names, key=lambda n: not METRICS[n].needs_inception):
        metric = METRICS[name].load()
        try:
            details = metric.compute(ctx)
        except MetricSkipped as e:
            reason = str(e)
            if reason not in out.skipped.values():
                _note(reason)
            out.skipped[name] = reason
            continue
        out.details[name] = details
        out.scalars.update(metric.scalars(details))
        out.rows.extend(metric.rows(details, ctx))
    return out


def compute_metrics(
    names: Sequence[str],
    real: np.ndarray,
    fake: np.ndarray,
    *,
    cache_dir: Path | None = None,
    cache_key: str | None = None,
    inception_weights: str | None = None,
    rng_seed: int = 0,
    science: ScienceSpec | None = None,
) -> dict[str, float]:
    """Flat dict of scalar figures (e.g. `fid`, `kid_mean`, `spectrum_w1_mean`, `morph_w1_mean`,
    `prdc_precision`, `memorization_fraction`) of generated `fake` against `real`, both `(N,H,W,C)`
    uint8 (or float32). `science`: the data's science spec (per-band figures named by its bands, colours).

    Metrics that cannot run (no Inception weights, too few images) are left out with one line on the
    console; so are all of them when an image holds NaN or inf (a diverging run goes on to its own checks).
    """
    bad = {what: _num_nonfinite(x) for what, x in (("real", real), ("generated", fake))}
    if any(bad.values()):
        _note(
            "metrics skipped: "
            + ", ".join(f"{n} {what} image(s)" for what, n in bad.items() if n)
            + " hold NaN or infinite pixels"
        )
        return {}
    res = run_metrics(
        names,
        real,
        fake,
        cache_dir=cache_dir,
        cache_key=cache_key,
        inception_weights=inception_weights,
        rng_seed=rng_seed,
        science=science,
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
    protocol: str = "astrogan",
    meta: dict[str, Any] | None = None,
    overwrite: bool = False,
    cond_spec: CondSpec | None = None,
    real_cond: np.ndarray | None = None,
    fake_cond: np.ndarray | None = None,
    cond_grid: tuple[np.ndarray, np.ndarray] | None = None,
    real_labels: np.ndarray | None = None,
    label_names: Sequence[str] | None = None,
    category_names: dict[int, str] | None = None,
    num_clusters: int | None = None,
    science: ScienceSpec | None = None,
    fake_science: ScienceSpec | None = None,
    band: str | int | None = None,
    psf: str | None = None,
    sersic_truncate: float | None = None,
) -> dict[str, Any]:
    """Full evaluation: metrics.json, PNG plots and report.html in `out_dir` (built atomically).

    cond_spec, real_cond, fake_cond, cond_grid: as in `run_metrics` (for the `conditioning` metric);
    real_labels, label_names, category_names, num_clusters: as there (for the `composition` metric);
    science, fake_science, band: as there (per-band figures, colours); psf, sersic_truncate: as there (how
    `conditioning` measures). Returns the metrics.json content.
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
        protocol=protocol,
        cond_spec=cond_spec,
        real_cond=real_cond,
        fake_cond=fake_cond,
        cond_grid=cond_grid,
        real_labels=real_labels,
        label_names=label_names,
        category_names=category_names,
        num_clusters=num_clusters,
        science=science,
        fake_science=fake_science,
        band=band,
        psf=psf,
        sersic_truncate=sersic_truncate,
    )
    return write_report(
        out_dir, res, names=names, meta={"protocol": protocol, **(meta or {})}, overwrite=overwrite
    )
