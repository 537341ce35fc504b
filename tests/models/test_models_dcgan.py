"""DCGAN generator/discriminator: shapes, value range, size validation, per-sample independence, labels."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from astrogan.models import ARCHS, count_parameters, flops_per_image, get_arch
from astrogan.models.dcgan import DCGANConfig, Discriminator, Generator
from astrogan.utils.errors import UserError


def tiny(**kw) -> DCGANConfig:
    base = {"image_size": 16, "channels": 3, "z_dim": 8, "ngf": 8, "ndf": 8}
    return DCGANConfig(**{**base, **kw})


def warm_up(G: torch.nn.Module, z_dim: int, c: torch.Tensor | None = None) -> None:
    """A few train-mode forwards so BatchNorm running statistics are not the identity."""
    G.train()
    with torch.no_grad():
        for _ in range(3):
            G(torch.randn(8, z_dim), c)
    G.eval()


@pytest.mark.parametrize("size", [16, 32])
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_and_range(size: int, channels: int) -> None:
    torch.manual_seed(0)
    cfg = tiny(image_size=size, channels=channels)
    G, D = Generator(cfg), Discriminator(cfg)
    x = G(torch.randn(4, cfg.z_dim) * 3)
    assert x.shape == (4, channels, size, size)
    assert x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    assert x.std() > 0
    logits = D(x)
    assert logits.shape == (4,)
    assert torch.isfinite(logits).all()
    assert (G.z_dim, G.num_classes, G.image_size, G.channels, G.arch) == (8, 0, size, channels, "dcgan")


@pytest.mark.parametrize("size", [0, 8, 24, 48, 512, 100])
def test_bad_image_size_is_one_line_user_error(size: int) -> None:
    with pytest.raises(UserError) as err:
        Generator(tiny(image_size=size))
    msg = str(err.value)
    assert "\n" not in msg and "dcgan" in msg and str(size) in msg and "256" in msg
    with pytest.raises(UserError):
        ARCHS["dcgan"].build_discriminator(tiny(image_size=size))


def test_other_bad_config_values() -> None:
    with pytest.raises(UserError, match="dropout"):
        tiny(dropout=1.5).validate()
    with pytest.raises(UserError, match="ngf"):
        tiny(ngf=0).validate()
    with pytest.raises(UserError, match="image_size must be an integer"):
        tiny(image_size=16.0).validate()


def test_from_dict_is_strict() -> None:
    cfg = tiny(num_classes=3)
    assert DCGANConfig.from_dict(dataclasses.asdict(cfg)) == cfg
    with pytest.raises(UserError, match="'wdith'"):
        DCGANConfig.from_dict({"image_size": 16, "wdith": 3})


def test_default_width_matches_the_issue() -> None:
    cfg = DCGANConfig(image_size=64)
    G = Generator(cfg)
    assert G.fc.out_features == 4 * 4 * 256  # "dense layer to 4x4x256"
    convs = [m for m in G.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert len(convs) == 4  # 4 -> 8 -> 16 -> 32 -> 64
    assert all(m.stride == (2, 2) and m.kernel_size == (4, 4) for m in convs)


def test_eval_output_is_per_sample_independent() -> None:
    torch.manual_seed(1)
    cfg = tiny(image_size=32)
    G = Generator(cfg)
    warm_up(G, cfg.z_dim)
    z = torch.randn(8, cfg.z_dim)
    with torch.no_grad():
        batch = G(z)
        alone = G(z[5:6])
        again = G(z)
    assert torch.allclose(alone, batch[5:6], atol=1e-5)
    assert torch.equal(batch, again)


def test_conditional_labels_matter() -> None:
    torch.manual_seed(2)
    cfg = tiny(num_classes=10)
    G, D = Generator(cfg), Discriminator(cfg)
    warm_up(G, cfg.z_dim, torch.randint(0, 10, (8,)))
    z = torch.randn(1, cfg.z_dim).repeat(3, 1)
    with torch.no_grad():
        imgs = G(z, torch.tensor([0, 3, 9]))
    assert (imgs[0] - imgs[1]).abs().max() > 1e-3
    assert (imgs[1] - imgs[2]).abs().max() > 1e-3
    x = imgs[:1].repeat(3, 1, 1, 1)
    D.eval()
    logits = D(x, torch.tensor([0, 3, 9]))
    assert len(set(logits.tolist())) == 3  # projection term: the label changes the logit
    # Per-sample independence holds with labels too.
    zz, cc = torch.randn(8, cfg.z_dim), torch.randint(0, 10, (8,))
    with torch.no_grad():
        assert torch.allclose(G(zz[2:3], cc[2:3]), G(zz, cc)[2:3], atol=1e-5)


def test_label_errors() -> None:
    G = Generator(tiny(num_classes=4)).eval()
    z = torch.randn(2, 8)
    with pytest.raises(UserError, match="class-conditional"):
        G(z)
    with pytest.raises(UserError, match="0..3"):
        G(z, torch.tensor([0, 4]))
    with pytest.raises(UserError, match=r"\(2,\)"):
        G(z, torch.tensor([0, 1, 2]))
    with pytest.raises(UserError, match="unconditional"):
        Generator(tiny()).eval()(z, torch.tensor([0, 1]))


def test_registry() -> None:
    spec = get_arch("dcgan")
    assert spec.loss == "dcgan" and spec.lr == 2e-4 and spec.betas == (0.5, 0.999)
    assert spec.min_image_size <= 32 and spec.max_image_size == 256
    assert isinstance(spec.build_generator(tiny()), Generator)
    with pytest.raises(UserError, match="dcgan, fastgan"):
        get_arch("stylegan9")


def test_flops_and_parameter_counts_match_hand_count() -> None:
    cfg = tiny(image_size=16, channels=1, z_dim=4, ngf=4)
    G = Generator(cfg)
    c4, c8 = cfg.g_channels()  # channels at 4x4 and 8x8
    macs = 4 * (c4 * 16)  # dense layer
    macs += (c4 * 4 * 4) * c8 * 16  # ConvTranspose 4 -> 8: each input pixel touches out_ch * k*k outputs
    macs += (c8 * 8 * 8) * 1 * 16  # ConvTranspose 8 -> 16
    assert flops_per_image(G) == 2 * macs
    assert G.training  # the counter restores the mode
    params = 4 * c4 * 16 + 2 * c4 + c4 * c8 * 16 + 2 * c8 + c8 * 1 * 16 + 1
    assert count_parameters(G) == params


def test_noise_inputs_are_off_by_default_and_keep_the_classic_layout() -> None:
    from astrogan.models.layers import NoiseInjection

    G = Generator(tiny(image_size=32))
    assert not any(isinstance(m, NoiseInjection) for m in G.modules())
    # checkpoints from before the option load unchanged: block i is conv, BN, act as it always was
    keys = set(G.state_dict())
    assert {"blocks.0.weight", "blocks.1.weight", "blocks.1.running_mean", "blocks.3.weight"} <= keys
    assert isinstance(G.blocks[0], torch.nn.ConvTranspose2d) and isinstance(G.blocks[1], torch.nn.BatchNorm2d)


def test_noise_inputs_after_every_conv_with_one_weight_per_colour_at_the_output() -> None:
    from astrogan.models.layers import NoiseInjection

    torch.manual_seed(3)
    cfg = tiny(image_size=32, noise=True)
    G = Generator(cfg)
    inj = [m for m in G.modules() if isinstance(m, NoiseInjection)]
    assert [m.const_noise.shape[-1] for m in inj] == [8, 16, 32]  # one per transposed conv, the output last
    assert [m.weight.numel() for m in inj] == [1, 1, 3]
    assert G.noise_mode == "auto"
    warm_up(G, cfg.z_dim)
    z = torch.randn(1, cfg.z_dim)
    with torch.no_grad():
        inj[-1].weight.copy_(torch.tensor([0.0, 0.5, 0.0]))  # only green gets pixel noise
        for m in inj[:-1]:
            m.weight.zero_()
        G.noise_mode = "random"
        a, b = G(z), G(z)
        diff = (a - b).abs().amax(dim=(0, 2, 3))
        assert diff[1] > 0.05 and diff[0] == 0 and diff[2] == 0
        G.noise_mode = "auto"  # eval(): fixed buffers, so a seed draws one picture, alone or in a batch
        zz = torch.randn(6, cfg.z_dim)
        assert torch.equal(G(zz), G(zz))
        assert torch.allclose(G(zz[4:5]), G(zz)[4:5], atol=1e-5)
        with_noise = G(zz)
        G.noise_mode = "none"
        assert (G(zz) - with_noise).abs().amax(dim=(0, 2, 3))[1] > 0.05


def test_noise_weights_learn() -> None:
    """The weights start at zero (a plain DCGAN at init) and move under G's loss."""
    torch.manual_seed(4)
    cfg = tiny(image_size=16, noise=True)
    G = Generator(cfg).train()
    out = G(torch.randn(8, cfg.z_dim))
    (out.std(dim=(2, 3)).mean()).backward()  # a loss that wants pixel-to-pixel variation
    from astrogan.models.layers import NoiseInjection

    grads = [m.weight.grad for m in G.modules() if isinstance(m, NoiseInjection)]
    assert len(grads) == 2 and all(g is not None and g.abs().sum() > 0 for g in grads)  # at 8 and 16 px


