"""FID Inception: loading a weights file the test makes (random values), input mapping, FID/KID wiring."""

from __future__ import annotations

import hashlib
import pickle

import numpy as np
import pytest
import torch

from astrogan.metrics import parse_metric_names
from astrogan.metrics.compute import compute_metrics
from astrogan.metrics.inception import (
    FEATURE_DIM,
    FIDInceptionV3,
    check_weights_file,
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


def _refused(path) -> str:
    """The UserError message of both load_inception and check_weights_file for `path` (they agree)."""
    with pytest.raises(UserError) as info:
        load_inception(path)
    msg = str(info.value)
    with pytest.raises(UserError) as info2:
        check_weights_file(path)
    assert str(info2.value).replace(str(path.resolve()), str(path)) == msg
    assert "\n" not in msg and "\x1b" not in msg, msg  # one plain line
    assert "weights_only=False" not in msg and "weights_only" not in msg, msg
    assert str(path) in msg, msg
    return msg


class _RunsCode:
    """A pickle that creates a file when unpickled: what a malicious weights file would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("kind", ["text", "garbage", "empty", "truncated_zip", "truncated_legacy"])
def test_files_that_are_not_torch_files(tmp_path, weights_file, kind):
    p = tmp_path / "w.pth"
    if kind == "text":
        p.write_text("<html><body>404 Not Found</body></html>\n")
    elif kind == "garbage":
        p.write_bytes(
            bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8)).lstrip(b"\x80PK")
        )
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "truncated_zip":  # an interrupted download of a real-layout file
        data = weights_file.read_bytes()
        p.write_bytes(data[: len(data) // 2])
    else:
        # torch < 1.6 wrote this format (pt_inception-2015-12-05 dates from then); cut in the tensor data
        torch.save(torch.load(weights_file, weights_only=True), p, _use_new_zipfile_serialization=False)
        data = p.read_bytes()
        p.write_bytes(data[: len(data) * 3 // 4])
    msg = _refused(p)
    if kind.startswith("truncated"):
        assert "not a readable PyTorch weights file (corrupt or truncated?" in msg
    else:
        assert "not a PyTorch or safetensors file (it starts with b'" in msg
    assert "pt_inception-2015-12-05-6726825d.pth" in msg


def test_corrupt_safetensors_file(tmp_path):
    p = tmp_path / "w.safetensors"
    p.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    assert "not a readable safetensors weights file" in _refused(p)


@pytest.mark.parametrize("kind", ["module", "module_legacy", "object_in_dict", "plain_pickle"])
def test_pickled_objects_are_refused_without_running_them(tmp_path, kind):
    p = tmp_path / "w.pth"
    marker = tmp_path / "code-ran"
    if kind == "module":  # torch.save(model) instead of torch.save(model.state_dict())
        torch.save(torch.nn.Linear(2, 2), p)
    elif kind == "module_legacy":
        torch.save(torch.nn.Linear(2, 2), p, _use_new_zipfile_serialization=False)
    elif kind == "object_in_dict":
        torch.save({"Conv2d_1a_3x3.conv.weight": _RunsCode(marker)}, p)
    else:
        p.write_bytes(pickle.dumps(_RunsCode(marker), protocol=2))
    msg = _refused(p)
    assert "is not a state dict of tensors (astrogan loads weights safely and never unpickles objects)" in msg
    assert msg.endswith("pass the pt_inception-2015-12-05-6726825d.pth file")
    assert not marker.exists()


@pytest.mark.slow
def test_wrong_layout_shapes_and_values(tmp_path, weights_file):
    state = torch.load(weights_file, weights_only=True)
    p = tmp_path / "w.pth"

    torch.save({"conv.weight": torch.zeros(3)}, p)  # another network
    msg = _refused(p)
    assert "not the FID Inception-v3 state dict" in msg and "missing keys" in msg

    torch.save({**state, "extra.weight": torch.zeros(1)}, p)
    assert "1 unexpected keys, e.g. ['extra.weight']" in _refused(p)

    torch.save([state["fc.weight"]], p)  # a list of tensors, not a dict
    assert "not a state dict of tensors" in _refused(p)

    torch.save({**state, "fc.weight": torch.zeros(1000, 2048), "fc.bias": torch.zeros(1000)}, p)
    msg = _refused(p)  # torchvision's ImageNet Inception has 1000 classes, the FID one 1008
    assert "fc.bias has shape (1000,), expected (1008,)" in msg and "not the FID Inception-v3" in msg

    torch.save({**state, "Mixed_7c.branch_pool.conv.weight": torch.zeros(192, 2048, 3, 3)}, p)
    assert "Mixed_7c.branch_pool.conv.weight has shape (192, 2048, 3, 3)" in _refused(p)

    torch.save({**state, "Mixed_5b.branch1x1.bn.bias": [0.0] * 64}, p)
    assert "not a state dict of tensors" in _refused(p)

    nan = state["Mixed_6e.branch1x1.bn.running_var"].clone()
    nan[3] = float("nan")
    torch.save({**state, "Mixed_6e.branch1x1.bn.running_var": nan}, p)
    assert "Mixed_6e.branch1x1.bn.running_var holds NaN or infinite values" in _refused(p)


@pytest.mark.slow
def test_check_weights_file(weights_file, tmp_path, monkeypatch):
    monkeypatch.delenv("ASTROGAN_INCEPTION_WEIGHTS", raising=False)
    path, sha = check_weights_file(str(weights_file))
    assert path == weights_file.resolve() and path.is_absolute()
    assert sha == hashlib.sha256(weights_file.read_bytes()).hexdigest() == load_inception(weights_file)[1]
    with pytest.raises(UserError, match="no Inception weights file.*--inception-weights"):
        check_weights_file(None)
    monkeypatch.setenv("ASTROGAN_INCEPTION_WEIGHTS", str(weights_file))
    assert check_weights_file(None) == (path, sha)
    # the same tensors in torch's pre-1.6 format (the format of the real file) and as safetensors
    from safetensors.torch import save_file

    state = torch.load(weights_file, weights_only=True)
    torch.save(state, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "w.safetensors")
    for other in (tmp_path / "legacy.pth", tmp_path / "w.safetensors"):
        model, other_sha = load_inception(other)
        assert other_sha == check_weights_file(other)[1] != sha
        assert torch.equal(model.state_dict()["fc.weight"], state["fc.weight"])
    with pytest.raises(UserError, match="does not exist"):
        check_weights_file(tmp_path / "missing.pth")
    with pytest.raises(UserError, match="does not exist"):
        load_inception(tmp_path / "missing.pth")


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


@pytest.mark.slow  # heavy: Inception features of both sets
def test_fid_through_compute_metrics_with_weights(weights_file, tmp_path):
    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    out = compute_metrics(["fid", "kid"], real, real, inception_weights=str(weights_file), cache_dir=tmp_path)
    assert out["fid"] == pytest.approx(0.0, abs=1e-3)
    assert abs(out["kid_mean"]) < 1e-6
    assert any(p.name.endswith(".npz") and "inception" in p.name for p in tmp_path.iterdir())


def test_parse_metric_names():
    assert parse_metric_names("spectrum, fid") == ["spectrum", "fid"]
    assert len(parse_metric_names(None)) == 6
    with pytest.raises(UserError, match="unknown metric"):
        parse_metric_names("fid,bogus")


@pytest.mark.slow
def test_fid_with_the_holzschuh_protocol_uses_magma_images(weights_file):
    from astrogan.metrics.compute import run_metrics

    rng = np.random.default_rng(3)
    real = rng.integers(0, 256, (4, 16, 16, 1), dtype=np.uint8)
    fake = rng.integers(0, 256, (4, 16, 16, 1), dtype=np.uint8)
    ours = run_metrics(["fid"], real, fake, inception_weights=str(weights_file))
    paper = run_metrics(["fid"], real, fake, inception_weights=str(weights_file), protocol="holzschuh2022")
    assert run_metrics(
        ["fid"], real, real, inception_weights=str(weights_file), protocol="holzschuh2022"
    ).scalars["fid"] == pytest.approx(0.0, abs=1e-3)
    # Grey replicated to RGB versus one band through magma: other features, another FID.
    assert (
        paper.scalars["fid"] > 0
        and abs(paper.scalars["fid"] - ours.scalars["fid"]) > 1e-3 * ours.scalars["fid"]
    )


def test_eval_refuses_bad_weights_before_generating(tmp_path, monkeypatch):
    from astrogan.cli.main import main

    bad = tmp_path / "weights.pth"
    bad.write_text("not weights")
    calls = []
    monkeypatch.setattr("astrogan.cli.sample.open_generator", lambda *a: calls.append(a))
    rc = main(
        [
            "eval",
            "--run",
            str(tmp_path),
            "--data",
            str(tmp_path),
            "--metrics",
            "fid",
            "--inception-weights",
            str(bad),
            "--out",
            str(tmp_path / "rep"),
        ]
    )
    assert rc == 2 and calls == []  # refused before the generator was even opened
