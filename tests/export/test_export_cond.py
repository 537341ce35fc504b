"""Export of generators on physical conditions: the `cond` input, model.json's spec, parity, the ONNX runner."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from astrogan import imaging
from astrogan.export import ParityError, check_parity, export_generator, export_module
from astrogan.export.known_warnings import known_export_warnings_filtered
from astrogan.export.onnx import export_onnx, onnx_runner
from astrogan.export.parity import parity_inputs
from astrogan.export.prepare import CondExportWrapper, dummy_inputs, prepare_generator
from astrogan.export.torchscript import export_torchscript, torchscript_runner
from astrogan.models import ARCHS
from astrogan.models.io import save_generator
from astrogan.models.layers import NoiseInjection
from astrogan.sampling.generator import load_generator
from astrogan.utils.errors import UserError
from astrogan.utils.seeds import latents_for_seeds
from astrogan.web.onnx_generator import OnnxGenerator
from tests.helpers.conditions import COND_ARCHS, SPEC


def _cond_generator(arch: str, *, channels: int = 3):
    a = ARCHS[arch]
    cfg = a.config_cls(**{"image_size": 16, **a.tiny, "channels": channels, "cond": SPEC.to_dict()})
    torch.manual_seed(0)
    G = a.build_generator(cfg)
    with torch.no_grad():  # move away from the init so noise, BN statistics and the w average all matter
        for p in G.parameters():
            p.add_(0.05 * torch.randn_like(p))
        for m in G.modules():
            if isinstance(m, NoiseInjection):
                m.weight.fill_(0.3)
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        if hasattr(G, "mapping"):
            G.mapping.w_avg.normal_()
    return G.eval(), cfg


@pytest.fixture(scope="module", params=COND_ARCHS)
def cond_run(request, tmp_path_factory):
    """A checkpoint of a tiny cond generator: (arch, checkpoint dir, G)."""
    G, cfg = _cond_generator(request.param)
    ckpt = tmp_path_factory.mktemp(f"run-{request.param}") / "checkpoints"
    save_generator(G, arch=request.param, config=cfg, out_dir=ckpt, extra={"step": 10})
    return request.param, ckpt, G


def test_export_signature_and_dummy_inputs() -> None:
    G, _ = _cond_generator("dcgan")
    wrapper = prepare_generator(G)
    assert isinstance(wrapper, CondExportWrapper) and wrapper.cond_spec == SPEC and not wrapper.conditional
    z, cond, trunc = dummy_inputs(wrapper, batch=4)
    assert z.shape == (4, G.z_dim) and cond.shape == (4, 3) and cond.dtype == torch.float32
    assert trunc.shape == (4,) and not torch.equal(cond[0], cond[1])  # differs per row: nothing folds
    SPEC.check_range(cond.numpy())
    c = parity_inputs(G, num_seeds=64)[1]
    assert c is not None and c.shape == (64, 3) and c.dtype == np.float32
    SPEC.check_range(c)
    assert c.std(axis=0).min() > 0.1  # spread over the trained range


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_cond_export_has_parity_and_records_the_spec(cond_run, fmt) -> None:
    arch, ckpt, G = cond_run
    result = export_generator(ckpt, fmt=fmt, out_dir=ckpt.parent / f"export-{fmt}", overwrite=True)
    meta = json.loads((result.out_dir / "model.json").read_text())
    assert meta["cond"] == SPEC.to_dict()
    assert meta["inputs"] == {"latent": "z", "class": None, "cond": "cond", "truncation": "trunc"}
    assert meta["num_classes"] == 0 and meta["labels"] is None
    parity = meta["parity"]
    assert 0 <= parity["max_abs_diff"] <= 1e-4 and "trained range" in parity["conds"]
    if fmt == "onnx":
        sess_inputs = OnnxGenerator(result.model_path).session.get_inputs()
        assert [(i.name, i.type) for i in sess_inputs] == [
            ("z", "tensor(float)"),
            ("cond", "tensor(float)"),
            ("trunc", "tensor(float)"),
        ]
        assert sess_inputs[1].shape[1] == 3
    else:
        with known_export_warnings_filtered():  # torch.jit is deprecated but still the format
            module = torch.jit.load(str(result.model_path))
        assert [a.name for a in module.forward.schema.arguments][1:] == ["z", "cond", "trunc"]


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_exported_graph_normalises_conditions_like_pytorch(tmp_path, fmt) -> None:
    """Raw physical values go in; far-apart conditions give different images, matching G(z, cond)."""
    G, _ = _cond_generator("stylegan2", channels=1)
    wrapper = prepare_generator(G)
    path = tmp_path / ("m.onnx" if fmt == "onnx" else "m.pt")
    if fmt == "onnx":
        export_onnx(wrapper, path)
        run = onnx_runner(path)
    else:
        export_torchscript(wrapper, path)
        run = torchscript_runner(path)
    z = latents_for_seeds([1, 1, 2], G.z_dim)
    cond = np.asarray([[1.0, 3.0, 0.3], [5.5, 11.0, 0.95], [2.0, 5.0, 0.6]], np.float32)
    trunc = np.asarray([1.0, 1.0, 0.7], np.float32)
    with torch.no_grad():
        ref = (
            G(torch.from_numpy(z), torch.from_numpy(cond), trunc=torch.from_numpy(trunc)).clamp(-1, 1).numpy()
        )
    out = run(z, cond, trunc)
    assert out.shape == (3, 1, 16, 16)
    np.testing.assert_allclose(out, ref, atol=1e-4, rtol=0)
    assert np.abs(out[0] - out[1]).max() > 1e-2  # same latent, other conditions: another galaxy


def test_parity_catches_an_export_that_ignores_the_conditions(cond_run, tmp_path) -> None:
    _, _, G = cond_run
    wrapper = prepare_generator(G)
    export_onnx(wrapper, tmp_path / "m.onnx")
    run = onnx_runner(tmp_path / "m.onnx")
    at_mean = lambda z, c, trunc: run(z, np.tile(SPEC.centre(), (len(z), 1)), trunc)  # noqa: E731
    with pytest.raises(ParityError, match="differs from PyTorch"):
        check_parity(wrapper.G, at_mean)
    assert check_parity(wrapper.G, run)["max_abs_diff"] <= 1e-4


def test_onnx_runner_draws_the_pixels_of_the_pytorch_sampler(cond_run, tmp_path) -> None:
    arch, ckpt, _ = cond_run
    result = export_module(load_generator(ckpt, device="cpu").module, tmp_path / "export", fmt="onnx")
    onnx_gen = OnnxGenerator(result.model_path)
    torch_gen = load_generator(ckpt, device="cpu")
    assert onnx_gen.cond_spec == torch_gen.cond_spec == SPEC and onnx_gen.has_cond_input
    seeds = [0, 5, 77, 1234]
    rows = np.random.default_rng(2).uniform(SPEC.low, SPEC.high, (4, 3)).astype(np.float32)
    for cond in ("sersic_n=1.2,half_light_radius_px=6,q=0.4", rows, None):
        a = onnx_gen.generate(seeds, cond=cond, trunc=0.8, batch_size=3)
        b = torch_gen.generate(seeds, cond=cond, trunc=0.8)
        assert a.shape == b.shape == (4, 16, 16, 3)
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1 and (a == b).mean() > 0.999, arch
    with pytest.raises(UserError, match=r"sersic_n must be within \[0\.5, 6\]"):
        onnx_gen.generate([0], cond="sersic_n=9")
    assert onnx_gen.generate([0], cond="sersic_n=9", check_cond=False).shape == (1, 16, 16, 3)
    with pytest.raises(UserError, match=r"shape \(3,\) or \(2, 3\)"):
        onnx_gen.generate([0, 1], cond=np.zeros((2, 2), np.float32))


def test_onnx_runner_needs_the_spec_and_refuses_conditions_for_other_models(cond_run, tmp_path) -> None:
    _, _, G = cond_run
    path = tmp_path / "bare.onnx"
    export_onnx(prepare_generator(G), path)  # no model.json, no embedded metadata
    with pytest.raises(UserError, match="gives no cond spec"):
        OnnxGenerator(path)
    export_onnx(prepare_generator(G), path, metadata={"cond": SPEC.to_dict(), "z_dim": int(G.z_dim)})
    assert OnnxGenerator(path).cond_spec == SPEC  # read from the embedded card (META_KEY)
    a = ARCHS["dcgan"]
    plain = a.build_generator(a.config_cls(image_size=16, **a.tiny)).eval()
    export_onnx(prepare_generator(plain), tmp_path / "plain.onnx")
    gen = OnnxGenerator(tmp_path / "plain.onnx")
    assert gen.cond_spec is None and not gen.has_cond_input
    with pytest.raises(UserError, match="no physical conditions"):
        gen.generate([0], cond="sersic_n=1")
    assert imaging.COND_INPUT == "cond"
