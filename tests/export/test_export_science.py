"""Export of multi-band science generators: model.json carries the science spec, parity holds at any band count."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from astrogan.cli.main import main
from astrogan.export import export_generator
from astrogan.export.onnx import onnx_runner
from astrogan.models import ARCHS
from astrogan.science import ScienceSpec
from astrogan.utils.errors import UserError
from astrogan.utils.seeds import latents_for_seeds
from tests.helpers.marks import slow_cases
from tests.helpers.runs import make_science_run, science_spec


@pytest.mark.parametrize("arch", slow_cases(sorted(ARCHS), {"stylegan2"}))  # its export takes seconds
def test_science_run_exports_its_spec_with_parity_at_four_bands(tmp_path, arch):
    spec = science_spec()
    run, G = make_science_run(tmp_path, spec, arch=arch)
    result = export_generator(run, fmt="onnx")
    meta = json.loads((result.out_dir / "model.json").read_text())
    assert meta["science"] == spec.to_dict() and ScienceSpec.from_dict(meta["science"]) == spec
    assert meta["stretch"] == spec.stretch.to_dict()  # the stretch model.json records is the one undone
    assert meta["channels"] == 4 and 0 <= meta["parity"]["max_abs_diff"] <= 1e-4
    output = meta["model_card"]["output"]
    assert "4 bands (g, r, i, z)" in output and "FITS output is float32 in nanomaggy" in output
    assert "R = i, G = r, B = g" in output and "0.262 arcsec/px" in output
    # The graph draws all four bands, as PyTorch does.
    z = latents_for_seeds([0, 1, 2], G.z_dim)
    got = onnx_runner(result.model_path)(z, None, np.ones(3, np.float32))
    with torch.no_grad():
        ref = G(torch.from_numpy(z), None, trunc=torch.ones(3)).clamp(-1, 1).numpy()
    assert got.shape == (3, 4, 16, 16) and np.abs(got - ref).max() <= 1e-4
    assert not np.allclose(got[:, 0], got[:, 3])


def test_torchscript_export_carries_the_spec_too(tmp_path):
    spec = science_spec()
    run, _ = make_science_run(tmp_path, spec)
    meta = export_generator(run, fmt="torchscript").meta
    assert meta["science"] == spec.to_dict() and meta["parity"]["max_abs_diff"] <= 1e-4


@pytest.mark.parametrize("where", ["config", "generator"])
def test_spec_is_found_in_config_or_generator_json(tmp_path, where):
    spec = science_spec()
    run, _ = make_science_run(tmp_path, spec, where=where)
    assert export_generator(run, fmt="onnx").meta["science"] == spec.to_dict()


def test_spec_with_another_band_count_is_refused_and_nothing_written(tmp_path):
    spec = science_spec(bands=("g", "r", "i"))
    spec = dataclasses.replace(spec, display=None)
    run, _ = make_science_run(tmp_path, spec, channels=4)
    with pytest.raises(UserError, match=r"names 3 band\(s\) \(g, r, i\) but the generator draws 4 channel"):
        export_generator(run, fmt="onnx")
    assert not (run / "export-onnx").exists()


def test_picture_run_keeps_its_stretch_field_and_has_no_science(tmp_path):
    run, _ = make_science_run(tmp_path, science_spec(), where="neither", channels=3)
    config = json.loads((run / "config.json").read_text())
    config["dataset"]["stretch"] = {"kind": "asinh", "a": 0.1}  # what a picture dataset records today
    (run / "config.json").write_text(json.dumps(config))
    meta = export_generator(run, fmt="onnx").meta
    assert meta["science"] is None and meta["stretch"] == {"kind": "asinh", "a": 0.1}
    assert meta["model_card"]["output"].startswith("3-channel RGB pictures")


def test_cli_export_says_the_bands_and_units(tmp_path, capsys):
    run, _ = make_science_run(tmp_path, science_spec())
    assert main(["export", "--run", str(run), "--format", "onnx"]) == 0
    out = capsys.readouterr().out
    assert "output: 4 bands (g, r, i, z)" in out and "in nanomaggy" in out


def test_onnx_and_pytorch_draw_the_same_composite_for_a_seed(tmp_path):
    from astrogan.sampling.generator import load_generator
    from astrogan.web.onnx_generator import OnnxGenerator

    run, _ = make_science_run(tmp_path, science_spec())
    result = export_generator(run, fmt="onnx")
    seeds = [0, 5, 77, 1234]
    onnx_imgs = OnnxGenerator(result.model_path).generate(seeds, trunc=0.8, batch_size=3)
    torch_imgs = load_generator(run, device="cpu").generate(seeds, trunc=0.8)
    assert onnx_imgs.shape == torch_imgs.shape == (4, 16, 16, 3)  # colour composites of the four bands
    assert np.abs(onnx_imgs.astype(int) - torch_imgs.astype(int)).max() <= 1
    assert (onnx_imgs == torch_imgs).mean() > 0.99
