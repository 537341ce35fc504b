"""Export of every registered architecture to ONNX and TorchScript with parity; failures leave nothing."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from torch import nn

from astrogan.cli.main import main
from astrogan.export import ParityError, export_generator, export_module
from astrogan.export import bundle as export_bundle
from astrogan.export.known_warnings import known_export_warnings_filtered
from astrogan.export.onnx import export_onnx, onnx_runner
from astrogan.export.prepare import prepare_generator
from astrogan.export.torchscript import export_torchscript, torchscript_runner
from astrogan.models import ARCHS
from astrogan.models.layers import truncate_z
from astrogan.utils.errors import UserError
from astrogan.utils.seeds import latents_for_seeds
from astrogan.web.onnx_generator import OnnxGenerator
from tests.helpers.marks import slow_cases
from tests.helpers.runs import write_run

TINY = {"z_dim": 8, "ngf": 8, "ndf": 8, "embed_dim": 4}


def _tiny_generator(arch: str, *, num_classes: int = 0):
    spec = ARCHS[arch]
    names = {f.name for f in dataclasses.fields(spec.config_cls)}
    kw = {k: v for k, v in TINY.items() if k in names}
    kw["image_size"] = max(16, spec.min_image_size)
    if num_classes:
        kw["num_classes"] = num_classes
    cfg = spec.config_cls(**kw)
    torch.manual_seed(0)
    G = spec.build_generator(cfg)
    with torch.no_grad():  # move away from the init so BN statistics, noise weights etc. all matter
        for p in G.parameters():
            p.add_(0.05 * torch.randn_like(p))
        for m in G.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                assert m.running_mean is not None and m.running_var is not None
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return G.eval(), cfg


def _variants():
    out = []
    for arch, spec in ARCHS.items():
        out.append((arch, 0))
        try:  # conditional variant where the architecture supports one
            spec.config_cls(image_size=max(16, spec.min_image_size), num_classes=3).validate()
            out.append((arch, 3))
        except (UserError, TypeError, ValueError):
            pass
    return out


def _make_run(tmp_path, arch: str, num_classes: int):
    G, cfg = _tiny_generator(arch, num_classes=num_classes)
    run = tmp_path / "00000-run"
    labels = [f"kind{i}" for i in range(num_classes)] if num_classes else None
    dataset = {
        "path": str(tmp_path / "ds-apod"),
        "content_hash": "abc123",
        "num_images": 12,
        "sources": ["apod"],
        "credits": {"NASA/ESA": 10, "J. Doe": 2},
        "licences": {"public domain": 10, "CC BY 4.0": 2},
    }
    write_run(
        run,
        G,
        cfg,
        arch=arch,
        extra={"step": 1200, "kimg": 38.4, "label_names": labels, "run": run.name},
        config={"arch": arch, "image_size": cfg.image_size, "dataset": dataset},
        stats={"step": 1200, "kimg": 38.4, "loss_g": 1.0, "fid": 87.5},
    )
    return run, G


def _module_flags(G: nn.Module) -> dict[str, tuple]:
    """Per submodule: its class, train/eval mode and parametrized tensors; per parameter: requires_grad."""
    from torch.nn.utils import parametrize

    flags: dict[str, tuple] = {
        name: (
            type(m),
            m.training,
            tuple(sorted(m.parametrizations)) if parametrize.is_parametrized(m) else (),
        )
        for name, m in G.named_modules()
    }
    flags.update({f"param:{name}": (p.requires_grad,) for name, p in G.named_parameters()})
    return flags


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
# StyleGAN2 exports take 7-11 s each on two CPU cores, FastGAN's 1-2 s: the fast loop checks DCGAN's.
@pytest.mark.parametrize(("arch", "num_classes"), slow_cases(_variants(), lambda v: v[0] != "dcgan"))
def test_every_arch_exports_with_parity(tmp_path, arch, num_classes, fmt):
    run, G = _make_run(tmp_path, arch, num_classes)
    result = export_generator(run, fmt=fmt)
    assert result.out_dir == run / f"export-{fmt}"
    assert sorted(p.name for p in result.out_dir.iterdir()) == sorted([result.model_path.name, "model.json"])
    meta = json.loads((result.out_dir / "model.json").read_text())
    parity = meta["parity"]
    assert parity["num_seeds"] >= 64 and parity["batch_sizes"] == [1, 16]
    assert 0 <= parity["max_abs_diff"] <= 1e-4
    assert meta["z_dim"] == G.z_dim and meta["image_size"] == G.image_size and meta["channels"] == G.channels
    assert meta["inputs"]["class"] == ("c" if num_classes else None)
    assert meta["inputs"]["truncation"] == "trunc" and "applied inside the network" in meta["latent"]
    assert parity["truncs"] == [1.0, 0.7, 0.5]  # parity covered truncation, seed by seed
    assert meta["labels"] == ([f"kind{i}" for i in range(num_classes)] if num_classes else None)
    card = meta["model_card"]
    assert card["arch"] == arch and card["training"]["steps"] == 1200 and card["training"]["kimg"] == 38.4
    assert "NASA/ESA (10 images)" in card["dataset"]["credits"]
    assert "CC BY 4.0 (2 images)" in card["dataset"]["licences"]
    assert card["metrics"] == {"fid": 87.5}
    # exporting a module leaves the caller's generator untouched (spectral norm still a parametrization,
    # same weights, flags and output): everything "before" is taken before the export
    z = torch.from_numpy(np.random.default_rng(1).standard_normal((2, G.z_dim), dtype=np.float32))
    c = torch.tensor([0, 2]) if num_classes else None
    with torch.no_grad():
        before = G(z, c)
    state_before = {k: v.clone() for k, v in G.state_dict().items()}
    flags_before = _module_flags(G)
    export_module(G, tmp_path / "from-module", fmt=fmt)
    assert _module_flags(G) == flags_before
    state_after = G.state_dict()
    assert state_after.keys() == state_before.keys()
    assert all(torch.equal(state_after[k], v) for k, v in state_before.items())
    with torch.no_grad():
        assert torch.equal(G(z, c), before)
    if fmt == "onnx":
        # the torch-free generator draws the pixels PyTorch's sampler draws, seed for seed
        from astrogan.sampling.generator import load_generator

        seeds = [0, 5, 77, 1234]
        onnx_gen = OnnxGenerator(result.model_path)
        assert onnx_gen.has_trunc_input and [i.name for i in onnx_gen.session.get_inputs()] == (
            ["z", "c", "trunc"] if num_classes else ["z", "trunc"]
        )
        onnx_imgs = onnx_gen.generate(seeds, trunc=0.8, batch_size=3)
        torch_imgs = load_generator(run, device="cpu").generate(seeds, trunc=0.8)
        assert onnx_imgs.shape == torch_imgs.shape == (4, G.image_size, G.image_size, G.channels)
        assert np.abs(onnx_imgs.astype(int) - torch_imgs.astype(int)).max() <= 1
        assert (onnx_imgs == torch_imgs).mean() > 0.999


class _BranchyGenerator(nn.Module):
    """A generator with data-dependent Python control flow: tracing bakes one branch in."""

    z_dim, image_size, channels, num_classes = 8, 4, 1, 0

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 16)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, *, trunc=1.0) -> torch.Tensor:
        out = torch.tanh(self.lin(truncate_z(z, trunc))).view(-1, 1, 4, 4)
        if float(z.sum()) > 0:  # the kind of branch the original site lost in tracing
            out = -out
        return out


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_traced_control_flow_is_caught_and_nothing_is_left(tmp_path, fmt):
    out = tmp_path / "exports" / "model"
    with pytest.raises(ParityError, match="differs from PyTorch"):
        export_module(_BranchyGenerator().eval(), out, fmt=fmt)
    assert not out.exists()
    assert list((tmp_path / "exports").iterdir()) == []  # no .partial folder either


def test_over_tolerance_export_fails_in_one_line_via_cli(tmp_path, monkeypatch, capsys):
    run, _ = _make_run(tmp_path, "dcgan", 0)
    real_runner = export_bundle.onnx_runner

    def perturbed(path, **kw):
        run_onnx = real_runner(path, **kw)
        return lambda z, c, trunc: run_onnx(z, c, trunc) + 3e-4  # a corrupted export: over the tolerance

    monkeypatch.setattr(export_bundle, "onnx_runner", perturbed)
    assert main(["export", "--run", str(run), "--format", "onnx"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: the onnx export differs from PyTorch by up to 0.0003") and "\n" not in err
    assert not (run / "export-onnx").exists()
    assert not any(p.name.startswith(".export-onnx") for p in run.iterdir())


@pytest.mark.slow  # heavy: exports from the CLI
def test_export_cli_prints_parity_and_refuses_to_overwrite(tmp_path, capsys):
    run, _ = _make_run(tmp_path, "fastgan", 0)
    out = tmp_path / "served"
    assert (
        main(
            ["export", "--checkpoint", str(run / "checkpoints" / "generator.safetensors"), "--out", str(out)]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "parity: max |onnx - pytorch| =" in text and "64 seeds" in text
    assert (out / "model.onnx").is_file() and (out / "model.json").is_file()
    assert json.loads((out / "model.json").read_text())["model_card"]["training"]["steps"] == 1200
    assert main(["export", "--checkpoint", str(run / "checkpoints"), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["export", "--out", str(out)]) == 2
    assert "exactly one of --run" in capsys.readouterr().err
    assert main(["export", "--run", str(tmp_path / "missing")]) == 2
    assert main(["export", "--run", str(run), "--format", "tflite"]) == 2


def test_generate_from_the_onnx_export_matches_the_run(tmp_path):
    from PIL import Image

    run, _ = _make_run(tmp_path, "dcgan", 3)
    result = export_generator(run, fmt="onnx")
    assert (
        main(
            ["generate", "--model", str(result.model_path), "--seeds", "0-3", "--out", str(tmp_path / "onnx")]
        )
        == 0
    )
    assert (
        main(
            [
                "generate",
                "--run",
                str(run),
                "--seeds",
                "0-3",
                "--out",
                str(tmp_path / "torch"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    names = sorted(p.name for p in (tmp_path / "onnx").glob("*.png"))
    assert len(names) == 4 and names == sorted(p.name for p in (tmp_path / "torch").glob("*.png"))
    for name in names:
        a = np.asarray(Image.open(tmp_path / "onnx" / name)).astype(int)
        b = np.asarray(Image.open(tmp_path / "torch" / name)).astype(int)
        assert a.shape == b.shape and np.abs(a - b).max() <= 1


def _old_style_export(wrapper, path, fmt: str) -> None:
    """An export as written before truncation moved into the graph: `forward(z)`, no `trunc` input."""

    class _OldWrapper(nn.Module):
        def __init__(self, G: nn.Module) -> None:
            super().__init__()
            self.G = G

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return self.G(z).clamp(-1.0, 1.0)

    old = _OldWrapper(wrapper.G).eval()
    z = torch.randn(2, wrapper.z_dim, generator=torch.Generator().manual_seed(0))
    with known_export_warnings_filtered(), torch.no_grad():
        if fmt == "onnx":
            torch.onnx.export(
                old,
                (z,),
                str(path),
                input_names=["z"],
                output_names=["images"],
                dynamic_axes={"z": {0: "batch"}, "images": {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )
        else:
            torch.jit.save(torch.jit.trace(old, (z,), check_trace=False), str(path))


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("arch", ["dcgan", "fastgan"])
def test_exported_graph_truncates_like_pytorch(tmp_path, arch, fmt):
    """`trunc` is an input of the graph, per row: the export at 0.5 is G(z, trunc=0.5), not G(z)."""
    G, _ = _tiny_generator(arch)
    wrapper = prepare_generator(G)
    path = tmp_path / ("model.onnx" if fmt == "onnx" else "model.pt")
    if fmt == "onnx":
        export_onnx(wrapper, path)
        run = onnx_runner(path)
    else:
        export_torchscript(wrapper, path)
        run = torchscript_runner(path)
    z = latents_for_seeds([0, 1, 2, 3], G.z_dim)
    with torch.no_grad():
        ref_half = G(torch.from_numpy(z), trunc=0.5).clamp(-1, 1).numpy()
        ref_full = G(torch.from_numpy(z)).clamp(-1, 1).numpy()
    half = run(z, None, np.full(4, 0.5, np.float32))
    full = run(z, None, np.ones(4, np.float32))
    np.testing.assert_allclose(half, ref_half, atol=1e-4, rtol=0)
    np.testing.assert_allclose(full, ref_full, atol=1e-4, rtol=0)
    assert np.abs(half - full).max() > 1e-2  # truncation does change the picture
    mixed = run(z, None, np.asarray([0.5, 1.0, 0.5, 1.0], np.float32))  # one factor per row
    np.testing.assert_allclose(mixed[0::2], ref_half[0::2], atol=1e-4, rtol=0)
    np.testing.assert_allclose(mixed[1::2], ref_full[1::2], atol=1e-4, rtol=0)
    np.testing.assert_allclose(run(z, None, 0.5), half, atol=1e-6, rtol=0)  # a number means every row


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_old_export_without_trunc_input_is_truncated_by_scaling_z(tmp_path, fmt):
    G, _ = _tiny_generator("dcgan")
    wrapper = prepare_generator(G)
    path = tmp_path / ("old.onnx" if fmt == "onnx" else "old.pt")
    _old_style_export(wrapper, path, fmt)
    run = onnx_runner(path) if fmt == "onnx" else torchscript_runner(path)
    z = latents_for_seeds([3, 4, 5], G.z_dim)
    trunc = np.asarray([0.5, 1.0, 0.8], np.float32)
    with torch.no_grad():
        ref = G(torch.from_numpy(z), trunc=torch.from_numpy(trunc)).clamp(-1, 1).numpy()
    np.testing.assert_allclose(run(z, None, trunc), ref, atol=1e-4, rtol=0)
    if fmt == "onnx":  # the torch-free server opens it too, and truncates the same way
        gen = OnnxGenerator(path)
        assert not gen.has_trunc_input
        np.testing.assert_allclose(gen.generate_float(z, trunc=trunc), ref, atol=1e-4, rtol=0)


def test_the_server_opens_an_export_by_the_shared_io_contract(tmp_path):
    """No model.json beside the file: the server finds the graph's names and the embedded card (META_KEY)."""
    from astrogan import imaging

    G, _ = _tiny_generator("dcgan", num_classes=3)
    path = tmp_path / "model.onnx"
    meta = {"num_classes": 3, "labels": ["a", "b", "c"], "z_dim": int(G.z_dim)}
    export_onnx(prepare_generator(G), path, metadata=meta)
    gen = OnnxGenerator(path)
    inputs = [i.name for i in gen.session.get_inputs()]
    assert inputs == [imaging.LATENT_INPUT, imaging.CLASS_INPUT, imaging.TRUNC_INPUT]
    assert gen.output_name == imaging.IMAGE_OUTPUT
    assert gen.meta == meta and gen.label_names == ["a", "b", "c"] and gen.num_classes == 3
    z = latents_for_seeds([0, 1, 2], G.z_dim)
    trunc = np.asarray([0.5, 1.0, 0.7], np.float32)
    c = np.asarray([2, 0, 1], np.int64)
    with torch.no_grad():
        ref = G(torch.from_numpy(z), torch.from_numpy(c), trunc=torch.from_numpy(trunc)).clamp(-1, 1).numpy()
    np.testing.assert_allclose(gen.generate_float(z, labels=c, trunc=trunc), ref, atol=1e-4, rtol=0)


