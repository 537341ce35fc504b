"""Sampling from a trained run: seed determinism across batches, grids, interpolation, average, GIF."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from astrogan.imaging import slerp
from astrogan.models import ARCHS
from astrogan.sampling.average import average_image
from astrogan.sampling.generator import load_generator
from astrogan.sampling.grids import make_grid
from astrogan.sampling.interpolate import _walk, interpolation_frames, interpolation_sheet
from astrogan.sampling.post import to_uint8
from astrogan.sampling.video import progress_gif
from astrogan.training.loop import train
from astrogan.utils.seeds import latents_for_seeds
from tests.helpers.training import tiny_train_config


@pytest.fixture(scope="module", params=sorted(ARCHS))
def run_dir(request, tiny_dataset, tmp_path_factory):
    cfg = tiny_train_config(tiny_dataset, tmp_path_factory.mktemp("runs"), request.param, num_train_steps=4)
    return train(cfg, show_progress=False)


def test_seed_gives_same_image_alone_or_in_any_batch(run_dir):
    gen = load_generator(run_dir, device="cpu")
    batch = gen.generate_tensor(list(range(16)), batch_size=16)
    for seed in (0, 7, 15):
        alone = gen.generate_tensor([seed], batch_size=1)[0]
        assert torch.allclose(alone, batch[seed], atol=1e-5)
    shuffled = gen.generate([15, 3, 7], batch_size=2)
    assert np.array_equal(shuffled[1], gen.generate([3])[0])
    assert not np.array_equal(gen.generate([0])[0], gen.generate([1])[0])
    img = gen.generate([0, 1])
    assert img.dtype == np.uint8 and img.shape == (2, 16, 16, 3)


def test_truncation_happens_in_the_network(run_dir):
    gen = load_generator(run_dir, device="cpu")
    z = gen.latents([5])
    G = gen.module
    with torch.no_grad():
        if gen.has_mapping:  # pulls w towards its tracked average
            w_avg = G.mapping.w_avg
            assert w_avg.abs().sum() > 0  # training tracked it
            direct = G.synthesis(w_avg + 0.7 * (G.mapping(z) - w_avg)).clamp(-1, 1)
        else:  # a z-family scales z towards 0
            direct = G(0.7 * z).clamp(-1, 1)
    assert torch.allclose(gen.generate_tensor([5], trunc=0.7), direct, atol=1e-6)
    assert not torch.allclose(gen.generate_tensor([5]), direct)


def test_interpolation_sheet_starts_and_ends_at_the_seeds(run_dir):
    gen = load_generator(run_dir, device="cpu")
    sheet = interpolation_sheet(gen, rows=3, steps=4, seed=10)
    pad = 2
    assert sheet.shape == (4 * (16 + pad) + pad, 3 * (16 + pad) + pad, 3)
    top_left = sheet[pad : pad + 16, pad : pad + 16]
    bottom_left = sheet[3 * 18 + pad : 3 * 18 + pad + 16, pad : pad + 16]
    assert np.abs(top_left.astype(int) - gen.generate([10])[0]).max() <= 1
    assert np.abs(bottom_left.astype(int) - gen.generate([13])[0]).max() <= 1
    frames = interpolation_frames(gen, 1, 2, steps=5)
    assert frames.shape == (5, 16, 16, 3)


def test_average_is_the_mean_of_the_images(run_dir):
    gen = load_generator(run_dir, device="cpu")
    mean = average_image(gen, num=10, batch_size=4)
    direct = ((gen.generate_tensor(list(range(10))).double() + 1) * 127.5).mean(0).round().permute(1, 2, 0)
    assert np.abs(mean.astype(int) - direct.numpy().astype(int)).max() <= 1


def test_progress_gif_has_one_frame_per_snapshot(run_dir, tmp_path):
    out = progress_gif(run_dir, tmp_path / "p.gif")
    with Image.open(out) as im:
        assert im.n_frames == 3  # steps 0, 2, 4


def interp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """`imaging.slerp` (one pair of latents per call) on the rows of a, b (N, D) at t (T,) -> (N, T, D)."""
    return torch.stack(
        [torch.from_numpy(slerp(ai.numpy(), bi.numpy(), t.numpy())) for ai, bi in zip(a, b, strict=True)]
    )


def test_slerp_endpoints_and_norm():
    a, b = torch.randn(3, 8), torch.randn(3, 8)
    path = interp(a, b, torch.linspace(0, 1, 5))
    assert torch.allclose(path[:, 0], a, atol=1e-5) and torch.allclose(path[:, -1], b, atol=1e-5)
    same = interp(a, a, torch.tensor([0.5]))
    assert torch.allclose(same[:, 0], a, atol=1e-5)


def _gaussian_latents(n: int, dim: int = 512, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g), torch.randn(n, dim, generator=g)


def test_slerp_midpoint_of_gaussian_latents_keeps_their_norm():
    a, b = _gaussian_latents(16)  # nearly orthogonal, norms about sqrt(512)
    na, nb = a.norm(dim=1), b.norm(dim=1)
    mid = interp(a, b, torch.tensor([0.5]))[:, 0].norm(dim=1)
    # on the great circle (theta ~ 90 degrees) the midpoint's norm is the RMS of the endpoints' norms
    assert torch.allclose(mid, ((na**2 + nb**2) / 2).sqrt(), rtol=0.03)
    lerp_mid = ((a + b) / 2).norm(dim=1)
    assert (lerp_mid / mid).max() < 0.8 and (lerp_mid / mid).min() > 0.6  # a straight line cuts ~0.707 inside
    path = interp(a, b, torch.linspace(0, 1, 9)).norm(dim=2)  # (N, T): no step leaves the shell
    assert (path >= 0.97 * torch.minimum(na, nb)[:, None]).all()
    assert (path <= 1.03 * torch.maximum(na, nb)[:, None]).all()


def test_slerp_matches_the_closed_form():
    a, noise = _gaussian_latents(4, seed=1)
    # pairs at about 90, 45, 135 and 5 degrees, with unequal norms
    b = torch.stack([noise[0], a[1] + noise[1], 1.5 * (noise[2] - a[2]), 2 * a[3] + 0.18 * noise[3]])
    a64, b64 = a.double(), b.double()
    theta = torch.acos((a64 * b64).sum(1) / (a64.norm(dim=1) * b64.norm(dim=1)))
    assert theta.min() < 0.1 and theta.max() > 2.0
    t = torch.tensor([0.0, 0.1, 0.25, 0.5, 0.8, 1.0])
    out = interp(a, b, t)
    assert out.shape == (4, 6, 512)
    for j, tj in enumerate(t.double()):
        wa = (torch.sin((1 - tj) * theta) / torch.sin(theta))[:, None]
        wb = (torch.sin(tj * theta) / torch.sin(theta))[:, None]
        expected = wa * a64 + wb * b64
        assert torch.allclose(out[:, j].double(), expected, rtol=1e-4, atol=1e-4), float(tj)


def test_slerp_of_parallel_vectors_is_the_straight_line():
    a = _gaussian_latents(3)[0]
    t = torch.tensor([0.0, 0.3, 0.5, 1.0])
    same = interp(a, a, t)
    assert torch.isfinite(same).all()
    assert torch.allclose(same, a[:, None].expand(-1, 4, -1), atol=1e-5)
    longer = interp(a, 2 * a, t)  # same direction, twice the norm: the segment between them
    assert torch.isfinite(longer).all()
    assert torch.allclose(longer, (1 + t)[None, :, None] * a[:, None], atol=1e-4)


class _LatentEcho:
    """A z-family stand-in whose "images" are the latents it is given: (N, D, 1, 1)."""

    has_mapping = False
    z_dim = 512

    def latents(self, seeds):
        return torch.from_numpy(latents_for_seeds(seeds, self.z_dim))

    def labels_for(self, seeds, labels):
        return None

    def synthesize(self, z, c=None, *, trunc=1.0, batch_size=32):
        return z[:, :, None, None].clone()


def test_walk_in_z_is_the_slerp_of_each_rows_seeds():
    """The walks' latents, row by row: each row's own endpoints, on the great circle (not the chord)."""
    gen = _LatentEcho()
    walk = _walk(gen, [0, 1, 2], [3, 4, 5], steps=5, trunc=1.0)[..., 0, 0]  # (rows, steps, D)
    assert walk.shape == (3, 5, 512)
    za, zb = gen.latents([0, 1, 2]), gen.latents([3, 4, 5])
    assert torch.allclose(walk[:, 0], za, atol=1e-5) and torch.allclose(walk[:, -1], zb, atol=1e-5)
    assert torch.allclose(walk, interp(za, zb, torch.linspace(0, 1, 5)), atol=1e-6)
    rms = ((za.norm(dim=1) ** 2 + zb.norm(dim=1) ** 2) / 2).sqrt()  # the midpoint's norm on the sphere
    assert torch.allclose(walk[:, 2].norm(dim=1), rms, rtol=0.03)
    assert (((za + zb) / 2).norm(dim=1) / rms).max() < 0.8  # a straight line would cut inside


def test_to_uint8_and_grid():
    x = np.array([-1.0, 0.0, 1.0, 2.0], np.float32).reshape(1, 1, 2, 2)
    assert to_uint8(x)[0, :, :, 0].tolist() == [[0, 128], [255, 255]]
    grid = make_grid(np.full((5, 4, 4, 3), 200, np.uint8), ncols=2, pad_px=1)
    assert grid.shape == (3 * 5 + 1, 2 * 5 + 1, 3)
    assert grid[1, 1, 0] == 200 and grid[0, 0, 0] == 0


def test_parse_seeds():
    from astrogan.utils.errors import UserError
    from astrogan.utils.seeds import latents_for_seeds, parse_seeds

    assert parse_seeds("0-3,10") == [0, 1, 2, 3, 10]
    assert parse_seeds(" 5 ") == [5]
    for bad, msg in (
        ("3-1", "backwards"),
        ("0--3", r"^seed -3 in '0--3' is out of range 0\.\.4294967295$"),  # before: "write it as -3-0"
        ("9999999999-3", "seed 9999999999 in '9999999999-3' is out of range"),  # before: "write it as 3-..."
        ("a-b", "cannot read"),
        ("", "no seeds"),
        ("-5", "out of range"),
        ("0-4294967295", "too many"),
    ):
        with pytest.raises(UserError, match=msg):
            parse_seeds(bad)
    z = latents_for_seeds([3, 9, 3], 8)
    assert np.array_equal(z[0], z[2]) and not np.array_equal(z[0], z[1]) and z.dtype == np.float32
