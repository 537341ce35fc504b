"""Generator weights on disk: exact round trips, path forms, and one-line errors for bad files."""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

import pytest
import torch
from torch.nn.utils import parametrize

from astrogan.models import get_arch
from astrogan.models.io import load_generator_module, read_generator_meta, save_generator
from astrogan.utils.errors import UserError
from tests.helpers.marks import slow_cases

TINY = {
    "dcgan": {"image_size": 16, "channels": 1, "z_dim": 8, "ngf": 8, "ndf": 8, "num_classes": 3},
    "fastgan": {"image_size": 32, "channels": 3, "z_dim": 8, "ngf": 4, "ndf": 4},
}


def trained_generator(arch: str) -> tuple[torch.nn.Module, object]:
    """A tiny generator with non-default buffers (BN statistics, spectral-norm vectors, noise weights)."""
    torch.manual_seed(0)
    spec = get_arch(arch)
    cfg = spec.config_cls(**TINY[arch])
    G = spec.build_generator(cfg).train()
    c = torch.randint(0, 3, (4,)) if cfg.num_classes else None
    with torch.no_grad():
        for p in G.parameters():
            p.add_(0.01 * torch.randn_like(p))
        for _ in range(2):
            G(torch.randn(4, cfg.z_dim), c)
    return G.eval(), cfg


def save_tiny(arch: str, out_dir: Path) -> tuple[torch.nn.Module, object]:
    G, cfg = trained_generator(arch)
    save_generator(G, arch=arch, config=cfg, out_dir=out_dir, extra={"step": 7})
    return G, cfg


@pytest.mark.parametrize("arch", slow_cases(["dcgan", "fastgan"], {"fastgan"}))  # fastgan's takes seconds
def test_round_trip_is_exact(arch: str, tmp_path: Path) -> None:
    ckpt = tmp_path / "run" / "checkpoints"
    G, cfg = trained_generator(arch)
    weights = save_generator(G, arch=arch, config=cfg, out_dir=ckpt, extra={"step": 7})
    assert weights == ckpt / "generator.safetensors"
    assert sorted(p.name for p in ckpt.iterdir()) == ["generator.json", "generator.safetensors"]  # no temps

    z = torch.randn(5, cfg.z_dim)
    c = torch.tensor([0, 1, 2, 0, 1]) if cfg.num_classes else None
    with torch.no_grad():
        expected = G(z, c)
    on_disk = json.loads((ckpt / "generator.json").read_text())
    for path in (tmp_path / "run", ckpt, ckpt / "generator.safetensors", ckpt / "generator.json"):
        G2, meta = load_generator_module(path)
        assert not G2.training
        assert not any(p.requires_grad for p in G2.parameters())
        # Spectral norm is folded into plain weights for inference (ONNX has no op for its power step).
        assert not any(parametrize.is_parametrized(m) for m in G2.modules())
        with torch.no_grad():
            assert torch.equal(G2(z, c), expected)
        assert meta == on_disk
    assert meta["format"] == "astrogan.generator" and meta["format_version"] == 1
    assert meta["arch"] == arch and meta["config"] == dataclasses.asdict(cfg)
    assert (meta["z_dim"], meta["num_classes"], meta["image_size"], meta["channels"]) == (
        cfg.z_dim, cfg.num_classes, cfg.image_size, cfg.channels,
    )  # fmt: skip
    assert meta["value_range"] == [-1, 1] and meta["extra"] == {"step": 7}
    assert read_generator_meta(tmp_path / "run") == on_disk


def test_loading_leaves_the_global_rng_alone(tmp_path: Path) -> None:
    save_tiny("fastgan", tmp_path)
    before = torch.get_rng_state()
    load_generator_module(tmp_path)
    assert torch.equal(before, torch.get_rng_state())


def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no generator.json"):
        load_generator_module(tmp_path)
    with pytest.raises(UserError, match="does not exist"):
        load_generator_module(tmp_path / "nope")
    save_tiny("dcgan", tmp_path / "a")
    (tmp_path / "a" / "generator.safetensors").unlink()
    with pytest.raises(UserError, match="generator.safetensors is missing"):
        load_generator_module(tmp_path / "a")
    # The weights carry their own description: a lost generator.json (a save cut short) still loads.
    G, _ = save_tiny("dcgan", tmp_path / "b")
    (tmp_path / "b" / "generator.json").unlink()
    with pytest.warns(UserWarning, match="generator.json is missing or from another save"):
        loaded, meta = load_generator_module(tmp_path / "b" / "generator.safetensors")
    assert meta["arch"] == "dcgan" and meta["z_dim"] == TINY["dcgan"]["z_dim"]


def _drop_hash(folder: Path) -> None:
    meta = json.loads((folder / "generator.json").read_text())
    del meta["weights_sha256"]
    (folder / "generator.json").write_text(json.dumps(meta))


