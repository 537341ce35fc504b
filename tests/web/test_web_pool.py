"""The shared pool across real processes: atomic claims, the refill worker, `astrogan serve --workers 2`."""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from astrogan.web.onnx_generator import OnnxGenerator, write_tiny_model
from astrogan.web.pool import Pool
from astrogan.web.settings import ServeSettings
from astrogan.web.worker import fill_to, open_pool, run_worker
from tests.helpers.processes import astrogan_cmd
from tests.helpers.serve import running_server


def _claim_all(pool_dir: str, model_id: str, out: mp.Queue, start: mp.Event, ready: mp.Queue) -> None:
    pool = Pool(pool_dir, model_id=model_id)
    ready.put(os.getpid())  # the parent fires `start` only once every claimer is ready, so they really race
    start.wait(60)
    got = []
    while (picture := pool.claim()) is not None:
        got.append(picture.id)
        # A claim takes well under a millisecond: without a pause, the first claimer the OS wakes could drain all
        # 300 before the others run (seen once in CI), and the race this test is about would not happen.
        time.sleep(0.002)
    out.put(got)


@pytest.mark.slow
def test_two_processes_never_claim_the_same_image(tmp_path):
    pool = Pool(tmp_path / "pool", model_id="m1")
    ids = pool.add_many((seed, 1.0, b"png%d" % seed) for seed in range(300))
    ctx = mp.get_context("spawn")
    out, start, ready = ctx.Queue(), ctx.Event(), ctx.Queue()
    args = (str(tmp_path / "pool"), "m1", out, start, ready)
    procs = [ctx.Process(target=_claim_all, args=args) for _ in range(3)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=60)
    start.set()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    claimed = [i for r in results for i in r]
    assert len(claimed) == len(set(claimed)) == 300
    assert set(claimed) == set(ids)
    assert sum(1 for r in results if r) >= 2  # they really competed
    assert pool.depth() == 0 and pool.counters()["served_pool"] == 300
    for r in results:  # each process took the oldest unseen image first
        assert r == sorted(r)


def test_claim_returns_file_bytes_and_prune_keeps_reservoir(tmp_path):
    pool = Pool(tmp_path / "pool", model_id="m1")
    pool.add_many([(1, 1.0, b"one"), (2, 0.7, b"two"), (3, 1.0, b"three")])
    first = pool.claim()
    assert (first.seed, first.trunc, first.png) == (1, 1.0, b"one")
    pool.claim()
    pool.claim()
    assert pool.claim() is None
    assert pool.prune(keep_claimed=1) == 2
    assert len(list((tmp_path / "pool" / "images").glob("*.png"))) == 1
    again = pool.reuse(num_recent=5)
    assert again.seed == 3 and again.png == b"three"


@pytest.mark.slow  # a spawned refill worker
def test_refill_worker_keeps_depth_between_marks(tmp_path):
    model = write_tiny_model(tmp_path / "model.onnx")
    settings = ServeSettings(
        model_path=model,
        pool_dir=tmp_path / "pool",
        pool_size=20,
        low_water=5,
        refill_batch=4,
        reservoir_size=3,
    )
    ctx = mp.get_context("spawn")
    proc = ctx.Process(target=run_worker, args=(settings,), kwargs={"max_seconds": 30})
    proc.start()
    try:
        pool = open_pool(settings)
        deadline = time.monotonic() + 20
        while pool.depth() < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pool.depth() == 20
        time.sleep(0.3)
        assert pool.depth() == 20  # never above the size
        for _ in range(10):
            assert pool.claim() is not None
        time.sleep(0.5)
        assert pool.depth() == 10  # above low-water: no refill yet (hysteresis)
        for _ in range(6):
            pool.claim()
        deadline = time.monotonic() + 20
        while pool.depth() < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pool.depth() == 20
        assert len(list((tmp_path / "pool" / "images").glob("*.png"))) <= 20 + 3  # reservoir pruned
    finally:
        proc.terminate()
        proc.join(10)


@pytest.mark.slow
def test_serve_cli_two_workers_share_the_pool(tmp_path):
    model = write_tiny_model(tmp_path / "model.onnx", image_size=16)
    settings = ServeSettings(model_path=model, pool_dir=tmp_path / "pool", pool_size=60, low_water=10)
    assert fill_to(open_pool(settings), OnnxGenerator(model), settings, target=60) == 60
    flags = ["--pool-size", "60", "--low-water", "10", "--workers", "2", "--no-refill"]
    with running_server(model, tmp_path / "pool", *flags) as server:
        base = server.url

        def visit(_: int) -> str:
            r = httpx.get(base + "/", timeout=20)  # a new connection each time: either process may answer
            assert r.status_code == 200 and r.headers["x-astrogan-source"] == "pool"
            return r.headers["x-astrogan-seed"]

        with ThreadPoolExecutor(max_workers=8) as ex:  # concurrent visitors keep both processes busy
            seeds = list(ex.map(visit, range(50)))
        pids = _claimers(tmp_path / "pool")
        assert len(seeds) == len(set(seeds)) == 50
        assert len(pids) == 2, "both server processes should have served"


def _claimers(pool_dir) -> set[int]:
    import sqlite3

    with sqlite3.connect(pool_dir / "pool.sqlite") as conn:
        rows = conn.execute("SELECT DISTINCT claimed_by FROM images WHERE claimed_by IS NOT NULL")
        return {r[0] for r in rows}


@pytest.mark.slow  # starts a process
@pytest.mark.parametrize(
    "flags", [["--low-water", "600"], ["--when-empty", "panic"], ["--subject", "<b>x</b>"]]
)
def test_serve_cli_rejects_bad_flags_in_one_line(tmp_path, flags):
    model = write_tiny_model(tmp_path / "model.onnx")
    r = subprocess.run(
        astrogan_cmd("serve", "--model", model, *flags),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr
