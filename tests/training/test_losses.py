"""Loss objects: label smoothing, hinge margins, accuracy stats, reconstruction, autocast, overfitting."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from torch import nn

from astrogan.models import get_arch
from astrogan.training.losses import DCGANLoss, FastGANLoss, make_loss
from astrogan.utils.errors import UserError


class MeanD(nn.Module):
    """Toy D: the logit of an image is its mean pixel value (known outputs, exact gradients)."""

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return x.flatten(1).mean(1)


class MapD(nn.Module):
    """Toy FastGAN-style D: a (N, 4) logit map equal to the pixel mean; reconstructions off by `offset`."""

    def __init__(self, offset: float = 0.0) -> None:
        super().__init__()
        self.offset = offset

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None, *, return_recon: bool = False):
        logits = x.flatten(1).mean(1, keepdim=True).repeat(1, 4)
        if not return_recon:
            return logits
        return logits, [(x + self.offset, x), (x[:, :, :2, :2] + self.offset, x[:, :, :2, :2])]


def images_with_logits(values: list[float]) -> torch.Tensor:
    """(N, 1, 2, 2) images whose MeanD logit is the given value."""
    return torch.tensor(values, dtype=torch.float32).view(-1, 1, 1, 1).repeat(1, 1, 2, 2)


def test_make_loss() -> None:
    assert isinstance(make_loss("dcgan"), DCGANLoss)
    assert isinstance(make_loss("fastgan", recon="l1"), FastGANLoss)
    for arch in ("dcgan", "fastgan"):
        assert make_loss(get_arch(arch).loss).name == arch
    with pytest.raises(UserError, match="dcgan, fastgan"):
        make_loss("wgan")
    with pytest.raises(UserError, match="bad option"):
        make_loss("dcgan", temperature=2)
    with pytest.raises(UserError, match="recon"):
        make_loss("fastgan", recon="lpips")


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("stylegan2", {"r1_gamma": "nan"}, "stylegan2 loss r1_gamma must be a number, got 'nan'"),
        ("stylegan2", {"pl_weight": "abc"}, "stylegan2 loss pl_weight must be a number, got 'abc'"),
        ("stylegan2", {"r1_interval": 2.5}, "stylegan2 loss r1_interval must be an integer, got 2.5"),
        ("stylegan2", {"style_mixing": True}, "stylegan2 loss style_mixing must be a number, got True"),
        ("fastgan", {"recon_weight": "x"}, "fastgan loss recon_weight must be a number, got 'x'"),
    ],
)
def test_a_loss_option_of_the_wrong_type_is_named(name, options, message) -> None:
    # --loss values are read as JSON where they parse, so `r1_gamma=nan` arrives as the text 'nan'.
    with pytest.raises(UserError, match=f"^{re.escape(message)}$"):
        make_loss(name, **options)
    assert make_loss("stylegan2", r1_gamma=None, r1_interval=8).r1_gamma > 0  # None: the auto gamma


def test_dcgan_label_smoothing_ranges() -> None:
    n = 2000
    torch.manual_seed(0)
    logits = torch.randn(n)
    real = images_with_logits(logits.tolist()).requires_grad_(True)
    fake = images_with_logits((-logits).tolist()).requires_grad_(True)
    loss, stats = DCGANLoss().d_loss(MeanD(), real, fake)
    loss.backward()
    # d BCE / d logit_i = (sigmoid(l_i) - t_i) / n, and each of the 4 pixels gets a quarter of it.
    t_real = torch.sigmoid(logits) - n * 4 * real.grad[:, 0, 0, 0]
    t_fake = torch.sigmoid(-logits) - n * 4 * fake.grad[:, 0, 0, 0]
    assert t_real.min() >= 0.9 - 1e-4 and t_real.max() <= 1.0 + 1e-4
    assert t_fake.min() >= -1e-4 and t_fake.max() <= 0.1 + 1e-4
    assert t_real.min() < 0.91 and t_real.max() > 0.99  # random over the whole range, not a constant
    assert t_fake.min() < 0.01 and t_fake.max() > 0.09
    assert stats["loss_d"] == pytest.approx(loss.item())


def test_dcgan_loss_replays_with_the_global_rng() -> None:
    real, fake = images_with_logits([2.0, -1.0, 3.0]), images_with_logits([0.5, -2.0, 1.0])
    torch.manual_seed(7)
    a, _ = DCGANLoss().d_loss(MeanD(), real, fake)
    b, _ = DCGANLoss().d_loss(MeanD(), real, fake)
    torch.manual_seed(7)
    c, _ = DCGANLoss().d_loss(MeanD(), real, fake)
    assert a.item() == c.item() and a.item() != b.item()


def test_dcgan_values_and_stats() -> None:
    real = images_with_logits([1.0, 2.0, -1.0, 3.0])
    fake = images_with_logits([-1.0, -2.0, 1.0, 0.0])
    _, stats = DCGANLoss(real_range=(1.0, 1.0), fake_range=(0.0, 0.0)).d_loss(MeanD(), real, fake)
    sp = nn.functional.softplus
    expected = (
        sp(-torch.tensor([1.0, 2.0, -1.0, 3.0])).mean() + sp(torch.tensor([-1.0, -2.0, 1.0, 0.0])).mean()
    )
    assert stats["loss_d"] == pytest.approx(expected.item(), rel=1e-6)
    assert stats["acc_real"] == 0.75 and stats["acc_fake"] == 0.75  # a logit of 0 is not "judged real"
    g, gstats = DCGANLoss().g_loss(MeanD(), fake)
    assert g.item() == pytest.approx(sp(-torch.tensor([-1.0, -2.0, 1.0, 0.0])).mean().item(), rel=1e-6)
    assert gstats == {"loss_g": pytest.approx(g.item())}


def test_fastgan_hinge_is_zero_far_on_the_right_side() -> None:
    real = images_with_logits([5.0, 3.0]).requires_grad_(True)
    fake = images_with_logits([-5.0, -3.0]).requires_grad_(True)
    loss, stats = FastGANLoss().d_loss(MapD(), real, fake)
    assert loss.item() == 0.0 and stats["loss_recon"] == 0.0
    loss.backward()
    assert real.grad.abs().max() == 0 and fake.grad.abs().max() == 0
    assert stats["acc_real"] == 1.0 and stats["acc_fake"] == 1.0


def test_fastgan_random_margins() -> None:
    zero = images_with_logits([0.0] * 500)
    torch.manual_seed(3)
    _, stats = FastGANLoss().d_loss(MapD(), zero, zero)
    torch.manual_seed(3)
    m_real = torch.rand(500, 4) * 0.2 + 0.8
    m_fake = torch.rand(500, 4) * 0.2 + 0.8
    # With logits 0 the hinge is the margin itself: the mean of U[0.8, 1] draws, in the order real, fake.
    assert stats["loss_d_real"] == pytest.approx(m_real.mean().item(), rel=1e-6)
    assert stats["loss_d_fake"] == pytest.approx(m_fake.mean().item(), rel=1e-6)
    assert 0.8 < stats["loss_d_real"] < 1.0
    assert stats["acc_real"] == 0.0 and stats["acc_fake"] == 1.0


def test_fastgan_reconstruction_and_generator_terms() -> None:
    far = images_with_logits([5.0, 5.0])
    _, stats = FastGANLoss(recon="mse").d_loss(MapD(offset=0.5), far, -far)
    assert stats["loss_recon"] == pytest.approx(2 * 0.25)
    loss, stats = FastGANLoss(recon="l1", recon_weight=2.0).d_loss(MapD(offset=0.5), far, -far)
    assert stats["loss_recon"] == pytest.approx(2 * 0.5) and loss.item() == pytest.approx(2.0)
    g, gstats = FastGANLoss().g_loss(MapD(), images_with_logits([1.0, -3.0]))
    assert g.item() == pytest.approx(1.0) and gstats["loss_g"] == pytest.approx(1.0)


def tiny_pair(arch: str):
    spec = get_arch(arch)
    kw = {"image_size": 16, "channels": 3, "z_dim": 8, "ngf": 8, "ndf": 8}
    cfg = spec.config_cls(**kw)
    return spec, spec.build_generator(cfg), spec.build_discriminator(cfg)


@pytest.mark.parametrize("arch", ["dcgan", "fastgan"])
def test_gradients_and_autocast(arch: str) -> None:
    torch.manual_seed(0)
    spec, G, D = tiny_pair(arch)
    loss = make_loss(spec.loss)
    real = torch.rand(4, 3, 16, 16) * 2 - 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fake = G(torch.randn(4, 8))
        loss_d, d_stats = loss.d_loss(D, real, fake.detach())
        loss_g, g_stats = loss.g_loss(D, fake)
    for value in (loss_d, loss_g):
        assert value.dim() == 0 and value.dtype == torch.float32 and torch.isfinite(value)
    assert set(d_stats) >= {"loss_d", "acc_real", "acc_fake"} and "loss_g" in g_stats
    assert all(isinstance(v, float) for v in [*d_stats.values(), *g_stats.values()])
    if arch == "fastgan":
        assert d_stats["loss_recon"] > 0
    loss_d.backward()
    assert all(p.grad is not None for p in D.parameters())
    assert all(p.grad is None for p in G.parameters())  # fake was detached
    loss_g.backward()
    assert sum(p.grad.abs().sum() for p in G.parameters() if p.grad is not None) > 0


@pytest.mark.parametrize("arch", ["dcgan", "fastgan"])
def test_discriminator_can_overfit_a_tiny_batch(arch: str) -> None:
    torch.manual_seed(0)
    spec, G, D = tiny_pair(arch)
    loss = make_loss(spec.loss)
    real = torch.rand(8, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        fake = G.eval()(torch.randn(8, 8))
    opt = torch.optim.Adam(D.parameters(), lr=spec.lr, betas=spec.betas)
    history = []
    for _ in range(30):
        loss_d, stats = loss.d_loss(D, real, fake)
        opt.zero_grad()
        loss_d.backward()
        opt.step()
        history.append(stats["loss_d"])
    first, last = sum(history[:5]) / 5, sum(history[-5:]) / 5
    # An untrained D sits at ~log(4) (dcgan) or ~2 + recon (fastgan); learning must show in 30 steps.
    assert last < 0.88 * first, history
    assert stats["acc_real"] >= 0.75 and stats["acc_fake"] >= 0.75


def _sg2(**kw):
    torch.manual_seed(0)
    spec = get_arch("stylegan2")
    cfg = spec.config_cls(image_size=16, channels=1, **spec.tiny)
    G, D = spec.build_generator(cfg).train(), spec.build_discriminator(cfg).train()
    return make_loss("stylegan2", image_size=16, batch_size=4, **kw), G, D


def _batch(n: int = 4):
    from astrogan.training.losses import Batch

    return Batch(z=torch.randn(n, 32), real=torch.rand(n, 1, 16, 16) * 2 - 1)


def test_stylegan2_phases_and_default_gamma() -> None:
    loss, _, _ = _sg2()
    assert [(p.name, p.net, p.interval) for p in loss.phases] == [
        ("Dmain", "D", 1),
        ("Dreg", "D", 16),
        ("Gmain", "G", 1),
        ("Greg", "G", 4),
    ]
    assert loss.r1_gamma == pytest.approx(0.0002 * 16**2 / 4)  # the ADA paper's heuristic
    no_reg = make_loss("stylegan2", r1_gamma=0.0, pl_weight=0.0)
    assert [p.name for p in no_reg.phases] == ["Dmain", "Gmain"]
    with pytest.raises(UserError, match="style_mixing"):
        make_loss("stylegan2", style_mixing=2.0)


def test_stylegan2_r1_is_the_scaled_squared_gradient_norm_on_reals() -> None:
    loss, G, D = _sg2(r1_gamma=2.0)
    phase = next(p for p in loss.phases if p.name == "Dreg")
    batch = _batch()
    value, stats = loss.run(phase, G=G, D=D, augment=lambda x: x, batch=batch)
    real = batch.real.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(real).sum(), real)
    penalty = grad.square().sum(dim=(1, 2, 3)).mean()
    assert stats["loss_r1"] == pytest.approx(penalty.item(), rel=1e-4)
    assert value.item() == pytest.approx(penalty.item() * 2.0 / 2 * 16, rel=1e-4)  # gamma/2 x interval
    value.backward()
    assert sum(p.grad.abs().sum() for p in D.parameters() if p.grad is not None) > 0
    assert all(p.grad is None for p in G.parameters())


def test_stylegan2_path_length_tracks_its_mean_and_pushes_g() -> None:
    loss, G, D = _sg2()
    phase = next(p for p in loss.phases if p.name == "Greg")
    value, stats = loss.run(phase, G=G, D=D, augment=lambda x: x, batch=_batch())
    assert stats["pl_mean"] > 0 and value.item() > 0
    value.backward()
    assert sum(p.grad.abs().sum() for p in G.synthesis.parameters() if p.grad is not None) > 0
    assert all(p.grad is None for p in D.parameters())
    state = loss.state_dict()
    other, _, _ = _sg2()
    other.load_state_dict(state)
    assert torch.equal(other.pl_mean, loss.pl_mean)


def test_stylegan2_gmain_updates_w_avg_and_mixes_styles() -> None:
    loss, G, D = _sg2(style_mixing=1.0)
    before = G.mapping.w_avg.clone()
    phase = next(p for p in loss.phases if p.name == "Gmain")
    calls = []
    original = G.mapping.forward

    def spy(z, c=None, **kw):
        calls.append(kw.get("update_w_avg"))
        return original(z, c, **kw)

    G.mapping.forward = spy
    value, stats = loss.run(phase, G=G, D=D, augment=lambda x: x, batch=_batch())
    assert calls == [True, False]  # the main latent updates w_avg; the mixing latent does not
    assert not torch.equal(G.mapping.w_avg, before)
    assert stats["loss_g"] == pytest.approx(value.item())


def _sg2_prior(**kw):
    """A tiny StyleGAN2 on Sérsic conditions with the prior started as the image (prior_residual)."""
    from tests.helpers.conditions import SPEC

    torch.manual_seed(0)
    spec = get_arch("stylegan2")
    cfg = spec.config_cls(
        image_size=16, channels=1, **spec.tiny, cond=SPEC.to_dict(), cond_prior="sersic", prior_residual=True
    )
    G = spec.build_generator(cfg).train()
    c = torch.tensor([[1.0, 3.0, 0.4], [4.0, 2.0, 1.0], [2.0, 5.0, 0.7], [3.0, 4.0, 0.5]])
    batch = type(_batch())(z=torch.randn(4, 32), c_gen=c)
    return make_loss("stylegan2", image_size=16, batch_size=4, **kw), G, batch


def _blind_d(x: torch.Tensor, c=None) -> torch.Tensor:
    """A discriminator that cannot see: G's adversarial gradient is zero, only its penalties move it."""
    return x.flatten(1).sum(dim=1, keepdim=True) * 0.0


