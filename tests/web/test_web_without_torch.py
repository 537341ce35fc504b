"""The serving side needs no torch: `generate --model model.onnx` and the web app run with torch unimportable."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from astrogan.web.onnx_generator import write_tiny_model
from tests.helpers.processes import BLOCK_TORCH

pytestmark = pytest.mark.slow  # spawns processes or a browser


def test_generate_and_serve_from_onnx_without_torch(tmp_path):
    model = write_tiny_model(tmp_path / "model.onnx", z_dim=8, image_size=16)
    script = BLOCK_TORCH + textwrap.dedent(f"""
        from pathlib import Path
        from astrogan.cli.main import main
        out = Path({str(tmp_path / "gen")!r})
        assert main(["generate", "--model", {str(model)!r}, "--seeds", "0-3", "--out", str(out), "--grid"]) == 0
        assert sorted(p.name for p in out.iterdir()) == ["grid.png"] + [f"seed{{i:04d}}.png" for i in range(4)]

        from fastapi.testclient import TestClient
        from astrogan.web.app import create_app
        from astrogan.web.settings import ServeSettings
        app = create_app(ServeSettings(model_path=Path({str(model)!r}), pool_dir=Path({str(tmp_path / "pool")!r})))
        with TestClient(app) as client:
            r = client.get("/api/image.png", params={{"seed": 3}})
            assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text
            assert client.get("/healthz").status_code == 200
        assert "torch" not in sys.modules
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("ok")
