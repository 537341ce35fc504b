"""ByteDropout: dropout's statistics (rate, unbiased scale, independent elements), eval identity, RNG and gradient."""

from __future__ import annotations

import shutil

import pytest
import torch

from astrogan.models.dcgan import DCGANConfig, Discriminator
from astrogan.models.layers import ByteDropout
from astrogan.utils.errors import UserError


@pytest.mark.parametrize("p", [0.1, 0.25, 0.5, 0.9])
def test_drops_a_share_p_and_keeps_the_mean(p: float) -> None:
    torch.manual_seed(0)
    x = torch.ones(8, 16, 50, 50)  # 320,000 elements: the share's standard error is below 0.001
    y = ByteDropout(p).train()(x)
    kept = y != 0
    assert kept.float().mean().item() == pytest.approx(1 - p, abs=0.004)
    assert y.mean().item() == pytest.approx(1.0, abs=0.01)  # kept ones scaled by 1 / (1 - p)
    # p is exact to 1/65536, the scale to the drawn rate: 1 / (1 - p) within 1e-4
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / (1 - p)), rtol=1e-4, atol=0)


def test_neighbouring_elements_are_independent() -> None:
    # Four elements share one int64 draw: each must still be its own coin.
    torch.manual_seed(1)
    kept = (ByteDropout(0.5).train()(torch.ones(400_000)) != 0).float().view(-1, 4)
    for a, b in [(0, 1), (1, 2), (2, 3), (0, 3)]:
        assert (kept[:, a] * kept[:, b]).mean().item() == pytest.approx(0.25, abs=0.005)
    # and no lane repeats the one before it across draws
    flat = kept.flatten()
    assert (flat[1:] == flat[:-1]).float().mean().item() == pytest.approx(0.5, abs=0.005)


def test_identity_in_eval_and_at_zero() -> None:
    x = torch.randn(4, 3, 8, 8)
    assert ByteDropout(0.25).eval()(x) is x
    assert ByteDropout(0.0).train()(x) is x


def test_masks_come_from_the_global_rng() -> None:
    d = ByteDropout(0.25).train()
    x = torch.ones(2, 4, 16, 16)
    torch.manual_seed(7)
    a = d(x)
    torch.manual_seed(7)
    b = d(x)
    c = d(x)
    assert torch.equal(a, b)  # a resumed run restores the RNG and draws the same masks
    assert not torch.equal(b, c)


def test_gradient_is_the_mask_times_the_scale() -> None:
    torch.manual_seed(3)
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    y = ByteDropout(0.25).train()(x)
    y.sum().backward()
    mask = (y != 0).float()
    assert torch.allclose(x.grad, mask / 0.75)


def test_bad_rate_is_refused() -> None:
    with pytest.raises(UserError, match="dropout"):
        ByteDropout(1.0)


def test_dcgan_discriminator_drops_in_training_only() -> None:
    torch.manual_seed(0)
    cfg = DCGANConfig(image_size=16, channels=1, z_dim=8, ngf=8, ndf=8, dropout=0.25)
    D = Discriminator(cfg)
    assert sum(isinstance(m, ByteDropout) for m in D.modules()) == 2
    x = torch.randn(4, 1, 16, 16)
    D.eval()
    assert torch.equal(D(x), D(x))
    D.train()
    assert not torch.allclose(D(x), D(x))


@pytest.mark.slow  # compiles (seconds)
@pytest.mark.skipif(
    shutil.which("g++") is None and shutil.which("c++") is None, reason="inductor needs a C++ compiler"
)
def test_compiled_byte_dropout_keeps_its_statistics() -> None:
    # inductor lowers the int64 draw itself: its full range must not overflow into a constant mask
    d = torch.compile(ByteDropout(0.25).train())
    torch.manual_seed(0)
    x = torch.ones(8, 16, 32, 32)
    a, b = d(x), d(x)
    assert (a != 0).float().mean().item() == pytest.approx(0.75, abs=0.01)
    assert a.mean().item() == pytest.approx(1.0, abs=0.02)
    assert not torch.equal(a, b)