@pytest.mark.parametrize("kind", ["classes", "physical"])
def test_conditional_batchnorm_carries_the_condition_to_every_resolution(kind: str) -> None:
    """With the input path cut (the embedding's columns of the dense layer zeroed), only cond_bn still
    makes the picture depend on the condition."""
    from tests.helpers.conditions import SPEC

    cond_kw = {"num_classes": 3} if kind == "classes" else {"cond": SPEC.to_dict()}
    c = (
        torch.tensor([0, 2])
        if kind == "classes"
        else torch.tensor(SPEC.mean, dtype=torch.float32).repeat(2, 1)
    )
    if kind == "physical":
        c[1] = c[1] * 1.5
    z = torch.randn(1, 8).repeat(2, 1)
    for cond_bn in (False, True):
        torch.manual_seed(5)
        G = Generator(tiny(cond_bn=cond_bn, **cond_kw))
        warm_up(G, 8, c.repeat(4, *([1] * (c.dim() - 1))))
        with torch.no_grad():
            G.fc.weight[:, 8:] = 0  # columns of the condition embedding, concatenated after z
            for m in G.modules():  # make the conditional scales and shifts matter
                if hasattr(m, "gain") and isinstance(m.gain, torch.nn.Linear):
                    m.gain.weight.normal_(0, 0.5)
                    m.bias.weight.normal_(0, 0.5)
            x = G(z, c)
        assert bool((x[0] - x[1]).abs().max() > 1e-3) is cond_bn


