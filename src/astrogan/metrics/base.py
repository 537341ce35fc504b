"""What every metric is: an object that computes from a shared context and reports its own scalars,
summary rows (value beside its real-vs-real floor), JSON, figures and report section.

Adding a metric is one class (in its family's module) plus one line in `astrogan.metrics.METRICS`;
`compute.run_metrics` and `report.write_report` hold no per-metric code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from astrogan.utils.atomic import atomic_path

if TYPE_CHECKING:
    from astrogan.conditions import CondSpec
    from astrogan.science import ScienceSpec

_CACHE_VERSION = 2  # 2: bounded Sérsic fits and per-property NaN (morphology arrays changed)


class MetricSkipped(Exception):
    """Raised by `Metric.compute` when it cannot run on these inputs; the message says why (one line)."""


class StatsCache:
    """`.npz` files `<dir>/<key>-<metric>-<params hash>.npz`; a no-op when `cache_dir` is None."""

    def __init__(self, cache_dir: str | Path | None, cache_key: str | None):
        self.dir = Path(cache_dir) if cache_dir is not None else None
        # A file-name-safe key: a content hash reads "sha256:...", and ':' is not allowed in Windows names.
        self.key = None if cache_key is None else re.sub(r"[^A-Za-z0-9._-]", "-", cache_key)

    def get(self, metric: str, params: dict[str, Any], fn: Callable[[], dict[str, np.ndarray]]):
        """Return the cached arrays for (metric, params) or compute, store and return them."""
        if self.dir is None or self.key is None:
            return fn()
        blob = json.dumps({**params, "v": _CACHE_VERSION}, sort_keys=True).encode()
        path = self.dir / f"{self.key}-{metric}-{hashlib.sha1(blob).hexdigest()[:12]}.npz"
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    return {k: z[k] for k in z.files}
            # A damaged cache file is recomputed, never fatal: a cut-off .npz is a BadZipFile (no OSError).
            except (OSError, ValueError, EOFError, zipfile.BadZipFile):
                pass
        data = fn()
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, **data)  # type: ignore[arg-type]  # numpy's stub types **kwds as allow_pickle
        return data


@dataclass
class Row:
    """One line of the report's leading table: a figure, its real-vs-real floor and what it means."""

    metric: str
    value: float
    floor: float | None
    meaning: str
    images: str  # how many images each side used, e.g. "816 real / 1000 generated"
    lower_is_better: bool = True

    @property
    def ratio(self) -> float | None:
        """value / floor (1 = as good as real images are to each other); None without a usable floor."""
        if (
            self.floor is None
            or not math.isfinite(self.floor)
            or self.floor <= 0
            or not math.isfinite(self.value)
        ):
            return None
        return self.value / self.floor

    def to_json(self) -> dict[str, Any]:
        def num(v: float | None) -> float | None:
            return None if v is None or not math.isfinite(v) else float(v)

        return {
            "metric": self.metric,
            "value": num(self.value),
            "floor": num(self.floor),
            "ratio": num(self.ratio),
            "meaning": self.meaning,
            "images": self.images,
        }


