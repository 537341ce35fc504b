"""Fixtures of the web tests: a tiny ONNX model to serve."""

from __future__ import annotations

import pytest

from astrogan.web.onnx_generator import write_tiny_model


@pytest.fixture()
def model_path(tmp_path):
    """A tiny analytic RGB model (z_dim 8, 16 px) in `tmp_path / "model"`."""
    return write_tiny_model(tmp_path / "model" / "model.onnx", z_dim=8, image_size=16, channels=3)
