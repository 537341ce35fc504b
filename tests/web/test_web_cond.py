"""The web app on a generator conditioned on physical parameters: query conditions, validation, cache keys, pool.

Policy for unknown query parameters (chosen here, documented in routes_images): every query parameter must be
one the route declares or one of the model's conditions, else 422 naming it. So a misspelt condition
(`sersic=2`) is an error instead of a picture silently drawn at the training mean, and a condition on a
model without conditions is refused.
"""

from __future__ import annotations

import base64
import html
import io
import re
from urllib.parse import parse_qsl, urlsplit

import numpy as np
import pytest
from PIL import Image

from astrogan.conditions import CondSpec
from astrogan.web.app import create_app
from astrogan.web.onnx_generator import OnnxGenerator, write_tiny_model
from astrogan.web.settings import ServeSettings
from astrogan.web.worker import fill_to, open_pool, pool_conditions
from tests.helpers.web import app_client, png_array

SPEC = CondSpec(
    names=("sersic_n", "half_light_radius_px", "q"),
    units=("", "px", ""),
    low=(0.5, 2.0, 0.2),
    high=(6.0, 8.0, 1.0),
    mean=(2.5, 4.0, 0.6),
    std=(1.2, 1.5, 0.2),
)


@pytest.fixture()
def cond_path(tmp_path):
    return write_tiny_model(tmp_path / "cond" / "model.onnx", z_dim=8, image_size=16, channels=1, cond=SPEC)


@pytest.fixture()
def plain_path(tmp_path):
    return write_tiny_model(tmp_path / "plain" / "model.onnx", z_dim=8, image_size=16, channels=3)


def _frames(data: bytes) -> list[np.ndarray]:
    anim = Image.open(io.BytesIO(data))
    out = []
    for i in range(anim.n_frames):
        anim.seek(i)
        out.append(np.asarray(anim.convert("L")))
    return out


def test_tiny_cond_model_takes_conditions(cond_path):
    gen = OnnxGenerator(cond_path)
    assert gen.has_cond_input and gen.cond_spec == SPEC
    assert gen.meta["inputs"]["cond"] == "cond" and gen.meta["cond"] == SPEC.to_dict()
    at_mean = gen.generate([3])
    np.testing.assert_array_equal(at_mean, gen.generate([3], cond=SPEC.centre()))
    assert not np.array_equal(at_mean, gen.generate([3], cond={"sersic_n": 5.0}))
    # every condition moves the picture
    for name, value in (("sersic_n", 1.0), ("half_light_radius_px", 7.0), ("q", 0.3)):
        assert not np.array_equal(at_mean, gen.generate([3], cond={name: value})), name


def test_image_for_seed_and_conditions_is_deterministic(cond_path, tmp_path):
    client = app_client(cond_path, tmp_path)
    gen = OnnxGenerator(cond_path)
    params = {"seed": 7, "sersic_n": 2.5, "q": 0.4}
    r1 = client.get("/api/image.png", params=params)
    r2 = client.get("/api/image.png", params=params)
    assert r1.status_code == r2.status_code == 200, r1.text
    assert r1.content == r2.content and r1.headers["etag"] == r2.headers["etag"]
    expected = gen.generate([7], cond={"sersic_n": 2.5, "q": 0.4})[0]
    np.testing.assert_array_equal(png_array(r1.content), expected[..., 0])
    # a condition left out takes the training mean; giving the mean explicitly is the same request
    same = client.get("/api/image.png", params={**params, "half_light_radius_px": "4.0", "sersic_n": "2.50"})
    assert same.content == r1.content and same.headers["etag"] == r1.headers["etag"]
    r304 = client.get("/api/image.png", params=params, headers={"If-None-Match": r1.headers["etag"]})
    assert r304.status_code == 304
    # a different condition: different bytes and a different ETag
    other = client.get("/api/image.png", params={**params, "sersic_n": 3.0})
    assert other.status_code == 200
    assert other.content != r1.content and other.headers["etag"] != r1.headers["etag"]
    np.testing.assert_array_equal(
        png_array(other.content), gen.generate([7], cond={"sersic_n": 3.0, "q": 0.4})[0][..., 0]
    )
    # no condition at all: the training mean for every condition
    mean = client.get("/api/image.png", params={"seed": 7})
    np.testing.assert_array_equal(png_array(mean.content), gen.generate([7])[0][..., 0])
    assert mean.headers["etag"] not in (r1.headers["etag"], other.headers["etag"])


