"""The refill worker: a separate process that keeps the pool between its low-water mark and its size."""

from __future__ import annotations

import os
import secrets
import signal
import time
from pathlib import Path

import numpy as np

from astrogan.conditions import CondSpec
from astrogan.imaging import sha256_file
from astrogan.utils.seeds import MAX_SEED
from astrogan.web.imaging import encode_png
from astrogan.web.lifecycle import die_with_parent
from astrogan.web.onnx_generator import OnnxGenerator
from astrogan.web.pool import Pool
from astrogan.web.settings import ServeSettings


def model_id(path: str | Path) -> str:
    """Identity of a model file (sha256 of its bytes): pools are tied to the model that filled them."""
    return sha256_file(path)[:16]


def open_pool(settings: ServeSettings) -> Pool:
    """The pool for these settings' model."""
    return Pool(settings.resolved_pool_dir, model_id=model_id(settings.model_path))


# Mixed into a seed's RNG for its pool conditions, so they are a stream apart from the seed's latent.
COND_STREAM = 0xC04D


def pool_conditions(spec: CondSpec, seed: int) -> dict[str, float]:
    """The conditions of the pool picture for `seed`: each drawn uniformly in its trained range.

    Deterministic in the seed, so the pool keeps no extra column: the page recomputes them to show them and
    to link the picture's API URL. Values are rounded to 4 significant digits (inward when rounding would
    leave the range), so that `repr` of each is a short query value that parses back to the same number.
    """
    u = np.random.default_rng([int(seed), COND_STREAM]).random(spec.dim)
    out = {}
    for i, name in enumerate(spec.names):
        low, high = spec.low[i], spec.high[i]
        exact = low + float(u[i]) * (high - low)
        value = exact
        for digits in (4, 6, 8):  # the shortest rounding that stays inside the range
            rounded = float(f"{exact:.{digits}g}")
            if low <= rounded <= high:
                value = rounded
                break
        out[name] = value
    return out


def pool_cond_rows(gen: OnnxGenerator, seeds: list[int]) -> np.ndarray | None:
    """float32 `(N, K)`: `pool_conditions` per seed, None for a model without conditions."""
    spec = gen.cond_spec
    if spec is None:
        return None
    return np.asarray([list(pool_conditions(spec, s).values()) for s in seeds], dtype=np.float32)


def refill_batch(pool: Pool, gen: OnnxGenerator, settings: ServeSettings, *, num_images: int) -> list[int]:
    """Draw `num_images` pictures with fresh random seeds and add them to the pool; returns their ids.

    A model on physical conditions draws each picture at its own conditions (`pool_conditions`), not all
    at the training mean.
    """
    seeds = [secrets.randbelow(MAX_SEED + 1) for _ in range(num_images)]
    cond = pool_cond_rows(gen, seeds)
    images = gen.generate(seeds, trunc=settings.trunc, cond=cond, batch_size=num_images)
    return pool.add_many(
        (s, settings.trunc, encode_png(img, compress_level=settings.png_compress_level))
        for s, img in zip(seeds, images, strict=True)
    )


def fill_to(pool: Pool, gen: OnnxGenerator, settings: ServeSettings, *, target: int) -> int:
    """Refill synchronously until `target` unseen pictures wait; returns how many were made."""
    made = 0
    while (depth := pool.depth()) < target:
        made += len(refill_batch(pool, gen, settings, num_images=min(settings.refill_batch, target - depth)))
    return made


# Image files no row names are deleted at refill start once older than this (a live writer commits sooner).
ORPHAN_GRACE_S = 60.0
# The worker writes its heartbeat into the pool at most this often (`/healthz` reads it).
HEARTBEAT_EVERY_S = 1.0


def run_worker(
    settings: ServeSettings,
    *,
    poll_s: float = 0.05,
    max_seconds: float | None = None,
    orphan_grace_s: float = ORPHAN_GRACE_S,
) -> None:
    """Loop: when depth falls below low-water, fill up to pool size (hysteresis); prune the reservoir.

    Starts by deleting orphaned image files; writes a heartbeat into the pool as it goes. Runs until
    SIGTERM/SIGINT, until the parent process dies, or for `max_seconds`.
    """
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    parent = os.getppid()
    pool = open_pool(settings)
    pool.beat()
    pool.remove_orphans(grace_s=orphan_grace_s)
    gen = OnnxGenerator(settings.model_path, num_threads=settings.num_threads)
    filling = True  # start by filling the pool to its size
    t_end = None if max_seconds is None else time.monotonic() + max_seconds
    last_beat = 0.0
    while not stop and os.getppid() == parent and (t_end is None or time.monotonic() < t_end):
        if time.monotonic() - last_beat >= HEARTBEAT_EVERY_S:
            pool.beat()
            last_beat = time.monotonic()
        depth = pool.depth()
        if filling and depth >= settings.pool_size:
            filling = False
        elif not filling and depth < settings.low_water:
            filling = True
        if filling:
            num = min(settings.refill_batch, settings.pool_size - depth)
            refill_batch(pool, gen, settings, num_images=num)
            pool.prune(keep_claimed=settings.reservoir_size)
        else:
            pool.prune(keep_claimed=settings.reservoir_size)
            time.sleep(poll_s)
    pool.close()


def worker_main(settings_json: str, parent_pid: int | None = None) -> None:
    """Process entry point (spawn-safe: takes the settings as JSON); ends with `parent_pid` when given."""
    if parent_pid is not None:
        die_with_parent(parent_pid)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        # Refilling is background work: requests (page, API) must win the CPU when both want it.
        os.nice(10)
    except OSError:
        pass
    run_worker(ServeSettings.model_validate_json(settings_json))
