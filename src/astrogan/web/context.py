"""What the routes of one server process share: settings, the generator, the pool and the image cache."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

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
