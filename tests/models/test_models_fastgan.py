"""FastGAN: shapes, value range, SLE wiring, noise modes, per-sample independence, D reconstructions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from astrogan.models import get_arch
from astrogan.models.fastgan import Discriminator, FastGANConfig, Generator
from astrogan.models.layers import NoiseInjection
from astrogan.utils.errors import UserError


def tiny(**kw) -> FastGANConfig:
    base = {"image_size": 16, "channels": 3, "z_dim": 8, "ngf": 4, "ndf": 4}
    return FastGANConfig(**{**base, **kw})


def noisy_generator(cfg: FastGANConfig) -> Generator:
    """A generator whose noise actually matters (the paper initialises its weights at zero)."""
    G = Generator(cfg)
    with torch.no_grad():
        for m in G.modules():
            if isinstance(m, NoiseInjection):
                m.weight.fill_(0.5)
        for _ in range(3):  # non-trivial BatchNorm running statistics
            G(torch.randn(8, cfg.z_dim))
    return G


@pytest.mark.parametrize("size", [16, 32])
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_and_range(size: int, channels: int) -> None:
    torch.manual_seed(0)
    cfg = tiny(image_size=size, channels=channels)
    G, D = Generator(cfg), Discriminator(cfg)
    x = G(torch.randn(4, cfg.z_dim) * 3)
    assert x.shape == (4, channels, size, size)
    assert x.min() >= -1 and x.max() <= 1 and x.std() > 0
    logits = D(x)
    assert logits.shape == (4, 50)  # two 5x5 maps: full image and small copy
    logits2, pairs = D(x, return_recon=True)
    assert logits2.shape == (4, 50)
    assert len(pairs) == 3
    for pred, target in pairs:
        assert pred.shape == target.shape
        assert pred.shape[:2] == (4, channels)
        assert pred.min() >= -1 and pred.max() <= 1
    assert (G.z_dim, G.num_classes, G.image_size, G.channels, G.arch) == (8, 0, size, channels, "fastgan")


@pytest.mark.parametrize("size", [0, 8, 24, 96, 2048])
def test_bad_image_size_is_one_line_user_error(size: int) -> None:
    with pytest.raises(UserError) as err:
        Generator(tiny(image_size=size))
    msg = str(err.value)
    assert "\n" not in msg and "fastgan" in msg and str(size) in msg and "1024" in msg
    with pytest.raises(UserError):
        Discriminator(tiny(image_size=size))


def test_conditional_is_refused() -> None:
    with pytest.raises(UserError, match="unconditional; use dcgan"):
        get_arch("fastgan").build_generator(tiny(num_classes=10))
    G = Generator(tiny()).eval()
    with pytest.raises(UserError, match="unconditional"):
        G(torch.randn(2, 8), torch.tensor([0, 1]))


def test_sle_links() -> None:
    assert tiny(image_size=16).g_sle_pairs() == [(4, 16)]
    assert tiny(image_size=32).g_sle_pairs() == [(4, 32)]
    assert tiny(image_size=64).g_sle_pairs() == [(4, 64)]
    assert tiny(image_size=1024).g_sle_pairs() == [(4, 64), (8, 128), (16, 256), (32, 512)]  # the paper's
    assert tiny(image_size=256).d_sle_pairs() == [(256, 32), (128, 16), (64, 8)]  # the paper's
    assert tiny(image_size=16).d_sle_pairs() == [(16, 8)]
    # The tiny models use them: gradients reach both SLE blocks.
    torch.manual_seed(0)
    cfg = tiny(image_size=16)
    G, D = Generator(cfg), Discriminator(cfg)
    D(G(torch.randn(4, 8))).mean().backward()
    for net in (G, D):
        grads = [p.grad for p in net.sle.parameters()]
        assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_noise_modes_and_per_sample_independence() -> None:
    torch.manual_seed(3)
    cfg = tiny(image_size=32)
    G = noisy_generator(cfg)
    z = torch.randn(8, cfg.z_dim)
    with torch.no_grad():
        G.train()
        assert not torch.equal(G(z), G(z))  # fresh noise in training
        G.eval()
        assert G.noise_mode == "auto"
        batch = G(z)
        assert torch.equal(batch, G(z))  # fixed noise in eval
        assert torch.allclose(G(z[6:7]), batch[6:7], atol=1e-5)
        G.noise_mode = "none"
        assert (G(z) - batch).abs().max() > 1e-4
        G.noise_mode = "random"
        assert not torch.equal(G(z), G(z))
        G.noise_mode = "auto"
        assert torch.equal(G(z), batch)
    with pytest.raises(UserError, match="noise_mode"):
        G.noise_mode = "loud"


def test_fixed_noise_does_not_touch_the_global_rng() -> None:
    torch.manual_seed(5)
    a = {k: v for k, v in Generator(tiny()).state_dict().items() if k.endswith("const_noise")}
    torch.manual_seed(6)
    b = {k: v for k, v in Generator(tiny()).state_dict().items() if k.endswith("const_noise")}
    assert (
        a and a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    )  # own generator, fixed seeds
    assert len({float(v.sum()) for v in a.values()}) == len(a)  # each layer has its own noise
    G = noisy_generator(tiny()).eval()
    state = torch.get_rng_state()
    with torch.no_grad():
        G(torch.randn(2, 8, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(state, torch.get_rng_state())


def test_reconstruction_targets_are_downsampled_real_images() -> None:
    torch.manual_seed(4)
    cfg = tiny(image_size=32, channels=1)
    D = Discriminator(cfg)
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    torch.manual_seed(11)
    _, pairs = D(x, return_recon=True)
    (_, t_big), (_, t_part), (_, t_small) = pairs
    assert torch.equal(t_big, x)  # 32 px: reconstructed at full size
    assert torch.allclose(t_small, F.avg_pool2d(x, 2))
    torch.manual_seed(11)
    part = int(torch.randint(0, 4, ()).item())  # the same draw D made
    y0, x0 = (part // 2) * 16, (part % 2) * 16
    assert torch.equal(t_part, x[:, :, y0 : y0 + 16, x0 : x0 + 16])


def test_small_fastgan_builds_at_64_and_large_sizes() -> None:
    cfg = FastGANConfig(image_size=64, ngf=16, ndf=16)
    G, D = Generator(cfg), Discriminator(cfg)
    with torch.no_grad():
        assert D(G(torch.randn(2, cfg.z_dim))).shape == (2, 50)
    big = Discriminator(tiny(image_size=1024, ndf=2))
    assert big.small_size == 128 and big.rec_size == 128


def test_registry_entry() -> None:
    spec = get_arch("fastgan")
    assert spec.name == "fastgan" and spec.loss == "fastgan" and spec.config_cls is FastGANConfig
    assert (spec.min_image_size, spec.max_image_size) == (16, 1024)
    assert spec.lr == 2e-4 and spec.betas == (0.5, 0.999)
    assert isinstance(spec.build_discriminator(tiny()), Discriminator)
    with pytest.raises(UserError, match="unknown fastgan config key 'ngff'"):
        FastGANConfig.from_dict({"ngff": 3})
