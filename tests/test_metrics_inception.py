"""FID Inception: loading a weights file the test makes (random values), input mapping, FID/KID wiring."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from astrogan.metrics import parse_metric_names
from astrogan.metrics.compute import compute_metrics
from astrogan.metrics.inception import (
    FEATURE_DIM,
    FIDInceptionV3,
    images_to_inception_input,
    load_inception,
    resolve_weights_path,
)
from astrogan.utils.errors import UserError


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    torch.manual_seed(0)
    model = FIDInceptionV3()
    path = tmp_path_factory.mktemp("inc") / "pt_inception-test.pth"
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, path)
    return path


def test_state_dict_has_the_fid_inception_layout():
    sd = FIDInceptionV3().state_dict()
    assert sd["fc.weight"].shape == (1008, 2048)
    assert sd["Mixed_7c.branch_pool.conv.weight"].shape == (192, 2048, 1, 1)
    assert sd["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)
    assert "Mixed_6e.branch7x7dbl_5.bn.running_var" in sd
    num = sum(v.numel() for k, v in sd.items() if "num_batches" not in k and "running" not in k)
    # torchvision inception_v3 without aux head has 23,834,568 parameters; 8 more classes add 8 * 2049.
    assert num == 23_834_568 + 8 * 2049


def test_load_checks_hash_and_runs(weights_file):
    model, sha = load_inception(weights_file)
    assert sha == hashlib.sha256(weights_file.read_bytes()).hexdigest()
    x = images_to_inception_input(np.random.default_rng(0).integers(0, 256, (2, 16, 16, 1), dtype=np.uint8))
    assert x.shape == (2, 3, 16, 16) and torch.equal(x[:, 0], x[:, 2])
    with torch.no_grad():
        f = model(x)
    assert f.shape == (2, FEATURE_DIM) and torch.isfinite(f).all()


def test_bad_weights_files_are_user_errors(tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(3)}, bad)
    with pytest.raises(UserError, match="not the FID Inception"):
        load_inception(bad)
    with pytest.raises(UserError, match="does not exist"):
        resolve_weights_path(tmp_path / "missing.pth")


def test_multiband_mapping_uses_first_three_bands():
    x = np.random.default_rng(1).random((1, 8, 8, 5)).astype(np.float32)
    t = images_to_inception_input(x)
    assert np.allclose(t.numpy()[0].transpose(1, 2, 0), x[0, ..., :3])


def test_fid_kid_skipped_without_weights(monkeypatch, capsys):
    monkeypatch.delenv("ASTROGAN_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setenv("ASTROGAN_QUIET", "0")
    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    out = compute_metrics(["fid", "kid", "spectrum"], real, real)
    assert "fid" not in out and "kid_mean" not in out
    assert out["spectrum_w1_mean"] == pytest.approx(0.0, abs=1e-12)
    assert "pt_inception-2015-12-05" in capsys.readouterr().err


def test_fid_through_compute_metrics_with_weights(weights_file, tmp_path):
    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    out = compute_metrics(["fid", "kid"], real, real, inception_weights=str(weights_file), cache_dir=tmp_path)
    assert out["fid"] == pytest.approx(0.0, abs=1e-3)
    assert abs(out["kid_mean"]) < 1e-6
    assert any(p.name.endswith(".npz") and "inception" in p.name for p in tmp_path.iterdir())


def test_parse_metric_names():
    assert parse_metric_names("spectrum, fid") == ["spectrum", "fid"]
    assert len(parse_metric_names(None)) == 5
    with pytest.raises(UserError, match="unknown metric"):
        parse_metric_names("fid,bogus")