def test_grid_and_interpolate_take_the_conditions(cond_path, tmp_path):
    client = app_client(cond_path, tmp_path)
    gen = OnnxGenerator(cond_path)
    cond = {"sersic_n": 4.0, "half_light_radius_px": 3.0}
    g = client.get("/api/grid", params={"seeds": "0-3", "cols": 2, **cond})
    assert g.status_code == 200, g.text
    sheet = png_array(g.content)
    np.testing.assert_array_equal(
        sheet[2 + 18 : 2 + 18 + 16, 2 + 18 : 2 + 18 + 16], gen.generate([3], cond=cond)[0][..., 0]
    )
    g_mean = client.get("/api/grid", params={"seeds": "0-3", "cols": 2})
    assert g_mean.content != g.content and g_mean.headers["etag"] != g.headers["etag"]

    params = {"from": 1, "to": 2, "steps": 3, "format": "gif", **cond}
    a = client.get("/api/interpolate", params=params)
    assert a.status_code == 200, a.text
    frames = _frames(a.content)
    np.testing.assert_array_equal(frames[0], gen.generate([1], cond=cond)[0][..., 0])
    np.testing.assert_array_equal(frames[-1], gen.generate([2], cond=cond)[0][..., 0])
    assert client.get("/api/interpolate", params=params).content == a.content
    a_mean = client.get("/api/interpolate", params={"from": 1, "to": 2, "steps": 3, "format": "gif"})
    assert a_mean.content != a.content and a_mean.headers["etag"] != a.headers["etag"]


@pytest.mark.parametrize("path", ["/api/image.png", "/api/grid", "/api/interpolate"])
@pytest.mark.parametrize(
    ("extra", "field", "words"),
    [
        ({"sersic_n": 9}, "sersic_n", ["[0.5, 6]", "got 9"]),
        ({"q": 0.01}, "q", ["[0.2, 1]", "got 0.01"]),
        ({"half_light_radius_px": 100}, "half_light_radius_px", ["[2, 8] px"]),
        ({"sersic_n": "abc"}, "sersic_n", ["must be a number", "abc"]),
        ({"sersic_n": ""}, "sersic_n", ["must be a number"]),
        ({"sersic_n": "nan"}, "sersic_n", ["finite"]),
        ({"q": "inf"}, "q", ["finite"]),
        ({"q": "-Infinity"}, "q", ["finite"]),
        (
            {"sersic": 2},
            "sersic",
            ["unknown parameter", "did you mean sersic_n", "sersic_n, half_light_radius_px, q"],
        ),
        ({"SERSIC_N": 2}, "SERSIC_N", ["unknown parameter", "did you mean sersic_n"]),
        ({"Q": 0.4}, "Q", ["unknown parameter", "did you mean q"]),
    ],
)
def test_bad_conditions_get_422_naming_the_parameter(cond_path, tmp_path, path, extra, field, words):
    client = app_client(cond_path, tmp_path, image_cache_size=0)
    base = {
        "/api/image.png": {"seed": 1},
        "/api/grid": {"seeds": "0-1"},
        "/api/interpolate": {"from": 1, "to": 2},
    }
    r = client.get(path, params={**base[path], **extra})
    assert r.status_code == 422, r.text
    reason = r.json()["error"]
    assert set(r.json()) == {"error"} and reason.startswith(field), reason
    for w in words:
        assert w in reason, reason


