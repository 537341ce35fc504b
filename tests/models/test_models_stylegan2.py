"""StyleGAN2: shapes, demodulation, truncation and w_avg, noise modes, equalized lr, gradients, ONNX export."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from astrogan.models.layers import NoiseInjection, count_parameters
from astrogan.models.stylegan2 import (
    Discriminator,
    EqualConv2d,
    FullyConnected,
    Generator,
    ModulatedConv2d,
    StyleGAN2Config,
    build_discriminator,
    build_generator,
    downsample_2x,
    fir_kernel,
    minibatch_stddev,
    upsample_2x,
)
from astrogan.utils.errors import UserError


def tiny(**kw) -> StyleGAN2Config:
    base = {
        "image_size": 16,
        "channels": 3,
        "z_dim": 32,
        "w_dim": 32,
        "channel_base": 512,
        "channel_max": 32,
        "mapping_layers": 2,
    }
    return StyleGAN2Config(**{**base, **kw})


def noisy(G: Generator) -> Generator:
    """Noise strengths start at zero (the paper's init): make them matter, and w_avg non-zero."""
    torch.manual_seed(123)
    with torch.no_grad():
        for m in G.modules():
            if isinstance(m, NoiseInjection):
                m.weight.fill_(0.5)
        G.mapping.w_avg.copy_(torch.randn(G.w_dim))
    return G


@pytest.mark.parametrize("conditional", [False, True])
@pytest.mark.parametrize("channels", [1, 3, 5])
@pytest.mark.parametrize("size", [16, 32])
def test_shapes_and_finiteness(size: int, channels: int, conditional: bool) -> None:
    torch.manual_seed(0)
    cfg = tiny(image_size=size, channels=channels, num_classes=4 if conditional else 0)
    G, D = build_generator(cfg), build_discriminator(cfg)
    z = torch.randn(3, cfg.z_dim)
    c = torch.tensor([0, 3, 1]) if conditional else None
    x = G(z, c)
    assert x.shape == (3, channels, size, size) and x.dtype == torch.float32
    assert torch.isfinite(x).all() and x.std() > 0.05
    logits = D(x, c)
    assert logits.shape == (3,) and torch.isfinite(logits).all()
    assert (G.arch, D.arch, G.z_dim, G.w_dim, G.image_size, G.channels) == (
        "stylegan2", "stylegan2", 32, 32, size, channels
    )  # fmt: skip
    assert G.num_classes == D.num_classes == cfg.num_classes
    assert G.num_ws == cfg.num_ws() == 2 * int(np.log2(size)) - 2  # 6 at 16 px, 18 at 1024
    ws = G.mapping(z, c)
    assert ws.shape == (3, G.num_ws, G.w_dim)
    assert torch.equal(G.synthesis(ws), x)  # G = synthesis(mapping)


@pytest.mark.parametrize("batch", [1, 3, 5, 8])
def test_discriminator_any_batch_size(batch: int) -> None:
    torch.manual_seed(1)
    D = Discriminator(tiny(mbstd_group=4))
    logits = D(torch.randn(batch, 3, 16, 16))
    assert logits.shape == (batch,) and torch.isfinite(logits).all()


def test_minibatch_stddev_groups() -> None:
    torch.manual_seed(2)
    x = torch.randn(6, 4, 2, 2)
    y = minibatch_stddev(x, group=4, num_channels=1)  # largest divisor of 6 that is <= 4: groups of 3
    assert y.shape == (6, 5, 2, 2) and torch.equal(y[:, :4], x)
    for members in ([0, 2, 4], [1, 3, 5]):  # sample i belongs to group i % (N / group size)
        grp = x[members]
        expected = (grp.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
        assert torch.allclose(y[members, 4], expected.expand(3, 2, 2), atol=1e-6)
    alone = minibatch_stddev(x[:5], group=4, num_channels=1)  # 5 is prime: groups of one, std 0
    assert torch.allclose(alone[:, 4], torch.full((5, 2, 2), 1e-4))
    two = minibatch_stddev(x, group=4, num_channels=2)
    assert two.shape == (6, 6, 2, 2) and not torch.equal(two[:, 4], two[:, 5])


def test_demodulation_gives_unit_output_variance() -> None:
    torch.manual_seed(3)
    conv = ModulatedConv2d(64, 64, 3)
    plain = ModulatedConv2d(64, 64, 3, demodulate=False)
    plain.weight.data.copy_(conv.weight.data)
    x = torch.randn(8, 64, 32, 32)
    styles = torch.randn(8, 64) * 3  # far from 1: without demodulation the variance follows |s|^2
    with torch.no_grad():
        y = conv(x, styles)[..., 1:-1, 1:-1]  # border pixels see zero padding
        y_plain = plain(x, styles)[..., 1:-1, 1:-1]
        per_sample = y.var(dim=(1, 2, 3))
        assert torch.allclose(per_sample, torch.ones(8), atol=0.08), per_sample
        assert y_plain.var() > 4  # ~9 = E[s^2]
        # Demodulation also makes each sample invariant to the scale of its style vector.
        assert torch.allclose(conv(x, styles * 7), conv(x, styles), atol=1e-4)
        assert not torch.allclose(plain(x, styles * 7), plain(x, styles), atol=1e-2)


@pytest.mark.parametrize("up", [False, True])
@pytest.mark.parametrize("demodulate", [True, False])
def test_grouped_and_traced_forms_agree(up: bool, demodulate: bool) -> None:
    """The export form (scale inputs, shared conv, scale outputs) equals the grouped conv."""
    torch.manual_seed(4)
    conv = ModulatedConv2d(6, 5, 3, demodulate=demodulate, up=up)
    x, styles = torch.randn(3, 6, 8, 8), torch.randn(3, 6)
    conv.fused = True
    grouped = conv(x, styles)
    conv.fused = False
    assert grouped.shape == (3, 5, 16 if up else 8, 16 if up else 8)
    assert torch.allclose(conv(x, styles), grouped, atol=1e-5)


def test_generator_fused_modconv_switch() -> None:
    torch.manual_seed(14)
    G = noisy(Generator(tiny(image_size=32))).eval()
    z = torch.randn(3, 32)
    assert G.fused_modconv is None  # auto: grouped on CUDA, the shared-conv form on the CPU
    with torch.no_grad():
        G.fused_modconv = True
        assert G.fused_modconv
        grouped = G(z)
        G.fused_modconv = False
        assert not G.fused_modconv
        assert torch.allclose(G(z), grouped, atol=1e-5)


def test_fir_resampling_is_pixel_centred() -> None:
    fir = fir_kernel(1)
    assert fir.shape == (1, 1, 4, 4) and fir.sum() == pytest.approx(1.0)
    ramp = torch.arange(16.0).repeat(16, 1)[None, None]  # value = x index
    up = upsample_2x(ramp, fir)[0, 0, 5, 2:-2]
    # Output pixel j sits at input coordinate (j + 0.5) / 2 - 0.5: bilinear interpolation of a ramp.
    assert torch.allclose(up, torch.arange(2, 30) / 2 - 0.25)
    down = downsample_2x(ramp, fir)[0, 0, 3, 1:-1]
    assert torch.allclose(down, 2 * torch.arange(1, 7) + 0.5)
    ones = torch.ones(1, 2, 8, 8)
    assert torch.allclose(
        upsample_2x(ones, fir_kernel(2))[..., 1:-1, 1:-1], torch.ones(1, 2, 14, 14)
    )  # gain 4
    # A 3x3 conv with `down` keeps the ramp centred too: 2j + 0.5 (weights all equal -> a box filter).
    conv = EqualConv2d(1, 1, 3, bias=False, lrelu=False, down=True)
    conv.weight.data.fill_(1.0)
    box = conv(ramp)[0, 0, 3, 1:-1] / conv.weight_gain / 9
    assert torch.allclose(box, 2 * torch.arange(1, 7) + 0.5, atol=1e-5)


def test_truncation() -> None:
    torch.manual_seed(5)
    G = noisy(Generator(tiny())).eval()
    z = torch.randn(4, 32)
    with torch.no_grad():
        # psi = 0: every seed gives the average image.
        avg = G(z, trunc=0.0)
        ref = G.synthesis(G.mapping.w_avg[None, None].repeat(1, G.num_ws, 1))
        assert torch.allclose(avg, ref.expand(4, -1, -1, -1), atol=1e-5)
        assert (avg - G(z)).abs().max() > 1e-2
        # psi = 1 is bit-exactly no truncation.
        assert torch.equal(G(z, trunc=1.0), G.synthesis(G.mapping.net(_norm(z)).unsqueeze(1).repeat(1, 6, 1)))
        assert torch.equal(G(z), G(z, trunc=1))
        # A per-sample tensor equals the float case row by row; shape (1,) broadcasts.
        psis = [0.3, 0.7, 1.0, 1.5]
        per_sample = G(z, trunc=torch.tensor(psis))
        for i, psi in enumerate(psis):
            assert torch.allclose(per_sample[i : i + 1], G(z[i : i + 1], trunc=psi), atol=1e-5)
        assert torch.allclose(G(z, trunc=torch.tensor([0.5])), G(z, trunc=0.5), atol=1e-6)
        assert torch.allclose(G(z, trunc=torch.tensor(0.5)), G(z, trunc=0.5), atol=1e-6)
        ws = G.mapping(z, trunc=0.5)
        assert torch.allclose(ws, G.mapping.w_avg + 0.5 * (G.mapping(z) - G.mapping.w_avg), atol=1e-6)
    with pytest.raises(UserError, match=r"trunc must be a number or have shape \(4,\)"):
        G(z, trunc=torch.ones(3))


def _norm(z: torch.Tensor) -> torch.Tensor:
    return z * (z.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()


def test_w_avg_updates_only_when_asked_in_training() -> None:
    torch.manual_seed(6)
    G = Generator(tiny(w_avg_beta=0.9))
    z = torch.randn(8, 32)
    zero = torch.zeros(32)
    G.train()
    G(z)
    G.mapping(z)
    assert torch.equal(G.mapping.w_avg, zero)
    G.eval()
    G.mapping(z, update_w_avg=True)
    assert torch.equal(G.mapping.w_avg, zero)
    G.train()
    ws = G.mapping(z, update_w_avg=True)
    expected = 0.1 * ws[:, 0].detach().mean(dim=0)  # lerp(0, mean w, 1 - beta)
    assert torch.allclose(G.mapping.w_avg, expected, atol=1e-6) and expected.abs().max() > 0
    G(z, update_w_avg=True)
    assert torch.allclose(
        G.mapping.w_avg, expected + 0.1 * (ws[:, 0].detach().mean(dim=0) - expected), atol=1e-6
    )
    assert not G.mapping.w_avg.requires_grad
    assert "mapping.w_avg" in G.state_dict()


def test_noise_modes_and_per_sample_independence() -> None:
    torch.manual_seed(7)
    G = noisy(Generator(tiny(image_size=32, num_classes=3)))
    z, c = torch.randn(6, 32), torch.tensor([0, 1, 2, 2, 1, 0])
    with torch.no_grad():
        G.train()
        assert not torch.equal(G(z, c), G(z, c))  # fresh noise in training
        G.eval()
        assert G.noise_mode == "auto"
        batch = G(z, c)
        assert torch.equal(batch, G(z, c))  # fixed noise in eval
        for i in (0, 4):  # a sample does not depend on its batch
            assert torch.allclose(G(z[i : i + 1], c[i : i + 1]), batch[i : i + 1], atol=1e-5)
        assert torch.allclose(G(z[2:5], c[2:5]), batch[2:5], atol=1e-5)
        G.noise_mode = "none"
        assert (G(z, c) - batch).abs().max() > 1e-3
        G.noise_mode = "random"
        assert not torch.equal(G(z, c), G(z, c))
        G.noise_mode = "const"
        G.train()
        assert torch.equal(G(z, c), batch)
        G.noise_mode = "auto"
    with pytest.raises(UserError, match="noise_mode"):
        G.noise_mode = "loud"


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"image_size": 8}, "1024"),
        ({"image_size": 48}, "48"),
        ({"image_size": 2048}, "2048"),
        ({"mapping_layers": 0}, "mapping_layers"),
        ({"w_dim": 0}, "w_dim"),
        ({"channel_max": 0}, "channel_max"),
        ({"channel_base": 8}, "channel_base"),
        ({"w_avg_beta": 1.0}, "w_avg_beta"),
        ({"mapping_lr_mult": 0.0}, "mapping_lr_mult"),
        ({"mbstd_channels": 3}, "mbstd_channels"),
        ({"cmap_dim": -1}, "cmap_dim"),
    ],
)
def test_bad_config_is_one_line_user_error(change: dict, needle: str) -> None:
    for build in (Generator, Discriminator):
        with pytest.raises(UserError) as err:
            build(tiny(**change))
        msg = str(err.value)
        assert "\n" not in msg and "stylegan2" in msg and needle in msg


