"""Models and sampling conditioned on continuous physical parameters (Sérsic n, half-light radius, axis ratio)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from astrogan.conditions import CondSpec
from astrogan.models import ARCHS, flops_per_image
from astrogan.models.io import load_generator_module, save_generator
from astrogan.models.layers import NoiseInjection, check_labels
from astrogan.sampling.generator import load_generator
from astrogan.sampling.interpolate import interpolation_frames
from astrogan.utils.errors import UserError
from tests.helpers.conditions import COND_ARCHS, SPEC


def build(arch: str, *, spec: CondSpec = SPEC, seed: int = 0, **kw):
    """A tiny cond generator and discriminator in eval() mode, with the noise and w average made to matter."""
    a = ARCHS[arch]
    cfg = a.config_cls(**{"image_size": 16, **a.tiny, "cond": spec.to_dict(), **kw})
    torch.manual_seed(seed)
    G, D = a.build_generator(cfg).eval(), a.build_discriminator(cfg).eval()
    with torch.no_grad():
        for m in G.modules():
            if isinstance(m, NoiseInjection):
                m.weight.fill_(0.3)
        if hasattr(G, "mapping"):
            G.mapping.w_avg.normal_()
    return G, D, cfg


def conds(*rows: tuple[float, ...]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("arch", COND_ARCHS)
def test_shapes_and_attributes(arch: str, channels: int) -> None:
    G, D, cfg = build(arch, channels=channels)
    assert G.cond_dim == D.cond_dim == 3 and G.cond_spec == D.cond_spec == SPEC
    assert cfg.cond_spec() == SPEC and G.num_classes == 0
    z, c = (
        torch.randn(4, cfg.z_dim),
        conds((1.0, 4.0, 0.3), (2.0, 5.0, 0.6), (4.0, 8.0, 0.9), (6.0, 12.0, 1.0)),
    )
    with torch.no_grad():
        x = G(z, c)
        logits = D(x, c)
    assert x.shape == (4, channels, 16, 16) and logits.shape == (4,)
    assert torch.isfinite(x).all() and torch.isfinite(logits).all()


def test_unconditional_models_say_so() -> None:
    a = ARCHS["stylegan2"]
    G = a.build_generator(a.config_cls(image_size=16, **a.tiny)).eval()
    assert G.cond_dim == 0 and G.cond_spec is None
    with pytest.raises(UserError, match="unconditional"):
        G(torch.randn(2, G.z_dim), conds((1.0, 4.0, 0.3), (2.0, 5.0, 0.6)))


@pytest.mark.parametrize("arch", COND_ARCHS)
def test_conditions_change_the_image_and_the_logit(arch: str) -> None:
    G, D, cfg = build(arch)
    z = torch.randn(1, cfg.z_dim).repeat(3, 1)
    c = conds((1.0, 4.0, 0.3), (1.0, 4.0, 0.9), (5.0, 10.0, 0.3))
    with torch.no_grad():
        imgs = G(z, c)
        logits = D(imgs[:1].repeat(3, 1, 1, 1), c)
    assert (imgs[0] - imgs[1]).abs().max() > 1e-3 and (imgs[0] - imgs[2]).abs().max() > 1e-3
    assert len(set(logits.tolist())) == 3  # projection term: the conditions change the logit


@pytest.mark.parametrize("arch", COND_ARCHS)
def test_one_condition_changes_the_image_on_one_side_of_the_mean(arch: str) -> None:
    """With one condition the image must follow its value, not just its side of the mean (a zero-bias
    embedding followed by normalize_2nd_moment would only see the sign)."""
    spec = CondSpec(names=("sersic_n",), units=("",), low=(0.5,), high=(6.0,), mean=(2.0,), std=(1.0,))
    G, D, cfg = build(arch, spec=spec)
    z = torch.randn(1, cfg.z_dim).repeat(2, 1)
    c = conds((3.0,), (5.0,))  # both above the mean
    with torch.no_grad():
        imgs = G(z, c)
        logits = D(imgs[:1].repeat(2, 1, 1, 1), c)
    assert (imgs[0] - imgs[1]).abs().max() > 1e-3
    assert abs(float(logits[0] - logits[1])) > 1e-6


@pytest.mark.parametrize("arch", COND_ARCHS)
def test_same_latent_and_condition_give_the_same_image_alone_or_in_a_batch(arch: str) -> None:
    G, _, cfg = build(arch)
    z = torch.randn(6, cfg.z_dim)
    c = torch.from_numpy(np.random.default_rng(0).uniform(SPEC.low, SPEC.high, (6, 3)).astype(np.float32))
    with torch.no_grad():
        batch = G(z, c)
        for i in (0, 3, 5):
            assert torch.allclose(G(z[i : i + 1], c[i : i + 1]), batch[i : i + 1], atol=1e-5)
        assert torch.equal(G(z, c), batch)


@pytest.mark.parametrize("arch", COND_ARCHS)
def test_normalisation_round_trip_and_buffers_stay_out_of_the_weights(arch: str) -> None:
    G, D, _ = build(arch)
    norm = G.mapping.cond_norm if arch == "stylegan2" else G.cond_norm
    raw = conds((2.0, 5.0, 0.6), (3.2, 10.0, 0.2))
    expected = (raw - torch.tensor(SPEC.mean)) / torch.tensor(SPEC.std)
    assert torch.allclose(norm(raw), expected, atol=1e-6)
    assert torch.allclose(norm(raw)[0], torch.zeros(3))  # the training mean maps to 0
    np.testing.assert_allclose(norm(raw).numpy(), SPEC.normalize(raw.numpy()), atol=1e-6)
    for module in (G, D):
        seen: list[torch.Tensor] = []
        embed = module.mapping.embed if hasattr(module, "mapping") else module.embed
        hook = embed.register_forward_pre_hook(lambda _m, args, seen=seen: seen.append(args[0]))
        with torch.no_grad():
            if module is G:
                G(torch.randn(2, G.z_dim), raw)
            else:
                D(torch.zeros(2, D.config.channels, 16, 16), raw)
        hook.remove()
        assert torch.allclose(seen[0], expected, atol=1e-6)  # the network embeds normalised values
        assert not any(k.endswith(("cond_norm.mean", "cond_norm.std")) for k in module.state_dict())
        assert any(k.endswith("cond_norm.mean") for k, _ in module.named_buffers())


@pytest.mark.parametrize("arch", COND_ARCHS)
def test_wrong_or_missing_conditions_are_one_line_user_errors(arch: str) -> None:
    G, D, cfg = build(arch)
    z = torch.randn(2, cfg.z_dim)
    bad = {
        "missing": None,
        "width": torch.zeros(2, 2),
        "batch": torch.zeros(3, 3),
        "flat": torch.zeros(6),
        "integer": torch.zeros(2, 3, dtype=torch.long),
    }
    for what, c in bad.items():
        for call in (lambda c=c: G(z, c), lambda c=c: D(torch.zeros(2, cfg.channels, 16, 16), c)):
            with pytest.raises(UserError) as err:
                call()
            msg = str(err.value)
            assert "\n" not in msg and "sersic_n, half_light_radius_px, q" in msg, (what, msg)
    with pytest.raises(UserError, match=r"conditions c must be float \(N=2, K=3\).*got torch.int64 \(2, 3\)"):
        G(z, torch.zeros(2, 3, dtype=torch.long))


def test_check_labels_for_classes_refuses_float_labels() -> None:
    with pytest.raises(UserError, match="labels must be integers"):
        check_labels(torch.zeros(2), num_classes=3, batch=2, arch="dcgan")
    check_labels(torch.zeros(2, dtype=torch.long), num_classes=3, batch=2, arch="dcgan")
    check_labels(torch.zeros(2, 3), num_classes=0, batch=2, arch="dcgan", cond=SPEC)


@pytest.mark.parametrize("arch", COND_ARCHS)
def test_config_errors(arch: str) -> None:
    cls = ARCHS[arch].config_cls
    with pytest.raises(UserError) as err:
        cls(image_size=16, num_classes=3, cond=SPEC.to_dict()).validate()
    assert "\n" not in str(err.value) and "not both" in str(err.value)
    for broken in ({"names": ["a"]}, {**SPEC.to_dict(), "std": [1.0, 0.0, 1.0]}, "sersic_n", {"names": 3}):
        with pytest.raises(UserError, match=f"{arch} config cond"):
            cls.from_dict({"image_size": 16, "cond": broken})
    assert cls(image_size=16, cond=SPEC) == cls(
        image_size=16, cond=SPEC.to_dict()
    )  # a CondSpec is stored as dict
    with pytest.raises(UserError, match="unknown fastgan config key 'cond'"):
        ARCHS["fastgan"].config_cls.from_dict({"image_size": 16, "cond": SPEC.to_dict()})


def test_truncation_moves_towards_each_conditions_own_centre() -> None:
    """psi -> 0 must not forget the condition: the centre is the mean w at that condition, not w_avg."""
    G, _, cfg = build("stylegan2")
    z = torch.randn(3, cfg.z_dim)
    c = conds((1.0, 4.0, 0.3), (1.0, 4.0, 0.3), (5.0, 10.0, 0.9))
    with torch.no_grad():
        at_zero = G(z, c, trunc=0.0)
        # Same condition, different latents: the same (typical) image; another condition: another image.
        assert torch.allclose(at_zero[0], at_zero[1], atol=1e-5)
        assert (at_zero[0] - at_zero[2]).abs().max() > 1e-2
        # The centre is the mean w over the fixed latents at that condition.
        zc = G.mapping.centre_z
        for i in (0, 2):
            ws = G.mapping(zc, c[i : i + 1].expand(len(zc), -1))
            centre = ws[:, 0].mean(dim=0)
            assert torch.allclose(G.mapping(z[i : i + 1], c[i : i + 1], trunc=0.0)[0, 0], centre, atol=1e-5)
        half = G.mapping(z, c, trunc=0.5)
        centres = G.mapping(z, c, trunc=0.0)
        assert torch.allclose(half, centres + 0.5 * (G.mapping(z, c) - centres), atol=1e-5)
        assert (G(z, c) - at_zero).abs().max() > 1e-2


def test_unconditional_truncation_still_uses_the_w_average() -> None:
    a = ARCHS["stylegan2"]
    cfg = a.config_cls(**{"image_size": 16, **a.tiny})
    G = a.build_generator(cfg).eval()
    with torch.no_grad():
        G.mapping.w_avg.normal_()
    assert not hasattr(G.mapping, "centre_z")
    with torch.no_grad():
        out = G.mapping(torch.randn(2, cfg.z_dim), None, trunc=0.0)
    assert torch.allclose(out, G.mapping.w_avg.expand_as(out))


def test_w_average_tracks_conditioned_ws_in_training() -> None:
    G, _, cfg = build("stylegan2")
    G.train()
    before = G.mapping.w_avg.clone()
    G(torch.randn(4, cfg.z_dim), conds(*[(2.0, 5.0, 0.6)] * 4), update_w_avg=True)
    assert not torch.equal(G.mapping.w_avg, before)


@pytest.mark.parametrize("arch", COND_ARCHS)
def test_every_parameter_gets_a_gradient(arch: str) -> None:
    G, D, cfg = build(arch)
    G.train(), D.train()
    c = conds((1.0, 4.0, 0.3), (5.0, 10.0, 0.9))
    D(G(torch.randn(2, cfg.z_dim), c), c).sum().backward()
    for name, p in [*G.named_parameters(), *D.named_parameters()]:
        assert p.grad is not None, name
    embed = G.mapping.embed if arch == "stylegan2" else G.embed
    assert embed.weight.grad.abs().sum() > 0 and D.embed.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("arch", COND_ARCHS)
def test_flops_per_image_handles_cond_models(arch: str) -> None:
    G, _, _ = build(arch)
    a = ARCHS[arch]
    plain = a.build_generator(a.config_cls(image_size=16, **a.tiny))
    assert flops_per_image(G) > flops_per_image(plain) > 0


@pytest.mark.parametrize("arch", COND_ARCHS)
def test_save_and_load_keep_the_spec(arch: str, tmp_path) -> None:
    G, _, cfg = build(arch)
    save_generator(G, arch=arch, config=cfg, out_dir=tmp_path / "ckpt")
    meta = json.loads((tmp_path / "ckpt" / "generator.json").read_text())
    assert meta["config"]["cond"] == SPEC.to_dict()
    G2, _ = load_generator_module(tmp_path / "ckpt")
    assert G2.cond_spec == SPEC and G2.config == cfg
    z, c = torch.randn(3, cfg.z_dim), conds((1.0, 4.0, 0.3), (2.0, 5.0, 0.6), (5.0, 10.0, 0.9))
    with torch.no_grad():
        assert torch.equal(G2(z, c, trunc=0.7), G(z, c, trunc=0.7))
    assert dataclasses.asdict(G2.config)["cond"] == SPEC.to_dict()


# -- sampling ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=COND_ARCHS)
def cond_gen(request, tmp_path_factory):
    G, _, cfg = build(request.param)
    out = tmp_path_factory.mktemp(f"cond-{request.param}")
    save_generator(G, arch=request.param, config=cfg, out_dir=out)
    return load_generator(out, device="cpu")


def test_generate_with_conditions(cond_gen) -> None:
    gen = cond_gen
    assert gen.cond_spec == SPEC
    seeds = [0, 1, 2]
    row = np.asarray([1.2, 6.0, 0.4], np.float32)
    by_text = gen.generate(seeds, cond="sersic_n=1.2,half_light_radius_px=6,q=0.4")
    assert by_text.shape == (3, 16, 16, 3) and by_text.dtype == np.uint8
    assert np.array_equal(gen.generate(seeds, cond=row), by_text)
    assert np.array_equal(gen.generate(seeds, cond=np.tile(row, (3, 1))), by_text)
    assert np.array_equal(
        gen.generate(seeds, cond={"sersic_n": 1.2, "half_light_radius_px": 6, "q": 0.4}), by_text
    )
    # unnamed conditions take the training mean, and so does cond=None
    assert np.array_equal(gen.generate(seeds, cond="q=0.6"), gen.generate(seeds))
    assert np.array_equal(gen.generate(seeds, cond=SPEC.centre()), gen.generate(seeds))
    assert not np.array_equal(gen.generate(seeds, cond="sersic_n=5"), gen.generate(seeds))


def test_same_seed_and_condition_alone_or_in_any_batch(cond_gen) -> None:
    gen = cond_gen
    rng = np.random.default_rng(3)
    c = rng.uniform(SPEC.low, SPEC.high, (8, 3)).astype(np.float32)
    batch = gen.generate(list(range(8)), cond=c, batch_size=8)
    for i in (0, 4, 7):
        assert np.array_equal(gen.generate([i], cond=c[i], batch_size=1)[0], batch[i])
    assert np.array_equal(gen.generate(list(range(8)), cond=c, batch_size=3), batch)


def test_condition_range_errors_name_the_range(cond_gen) -> None:
    gen = cond_gen
    with pytest.raises(UserError, match=r"sersic_n must be within \[0\.5, 6\] \(the range .*got 9"):
        gen.generate([0], cond="sersic_n=9")
    with pytest.raises(UserError, match=r"half_light_radius_px must be within \[1\.5, 12\] px"):
        gen.generate([0, 1], cond=np.asarray([[2.0, 5.0, 0.5], [2.0, 30.0, 0.5]]))
    assert gen.generate([0], cond="sersic_n=9", check_cond=False).shape == (1, 16, 16, 3)
    with pytest.raises(UserError, match=r"shape \(3,\) or \(2, 3\)"):
        gen.generate([0, 1], cond=np.zeros((3, 3)))
    with pytest.raises(UserError, match="unknown condition 'n'"):
        gen.generate([0], cond="n=2")
    with pytest.raises(UserError, match="finite"):
        gen.generate([0], cond=[np.nan, 5.0, 0.5], check_cond=False)
    with pytest.raises(UserError, match="not classes"):
        gen.generate([0], labels=1)


def test_condition_grid(cond_gen) -> None:
    gen = cond_gen
    images, axes, grid = gen.generate_cond_grid([4, 9], "sersic_n=1:5:3", base="q=0.4")
    assert images.shape == (6, 16, 16, 3) and grid.shape == (2, 3, 3)
    assert [a for a, _ in axes] == ["sersic_n"] and np.allclose(axes[0][1], [1, 3, 5])
    assert np.allclose(grid[:, :, 0], [[1, 3, 5]] * 2) and np.allclose(grid[:, :, 2], 0.4)
    # one row per seed, the condition varying along it: each cell is generate(seed, cond)
    assert np.array_equal(images[4], gen.generate([9], cond=grid[1, 1])[0])
    assert np.array_equal(images[0], gen.generate([4], cond=grid[0, 0])[0])

    images, axes, grid = gen.generate_cond_grid(7, "sersic_n=1:4:4,q=0.3:0.9:2")
    assert images.shape == (8, 16, 16, 3) and grid.shape == (2, 4, 3)
    assert np.allclose(grid[:, 0, 2], [0.3, 0.9]) and np.allclose(grid[0, :, 0], [1, 2, 3, 4])
    assert np.array_equal(images[5], gen.generate([7], cond=grid[1, 1])[0])
    with pytest.raises(UserError, match="one seed"):
        gen.generate_cond_grid([1, 2], "sersic_n=1:4:4,q=0.3:0.9:2")
    with pytest.raises(UserError, match="sersic_n must be within"):
        gen.generate_cond_grid(0, "sersic_n=1:9:3")
    assert gen.generate_cond_grid(0, "sersic_n=1:9:3", check_cond=False)[0].shape == (3, 16, 16, 3)


def test_interpolation_walks_at_the_training_mean(cond_gen) -> None:
    frames = interpolation_frames(cond_gen, 0, 1, steps=3)
    assert frames.shape == (3, 16, 16, 3)


def test_unconditional_generator_refuses_conditions(tmp_path) -> None:
    a = ARCHS["dcgan"]
    cfg = a.config_cls(image_size=16, **a.tiny)
    save_generator(a.build_generator(cfg).eval(), arch="dcgan", config=cfg, out_dir=tmp_path)
    plain = load_generator(tmp_path, device="cpu")
    assert plain.cond_spec is None
    with pytest.raises(UserError, match="no physical conditions"):
        plain.generate([0], cond="sersic_n=1")
    with pytest.raises(UserError, match="no physical conditions"):
        plain.generate_cond_grid(0, "sersic_n=1:2:2")