def test_truncated_or_corrupt_weights(tmp_path: Path) -> None:
    save_tiny("fastgan", tmp_path)
    weights = tmp_path / "generator.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="corrupt, truncated") as err:
        load_generator_module(tmp_path)
    assert "\n" not in str(err.value)
    # Without the recorded hash, safetensors' own checks still catch it.
    _drop_hash(tmp_path)
    with pytest.raises(UserError, match="corrupt or truncated"):
        load_generator_module(tmp_path)
    weights.write_bytes(b"\xff" * 64)
    with pytest.raises(UserError, match="corrupt or truncated"):
        load_generator_module(tmp_path)


def test_weights_that_do_not_fit_the_config(tmp_path: Path) -> None:
    save_tiny("dcgan", tmp_path)
    meta = json.loads((tmp_path / "generator.json").read_text())
    meta["config"]["ngf"] = 16
    (tmp_path / "generator.json").write_text(json.dumps(meta))
    _drop_hash(tmp_path)
    with pytest.raises(UserError, match="config does not match its weights"):
        load_generator_module(tmp_path)


def test_never_unpickles(tmp_path: Path) -> None:
    save_tiny("dcgan", tmp_path)
    _drop_hash(tmp_path)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (tmp_path / "generator.safetensors").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(UserError, match="corrupt or truncated"):
        load_generator_module(tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.update(format="something.else"), "not an astrogan generator"),
        (lambda m: m.update(format_version=99), "upgrade astrogan"),
        (lambda m: m.update(arch="stylegan9"), "unknown architecture 'stylegan9'"),
        (lambda m: m["config"].update(colour=1), "unknown dcgan config key 'colour'"),
        (lambda m: m["config"].update(image_size=48), "cannot make 48 px"),
    ],
)
def test_bad_metadata(tmp_path: Path, edit, message: str) -> None:
    save_tiny("dcgan", tmp_path)
    meta = json.loads((tmp_path / "generator.json").read_text())
    edit(meta)
    (tmp_path / "generator.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match=message):
        load_generator_module(tmp_path)


def _strip_embedded_meta(folder: Path) -> None:
    """Rewrite the weights as files written before they carried their own description."""
    from safetensors.torch import load_file, save_file

    weights = folder / "generator.safetensors"
    save_file(load_file(str(weights)), str(weights), metadata={"format": "astrogan.generator"})


def test_corrupt_json(tmp_path: Path) -> None:
    save_tiny("dcgan", tmp_path)
    text = (tmp_path / "generator.json").read_text()
    (tmp_path / "generator.json").write_text(text[: len(text) // 2])
    # The weights' own description takes over (and says so)...
    with pytest.warns(UserWarning, match="using the description stored inside generator.safetensors"):
        load_generator_module(tmp_path)
    # ...and weights without one leave the JSON's error.
    _strip_embedded_meta(tmp_path)
    with pytest.raises(UserError, match="generator.json is corrupt or truncated"):
        load_generator_module(tmp_path)


def test_stale_json_from_an_interrupted_save_uses_the_weights_description(tmp_path: Path) -> None:
    """A kill between the weights' and the JSON's rename: new weights, the previous save's JSON."""
    save_tiny("dcgan", tmp_path / "old")
    G, _ = save_tiny("fastgan", tmp_path / "new")
    (tmp_path / "new" / "generator.json").write_bytes((tmp_path / "old" / "generator.json").read_bytes())
    with pytest.warns(UserWarning, match="from another save"):
        loaded, meta = load_generator_module(tmp_path / "new")
    assert meta["arch"] == "fastgan"
    z = torch.randn(2, TINY["fastgan"]["z_dim"])
    assert torch.equal(loaded(z), G(z))
    _strip_embedded_meta(tmp_path / "new")
    with pytest.raises(UserError, match="does not match generator.json"):
        load_generator_module(tmp_path / "new")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("z_dim", 10**9, "z_dim is 1000000000; at most"),
        ("ngf", 10**6, "parameters"),
        ("ngf", 16, "does not match its weights"),
    ],
)
def test_absurd_sizes_are_refused_before_anything_is_allocated(tmp_path, key, value, message) -> None:
    import resource

    save_tiny("dcgan", tmp_path)
    meta = json.loads((tmp_path / "generator.json").read_text())
    meta["config"][key] = value
    (tmp_path / "generator.json").write_text(json.dumps(meta))
    _drop_hash(tmp_path)
    _strip_embedded_meta(tmp_path)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(UserError, match=message):
        load_generator_module(tmp_path)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 200, f"refusing the config cost {grown_mb:.0f} MB"


def test_bake_spectral_norm_keeps_outputs_and_spares_deep_copies() -> None:
    import copy

    from astrogan.models.layers import bake_spectral_norm

    G, cfg = trained_generator("fastgan")
    twin = copy.deepcopy(G)
    z = torch.randn(3, cfg.z_dim)
    with torch.no_grad():
        expected = G(z)
        bake_spectral_norm(twin)
        assert torch.equal(twin(z), expected)
        assert not any(parametrize.is_parametrized(m) for m in twin.modules())
        assert any(parametrize.is_parametrized(m) for m in G.modules())  # the original still works as before
        assert torch.equal(G(z), expected)