def test_from_dict_is_strict_and_round_trips() -> None:
    cfg = tiny(num_classes=3)
    assert StyleGAN2Config.from_dict(dataclasses.asdict(cfg)) == cfg
    with pytest.raises(UserError, match="'wdim'"):
        StyleGAN2Config.from_dict({"wdim": 3})
    default = StyleGAN2Config()
    assert [default.ch(r) for r in (4, 32, 64, 1024)] == [512, 512, 256, 16]  # min(16384 / r, 512)
    assert StyleGAN2Config(image_size=1024).num_ws() == 18


def test_state_dict_round_trip_rebuilds_the_same_generator() -> None:
    """What io.save_generator/load_generator rely on: config JSON + state dict (w_avg, fixed noise) suffice."""
    torch.manual_seed(13)
    G = noisy(Generator(tiny(num_classes=2))).eval()
    state = G.state_dict()
    assert "mapping.w_avg" in state and any(k.endswith("const_noise") for k in state)
    assert not any(k.endswith("fir") for k in state)  # filter taps are constants, rebuilt from the code
    torch.manual_seed(14)
    G2 = Generator(StyleGAN2Config.from_dict(G.config.to_dict()))
    G2.load_state_dict(state)
    z, c = torch.randn(3, 32), torch.tensor([0, 1, 1])
    with torch.no_grad():
        assert torch.equal(G2.eval()(z, c, trunc=0.7), G(z, c, trunc=0.7))


