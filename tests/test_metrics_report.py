"""compute_metrics (the training hook) with its cache, evaluate() report files, and the `astrogan eval` command."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from astrogan.metrics.compute import compute_metrics, evaluate


def galaxies(num: int, *, size: int = 24, seed: int = 0, scale: float = 1.0) -> np.ndarray:
    """Noisy elliptical exponential blobs, uint8 (N, size, size, 3)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.indices((size, size), dtype=np.float64)
    out = np.empty((num, size, size, 3), dtype=np.uint8)
    for i in range(num):
        r_e = scale * rng.uniform(2, 4)
        q, th = rng.uniform(0.5, 1), rng.uniform(0, np.pi)
        dx, dy = xx - size / 2 + rng.uniform(-1, 1), yy - size / 2 + rng.uniform(-1, 1)
        xp, yp = dx * np.cos(th) + dy * np.sin(th), -dx * np.sin(th) + dy * np.cos(th)
        img = 220 * np.exp(-1.68 * np.hypot(xp, yp / q) / r_e) + 10 + rng.normal(0, 3, (size, size))
        out[i] = np.clip(img, 0, 255)[..., None].astype(np.uint8)
    return out


def test_compute_metrics_scalars_and_cache(tmp_path):
    real, fake = galaxies(24, seed=0), galaxies(16, seed=1, scale=2.0)
    names = ["spectrum", "morphology", "memorization"]
    m = compute_metrics(names, real, fake, cache_dir=tmp_path, cache_key="abc123")
    for k in ("spectrum_w1_mean", "morph_w1_mean", "morph_w1_gini", "morph_floor_w1_mean", "memorization_fraction"):
        assert k in m and np.isfinite(m[k]), k
    assert all(isinstance(v, float) for v in m.values())
    cached = sorted(p.name for p in tmp_path.iterdir())
    assert any(n.startswith("abc123-morphology-") for n in cached)
    assert any(n.startswith("abc123-spectrum-") for n in cached)
    # Second call reads the cache and gives the same figures.
    assert compute_metrics(names, real, fake, cache_dir=tmp_path, cache_key="abc123") == m
    # Larger generated galaxies are further from the real ones than a fresh draw of the same law.
    same = compute_metrics(["morphology"], real, galaxies(16, seed=2))
    assert m["morph_w1_r50"] > same["morph_w1_r50"]


def test_evaluate_writes_report(tmp_path):
    real, fake = galaxies(20, seed=3), galaxies(12, seed=4)
    doc = evaluate(real, fake, tmp_path / "rep", names=["spectrum", "morphology", "memorization", "fid"],
                   meta={"generator": "test"})
    rep = tmp_path / "rep"
    on_disk = json.loads((rep / "metrics.json").read_text())
    assert on_disk["schema"] == "astrogan.metrics/1" and on_disk["metrics"] == doc["metrics"]
    assert "fid" in on_disk["skipped"] and "fid" not in on_disk["metrics"]
    for name in ("real_grid.png", "generated_grid.png", "spectrum.png", "morphology.png", "closest_pairs.png"):
        assert Image.open(rep / name).size[0] > 100
    html = (rep / "report.html").read_text()
    assert "spectrum.png" in html and "floor" in html and "pytorch-fid" in html
    with pytest.raises(FileExistsError):
        evaluate(real, fake, rep, names=["spectrum"])


def test_eval_command_on_an_onnx_model(tmp_path):
    onnx_gen = pytest.importorskip("astrogan.web.onnx_generator")
    pytest.importorskip("onnx")
    from astrogan.cli.main import main
    from astrogan.data.build import BuildOptions, build_dataset

    src = tmp_path / "src"
    src.mkdir()
    for i, img in enumerate(galaxies(16, size=32, seed=5)):
        Image.fromarray(img).save(src / f"g{i:02d}.png")
    build_dataset([src], tmp_path / "ds", options=BuildOptions(image_sizes=(16,)), show_progress=False)
    model = onnx_gen.write_tiny_model(tmp_path / "model.onnx", image_size=16, channels=3)
    out = tmp_path / "report"
    rc = main(["eval", "--model", str(model), "--data", str(tmp_path / "ds"), "--num", "12",
               "--metrics", "spectrum,morphology,memorization", "--out", str(out),
               "--cache-dir", str(tmp_path / "cache")])
    assert rc == 0
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["num_generated"] == 12 and doc["num_real"] == 16
    assert doc["meta"]["dataset_content_hash"] and (out / "report.html").is_file()
    assert main(["eval", "--model", str(model), "--data", str(tmp_path / "ds"), "--out", str(out)]) == 2
    assert main(["eval", "--model", str(model), "--data", str(tmp_path / "ds"), "--metrics", "nope"]) == 2


def test_eval_command_on_a_run_directory(tmp_path):
    import torch

    from astrogan.cli.main import main
    from astrogan.data.build import BuildOptions, build_dataset
    from astrogan.models import get_arch
    from astrogan.models.io import save_generator

    src = tmp_path / "src"
    src.mkdir()
    for i, img in enumerate(galaxies(12, size=32, seed=6)):
        Image.fromarray(img).save(src / f"g{i:02d}.png")
    build_dataset([src], tmp_path / "ds", options=BuildOptions(image_sizes=(16,)), show_progress=False)
    torch.manual_seed(0)
    spec = get_arch("dcgan")
    cfg = spec.config_cls(image_size=16, channels=3, z_dim=8, ngf=8, ndf=8)
    save_generator(spec.build_generator(cfg).eval(), arch="dcgan", config=cfg, out_dir=tmp_path / "run" / "checkpoints")
    rc = main(["eval", "--run", str(tmp_path / "run"), "--data", str(tmp_path / "ds"), "--num", "10",
               "--metrics", "spectrum,memorization", "--device", "cpu", "--cache-dir", str(tmp_path / "c")])
    assert rc == 0
    doc = json.loads((tmp_path / "run" / "eval" / "metrics.json").read_text())
    assert doc["num_generated"] == 10 and "spectrum_w1_mean" in doc["metrics"]
    assert "memorization_fraction" in doc["metrics"]
