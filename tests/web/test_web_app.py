"""The web app through FastAPI's TestClient: page, image API, validation, ETag/304, pool use, metrics."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

from astrogan.utils.errors import UserError
from astrogan.utils.seeds import latents_for_seeds
from astrogan.web.onnx_generator import OnnxGenerator, slerp, to_uint8, write_tiny_model
from astrogan.web.settings import ServeSettings
from astrogan.web.worker import fill_to, open_pool
from tests.helpers.web import app_client, png_array


@pytest.fixture()
def cond_model_path(tmp_path):
    return write_tiny_model(
        tmp_path / "cond" / "model.onnx", z_dim=8, image_size=16, channels=1, num_classes=3
    )


def test_every_route_has_its_own_latency_histogram(model_path, tmp_path):
    from astrogan.web.app import METERED_ROUTES

    client = app_client(model_path, tmp_path)
    served = {getattr(r, "path", None) for r in client.app.routes} - {"/openapi.json"}
    assert served == set(METERED_ROUTES)  # a new route without its histogram would be counted as "other"


def test_image_cache_keeps_the_newest_bodies():
    from astrogan.web.caching import ImageCache

    made: list[str] = []

    def maker(name: str):
        return lambda: made.append(name) or name.encode()

    cache = ImageCache("model-a", max_items=2)
    order = (1, 2, 1, 3, 2, 1)
    assert [cache.get(("k", i), maker(f"k{i}")) for i in order] == [f"k{i}".encode() for i in order]
    assert made == ["k1", "k2", "k3", "k2", "k1"]  # k1 was fresh when k3 came in, so k2 was dropped
    assert cache.etag("png", 1) != ImageCache("model-b", max_items=2).etag("png", 1)  # a new model, new tags
    assert re.fullmatch(r'"[0-9a-f]{32}"', cache.etag("png", 1))
    none_kept = ImageCache("model-a", max_items=0)
    made.clear()
    none_kept.get(("k",), maker("k"))
    none_kept.get(("k",), maker("k"))
    assert made == ["k", "k"]


def test_to_uint8_mapping_and_slerp_endpoints():
    x = np.array([-1.5, -1.0, -0.999, 0.0, 0.5, 1.0, 2.0], np.float32).reshape(1, 1, 1, 7)
    out = to_uint8(x)
    assert out.shape == (1, 1, 7, 1)
    np.testing.assert_array_equal(out[0, 0, :, 0], [0, 0, 0, 128, 191, 255, 255])
    a, b = np.random.default_rng(0).standard_normal((2, 8)).astype(np.float32)
    path = slerp(a, b, np.linspace(0, 1, 5))
    np.testing.assert_allclose(path[0], a, atol=1e-6)
    np.testing.assert_allclose(path[-1], b, atol=1e-6)


def test_onnx_generator_seed_is_batch_independent(model_path):
    gen = OnnxGenerator(model_path)
    assert (gen.z_dim, gen.image_size, gen.channels, gen.num_classes) == (8, 16, 3, 0)
    together = gen.generate([3, 7, 11], batch_size=2)
    alone = gen.generate([7])
    assert together.dtype == np.uint8 and together.shape == (3, 16, 16, 3)
    np.testing.assert_array_equal(together[1], alone[0])
    assert not np.array_equal(together[0], together[2])
    # truncation 0 -> z = 0 -> tanh(0) = 0 -> mid grey everywhere
    assert (gen.generate([5], trunc=0.0) == 128).all()
    with pytest.raises(UserError, match="unconditional"):
        gen.generate([1], labels=[0])
    # the PyTorch sampler's rule: before, 0 and -3 were quietly batches of 1
    for bad in (0, -3, 2.5):
        with pytest.raises(UserError, match="batch_size must be a whole number of at least 1"):
            gen.generate([1, 2], batch_size=bad)
        with pytest.raises(UserError, match="batch_size must be a whole number of at least 1"):
            gen.generate_float(gen.latents([1]), batch_size=bad)


def test_truncation_is_a_graph_input_fed_per_row(model_path):
    gen = OnnxGenerator(model_path)
    assert gen.has_trunc_input and [i.name for i in gen.session.get_inputs()] == ["z", "trunc"]
    assert gen.meta["inputs"]["truncation"] == "trunc"
    z = gen.latents([1, 2, 3])
    np.testing.assert_array_equal(z, latents_for_seeds([1, 2, 3], 8))  # raw z: nothing scaled outside
    mixed = gen.generate_float(z, trunc=[0.5, 1.0, 0.25], batch_size=2)
    for i, t in enumerate([0.5, 1.0, 0.25]):
        np.testing.assert_allclose(mixed[i], gen.generate_float(z[i : i + 1], trunc=t)[0], atol=1e-6)
    assert not np.allclose(mixed[0], gen.generate_float(z[:1])[0])
    np.testing.assert_array_equal(gen.generate([1, 2], trunc=0.7), gen.generate_latents(z[:2], trunc=0.7))
    with pytest.raises(ValueError, match="trunc"):
        gen.generate_float(z, trunc=[0.5, 1.0])


def test_old_export_without_trunc_input_still_serves_truncated(tmp_path):
    """Exports from before in-network truncation (z-GANs only) take no `trunc`: z is scaled instead."""
    new = OnnxGenerator(write_tiny_model(tmp_path / "new" / "model.onnx", seed=3))
    old_path = write_tiny_model(tmp_path / "old" / "model.onnx", seed=3, trunc_input=False)
    old = OnnxGenerator(old_path)
    assert not old.has_trunc_input and [i.name for i in old.session.get_inputs()] == ["z"]
    assert "truncation" not in old.meta["inputs"]
    for trunc in (1.0, 0.6, [0.3, 1.2, 0.6]):
        a = old.generate_float(old.latents([4, 5, 6]), trunc=trunc)
        b = new.generate_float(new.latents([4, 5, 6]), trunc=trunc)
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert not np.array_equal(old.generate([4], trunc=0.5), old.generate([4]))
    client = app_client(old_path, tmp_path)
    r = client.get("/api/image.png", params={"seed": 9, "trunc": 0.5})
    assert r.status_code == 200
    np.testing.assert_array_equal(png_array(r.content), old.generate([9], trunc=0.5)[0])
    anim = client.get("/api/interpolate", params={"from": 1, "to": 2, "steps": 3, "trunc": 0.5})
    frames = Image.open(io.BytesIO(anim.content))
    frames.seek(2)
    np.testing.assert_array_equal(np.asarray(frames.convert("RGB")), old.generate([2], trunc=0.5)[0])


def test_onnx_generator_labels(cond_model_path):
    gen = OnnxGenerator(cond_model_path)
    assert gen.num_classes == 3 and gen.label_names == ["class0", "class1", "class2"]
    np.testing.assert_array_equal(gen.generate([1, 2], labels=2), gen.generate([1, 2], labels=[2, 2]))
    np.testing.assert_array_equal(gen.generate([4, 5]), gen.generate([4, 5], labels=[1, 2]))  # seed % 3
    assert not np.array_equal(gen.generate([4], labels=[0]), gen.generate([4], labels=[1]))
    with pytest.raises(UserError, match="0..2"):
        gen.generate([1], labels=[3])


def test_image_is_deterministic_with_etag_and_304(model_path, tmp_path):
    client = app_client(model_path, tmp_path)
    r1 = client.get("/api/image.png", params={"seed": 42})
    r2 = client.get("/api/image.png", params={"seed": 42})
    assert r1.status_code == 200 and r1.headers["content-type"] == "image/png"
    assert r1.content == r2.content and r1.headers["etag"] == r2.headers["etag"]
    assert r1.headers["etag"].startswith('"') and not r1.headers["etag"].startswith("W/")
    assert "max-age" in r1.headers["cache-control"]
    expected = OnnxGenerator(model_path).generate([42])[0]
    np.testing.assert_array_equal(png_array(r1.content), expected)
    r304 = client.get("/api/image.png", params={"seed": 42}, headers={"If-None-Match": r1.headers["etag"]})
    assert r304.status_code == 304 and r304.content == b""
    other = client.get("/api/image.png", params={"seed": 43})
    assert other.headers["etag"] != r1.headers["etag"] and other.content != r1.content
    trunc = client.get("/api/image.png", params={"seed": 42, "trunc": 0.5})
    assert trunc.headers["etag"] != r1.headers["etag"]


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/api/image.png", {}, "seed"),
        ("/api/image.png", {"seed": -1}, "seed"),
        ("/api/image.png", {"seed": 2**32}, "seed"),
        ("/api/image.png", {"seed": "abc"}, "seed"),
        ("/api/image.png", {"seed": 1, "trunc": 5}, "trunc"),
        ("/api/image.png", {"seed": 1, "trunc": 0}, "trunc"),  # as `generate --trunc`: in (0, 2]
        ("/api/image.png", {"seed": 1, "class": 0}, "class"),
        ("/api/interpolate", {"from": 1, "to": 2, "steps": 65}, "steps"),
        ("/api/interpolate", {"from": 1, "to": 2, "steps": 1}, "steps"),
        ("/api/interpolate", {"from": 1}, "to"),
        ("/api/interpolate", {"from": 1, "to": 2, "format": "bmp"}, "format"),
        ("/api/grid", {"seeds": "0-64"}, "seeds"),
        ("/api/grid", {"seeds": "x"}, "seeds"),
        ("/api/grid", {"seeds": "5-1"}, "seeds"),
        ("/api/grid", {"seeds": "../../etc/passwd"}, "seeds"),
        ("/api/grid", {"seeds": "0-4294967295"}, "seeds"),
        ("/api/grid", {"seeds": "1,2,0-62"}, "seeds"),
        ("/api/image.png", {"seed": 1, "trunc": "nan"}, "trunc"),
        ("/api/image.png", {"seed": 1, "trunc": "inf"}, "trunc"),
    ],
)
def test_bad_input_gets_422_with_one_line_reason(model_path, tmp_path, path, params, field):
    client = app_client(model_path, tmp_path)
    r = client.get(path, params=params)
    assert r.status_code == 422, r.text
    body = r.json()
    assert set(body) == {"error"} and "\n" not in body["error"] and body["error"].startswith(field)
    assert "Traceback" not in r.text


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"seed": 1, "trunc": "nan"}, "trunc: should be a finite number, got 'nan'"),
        ({"seed": 1, "trunc": "-inf"}, "trunc: should be a finite number, got '-inf'"),
        ({"seed": 1, "trunc": "1e999"}, "trunc: should be a finite number, got '1e999'"),
        ({"seed": 1, "trunc": "5"}, "trunc: Input should be less than or equal to 2, got '5'"),
        ({"seed": 1, "trunc": "0"}, "trunc: Input should be greater than 0, got '0'"),
        ({"seed": "abc"}, "got 'abc'"),
    ],
)
def test_a_422_says_what_was_given_and_calls_nan_not_a_number(model_path, tmp_path, params, words):
    """nan and inf parse as floats and then fail a bound: "should be <= 2" alone would mislead."""
    r = app_client(model_path, tmp_path).get("/api/image.png", params=params)
    assert r.status_code == 422 and words in r.json()["error"], r.text


def test_unknown_paths_are_json_404_and_security_headers(model_path, tmp_path):
    client = app_client(model_path, tmp_path)
    for path in ("/nope", "/static/../model.onnx", "/static/model.json", "/pool/pool.sqlite"):
        r = client.get(path)
        assert r.status_code == 404 and set(r.json()) == {"error"}, path
    r = client.get("/healthz")
    assert r.json()["status"] == "ok"
    csp = r.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert client.post("/api/image.png?seed=1").status_code == 405


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS"])
@pytest.mark.parametrize("path", ["/", "/api/image.png?seed=1", "/healthz", "/static/style.css"])
def test_405_says_which_methods_are_allowed(model_path, tmp_path, method, path):
    client = app_client(model_path, tmp_path)
    r = client.request(method, path)
    assert r.status_code == 405 and set(r.json()) == {"error"}
    assert sorted(m.strip() for m in r.headers["allow"].split(",")) == ["GET", "HEAD"]
    assert client.head(path).status_code == 200  # what Allow promises works


def test_conditional_class_changes_image(cond_model_path, tmp_path):
    client = app_client(cond_model_path, tmp_path)
    a = client.get("/api/image.png", params={"seed": 5, "class": 0})
    b = client.get("/api/image.png", params={"seed": 5, "class": 2})
    assert a.status_code == b.status_code == 200 and a.content != b.content
    assert png_array(a.content).shape == (16, 16)  # one channel -> greyscale PNG
    assert client.get("/api/image.png", params={"seed": 5, "class": 3}).status_code == 422
    default = client.get("/api/image.png", params={"seed": 5}).content  # class defaults to seed % 3 = 2
    assert default == b.content


@pytest.mark.parametrize("cls", ["3", "-1", "10000", "-" + "9" * 40])
@pytest.mark.parametrize(
    "path", ["/api/image.png?seed=1", "/api/grid?seeds=0-3", "/api/interpolate?from=0&to=1"]
)
def test_a_class_out_of_range_is_told_the_models_range(cond_model_path, tmp_path, path, cls):
    r = app_client(cond_model_path, tmp_path).get(f"{path}&class={cls}")
    assert r.status_code == 422 and r.json()["error"].startswith("class: must lie in 0..2"), r.text


def test_interpolation_and_grid(model_path, tmp_path):
    client = app_client(model_path, tmp_path)
    gen = OnnxGenerator(model_path)
    r = client.get("/api/interpolate", params={"from": 1, "to": 2, "steps": 6})
    assert r.status_code == 200 and r.headers["content-type"] in ("image/webp", "image/gif")
    anim = Image.open(io.BytesIO(r.content))
    assert anim.n_frames == 6 and anim.size == (16, 16)
    anim.seek(0)
    np.testing.assert_array_equal(np.asarray(anim.convert("RGB")), gen.generate([1])[0])  # lossless WebP
    anim.seek(5)
    np.testing.assert_array_equal(np.asarray(anim.convert("RGB")), gen.generate([2])[0])
    # truncation goes to the network with the walk's raw z: the ends are the truncated seed pictures
    r = client.get("/api/interpolate", params={"from": 1, "to": 2, "steps": 4, "trunc": 0.5})
    anim = Image.open(io.BytesIO(r.content))
    anim.seek(0)
    np.testing.assert_array_equal(np.asarray(anim.convert("RGB")), gen.generate([1], trunc=0.5)[0])
    anim.seek(3)
    np.testing.assert_array_equal(np.asarray(anim.convert("RGB")), gen.generate([2], trunc=0.5)[0])
    assert not np.array_equal(np.asarray(anim.convert("RGB")), gen.generate([2])[0])
    gif = client.get("/api/interpolate", params={"from": 1, "to": 2, "steps": 3, "format": "gif"})
    assert gif.headers["content-type"] == "image/gif" and Image.open(io.BytesIO(gif.content)).n_frames == 3
    g = client.get("/api/grid", params={"seeds": "0-3", "cols": 2})
    grid = png_array(g.content)
    assert grid.shape == (2 * 16 + 3 * 2, 2 * 16 + 3 * 2, 3)
    np.testing.assert_array_equal(grid[2 + 18 : 2 + 18 + 16, 2 + 18 : 2 + 18 + 16], gen.generate([3])[0])


def test_page_serves_pool_images_once_then_reuses(model_path, tmp_path):
    client = app_client(model_path, tmp_path, pool_size=6, low_water=2, reservoir_size=4)
    settings = client.app.state.settings
    pool = open_pool(settings)
    assert fill_to(pool, OnnxGenerator(model_path), settings, target=5) == 5
    seeds = []
    for _ in range(5):
        r = client.get("/")
        assert r.status_code == 200 and r.headers["x-astrogan-source"] == "pool"
        assert "This sky does not exist" in r.text and r.headers["cache-control"] == "no-store"
        seed = int(r.headers["x-astrogan-seed"])
        assert f'data-seed="{seed}"' in r.text
        seeds.append(seed)
    assert len(set(seeds)) == 5
    assert pool.depth() == 0
    r = client.get("/")  # dry pool: a recent picture comes back
    assert r.headers["x-astrogan-source"] == "reuse" and int(r.headers["x-astrogan-seed"]) in seeds
    # the pool picture equals the deterministic API picture for the same seed
    b64 = re.search(r'src="data:image/png;base64,([^"]+)"', r.text).group(1)
    import base64

    page_img = png_array(base64.b64decode(b64))
    api_img = png_array(client.get("/api/image.png", params={"seed": r.headers["x-astrogan-seed"]}).content)
    np.testing.assert_array_equal(page_img, api_img)
    metrics = client.get("/metrics").text
    assert "astrogan_pool_depth 0" in metrics
    assert 'astrogan_served_total{source="pool"} 5' in metrics
    assert "astrogan_reuse_total 1" in metrics and "astrogan_generated_total 5" in metrics
    assert re.search(r'astrogan_http_request_duration_seconds_count\{route="/"\} 6', metrics)


def test_when_empty_generate_draws_inline(model_path, tmp_path):
    client = app_client(model_path, tmp_path, when_empty="generate")
    r = client.get("/")
    assert r.status_code == 200 and r.headers["x-astrogan-source"] == "generated"
    assert "astrogan_inline_generated_total 1" in client.get("/metrics").text


def test_pool_is_emptied_when_the_model_changes(model_path, tmp_path):
    settings = ServeSettings(model_path=model_path, pool_dir=tmp_path / "pool", pool_size=4, low_water=1)
    fill_to(open_pool(settings), OnnxGenerator(model_path), settings, target=3)
    assert open_pool(settings).depth() == 3
    other = write_tiny_model(tmp_path / "other" / "model.onnx", seed=1)
    settings2 = ServeSettings(model_path=other, pool_dir=tmp_path / "pool", pool_size=4, low_water=1)
    assert open_pool(settings2).depth() == 0
    assert list((tmp_path / "pool" / "images").iterdir()) == []


def test_settings_reject_bad_values(model_path):
    with pytest.raises(ValueError, match="low_water"):
        ServeSettings(model_path=model_path, pool_size=10, low_water=10)
    with pytest.raises(ValueError):
        ServeSettings(model_path=model_path, when_empty="panic")
    for trunc in (0.0, -1.0, 2.5):  # (0, 2], as `generate --trunc` and the API's trunc=
        with pytest.raises(ValueError, match="trunc"):
            ServeSettings(model_path=model_path, trunc=trunc)


def test_page_shows_the_model_card(model_path, tmp_path):
    import json

    meta_path = model_path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["model_card"] = {
        "arch": "fastgan",
        "training": {"steps": 12000, "kimg": 384.0},
        "dataset": {
            "name": "apod-64",
            "sources": ["apod"],
            "credits": ["NASA & ESA (3 images)"],
            "licences": {"<b>public domain</b>": 3},
        },
        "metrics": {"fid": 41.73219},
    }
    meta["parity"] = {"max_abs_diff": 2.5e-7, "num_seeds": 64}
    meta_path.write_text(json.dumps(meta))
    client = app_client(model_path, tmp_path)
    text = client.get("/").text
    for piece in (
        "fastgan",
        "12,000 steps",
        "384 kimg",
        "apod-64",
        "NASA &amp; ESA (3 images)",
        "&lt;b&gt;public domain&lt;/b&gt; (3 images)",
        "fid = 41.73",
        "2.50e-07 over 64 seeds",
        "Show me another one",
        "16&times;16 px",
    ):
        assert piece in text, piece
    assert "<b>public domain</b>" not in text  # escaped, never raw HTML from a model file