def test_equalized_learning_rate() -> None:
    torch.manual_seed(8)
    G = Generator(tiny(mapping_lr_mult=0.01))
    fc = G.mapping.net[0]
    assert isinstance(fc, FullyConnected)
    # Stored weights are N(0, 1) / lr_mult; the runtime gain lr_mult / sqrt(fan_in) gives He scaling.
    assert 90 < fc.weight.std() < 110 and fc.weight_gain == pytest.approx(0.01 / np.sqrt(32))
    x = torch.randn(4096, 32)
    plain = FullyConnected(32, 64, lr_mult=0.01)
    assert 0.8 < plain(x).var() < 1.2  # unit in, unit out
    conv = G.synthesis.blocks[1].conv1.conv
    assert 0.9 < conv.weight.std() < 1.1 and conv.weight_gain == pytest.approx(1 / np.sqrt(32 * 9))
    D = Discriminator(tiny())
    assert 0.9 < D.blocks[0].conv0.weight.std() < 1.1
    # The gradient on a stored weight is scaled by the gain: an equal Adam step moves the layer by lr_mult.
    slow, fast = FullyConnected(32, 8, lr_mult=0.01), FullyConnected(32, 8, lr_mult=1.0)
    fast.weight.data.copy_(slow.weight.data * 0.01)
    slow(x[:16]).sum().backward()
    fast(x[:16]).sum().backward()
    assert torch.allclose(slow.weight.grad, fast.weight.grad * 0.01, rtol=1e-4)
    # Affines start at bias 1 (plain convs), other biases at 0.
    assert torch.equal(G.synthesis.blocks[0].conv1.affine.bias, torch.ones(32))
    assert torch.equal(fc.bias, torch.zeros(32))