def _penalty_only_steps(loss, G, batch, measure, steps: int = 40):
    """Train G's synthesis `steps` Gmain steps against the blind D, its torgb weights first scaled 30x (fakes far
    from any rule); returns (measure before, measure after, the last step's stats)."""
    with torch.no_grad():
        for block in G.synthesis.blocks:
            block.torgb.conv.weight.mul_(30.0)
    G.noise_mode = "const"
    phase = next(p for p in loss.phases if p.name == "Gmain")
    opt = torch.optim.Adam(G.synthesis.parameters(), lr=3e-3)
    before = measure(G, batch)
    for _ in range(steps):
        value, stats = loss.run(phase, G=G, D=_blind_d, augment=lambda x: x, batch=batch)
        opt.zero_grad()
        value.backward()
        opt.step()
    return before, measure(G, batch), stats


def test_stylegan2_profile_weight_flattens_the_residuals_azimuthal_profile() -> None:
    """profile_weight: G's loss adds the squared annulus profile of what it draws on top of the template, so
    training pulls the asked n and r_e back into the image; at 0 nothing is added and nothing moves."""
    from astrogan.models.sersic_prior import annulus_profile

    def profile(G, batch) -> float:
        with torch.no_grad():
            ws, prior = G.mapping(batch.z, batch.c_gen), G.prior_params(batch.z, batch.c_gen)
            r = G.synthesis(ws, prior) - G.synthesis.prior_share(ws, prior)
            means, area = annulus_profile(r - r.mean(dim=(2, 3), keepdim=True), prior)
            return float((area.unsqueeze(1) * means.square()).sum(dim=2).mean())

    results = {}
    for weight in (0.0, 10.0):
        loss, G, batch = _sg2_prior(profile_weight=weight, pl_weight=0.0, style_mixing=0.0)
        # torgb scaled up: a residual with a profile of its own, light moved into the wings
        results[weight] = _penalty_only_steps(loss, G, batch, profile)
    before, after, stats = results[10.0]
    assert stats["loss_profile"] > 0 and stats["loss_g"] == pytest.approx(math.log(2), rel=1e-5)
    assert after < 0.2 * before, (before, after)
    before0, after0, stats0 = results[0.0]
    assert "loss_profile" not in stats0 and after0 == pytest.approx(before0, rel=1e-3)


