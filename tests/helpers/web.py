"""The web app in-process (FastAPI's TestClient) and what its answers decode to."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from astrogan.web.app import create_app
from astrogan.web.settings import ServeSettings


def make_app(model_path: Path, tmp_path: Path, **settings) -> FastAPI:
    """The app serving `model_path` with its pool in `tmp_path / "pool"`; `settings` are ServeSettings fields."""
    return create_app(ServeSettings(model_path=model_path, pool_dir=tmp_path / "pool", **settings))


def app_client(model_path: Path, tmp_path: Path, **settings) -> TestClient:
    """A TestClient of `make_app(...)` that answers a server error as a 500 instead of raising it."""
    return TestClient(make_app(model_path, tmp_path, **settings), raise_server_exceptions=False)


def png_array(data: bytes) -> np.ndarray:
    """A PNG's pixels as Pillow decodes them."""
    return np.asarray(Image.open(io.BytesIO(data)))