def test_every_parameter_gets_a_gradient() -> None:
    torch.manual_seed(9)
    cfg = tiny(num_classes=3)
    G, D = Generator(cfg).train(), Discriminator(cfg).train()
    z, c = torch.randn(4, 32), torch.tensor([0, 1, 2, 0])
    D(G(z, c), c).sum().backward()  # train(): random noise, so the (zero) noise strengths get gradients
    for net in (G, D):
        for name, p in net.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert count_parameters(G) > 0 and not [b for b in G.buffers() if b.requires_grad]


def test_every_w_is_used_and_double_backward_works() -> None:
    """Style mixing needs each ws row to reach the image; R1 and path-length need double backward."""
    torch.manual_seed(10)
    G, D = Generator(tiny()), Discriminator(tiny())
    ws = G.mapping(torch.randn(2, 32)).detach().requires_grad_(True)
    img = G.synthesis(ws)
    (grad,) = torch.autograd.grad((img * torch.randn_like(img)).sum(), ws, create_graph=True)
    assert (grad.abs().sum(dim=(0, 2)) > 0).all()  # every one of the num_ws rows matters
    grad.square().sum().backward()
    assert G.synthesis.const.grad is not None
    real = torch.randn(3, 3, 16, 16, requires_grad=True)
    (r1,) = torch.autograd.grad(D(real).sum(), real, create_graph=True)
    r1.square().sum().backward()
    # Every weight shapes the input gradient (biases of the last layers cannot: they shift the logit only).
    assert all(
        p.grad is not None and p.grad.abs().sum() > 0 for n, p in D.named_parameters() if "weight" in n
    )
    with pytest.raises(UserError, match=r"ws must have shape \(N, 6, 32\)"):
        G.synthesis(ws[:, :5])