def test_export_refuses_a_generator_that_ignores_trunc(tmp_path):
    """The exporter drops an unused input: a graph without `trunc` would be truncated wrongly by loaders."""

    class _Untruncated(_BranchyGenerator):
        def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, *, trunc=1.0) -> torch.Tensor:
            return torch.tanh(self.lin(z)).view(-1, 1, 4, 4)

    with pytest.raises(UserError, match="must apply `trunc` itself"):
        export_onnx(prepare_generator(_Untruncated().eval()), tmp_path / "m.onnx")


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_dcgan_with_noise_inputs_exports_with_parity(tmp_path, fmt):
    """The demo's DCGAN (noise inputs on): the fixed eval noise is part of the exported graph."""
    from astrogan.models.dcgan import DCGANConfig, Generator
    from astrogan.models.layers import NoiseInjection

    torch.manual_seed(0)
    G = Generator(DCGANConfig(image_size=16, z_dim=8, ngf=8, ndf=8, noise=True))
    with torch.no_grad():
        for m in G.modules():
            if isinstance(m, NoiseInjection):
                m.weight.fill_(0.3)
    result = export_module(G.eval(), tmp_path / "noise", fmt=fmt)
    parity = json.loads((result.out_dir / "model.json").read_text())["parity"]
    assert parity["max_abs_diff"] <= 1e-4


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_dcgan_with_conditional_batchnorm_exports_with_parity(tmp_path, fmt):
    from astrogan.models.dcgan import DCGANConfig, Generator

    torch.manual_seed(0)
    G = Generator(DCGANConfig(image_size=16, z_dim=8, ngf=8, ndf=8, num_classes=3, cond_bn=True))
    with torch.no_grad():
        for name, p in G.named_parameters():
            if ".gain." in name or ".bias.weight" in name:
                p.normal_(0, 0.3)
    result = export_module(G.eval(), tmp_path / "cbn", fmt=fmt)
    meta = json.loads((result.out_dir / "model.json").read_text())
    assert meta["inputs"]["class"] == "c" and meta["parity"]["max_abs_diff"] <= 1e-4


def test_export_format_names_are_case_insensitive_like_generate(tmp_path, capsys):
    # Before: `export --format ONNX` was "--format must be one of onnx, torchscript" (generate took FITS).
    run, _ = _make_run(tmp_path, "dcgan", 0)
    assert main(["export", "--run", str(run), "--format", "ONNX"]) == 0, capsys.readouterr().err
    assert json.loads((run / "export-onnx" / "model.json").read_text())["format"] == "onnx"
    result = export_generator(run, fmt=" TorchScript")  # the API too, and its default folder
    assert result.out_dir == run / "export-torchscript" and result.meta["format"] == "torchscript"
    assert main(["export", "--run", str(run), "--format", "ONNX-RT"]) == 2
    assert "--format must be one of onnx, torchscript, not 'ONNX-RT'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("num_classes", "names", "expected"),
    [
        (3, ["spiral", "elliptical", "merger", "edge-on", "ring"], ["spiral", "elliptical", "merger"]),
        (4, ["spiral", "elliptical"], ["spiral", "elliptical", "2", "3"]),
    ],
)
def test_export_names_the_classes_as_the_runs_fits_do(tmp_path, capsys, num_classes, names, expected):
    # Before: a dataset naming more classes than --num-classes exported labels ['0', '1', '2'] while the run's
    # FITS said CLASSNAM 'merger'; one naming fewer made `generate --format fits --class 3` an IndexError.
    from astropy.io import fits

    G, cfg = _tiny_generator("dcgan", num_classes=num_classes)
    run = tmp_path / "00000-run"
    extra = {"step": 1, "run": run.name, "label_names": names}
    write_run(run, G, cfg, arch="dcgan", extra=extra, config={"arch": "dcgan", "image_size": cfg.image_size})
    model = export_generator(run).model_path
    assert json.loads((model.parent / "model.json").read_text())["labels"] == expected
    last = num_classes - 1
    for flag, path, out in (("--run", run, "from-run"), ("--model", model, "from-onnx")):
        args = ["generate", flag, str(path), "--seeds", "7", "--class", str(last), "--format", "fits"]
        assert main([*args, "--out", str(tmp_path / out)]) == 0, capsys.readouterr().err
        with fits.open(tmp_path / out / "seed0007.fits") as cube:
            assert cube[0].header["CLASSNAM"] == expected[last]


def test_export_overwrites_only_an_earlier_export(tmp_path, capsys):
    # Before: `--out notes.txt --overwrite` deleted the file and put a folder there, and `--out photos
    # --overwrite` swapped the user's folder for the export.
    run, _ = _make_run(tmp_path, "dcgan", 0)
    notes, photos = tmp_path / "notes.txt", tmp_path / "photos"
    notes.write_text("mine")
    photos.mkdir()
    (photos / "m31.jpg").write_bytes(b"jpeg")
    for out, message in ((notes, "is a file: give a folder"), (photos, "holds no model.json")):
        for extra in ([], ["--overwrite"]):
            assert main(["export", "--run", str(run), "--out", str(out), *extra]) == 2
            err = capsys.readouterr().err
            assert (message if extra or out == notes else "already exists") in err, err
    assert notes.read_text() == "mine" and (photos / "m31.jpg").read_bytes() == b"jpeg"
    assert main(["export", "--run", str(run), "--out", str(tmp_path / "exp")]) == 0
    assert main(["export", "--run", str(run), "--out", str(tmp_path / "exp"), "--overwrite"]) == 0