def test_a_condition_given_twice_is_refused(cond_path, tmp_path):
    client = app_client(cond_path, tmp_path)
    r = client.get("/api/image.png?seed=1&q=0.4&q=0.5")
    assert r.status_code == 422 and r.json()["error"].startswith("q") and "once" in r.json()["error"]


@pytest.mark.parametrize(
    "query",
    ["/api/image.png?seed=1&seed=2", "/api/image.png?seed=1&trunc=1&trunc=0.5", "/api/grid?seeds=1&seeds=2"],
)
def test_a_route_parameter_given_twice_is_refused(cond_path, plain_path, tmp_path, query):
    for model in (cond_path, plain_path):
        r = app_client(model, tmp_path / model.parent.name).get(query)
        assert r.status_code == 422 and "given 2 times; give it once" in r.json()["error"], r.text


def test_printed_range_bounds_are_accepted(cond_path, tmp_path):
    client = app_client(cond_path, tmp_path)
    for q in (0.2, 1.0):
        assert client.get("/api/image.png", params={"seed": 1, "q": q}).status_code == 200


@pytest.mark.parametrize("path", ["/api/image.png", "/api/grid", "/api/interpolate"])
def test_unknown_parameters_are_ignored_like_http_clients_expect(plain_path, cond_path, tmp_path, path):
    # Cache busters and tracking tags must not break a picture; on a plain model a condition's name is
    # just another unknown parameter.
    base = {
        "/api/image.png": {"seed": 1},
        "/api/grid": {"seeds": "0-1"},
        "/api/interpolate": {"from": 1, "to": 2},
    }
    for model, extra in (
        (plain_path, {"sersic_n": 2.5, "_": "123"}),
        (cond_path, {"_": "123", "utm_source": "x"}),
    ):
        client = app_client(model, tmp_path / model.stem)
        r = client.get(path, params={**base[path], **extra})
        assert r.status_code == 200, r.text
        assert r.content == client.get(path, params=base[path]).content


def test_openapi_describes_the_models_conditions(cond_path, plain_path, tmp_path):
    schema = app_client(cond_path, tmp_path).get("/openapi.json").json()
    for path in ("/api/image.png", "/api/grid", "/api/interpolate"):
        op = schema["paths"][path]["get"]
        params = {p["name"]: p for p in op["parameters"]}
        for i, name in enumerate(SPEC.names):
            p = params[name]
            assert p["in"] == "query" and not p["required"], p
            assert p["schema"]["minimum"] == SPEC.low[i] and p["schema"]["maximum"] == SPEC.high[i]
            assert name in op["description"]
        assert "2 to 8 px" in op["description"]
        assert "seed" in params or "seeds" in params or "from" in params  # the declared ones are still there
    plain = app_client(plain_path, tmp_path / "plain").get("/openapi.json").json()
    names = {p["name"] for p in plain["paths"]["/api/image.png"]["get"]["parameters"]}
    assert names == {"seed", "trunc", "class", "format", "rgb", "band"}
    assert "no physical conditions" in plain["paths"]["/api/image.png"]["get"]["description"]


def test_pool_conditions_are_deterministic_varied_and_in_range():
    draws = [pool_conditions(SPEC, s) for s in range(200)]
    assert draws[5] == pool_conditions(SPEC, 5)
    for i, name in enumerate(SPEC.names):
        values = np.array([d[name] for d in draws])
        assert (values >= SPEC.low[i]).all() and (values <= SPEC.high[i]).all()
        span = SPEC.high[i] - SPEC.low[i]
        # uniform over the range: spread over most of it, not huddled at the mean
        assert values.max() - values.min() > 0.9 * span and len(set(values)) > 150
        # short decimals (4 significant digits, more only at the range's ends), so links and headers stay short
        assert sum(float(f"{v:.4g}") == v for v in values) >= 190 and all(
            float(f"{v:.8g}") == v for v in values
        )


