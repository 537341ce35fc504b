"""The web app under abuse, in process: bounded heavy work (503), rate limits (429), sizes, health, HEAD, card."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from astrogan.utils.errors import UserError
from astrogan.web.caching import ImageCache
from astrogan.web.guard import RateLimiter, Refused
from astrogan.web.onnx_generator import OnnxGenerator, write_tiny_model
from astrogan.web.settings import ServeSettings
from astrogan.web.worker import fill_to, open_pool
from tests.helpers.web import app_client, make_app


def _wait_until(cond, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


# -- bounded executor -----------------------------------------------------------------------------------------


def test_full_heavy_queue_gets_503_with_retry_after_and_the_page_stays_fast(model_path, tmp_path):
    # Three tokens per client and no refill to speak of: a 503 must give its token back, or the walk after the
    # refused grid would be rate-limited (429) instead of refused as busy (503).
    app = make_app(
        model_path,
        tmp_path,
        heavy_workers=1,
        heavy_queue=1,
        heavy_burst=3,
        heavy_rate_per_min=0.01,
        image_cache_size=0,
        pool_size=8,
        low_water=1,
    )
    ctx, gen = app.state.ctx, app.state.generator
    fill_to(app.state.pool, gen, app.state.settings, target=4)
    release = threading.Event()
    original = gen.generate

    def blocked(*args, **kwargs):  # on the heavy threads, a grid takes as long as the test wants
        if threading.current_thread().name.startswith("heavy"):
            assert release.wait(10)
        return original(*args, **kwargs)

    gen.generate = blocked
    results: dict[str, int] = {}
    with TestClient(app, raise_server_exceptions=False) as client:

        def ask(seeds: str) -> None:
            results[seeds] = client.get("/api/grid", params={"seeds": seeds}).status_code

        threads = [threading.Thread(target=ask, args=(s,), daemon=True) for s in ("0-3", "4-7")]
        try:
            for t in threads:
                t.start()
            _wait_until(lambda: ctx.heavy.pending == 2)  # one running, one waiting: the queue is full
            r = client.get("/api/grid", params={"seeds": "8-11"})
            assert r.status_code == 503, r.text
            assert int(r.headers["retry-after"]) >= 1
            assert set(r.json()) == {"error"} and r.json()["error"].startswith("busy")
            r = client.get("/api/interpolate", params={"from": 1, "to": 2, "steps": 4})
            assert r.status_code == 503, r.text  # walks share the executor
            for path in ("/", "/healthz", "/static/style.css"):  # cheap routes never wait for the heavy ones
                t0 = time.perf_counter()
                assert client.get(path).status_code == 200, path
                assert time.perf_counter() - t0 < 1.0, path
        finally:  # let the blocked grids go whatever happened, so that the client can close
            release.set()
            for t in threads:
                t.join(30)
        assert results == {"0-3": 200, "4-7": 200}
        _wait_until(lambda: ctx.heavy.pending == 0)
        assert client.get("/api/grid", params={"seeds": "8-11"}).status_code == 200  # room again


def test_single_pictures_have_their_own_bounded_executor(model_path, tmp_path):
    app = make_app(model_path, tmp_path, image_workers=1, image_queue=0, pool_size=8, low_water=1)
    ctx, gen = app.state.ctx, app.state.generator
    fill_to(app.state.pool, gen, app.state.settings, target=4)
    release = threading.Event()
    original = gen.generate

    def blocked(*args, **kwargs):
        if threading.current_thread().name.startswith("image"):
            assert release.wait(10)
        return original(*args, **kwargs)

    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/api/image.png", params={"seed": 1}).status_code == 200  # cached from now on
        gen.generate = blocked
        kwargs = {"params": {"seed": 2}}
        waiting = threading.Thread(target=client.get, args=("/api/image.png",), kwargs=kwargs, daemon=True)
        try:
            waiting.start()
            _wait_until(lambda: ctx.single.pending == 1)
            r = client.get("/api/image.png", params={"seed": 3})
            assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
            assert (
                client.get("/api/image.png", params={"seed": 1}).status_code == 200
            )  # a cached one still comes
            assert client.get("/api/grid", params={"seeds": "0-1"}).status_code == 200  # grids are apart
            t0 = time.perf_counter()
            assert client.get("/").status_code == 200 and time.perf_counter() - t0 < 1.0
        finally:
            release.set()
            waiting.join(30)
        _wait_until(lambda: ctx.single.pending == 0)
        assert client.get("/api/image.png", params={"seed": 3}).status_code == 200


# -- per-client rate limits -----------------------------------------------------------------------------------


def test_rate_limit_is_per_client_and_spares_cached_answers(model_path, tmp_path):
    app = make_app(model_path, tmp_path, heavy_rate_per_min=6, heavy_burst=2)
    alice = TestClient(app, raise_server_exceptions=False, client=("198.51.100.1", 5000))
    bob = TestClient(app, raise_server_exceptions=False, client=("198.51.100.2", 5000))
    assert alice.get("/api/grid", params={"seeds": "0-1"}).status_code == 200
    assert alice.get("/api/interpolate", params={"from": 1, "to": 2, "steps": 3}).status_code == 200
    r = alice.get("/api/grid", params={"seeds": "2-3"})
    assert r.status_code == 429, r.text
    assert 1 <= int(r.headers["retry-after"]) <= 10  # 6 a minute: a token every 10 s
    assert r.json()["error"].startswith("rate limit")
    assert alice.get("/api/grid", params={"seeds": "0-1"}).status_code == 200  # cached: costs nothing
    assert alice.get("/api/image.png", params={"seed": 5}).status_code == 200  # one picture: not limited
    assert bob.get("/api/grid", params={"seeds": "2-3"}).status_code == 200  # another client, another budget


def test_rate_limiter_refills_and_forgets_old_clients():
    limiter = RateLimiter(per_min=60, burst=2, max_clients=3)
    limiter.take("a", now=0.0)
    limiter.take("a", now=0.0)
    with pytest.raises(Refused) as exc:
        limiter.take("a", now=0.5)
    assert exc.value.status == 429 and exc.value.retry_after_s == 1
    limiter.take("a", now=1.6)  # one token back after a second
    limiter.refund("a")  # a request that got nothing (busy) gives its token back
    limiter.take("a", now=1.6)
    for name in ("b", "c", "d"):
        limiter.take(name, now=2.0)
    assert len(limiter._buckets) == 3 and "a" not in limiter._buckets  # bounded memory


# -- bounded sizes and memory ---------------------------------------------------------------------------------


def test_pixel_budget_bounds_grids_and_walks(model_path, tmp_path):
    client = app_client(model_path, tmp_path, max_request_pixels=16 * 16 * 4)
    assert client.get("/api/interpolate", params={"from": 1, "to": 2, "steps": 4}).status_code == 200
    r = client.get("/api/interpolate", params={"from": 1, "to": 2, "steps": 5})
    assert r.status_code == 422 and r.json()["error"].startswith("steps: at most 4 pictures")
    r = client.get("/api/grid", params={"seeds": "0-4"})
    assert r.status_code == 422 and r.json()["error"].startswith("seeds: at most 4 pictures")


def test_image_cache_keeps_a_byte_budget():
    cache = ImageCache("m", max_items=100, max_bytes=80)
    for i in range(10):
        cache.put(("k", i), bytes(10))
    assert cache.num_bytes == 80 and cache.lookup(("k", 0)) is None and cache.lookup(("k", 9)) is not None
    cache.put(("big",), bytes(11))  # over an eighth of the budget: not kept, nothing evicted
    assert cache.lookup(("big",)) is None and cache.num_bytes == 80


def test_onnx_runtime_gives_memory_back(model_path):
    opts = OnnxGenerator(model_path).session.get_session_options()
    assert opts.enable_cpu_mem_arena is False  # an arena would keep the biggest request's memory for good


def test_generate_latents_in_batches_matches_one_batch(model_path):
    gen = OnnxGenerator(model_path)
    z = gen.latents(list(range(7)))
    np.testing.assert_array_equal(
        gen.generate_latents(z, batch_size=3), gen.generate_latents(z, batch_size=64)
    )


# -- model.json checked against the graph ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"z_dim": 10**9}, "z_dim = 1000000000 but the graph's input 'z' width is 8"),
        ({"image_size": 10**6}, "image_size = 1000000 but the graph's output's height is 16"),
        ({"channels": 4}, "channels = 4 but the graph's output's channels is 3"),
        ({"z_dim": "8; rm -rf"}, "z_dim must be a whole number"),
        ({"z_dim": 2.5}, "z_dim must be a whole number"),
    ],
)
def test_model_json_must_agree_with_the_graph(model_path, change, message):
    meta_path = model_path.with_suffix(".json")
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), **change}))
    with pytest.raises(UserError, match="model.json") as exc:
        OnnxGenerator(model_path)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_model_json_that_is_not_json_is_one_line(model_path):
    model_path.with_suffix(".json").write_text("{not json")
    with pytest.raises(UserError, match="is not valid JSON"):
        OnnxGenerator(model_path)


def test_graph_sizes_are_bounded_too(tmp_path):
    path = write_tiny_model(tmp_path / "wide.onnx", z_dim=70_000, image_size=1, channels=1)
    with pytest.raises(UserError, match=r"z_dim = 70000 is outside 1\.\.65536"):
        OnnxGenerator(path)


# -- health --------------------------------------------------------------------------------------------------


def test_healthz_is_degraded_when_the_pool_is_empty_and_nothing_refills_it(model_path, tmp_path):
    app = make_app(model_path, tmp_path, refill_stale_s=0.3, pool_size=4, low_water=1)
    client = TestClient(app, raise_server_exceptions=False)
    assert client.get("/healthz").json()["status"] == "ok"  # just started: the worker may still be loading
    time.sleep(0.4)
    r = client.get("/healthz")
    assert r.status_code == 503 and r.json()["status"] == "degraded" and r.json()["pool_depth"] == 0
    assert "refill worker" in r.json()["reason"]
    pool = app.state.pool
    pool.beat()  # the refill worker reports: refilling, so healthy
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok" and r.json()["refill_age_s"] < 1
    pool.beat(at=time.time() - 100)  # silent for a long time, but the pool still holds pictures
    fill_to(pool, OnnxGenerator(model_path), app.state.settings, target=2)
    assert client.get("/healthz").status_code == 200
    assert "astrogan_refill_heartbeat_age_seconds 10" in client.get("/metrics").text


# -- HEAD ----------------------------------------------------------------------------------------------------


def test_head_works_wherever_get_does_and_claims_nothing(model_path, tmp_path):
    app = make_app(model_path, tmp_path, pool_size=4, low_water=1)
    fill_to(app.state.pool, OnnxGenerator(model_path), app.state.settings, target=3)
    client = TestClient(app, raise_server_exceptions=False)
    paths = {
        "/api/image.png?seed=3": "image/png",
        "/api/interpolate?from=1&to=2&steps=3": "image/",
        "/api/grid?seeds=0-3": "image/png",
        "/healthz": "application/json",
        "/metrics": "text/plain",
        "/static/style.css": "text/css",
        "/openapi.json": "application/json",
    }
    for path, kind in paths.items():
        get, head = client.get(path), client.head(path)
        assert head.status_code == get.status_code == 200, path
        assert head.content == b"" and head.headers["content-type"].startswith(kind), path
        assert head.headers.get("etag") == get.headers.get("etag"), path
        if path != "/metrics":  # the scrape itself changes the counters
            assert head.headers["content-length"] == get.headers["content-length"], path
    r = client.head("/")
    assert r.status_code == 200 and r.content == b"" and r.headers["content-type"].startswith("text/html")
    assert app.state.pool.depth() == 3  # a HEAD does not use up a picture
    assert client.head("/api/image.png?seed=-1").status_code == 422
    assert client.head("/nope").status_code == 404
    assert client.post("/api/image.png?seed=1").status_code == 405


# -- the model card and the title ---------------------------------------------------------------------------


def _write_card(model_path, dataset: dict, **extra) -> None:
    meta_path = model_path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["model_card"] = {"arch": "fastgan", "dataset": dataset}
    meta.update(extra)
    meta_path.write_text(json.dumps(meta))


def test_model_card_aggregates_sources_and_never_shows_a_local_path(model_path, tmp_path):
    sources = [
        {
            "path": f"apod/{i:04d}.jpg",
            "root": "/home/builder/secret-data/raw",
            "local_path": f"/home/builder/secret-data/raw/apod/{i:04d}.jpg",
            "source": "apod",
            "title": "The Whirlpool Galaxy" if i % 3 else "A nebula",
            "credit": f"Photographer {i}",
            "licence": "public domain" if i < 400 else "© the author",
            "num_images": 1,
        }
        for i in range(630)
    ]
    sources.append(
        {"path": "g10.h5", "root": "C:\\Users\\me\\data", "title": "Galaxy10 DECaLS", "num_images": 5}
    )
    credits = {f"Photographer {i}": 1 for i in range(630)}
    licences = {"public domain": 400, "see /home/builder/secret-data/LICENSE.txt": 230}  # a path in free text
    _write_card(model_path, {"name": "apod-64", "sources": sources, "credits": credits, "licences": licences})
    client = app_client(model_path, tmp_path)
    r = client.get("/")
    assert r.status_code == 200
    assert "secret-data" not in r.text and "builder" not in r.text and "Users" not in r.text
    assert len(r.content) < 20_000  # was 194 KB with every source's repr
    assert "apod: 630 images; licences: public domain (400), © the author (230)" in r.text
    assert "Galaxy10 DECaLS: 5 images" in r.text
    assert "and 618 more" in r.text  # 630 credits, 12 shown
    assert "see (local path) (230 images)" in r.text
    assert "<title>This galaxy does not exist</title>" in r.text  # two thirds of the titles say galaxy
    assert client.app.title == "These galaxies do not exist"


@pytest.mark.parametrize(
    ("dataset", "extra", "settings", "title"),
    [
        ({"name": "galaxy10-decals-64"}, {}, {}, "This galaxy does not exist"),
        ({"name": "sersic-32"}, {}, {}, "This galaxy does not exist"),
        (
            {"name": "apod-64", "sources": [{"source": "apod", "title": "Orion Nebula"}]},
            {},
            {},
            "This nebula",
        ),
        ({"name": "apod-64", "sources": ["apod"]}, {}, {}, "This sky does not exist"),
        ({"name": "apod-64"}, {"subject": "star cluster"}, {}, "This star cluster does not exist"),
        ({"name": "galaxy10"}, {}, {"subject": "comet"}, "This comet does not exist"),
    ],
)
def test_title_follows_the_model(model_path, tmp_path, dataset, extra, settings, title):
    _write_card(model_path, dataset, **extra)
    text = app_client(model_path, tmp_path, **settings).get("/").text
    assert f'<h1 class="headline">{title}' in text
    assert "nebula does not exist" not in text or "nebula" in title.lower()


def test_subject_setting_is_validated(model_path):
    with pytest.raises(ValueError):
        ServeSettings(model_path=model_path, subject="<script>")


# -- orphaned pool files -------------------------------------------------------------------------------------


def test_add_many_leaves_no_file_when_the_pictures_fail(tmp_path):
    pool = open_pool(
        ServeSettings(model_path=write_tiny_model(tmp_path / "m.onnx"), pool_dir=tmp_path / "pool")
    )

    def pictures():
        yield 1, 1.0, b"one"
        raise RuntimeError("encoder failed")

    with pytest.raises(RuntimeError):
        pool.add_many(pictures())
    assert list((tmp_path / "pool" / "images").iterdir()) == []


def test_an_executor_works_again_after_a_lifespan_shutdown():
    """ASGI tools (schema loaders, test clients) start and stop an app's lifespan, then keep calling it."""
    import asyncio

    from astrogan.web.guard import BoundedExecutor

    ex = BoundedExecutor(num_workers=1, max_queue=1)
    assert asyncio.run(ex.run(lambda: 1)) == 1
    ex.shutdown()
    assert asyncio.run(ex.run(lambda: 2)) == 2
    ex.shutdown()
