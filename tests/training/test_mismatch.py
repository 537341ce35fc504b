"""D's mismatch term: real images paired with another image's conditions count as fake (Reed et al. 2016)."""

from __future__ import annotations

import pytest
import torch

from astrogan.models import ARCHS
from astrogan.training.losses import Batch, Phase, make_loss
from astrogan.utils.errors import UserError
from tests.training.test_cond_aux import SPEC, _blobs


def _nets(arch: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    spec = ARCHS[arch]
    cfg = spec.config_cls(image_size=16, channels=1, cond=SPEC.to_dict(), **spec.tiny)
    torch.manual_seed(0)
    return spec.build_generator(cfg), spec.build_discriminator(cfg)


def _loss(arch: str, weight: float):  # noqa: ANN202
    return make_loss(ARCHS[arch].loss, image_size=16, batch_size=16, cond_weight=0.0, mismatch_weight=weight)


def _batch(gen: torch.Generator, n: int = 16) -> Batch:
    flux = torch.rand(n, generator=gen) * 0.9 + 0.1
    z = torch.randn(n, 32, generator=gen)
    return Batch(z=z, c_gen=flux[:, None], real=_blobs(flux), c_real=flux[:, None])


def _match_gap(arch: str, weight: float, steps: int = 60) -> float:
    """Train D alone (G frozen, untrained) for `steps` Dmain steps; return mean D(x, c) - D(x, c_wrong) on
    held-out reals, c_wrong = conditions far from x's own."""
    G, D = _nets(arch)
    G.z_dim = getattr(G, "z_dim", 8)
    loss = _loss(arch, weight)
    opt = torch.optim.Adam(D.parameters(), lr=2e-3, betas=(0.5, 0.99))
    gen = torch.Generator().manual_seed(1)
    phase = Phase("Dmain", "D", needs_real=True)
    for _ in range(steps):
        b = _batch(gen)
        b.z = b.z[:, : G.z_dim]
        out, _ = loss.run(phase, G=G, D=D, augment=lambda x: x, batch=b)
        opt.zero_grad()
        out.backward()
        opt.step()
    flux = torch.linspace(0.1, 1.0, 32)
    x = _blobs(flux)
    wrong = 1.1 - flux  # the far end of the range
    D.eval()
    with torch.no_grad():
        return float((D(x, flux[:, None]) - D(x, wrong[:, None])).mean())


@pytest.mark.parametrize("arch", ["dcgan", "stylegan2"])
def test_mismatch_term_teaches_d_which_condition_fits_an_image(arch: str) -> None:
    """Without the term D has no reason to prefer an image's own condition; with it, it clearly does."""
    off, on = _match_gap(arch, 0.0), _match_gap(arch, 1.0)
    assert on > 1.0 and on > off + 1.0, (off, on)


@pytest.mark.parametrize("arch", ["dcgan", "stylegan2"])
def test_mismatch_term_leaves_the_random_stream_alone(arch: str) -> None:
    """A roll of the batch's conditions, not a shuffle, and no drawn targets: the same draws on or off."""
    states = []
    for weight in (0.0, 1.0):
        G, D = _nets(arch)
        b = _batch(torch.Generator().manual_seed(2))
        b.z = b.z[:, : G.z_dim]
        torch.manual_seed(5)
        out, stats = _loss(arch, weight).run(
            Phase("Dmain", "D", needs_real=True), G=G, D=D, augment=lambda x: x, batch=b
        )
        states.append(torch.get_rng_state())
        assert ("loss_d_mismatch" in stats) == (weight > 0)
    assert torch.equal(states[0], states[1])


def test_mismatch_term_needs_conditions_and_a_valid_weight() -> None:
    with pytest.raises(UserError, match="mismatch_weight must be >= 0"):
        make_loss("dcgan", mismatch_weight=-1.0)
    with pytest.raises(UserError, match="mismatch_weight must be >= 0"):
        make_loss("stylegan2", image_size=16, batch_size=4, mismatch_weight=float("nan"))
    loss = make_loss("dcgan", mismatch_weight=1.0)
    assert loss._mismatched(None) is None  # unconditional: no term
    assert loss._mismatched(torch.ones(1, 1)) is None  # one image has no other to borrow from
    assert torch.equal(loss._mismatched(torch.arange(3.0)[:, None]), torch.tensor([[2.0], [0.0], [1.0]]))


@pytest.mark.parametrize("arch", ["dcgan", "stylegan2"])
def test_two_conditions_in_one_pass_equal_two_passes(arch: str) -> None:
    _, D = _nets(arch)
    D.eval()  # BatchNorm from running stats, dropout off: two passes see the same trunk
    x, c = _blobs(torch.linspace(0.1, 1.0, 6)), torch.linspace(0.1, 1.0, 6)[:, None]
    with torch.no_grad():
        both = D(x, c, c_other=c.flip(0))
        assert both.shape == (2, 6)
        torch.testing.assert_close(both[0], D(x, c))
        torch.testing.assert_close(both[1], D(x, c.flip(0)))