def test_stylegan2_stretch_penalty_is_zero_on_the_builds_own_stretch() -> None:
    """An image stretched as `dataset build` does (black at its 0.5th percentile, white at its peak) costs
    nothing (to within the interpolation between the two pixels either side of black's percentile); the same
    image with its sky 0.1 low and its peak 0.1 high costs 0.1^2 for each level."""
    from astrogan.data.fits_io import stretch

    rng = np.random.default_rng(0)
    imgs = [stretch(rng.normal(size=(64, 64)) + 5 * rng.random(), "linear", white_percentile=100.0)[0]
            for _ in range(4)]  # fmt: skip
    real = torch.from_numpy(np.stack(imgs))[:, None] * 2 - 1
    loss = make_loss("stylegan2", black_weight=1.0, peak_weight=1.0)
    black, peak = (t.item() for t in loss._stretch_penalty(real))
    assert black == pytest.approx(0.0, abs=1e-4) and peak == pytest.approx(0.0, abs=1e-10)
    for shifted in (real * 1.1, real + 0.1):  # black at -1.1 or -0.9, peak at 1.1
        assert [t.item() for t in loss._stretch_penalty(shifted)] == pytest.approx([0.01, 0.01], rel=0.05)
    low_sky = torch.where(real < 0, real - 0.1, real)  # the peak stays where it was
    black, peak = (t.item() for t in loss._stretch_penalty(low_sky))
    assert black == pytest.approx(0.01, rel=0.05) and peak == pytest.approx(0.0, abs=1e-10)
    # A peak below white is D's business: raising it through its one pixel would draw a central spike.
    black, peak = (t.item() for t in loss._stretch_penalty(real * 0.9))
    assert black == pytest.approx(0.01, rel=0.05) and peak == 0.0
    # The levels are the build's percentiles: at 5% black, the 0.5% pixels are far below -1.
    five = make_loss("stylegan2", black_weight=1.0, stretch_black=5.0)
    assert five._stretch_penalty(real)[0].item() > 1e-3


