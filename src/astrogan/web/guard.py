"""Limits on expensive work: a bounded executor (503 when full), per-client rate limits (429), memory release."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

# Background work runs at this niceness (per thread on Linux) so that the page wins the CPU when both want it.
HEAVY_NICE = 10


class Refused(Exception):
    """A request the server will not take now: HTTP `status` (429 or 503) with `Retry-After` seconds."""

    def __init__(self, status: int, reason: str, *, retry_after_s: int) -> None:
        super().__init__(reason)
        self.status = status
        self.retry_after_s = retry_after_s


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


_LIBC = _libc()


def release_memory() -> None:
    """Hand freed heap pages back to the system (glibc's malloc_trim; a no-op elsewhere).

    Big responses leave holes in the C heap that glibc keeps for reuse; after a burst they would stay in the
    process's resident memory for good.
    """
    trim = getattr(_LIBC, "malloc_trim", None)
    if trim is not None:
        trim(0)


def _lower_thread_priority() -> None:
    try:  # Linux: PRIO_PROCESS with a thread id sets that thread's niceness only
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HEAVY_NICE)
    except (OSError, AttributeError):
        pass


class BoundedExecutor:
    """`num_workers` low-priority threads and at most `max_queue` waiting jobs; a job beyond that is Refused (503).

    The event loop never blocks on a job, so cheap routes stay fast while the threads are busy. When the last
    job of a burst ends, freed memory goes back to the system (`release_memory`).
    """

    def __init__(self, *, num_workers: int, max_queue: int, name: str = "heavy") -> None:
        self.num_workers = num_workers
        self.max_queue = max_queue
        self._name = name
        self._pool: ThreadPoolExecutor | None = None  # made on first use, again after a shutdown
        self._lock = threading.Lock()
        self._pending = 0  # running + queued
        self._mean_s = 1.0  # running mean of a job's duration, for Retry-After

    @property
    def pending(self) -> int:
        """Jobs running or waiting."""
        return self._pending

    def retry_after_s(self) -> int:
        """Seconds until a slot is likely free: the queue ahead divided among the threads, 1..60."""
        ahead = self._pending + 1
        return int(min(60, max(1, math.ceil(ahead * self._mean_s / self.num_workers))))

    def _admit(self) -> None:
        with self._lock:
            if self._pending >= self.num_workers + self.max_queue:
                raise Refused(
                    503,
                    "busy: too many expensive requests are waiting; try again later",
                    retry_after_s=self.retry_after_s(),
                )
            self._pending += 1

    def _run(self, fn: Callable[[], T]) -> T:
        t0 = time.perf_counter()
        try:
            return fn()
        finally:
            took = time.perf_counter() - t0
            with self._lock:
                self._pending -= 1
                self._mean_s = 0.8 * self._mean_s + 0.2 * took
                idle = self._pending == 0
            if idle:
                release_memory()

    async def run(self, fn: Callable[[], T]) -> T:
        """Run `fn` on a worker thread and await its result; Refused (503) when the queue is full."""
        self._admit()
        try:
            future = self._threads().submit(self._run, fn)
        except BaseException:
            with self._lock:
                self._pending -= 1
            raise
        return await asyncio.wrap_future(future)

    def _threads(self) -> ThreadPoolExecutor:
        # An app outlives a lifespan cycle in tests and ASGI tools (schema loaders start and stop it).
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    self.num_workers, thread_name_prefix=self._name, initializer=_lower_thread_priority
                )
            return self._pool

    def shutdown(self) -> None:
        """Drop the waiting jobs and let the running ones finish on their own (the process is stopping)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


class RateLimiter:
    """Token buckets per client: `burst` requests at once, refilled at `per_min` a minute; else Refused (429).

    At most `max_clients` buckets are kept (the least recently seen go first), so a scan of many addresses
    cannot grow memory without bound.
    """

    def __init__(self, *, per_min: float, burst: int, max_clients: int = 10_000) -> None:
        self.rate_per_s = per_min / 60.0
        self.burst = float(burst)
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, client: str, *, now: float | None = None) -> None:
        """Spend one token of `client`'s bucket, or raise Refused(429) saying when the next one comes."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, at = self._buckets.pop(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate_per_s)
            if tokens < 1.0:
                self._buckets[client] = (tokens, now)
                wait = math.ceil((1.0 - tokens) / self.rate_per_s)
                raise Refused(
                    429,
                    f"rate limit: at most {self.rate_per_s * 60:g} expensive requests a minute per client",
                    retry_after_s=max(1, wait),
                )
            self._buckets[client] = (tokens - 1.0, now)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)

    def refund(self, client: str) -> None:
        """Give back the token of a request that got nothing (the executor was full)."""
        with self._lock:
            if client in self._buckets:
                tokens, at = self._buckets[client]
                self._buckets[client] = (min(self.burst, tokens + 1.0), at)