def test_labels() -> None:
    torch.manual_seed(11)
    cfg = tiny(num_classes=4)
    G, D = Generator(cfg).eval(), Discriminator(cfg).eval()
    z = torch.randn(1, 32).repeat(3, 1)
    with torch.no_grad():
        imgs = G(z, torch.tensor([0, 1, 3]))
        assert (imgs[0] - imgs[1]).abs().max() > 1e-3
        logits = D(imgs[:1].repeat(3, 1, 1, 1), torch.tensor([0, 1, 3]))
    assert len(set(logits.tolist())) == 3  # projection term
    assert D.cmap_dim == cfg.ch(4)
    with pytest.raises(UserError, match="class-conditional"):
        G(z)
    with pytest.raises(UserError, match="0..3"):
        G(z, torch.tensor([0, 4, 1]))
    with pytest.raises(UserError, match="unconditional"):
        Generator(tiny())(z, torch.tensor([0, 1, 2]))
    with pytest.raises(UserError, match="discriminator expects images"):
        D(torch.randn(2, 3, 32, 32), torch.tensor([0, 1]))


class _Wrap(torch.nn.Module):
    def __init__(self, G: Generator) -> None:
        super().__init__()
        self.G = G

    def forward(self, z: torch.Tensor, *args: torch.Tensor) -> torch.Tensor:
        if len(args) == 2:  # (c, trunc)
            return self.G(z, args[0], trunc=args[1])
        if len(args) == 1:  # (trunc,)
            return self.G(z, trunc=args[0])
        return self.G(z)


def _export(G: Generator, path, names: list[str], dummy: tuple[torch.Tensor, ...]):
    import onnxruntime as ort

    with torch.no_grad():
        torch.onnx.export(
            _Wrap(G).eval(),
            dummy,
            str(path),
            input_names=names,
            output_names=["images"],
            dynamic_axes={n: {0: "batch"} for n in [*names, "images"]},
            opset_version=17,
            dynamo=False,
        )
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::DeprecationWarning")
def test_onnx_export_with_dynamic_batch(tmp_path) -> None:
    torch.manual_seed(12)
    G = noisy(Generator(tiny())).eval()
    sess = _export(G, tmp_path / "g.onnx", ["z"], (torch.randn(2, 32),))
    for n in (1, 3):
        z = torch.randn(n, 32)
        with torch.no_grad():
            ref = G(z).numpy()
        out = sess.run(["images"], {"z": z.numpy()})[0]
        assert out.shape == (n, 3, 16, 16)
        assert np.abs(out - ref).max() < 1e-4

    # Per-sample truncation as an input, with labels.
    Gc = noisy(Generator(tiny(num_classes=3))).eval()
    dummy = (torch.randn(2, 32), torch.tensor([0, 2]), torch.tensor([0.5, 1.0]))
    sess = _export(Gc, tmp_path / "gc.onnx", ["z", "c", "trunc"], dummy)
    for n in (1, 3):
        z, c = torch.randn(n, 32), torch.arange(n) % 3
        trunc = torch.linspace(0.0, 1.0, n) if n > 1 else torch.tensor([0.7])
        with torch.no_grad():
            ref = Gc(z, c, trunc=trunc).numpy()
        feeds = {"z": z.numpy(), "c": c.numpy(), "trunc": trunc.numpy()}
        out = sess.run(["images"], feeds)[0]
        assert out.shape == (n, 3, 16, 16)
        assert np.abs(out - ref).max() < 1e-4
