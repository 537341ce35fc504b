"""What the routes of one server process share: settings, the generator, the pool and the image cache."""

from __future__ import annotations

import difflib
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
from starlette.datastructures import QueryParams

from astrogan.conditions import CondSpec
from astrogan.utils.errors import UserError
from astrogan.web.caching import ImageCache
from astrogan.web.onnx_generator import OnnxGenerator
from astrogan.web.pool import Pool
from astrogan.web.settings import ServeSettings


@dataclass(frozen=True)
class ServeContext:
    """The per-process state behind every route (built once by `create_app`)."""

    settings: ServeSettings
    gen: OnnxGenerator
    pool: Pool
    model_id: str
    images: ImageCache

    def check_class(self, cls: int | None) -> int | None:
        """A requested class label, checked against the model (None: the model's default per seed)."""
        if cls is None:
            return None
        if self.gen.num_classes <= 0:
            raise UserError("class: this model is unconditional; leave `class` out")
        if cls >= self.gen.num_classes:
            raise UserError(f"class: must lie in 0..{self.gen.num_classes - 1}")
        return cls

    def labels(self, seeds: Sequence[int], cls: int | None) -> np.ndarray | None:
        """Class labels int64 `(N,)` for `seeds`: `cls` for all, or the default per seed; None if unconditional."""
        if self.gen.num_classes <= 0:
            return None
        if cls is None:
            return self.gen.default_labels(seeds)
        return np.full(len(seeds), cls, dtype=np.int64)

    # -- physical conditions ---------------------------------------------------------------------------------

    @property
    def cond_spec(self) -> CondSpec | None:
        """The model's physical conditions (None for a model without them)."""
        return self.gen.cond_spec

    def conditions(self, query: QueryParams, *, declared: Collection[str]) -> np.ndarray | None:
        """The conditions a request asks for, float32 `(K,)`: its query values, the training mean for the rest.

        Other query parameters are ignored, as HTTP clients expect (cache busters, tracking tags), except a
        near-miss of a condition's name on a model with conditions (`sersic=2`): that is a UserError naming
        the condition meant, rather than a picture silently drawn at the training mean. Values must be
        finite numbers inside the trained range (`CondSpec.check_range`'s message, which names the
        parameter and its range). None for models without conditions.
        """
        spec = self.cond_spec
        names = spec.names if spec is not None else ()
        for key in query:
            if key in declared or key in names or not names:
                continue
            close = difflib.get_close_matches(key, names, n=1, cutoff=0.75)
            if close:
                raise UserError(
                    f"{key}: unknown parameter; did you mean {close[0]}? (this model's conditions are "
                    f"{', '.join(names)})"
                )
        if spec is None:
            return None
        given: dict[str, float] = {}
        for name in names:
            values = query.getlist(name)
            if not values:
                continue
            if len(values) > 1:
                raise UserError(f"{name}: given {len(values)} times; give it once")
            try:
                value = float(values[0])
            except ValueError:
                raise UserError(f"{name}: must be a number, got {values[0][:40]!r}") from None
            if not math.isfinite(value):
                raise UserError(f"{name}: must be a finite number, got {values[0][:40]!r}")
            given[name] = value
        return spec.values(given, check=True)

    def cond_key(self, cond: np.ndarray | None) -> tuple[str, ...]:
        """The part of an image's cache key (and ETag) that names its conditions: () without conditions.

        The full vector (defaults filled in) as exact float reprs, so `sersic_n=2.5` and `sersic_n=2.50`, or
        leaving a condition out and giving its mean, share a key, and any two different inputs do not.
        """
        if cond is None:
            return ()
        return ("cond", *(repr(float(v)) for v in np.asarray(cond, dtype=np.float32)))
