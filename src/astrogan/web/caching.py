"""HTTP caching: strong ETags, If-None-Match -> 304, and an in-memory LRU of image response bodies."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

from fastapi import Request
from fastapi.responses import Response

IMAGE_CACHE_CONTROL = "public, max-age=86400"


def content_etag(data: bytes) -> str:
    """A strong ETag for fixed bytes (a static file): the first 20 hex digits of their sha256."""
    return '"' + hashlib.sha256(data).hexdigest()[:20] + '"'


def not_modified(request: Request, etag: str) -> bool:
    """Whether the request's If-None-Match names `etag` (weak `W/` prefixes ignored) or is `*`."""
    inm = request.headers.get("if-none-match")
    if not inm:
        return False
    tags = {t.strip().removeprefix("W/") for t in inm.split(",")}
    return "*" in tags or etag in tags


def conditional_response(
    request: Request, *, etag: str, cache_control: str, media_type: str, body: Callable[[], bytes]
) -> Response:
    """304 when the client already holds `etag`, else 200 with `body()`; both carry ETag and Cache-Control.

    `body` is only called for a 200, so a revalidation never draws a picture.
    """
    headers = {"ETag": etag, "Cache-Control": cache_control}
    if not_modified(request, etag):
        return Response(status_code=304, headers=headers)
    return Response(body(), media_type=media_type, headers=headers)


class ImageCache:
    """Image responses of one model: the request key (its parameters) names the bytes, so they are cached.

    The ETag hashes the model id with the key (a new model changes every tag); the newest `max_items`
    bodies stay in memory (0 keeps none), at most `max_bytes` of them together (None: no byte limit); a body
    over an eighth of that is not kept, so one big animation cannot flush the cache. Thread-safe: sync
    routes run in a thread pool.
    """

    def __init__(self, model_id: str, *, max_items: int, max_bytes: int | None = None) -> None:
        self.model_id = model_id
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._bodies: OrderedDict[tuple[Hashable, ...], bytes] = OrderedDict()
        self._num_bytes = 0
        self._lock = threading.Lock()

    def etag(self, *parts: object) -> str:
        """The strong ETag of one response: 32 hex digits of sha256 over `model_id|part|part...`."""
        return (
            '"' + hashlib.sha256("|".join(map(str, (self.model_id, *parts))).encode()).hexdigest()[:32] + '"'
        )

    def lookup(self, key: tuple[Hashable, ...]) -> bytes | None:
        """The cached bytes for `key` (now the freshest), or None."""
        with self._lock:
            data = self._bodies.get(key)
            if data is not None:
                self._bodies.move_to_end(key)
            return data

    def put(self, key: tuple[Hashable, ...], data: bytes) -> None:
        """Keep `data` for `key` if the limits allow, dropping the stalest bodies to make room."""
        if not self.max_items or (self.max_bytes is not None and len(data) * 8 > self.max_bytes):
            return
        with self._lock:
            old = self._bodies.pop(key, None)
            self._num_bytes -= len(old) if old is not None else 0
            self._bodies[key] = data
            self._num_bytes += len(data)
            while len(self._bodies) > self.max_items or (
                self.max_bytes is not None and self._num_bytes > self.max_bytes
            ):
                self._num_bytes -= len(self._bodies.popitem(last=False)[1])

    @property
    def num_bytes(self) -> int:
        """Bytes of the bodies kept now."""
        return self._num_bytes

    def get(self, key: tuple[Hashable, ...], make: Callable[[], bytes]) -> bytes:
        """The cached bytes for `key`, else `make()` (outside the lock: two threads may both draw once)."""
        data = self.lookup(key)
        if data is None:
            data = make()
            self.put(key, data)
        return data
