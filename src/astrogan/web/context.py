"""What the routes of one server process share: settings, the generator, the pool and the image cache."""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from fastapi import Request
from fastapi.responses import Response
from starlette.datastructures import QueryParams

from astrogan.conditions import CondSpec
from astrogan.science import ScienceSpec
from astrogan.utils.errors import UserError
from astrogan.web.caching import IMAGE_CACHE_CONTROL, ImageCache, not_modified
from astrogan.web.guard import BoundedExecutor, RateLimiter, Refused
from astrogan.web.onnx_generator import OnnxGenerator, View
from astrogan.web.pool import Pool
from astrogan.web.settings import ServeSettings


@dataclass(frozen=True)
class ServeContext:
    """The per-process state behind every route (built once by `create_app`).

    `heavy` runs the expensive routes (grids, animations) off the event loop, bounded; `limiter` holds each
    client's budget for them; `single` draws single pictures (`/api/image.png`), bounded apart from both the
    heavy routes and the page's thread pool; `started_at` (Unix time) is when this process started.
    """

    settings: ServeSettings
    gen: OnnxGenerator
    pool: Pool
    model_id: str
    images: ImageCache
    heavy: BoundedExecutor
    limiter: RateLimiter
    single: BoundedExecutor
    started_at: float
    subject: str = "sky"

    def max_pictures(self) -> int:
        """Pictures one grid or animation may draw: the pixel budget over this model's picture size."""
        return max(1, self.settings.max_request_pixels // (self.gen.image_size * self.gen.image_size))

    def check_pictures(self, count: int, *, what: str) -> None:
        """UserError naming `what` when `count` pictures of this model are over the per-request pixel budget."""
        limit = self.max_pictures()
        if count > limit:
            size = self.gen.image_size
            raise UserError(
                f"{what}: at most {limit} pictures per request for this model's {size} px pictures"
            )

    async def drawn_response(
        self,
        request: Request,
        key: tuple[Hashable, ...],
        media_type: str,
        make: Callable[[], bytes],
        *,
        heavy: bool,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """An image response, cacheable for a day by its ETag, drawn off the event loop.

        304 and cache hits are answered at once; a miss runs `make` on a bounded executor (503 + Retry-After
        when its queue is full), so it never holds a thread the page needs. A `heavy` miss (grid, animation)
        also spends one of the client's rate-limit tokens (429 + Retry-After when none is left) and runs on
        the heavy executor. `headers` go on the 200 and the 304 alike (`Vary`, `Content-Disposition`)."""
        etag = self.images.etag(*key)
        headers = {"ETag": etag, "Cache-Control": IMAGE_CACHE_CONTROL, **(headers or {})}
        if not_modified(request, etag):
            return Response(status_code=304, headers=headers)
        data = self.images.lookup(key)
        if data is None:
            client = request.client.host if request.client else "unknown"
            if heavy:
                self.limiter.take(client)
            try:
                data = await (self.heavy if heavy else self.single).run(make)
            except Refused:
                if heavy:
                    self.limiter.refund(client)  # busy, not the client's fault: the token is not spent
                raise
            self.images.put(key, data)
        return Response(data, media_type=media_type, headers=headers)

    def check_class(self, cls: int | None) -> int | None:
        """A requested class label, checked against the model (None: the model's default per seed)."""
        if cls is None:
            return None
        if self.gen.num_classes <= 0:
            raise UserError("class: this model is unconditional; leave `class` out")
        if not 0 <= cls < self.gen.num_classes:
            got = f", got {cls}" if abs(cls) < 10**9 else ""
            raise UserError(f"class: must lie in 0..{self.gen.num_classes - 1}{got}")
        return cls

    def labels(self, seeds: Sequence[int], cls: int | None) -> np.ndarray | None:
        """Class labels int64 `(N,)` for `seeds`: `cls` for all, or the default per seed; None if unconditional."""
        if self.gen.num_classes <= 0:
            return None
        if cls is None:
            return self.gen.default_labels(seeds)
        return np.full(len(seeds), cls, dtype=np.int64)

    # -- science models: bands, colour mapping -----------------------------------------------------------------

    @property
    def science(self) -> ScienceSpec | None:
        """The model's science spec (bands, the stretch to undo, units, colours); None for picture models."""
        return self.gen.science

    def view(self, rgb: str | None, band: str | None) -> View:
        """The view a request asks for (`rgb=i,r,g` or `band=r`), checked against the bands and normalised."""
        return self.gen.check_view(rgb=rgb, band=band)

    def view_key(self, view: View) -> tuple[str | int | None, ...]:
        """The part of a picture's cache key (and ETag) that names its view: () for the model's own colours."""
        rgb, band = view
        if rgb is None and band is None:
            return ()
        return ("view", None if rgb is None else ",".join(rgb), band)

    # -- physical conditions ---------------------------------------------------------------------------------

    @property
    def cond_spec(self) -> CondSpec | None:
        """The model's physical conditions (None for a model without them)."""
        return self.gen.cond_spec

    def conditions(self, query: QueryParams, *, declared: Collection[str]) -> np.ndarray | None:
        """The conditions a request asks for, float32 `(K,)`: its query values, the training mean for the rest.

        A parameter of the route given twice (`seed=1&seed=2`) is a UserError, as a condition given twice is.
        Other query parameters are ignored, as HTTP clients expect (cache busters, tracking tags), except a
        near-miss of a condition's name on a model with conditions (`sersic=2`): that is a UserError naming
        the condition meant, rather than a picture silently drawn at the training mean. Values must be
        finite numbers inside the trained range (`CondSpec.check_range`'s message, which names the
        parameter and its range). None for models without conditions.
        """
        spec = self.cond_spec
        names = spec.names if spec is not None else ()
        by_lower = {
            n.lower(): n for n in names
        }  # `SERSIC_N` or `Q` is a near-miss too (names are case-sensitive)
        for key in query:
            if key in declared and len(query.getlist(key)) > 1:  # `seed=1&seed=2`: which one was meant?
                raise UserError(f"{key}: given {len(query.getlist(key))} times; give it once")
            if key in declared or key in names or not names:
                continue
            close = difflib.get_close_matches(key.lower(), list(by_lower), n=1, cutoff=0.75)
            if close:
                raise UserError(
                    f"{key}: unknown parameter; did you mean {by_lower[close[0]]}? (this model's conditions "
                    f"are {', '.join(names)})"
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