def test_pool_pictures_of_a_cond_model_vary_in_their_conditions(cond_path, tmp_path):
    client = app_client(cond_path, tmp_path, pool_size=6, low_water=2, reservoir_size=4)
    settings = ServeSettings(model_path=cond_path, pool_dir=tmp_path / "pool", pool_size=6, low_water=2)
    gen = OnnxGenerator(cond_path)
    assert fill_to(open_pool(settings), gen, settings, target=4) == 4
    seen = []
    for _ in range(4):
        r = client.get("/")
        assert r.status_code == 200 and r.headers["x-astrogan-source"] == "pool"
        seed = int(r.headers["x-astrogan-seed"])
        conds = dict(kv.split("=") for kv in r.headers["x-astrogan-conditions"].split(","))
        assert {k: float(v) for k, v in conds.items()} == pool_conditions(SPEC, seed)
        # the pool picture was drawn at its conditions, not at the training mean
        page_img = png_array(
            base64.b64decode(re.search(r'src="data:image/png;base64,([^"]+)"', r.text).group(1))
        )
        np.testing.assert_array_equal(page_img, gen.generate([seed], cond=conds)[0][..., 0])
        assert not np.array_equal(page_img, gen.generate([seed])[0][..., 0])
        # the page links the API URL that draws this very picture
        link = html.unescape(re.search(r'<a href="(/api/image\.png\?[^"]+)"', r.text).group(1))
        query = dict(parse_qsl(urlsplit(link).query))
        assert {k: query[k] for k in SPEC.names} == conds and int(query["seed"]) == seed
        api = client.get(link)
        assert api.status_code == 200, api.text
        np.testing.assert_array_equal(png_array(api.content), page_img)
        for name in SPEC.names:
            assert f"{name} = {conds[name]}" in r.text
        seen.append(tuple(conds.values()))
    assert len(set(seen)) == 4


def test_page_lists_the_conditions_with_units_and_ranges(cond_path, plain_path, tmp_path):
    text = app_client(cond_path, tmp_path, when_empty="generate").get("/").text
    for piece in (
        "Conditions",
        "sersic_n: 0.5 to 6 (trained range",
        "half_light_radius_px: 2 to 8 px",
        "q: 0.2 to 1",
    ):
        assert piece in text, piece
    plain = app_client(plain_path, tmp_path / "plain", when_empty="generate").get("/")
    assert "Conditions" not in plain.text and "x-astrogan-conditions" not in plain.headers


def test_inline_drawn_page_picture_uses_its_conditions(cond_path, tmp_path):
    client = app_client(cond_path, tmp_path, when_empty="generate")
    gen = OnnxGenerator(cond_path)
    r = client.get("/")
    assert r.headers["x-astrogan-source"] == "generated"
    seed = int(r.headers["x-astrogan-seed"])
    page_img = png_array(base64.b64decode(re.search(r'src="data:image/png;base64,([^"]+)"', r.text).group(1)))
    np.testing.assert_array_equal(page_img, gen.generate([seed], cond=pool_conditions(SPEC, seed))[0][..., 0])


@pytest.mark.slow  # a hundred generated requests
def test_schema_generated_requests_with_conditions_never_fail(cond_path, tmp_path):
    """Schemathesis from the per-model schema: the conditions it generates in range are accepted, never 5xx."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode

    serve = ServeSettings(  # generous rate limits: this test is about validation
        model_path=cond_path,
        pool_dir=tmp_path / "pool",
        image_cache_size=0,
        heavy_rate_per_min=1e6,
        heavy_burst=10**5,
    )
    app = create_app(serve)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    ops = [res.ok() for res in schema.get_all_operations()]
    for op in [o for o in ops if o.path in ("/api/image.png", "/api/grid")]:

        @given(case=op.as_strategy(generation_mode=GenerationMode.POSITIVE))
        @settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def check(case):
            response = case.call()
            assert response.status_code in (200, 304, 422), (case.query, response.text)
            if response.status_code == 422:  # other parameters may be refused, in-range conditions never
                assert not response.json()["error"].startswith(SPEC.names), (case.query, response.text)

        check()