def test_row_percentile_is_numpys_and_takes_large_batches() -> None:
    """The stretch penalty's percentile: numpy's linear interpolation per row, also past the 2**24 elements
    that torch.quantile refuses (a batch of 1024 px colour pictures), with a gradient on the pixels used."""
    from astrogan.training.losses import _row_percentile

    x = torch.randn(3, 4097, generator=torch.Generator().manual_seed(0))
    for q in (0.0, 0.005, 0.5, 0.995, 1.0):
        np.testing.assert_allclose(
            _row_percentile(x, q).numpy(), np.percentile(x.numpy(), q * 100, axis=1), atol=1e-6
        )
    big = torch.zeros(2, 2**23 + 5, requires_grad=True)  # 2**24 + 10 elements in all
    _row_percentile(big, 0.005).sum().backward()
    assert 2 <= int((big.grad != 0).sum()) <= 4


@pytest.mark.parametrize("term", ["black", "peak"])
def test_stylegan2_stretch_weights_move_fakes_onto_black_and_white(term: str) -> None:
    """black_weight / peak_weight: with a blind D, G's penalty alone brings each fake's 0.5th percentile to -1
    (its overshooting peak down to 1); at weight 0 nothing is added and nothing moves."""
    probe = make_loss("stylegan2")
    index = ("black", "peak").index(term)

    def distance(G, batch) -> float:
        with torch.no_grad():
            return probe._stretch_penalty(G.synthesis(G.mapping(batch.z, None), None))[index].item()

    results = {}
    for weight in (0.0, 10.0):
        loss, G, _ = _sg2(**{f"{term}_weight": weight}, pl_weight=0.0, style_mixing=0.0)
        # torgb scaled up: fakes well beyond black and white
        results[weight] = _penalty_only_steps(loss, G, _batch(), distance)
    before, after, stats = results[10.0]
    other = ("black", "peak")[1 - index]
    assert f"loss_{term}" in stats and f"loss_{other}" not in stats and after < 0.2 * before, (
        before,
        after,
    )
    before0, after0, stats0 = results[0.0]
    assert f"loss_{term}" not in stats0 and after0 == pytest.approx(before0, rel=1e-3)


def test_stylegan2_profile_weight_errors_are_one_line() -> None:
    for bad in (-1.0, float("nan")):
        with pytest.raises(UserError, match="profile_weight is out of range"):
            make_loss("stylegan2", profile_weight=bad)
    with pytest.raises(UserError, match="profile_weight must be a number"):
        make_loss("stylegan2", profile_weight="high")
    for bad in (
        {"black_weight": -1.0},
        {"peak_weight": float("nan")},
        {"stretch_black": 100.0},
        {"stretch_black": -1.0, "stretch_white": 9},
    ):
        with pytest.raises(
            UserError, match="(black_weight|peak_weight|stretch_black|stretch_white) is out of range"
        ):
            make_loss("stylegan2", **bad)
    loss, G, D = _sg2(profile_weight=1.0)  # no prior in this generator
    phase = next(p for p in loss.phases if p.name == "Gmain")
    with pytest.raises(UserError, match="profile_weight needs a generator with the Sérsic prior"):
        loss.run(phase, G=G, D=D, augment=lambda x: x, batch=_batch())
