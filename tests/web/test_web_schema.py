"""Schemathesis against the app's OpenAPI schema: no generated request, valid or not, gets a 5xx."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from astrogan.web.app import create_app
from astrogan.web.onnx_generator import write_tiny_model
from astrogan.web.settings import ServeSettings


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory):
    root = tmp_path_factory.mktemp("schema")
    model = write_tiny_model(root / "model.onnx", z_dim=8, image_size=16, channels=3, num_classes=2)
    # Generous limits: this test is about validation, not about the abuse limits (tests/web/test_web_abuse.py).
    settings = ServeSettings(
        model_path=model,
        pool_dir=root / "pool",
        pool_size=8,
        low_water=2,
        image_cache_size=0,
        heavy_rate_per_min=1e6,
        heavy_burst=100_000,
    )
    app = create_app(settings)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def _operations(schema):
    ops = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in ops} >= {
        "/",
        "/api/image.png",
        "/api/interpolate",
        "/api/grid",
        "/healthz",
        "/metrics",
    }
    return ops


pytestmark = pytest.mark.slow  # hundreds of generated requests per operation


# Schemathesis' pytest plugin does not load under this pytest, so the strategies are driven with Hypothesis.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_request_gets_a_server_error(api_schema, mode):
    for op in _operations(api_schema):
        if mode is GenerationMode.NEGATIVE and op.path in ("/", "/healthz", "/metrics"):
            continue  # no parameters: there is no invalid request to generate

        @given(case=op.as_strategy(generation_mode=mode))
        @settings(max_examples=15, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def check(case):
            response = case.call()
            assert response.status_code < 500, (case.path, case.query, response.text)
            if response.status_code >= 400:
                assert set(response.json()) == {"error"}, response.text
            if mode is GenerationMode.POSITIVE:
                assert response.status_code in (200, 304, 422), (case.query, response.text)

        check()