def test_conditional_batchnorm_needs_a_conditional_model() -> None:
    with pytest.raises(UserError, match="cond_bn needs a conditional model") as err:
        Generator(tiny(cond_bn=True))
    assert "\n" not in str(err.value)


def _nyquist_share(G: Generator, z_dim: int) -> float:
    """Share of the output's power on the Nyquist row and column of its 2D spectrum (a checkerboard's home)."""
    with torch.no_grad():
        x = G(torch.randn(16, z_dim))[:, 0]
    p = torch.fft.fft2(x - x.mean(dim=(1, 2), keepdim=True)).abs() ** 2
    h = x.shape[-1] // 2
    return float((p[:, h, :].sum() + p[:, :, h].sum() - p[:, h, h].sum()) / p.sum())


def test_bilinear_output_upsampling_leaves_no_checkerboard_on_the_pixels() -> None:
    # A 4x4 stride-2 transposed conv overlaps unevenly and paints a period-2 pattern from the first step (Odena et
    # al. 2016); upsampling first and convolving after cannot. Measured at init over seeds 0-7: 13-29% of the power
    # at Nyquist with "transpose" last, 0.03-0.08% with "bilinear" last.
    shares = {}
    for up in ("transpose", "bilinear"):
        torch.manual_seed(0)
        G = Generator(tiny(image_size=32, channels=1, output_upsample=up))
        assert G(torch.randn(2, 8)).shape == (2, 1, 32, 32)
        shares[up] = _nyquist_share(G, 8)
    assert shares["transpose"] > 0.05 and shares["bilinear"] < 0.005
    # only the last doubling changes: the inner ones stay transposed convs
    kinds = [type(m) for m in Generator(tiny(image_size=32, output_upsample="bilinear")).blocks]
    assert kinds.count(torch.nn.ConvTranspose2d) == 2 and kinds.count(torch.nn.Upsample) == 1
    assert kinds[-3:] == [torch.nn.Upsample, torch.nn.Conv2d, torch.nn.Tanh]
    with pytest.raises(UserError, match="output_upsample"):
        tiny(output_upsample="nearest").validate()