@dataclass
class Context:
    """The inputs every metric shares, and the expensive intermediates computed once for all of them.

    real, fake: `(N,H,W,C)` uint8 or float in [0, 1]; cache: reference statistics of `real`.
    For a generator conditioned on physical parameters: cond_spec names the K columns; real_cond
    `(N_real, K)` holds the real images' true values and fake_cond `(N_fake, K)` the values each
    generated image was asked for (in the spec's units, lengths at this image size)."""

    real: np.ndarray
    fake: np.ndarray
    cache: StatsCache
    rng_seed: int = 0
    inception_weights: str | Path | None = None
    morphology_engine: str = "fast"
    num_workers: int | None = None
    protocol: str = "astrogan"
    cond_spec: CondSpec | None = None
    real_cond: np.ndarray | None = None
    fake_cond: np.ndarray | None = None
    # A second generated set on a regular grid of conditions (images (M,H,W,C), asked (M, K)): the
    # closed loop checked where the data are sparse too, not only where they are dense.
    grid: tuple[np.ndarray, np.ndarray] | None = None
    # The images' PSF as a spec string (`moffat:fwhm=2.0,beta=3.0`, at this image size): the conditioning
    # metric then measures the Sérsic columns with a fit convolved with it (None: the morphology engine).
    psf: str | None = None
    # With `psf`: the Sérsic profiles' truncation radius in half-light radii (`synth_sersic` cuts at 4;
    # None: untruncated), passed to that fit as `truncate`.
    sersic_truncate: float | None = None
    # The real images' class labels (N_real,) int64 and the dataset's names for them: the composition
    # metric compares the class mix when they are given. category_names: names a person gave the
    # composition categories (cluster or class number -> name); num_clusters: its k (None: automatic).
    real_labels: np.ndarray | None = None
    label_names: list[str] | None = None
    category_names: dict[int, str] | None = None
    num_clusters: int | None = None
    # Science data: the data's bands and dataset-wide stretch (the colours metric undoes it; per-band
    # figures are named by its bands), the generator's when it differs, and the plane `--band` names
    # (spectrum and morphology then measure that band only).
    science: ScienceSpec | None = None
    fake_science: ScienceSpec | None = None
    band: int | None = None
    notes: list[str] = field(default_factory=list)
    _shared: dict[str, Any] = field(default_factory=dict)

    @property
    def base(self) -> dict[str, Any]:
        """Cache parameters that identify the real set's array."""
        return {"shape": list(self.real.shape), "dtype": str(self.real.dtype)}

    def counts(self, num_real: int | None = None, num_fake: int | None = None) -> str:
        """ "N real / M generated" for a summary row."""
        r = len(self.real) if num_real is None else num_real
        f = len(self.fake) if num_fake is None else num_fake
        return f"{r} real / {f} generated"

    def band_name(self, b: int) -> str:
        """The name of plane `b`: the science spec's band name, else `b0`, `b1`, ..."""
        return self.science.bands[b] if self.science is not None else f"b{b}"

    def bands_measured(self) -> list[int]:
        """Planes that get figures of their own: the named `band`; else every band of multi-band science or
        float data (uint8 RGB pictures are judged as pictures, so none)."""
        if self.band is not None:
            return [self.band]
        c = int(self.real.shape[-1])
        if c > 1 and (self.science is not None or self.real.dtype != np.uint8):
            return list(range(c))
        return []

    def plane(self, b: int) -> Context:
        """This context reduced to band `b` `(N,H,W,1)`: the single-band metric on it is the per-band figure.

        Contiguous copies (a strided view could sum in another order), a cache of its own and nothing shared.
        """
        key = None if self.cache.key is None else f"{self.cache.key}-band{b}"
        return dataclasses.replace(
            self,
            real=np.ascontiguousarray(self.real[..., b : b + 1]),
            fake=np.ascontiguousarray(self.fake[..., b : b + 1]),
            cache=StatsCache(self.cache.dir, key),
            grid=None,
            science=None,
            fake_science=None,
            band=None,
            notes=[],
            _shared={},
        )

    def peek(self, key: str) -> Any:
        """What `shared(key, ...)` computed already, or None (nothing is computed)."""
        return self._shared.get(key)

    def shared(self, key: str, fn: Callable[[], Any]) -> Any:
        """`fn()` computed once per evaluation under `key` (e.g. Inception features, morphology)."""
        if key not in self._shared:
            self._shared[key] = fn()
        return self._shared[key]


class Metric:
    """Base class of a metric family. `compute` returns the details every other method reads."""

    name: str = ""
    description: str = ""
    needs_inception: bool = False

    def compute(self, ctx: Context) -> Any:
        """Measure `ctx.fake` against `ctx.real`; raise MetricSkipped(reason) when it cannot."""
        raise NotImplementedError

    def scalars(self, details: Any) -> dict[str, float]:
        """Flat figures for stats.jsonl / TensorBoard / metrics.json."""
        return {}

    def rows(self, details: Any, ctx: Context) -> list[Row]:
        """Lines of the report's leading table."""
        return []

    def to_json(self, details: Any) -> dict[str, Any]:
        """The metric's detailed section of metrics.json."""
        return {}

    def figures(self, details: Any, ctx: Context, out_dir: Path) -> list[tuple[str, str]]:
        """Write PNG files into `out_dir`; return (file name, caption) pairs."""
        return []

    def section(self, details: Any) -> str:
        """An HTML fragment for report.html (escaped by the metric)."""
        return ""
