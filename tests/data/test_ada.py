"""ADA: p follows the overfitting heuristic by the paper's step and stays in [0, 1], the state resumes exactly,
p = 0 is the identity and the RNG stream does not depend on p, every transform does what the paper says
(checked on images and on the drawn parameters), the fraction of untouched samples is the product of the
transforms' (1 - p), and the pipeline is differentiable for 1, 3 and 5 bands."""

from __future__ import annotations

import io
import math

import pytest
import torch

from astrogan.data.ada import (
    BLIT,
    COLOR,
    GATES,
    GEOM,
    TRANSFORMS,
    AdaptiveAugment,
    ada_augment,
    apply_geometric,
    build_matrices,
    draw_params,
)
from astrogan.data.augment import Augment


def _images(
    n: int, c: int, h: int, w: int, *, seed: int = 0, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Random images in [-0.9, 0.9]: no symmetry, so every flip, turn and shift shows."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, c, h, w, generator=g, dtype=torch.float64) * 1.8 - 0.9).to(dtype)


def _augment(x: torch.Tensor, p: float, transforms=TRANSFORMS, *, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    return AdaptiveAugment(x.shape[1], p=p, transforms=transforms)(x)


def _unchanged(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(N,) True where the sample is bit-identical to the input."""
    return (x == y).flatten(1).all(1)


def _feed(aug: AdaptiveAugment, sign: float, num_images: int, times: int) -> None:
    for _ in range(times):
        aug.update({"d_real_sign": sign, "num_images": num_images})


# --- the heuristic -------------------------------------------------------------------------------------


def test_p_rises_by_the_expected_step_each_interval_when_d_overfits():
    batch, interval, speed_kimg = 32, 4, 500
    aug = AdaptiveAugment(3, interval=interval, speed_kimg=speed_kimg)
    step = batch * interval / (speed_kimg * 1000)  # 2.56e-4: 0 -> 1 takes speed_kimg thousand reals
    assert aug.p == 0.0 and aug.r_t is None
    for k in range(1, 6):
        for i in range(interval):
            before = aug.p
            aug.update({"d_real_sign": 1.0, "num_images": batch})
            if i < interval - 1:
                assert aug.p == before  # p moves only at the end of an interval
        assert aug.p == pytest.approx(k * step, rel=1e-12)
    assert aug.r_t == 1.0
    # any r_t above the target raises p by the same step (the sign, not the size, of the excess counts)
    aug2 = AdaptiveAugment(3, interval=interval, speed_kimg=speed_kimg, target=0.6)
    _feed(aug2, 0.61, batch, interval)
    assert aug2.p == pytest.approx(step) and aug2.r_t == pytest.approx(0.61)


def test_p_falls_when_d_does_not_overfit_and_holds_at_the_target():
    aug = AdaptiveAugment(1, p=0.5, interval=2, speed_kimg=10)
    step = 16 * 2 / 10_000
    _feed(aug, -1.0, 16, 6)
    assert aug.p == pytest.approx(0.5 - 3 * step) and aug.r_t == -1.0
    at_target = AdaptiveAugment(1, p=0.5, interval=2, target=0.25)
    _feed(at_target, 0.25, 16, 10)
    assert at_target.p == 0.5 and at_target.r_t == 0.25


def test_p_never_leaves_the_unit_interval():
    aug = AdaptiveAugment(3, p=0.9, interval=1, speed_kimg=0.01)  # one step of 32 images moves p by 3.2
    _feed(aug, 1.0, 32, 3)
    assert aug.p == 1.0
    _feed(aug, -1.0, 32, 1)
    assert aug.p == 0.0
    g = torch.Generator().manual_seed(0)
    for s in (torch.rand(300, generator=g) * 2 - 1).tolist():
        aug.update({"d_real_sign": s, "num_images": 32})
        assert 0.0 <= aug.p <= 1.0


def test_fixed_p_never_moves_but_r_t_is_still_measured():
    aug = AdaptiveAugment(3, p=0.3, fixed=True, interval=2, speed_kimg=0.01)
    _feed(aug, 1.0, 64, 20)
    assert aug.p == 0.3 and aug.r_t == 1.0
    _feed(aug, -1.0, 64, 20)
    assert aug.p == 0.3 and aug.r_t == -1.0


def test_r_t_is_the_mean_over_images_of_the_interval_and_the_step_counts_them():
    aug = AdaptiveAugment(3, p=0.2, interval=2, speed_kimg=1)
    aug.update({"d_real_sign": 1.0, "num_images": 10})
    aug.update({"d_real_sign": -1.0, "num_images": 30})
    assert aug.r_t == pytest.approx(-0.5)
    assert aug.p == pytest.approx(0.2 - 40 / 1000)


def test_update_refuses_bad_stats_and_skips_a_non_finite_sign():
    aug = AdaptiveAugment(3, interval=2, speed_kimg=1)
    with pytest.raises(ValueError, match="num_images"):
        aug.update({"d_real_sign": 1.0})
    with pytest.raises(ValueError, match="mean of signs"):
        aug.update({"d_real_sign": 2.0, "num_images": 4})
    with pytest.warns(RuntimeWarning, match="non-finite"):
        aug.update({"d_real_sign": float("nan"), "num_images": 32})
    aug.update({"d_real_sign": 1.0, "num_images": 32})
    assert aug.r_t == 1.0 and aug.p == pytest.approx(32 / 1000)  # the NaN step's images do not count


def test_constructor_checks_its_arguments_and_resolves_presets():
    assert AdaptiveAugment(3).transforms == TRANSFORMS
    assert AdaptiveAugment(3, color=False).transforms == BLIT + GEOM
    assert AdaptiveAugment(3, geometric=False).transforms == COLOR
    assert AdaptiveAugment(3, transforms="bgc").transforms == TRANSFORMS
    assert AdaptiveAugment(3, transforms="gb").transforms == BLIT + GEOM
    assert AdaptiveAugment(3, transforms=["hue", "xflip"]).transforms == ("xflip", "hue")
    for kwargs, match in (
        ({"transforms": "bgx"}, "preset letter"),
        ({"transforms": ["xflip", "zoom"]}, "unknown ADA transform"),
        ({"p": 1.5}, "p must lie"),
        ({"target": 2.0}, "target"),
        ({"interval": 0}, "interval"),
        ({"speed_kimg": 0}, "speed_kimg"),
    ):
        with pytest.raises(ValueError, match=match):
            AdaptiveAugment(3, **kwargs)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        AdaptiveAugment(3)(torch.zeros(2, 1, 8, 8))
    assert isinstance(AdaptiveAugment(3), Augment) and AdaptiveAugment(3).name == "ada"


# --- resumable state ---------------------------------------------------------------------------------


def _run(aug: AdaptiveAugment, x: torch.Tensor, signs: list[float], first_step: int) -> list[torch.Tensor]:
    """Steps `first_step...`: augment under the step's seed, then report the step's sign."""
    outs = []
    for i, s in enumerate(signs):
        torch.manual_seed(1000 + first_step + i)
        outs.append(aug(x))
        aug.update({"d_real_sign": s, "num_images": 8})
    return outs


def test_state_dict_round_trip_continues_bit_exactly():
    x = _images(8, 3, 16, 16)
    g = torch.Generator().manual_seed(3)
    signs = (torch.rand(15, generator=g) * 1.6 - 0.5).tolist()  # mostly above the target: p rises
    kwargs = {"interval": 3, "speed_kimg": 0.2}  # a step of 3 * 8 / 200 = 0.12 per interval
    a = AdaptiveAugment(3, p=0.1, **kwargs)
    _run(a, x, signs[:7], 0)  # stop in the middle of an interval: the accumulators are part of the state
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)  # as a checkpoint is loaded
    b = AdaptiveAugment(3, **kwargs)
    b.load_state_dict(state)
    assert b.state_dict() == a.state_dict()
    p_at_save = a.p
    out_a, out_b = _run(a, x, signs[7:], 7), _run(b, x, signs[7:], 7)
    assert a.p != p_at_save  # the continuation does adapt
    assert b.p == a.p and b.r_t == a.r_t and b.state_dict() == a.state_dict()
    assert all(torch.equal(ya, yb) for ya, yb in zip(out_a, out_b, strict=True))
    # a run that lost the state (as the reference implementations do on resume) goes elsewhere
    lost = AdaptiveAugment(3, **kwargs)
    _run(lost, x, signs[7:], 7)
    assert lost.p != a.p


def test_load_state_dict_refuses_a_foreign_or_broken_state():
    aug = AdaptiveAugment(3)
    with pytest.raises(ValueError, match="keys"):
        aug.load_state_dict({"p": 0.5})
    bad = aug.state_dict() | {"p": -0.1}
    with pytest.raises(ValueError, match="p must lie"):
        aug.load_state_dict(bad)


# --- the pipeline as a whole ------------------------------------------------------------------------


@pytest.mark.parametrize("transforms", ["bgc", "b", "c"])
def test_p0_returns_the_input_and_the_rng_stream_does_not_depend_on_p(transforms):
    x = _images(8, 3, 16, 16)
    after = []
    for p in (0.0, 0.3, 1.0):
        y = _augment(x, p, transforms, seed=5)
        after.append(torch.rand(4))
        if p == 0:
            assert y is x
    assert all(torch.equal(a, after[0]) for a in after)
    # ... nor on which transforms are enabled
    _augment(x, 0.5, "g", seed=5)
    assert torch.equal(torch.rand(4), after[0])
    # the function is the class without the state
    torch.manual_seed(5)
    assert torch.equal(ada_augment(x, 0.3, transforms=transforms), _augment(x, 0.3, transforms, seed=5))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("channels", [1, 3, 5])
def test_p1_changes_every_sample_and_keeps_shape_dtype_and_finiteness(channels, dtype):
    x = _images(16, channels, 16, 24, dtype=dtype)
    x0 = x.clone()
    y = _augment(x, 1.0)
    assert y.shape == x.shape and y.dtype == dtype and y.device == x.device
    assert torch.equal(x, x0)  # not in place
    assert torch.isfinite(y).all()
    assert not _unchanged(x, y).any()


@pytest.mark.parametrize("channels", [1, 3, 5])
def test_gradient_reaches_the_input(channels):
    x = _images(4, channels, 16, 16).requires_grad_(True)
    y = _augment(x, 0.7, seed=2)
    assert y.requires_grad
    (y * torch.randn_like(y)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and (x.grad.abs().flatten(1).sum(1) > 0).all()

    def f(inp: torch.Tensor) -> torch.Tensor:
        return _augment(inp, 0.6, seed=4)

    small = _images(3, channels, 6, 6, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(f, (small,), fast_mode=True)


def test_mixed_precision_does_not_change_the_result():
    x = _images(8, 3, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = _augment(x, 0.8, seed=6)
    assert y.dtype == torch.float32 and torch.equal(y, _augment(x, 0.8, seed=6))


def _identity_params(n: int, channels: int) -> dict[str, torch.Tensor]:
    params = draw_params(n, channels=channels)
    zero_at = (
        "xflip",
        "rotate90",
        "xint",
        "rotate_pre",
        "rotate_post",
        "xfrac",
        "brightness",
        "lumaflip",
        "hue",
    )
    one_at = ("scale", "aniso", "contrast", "saturation")
    out = {
        k: torch.zeros_like(v) if k in zero_at else torch.ones_like(v)
        for k, v in params.items()
        if k != "gate"
    }
    out["gate"] = torch.zeros_like(params["gate"])  # every gate open: every transform is applied
    assert set(out) == set(params) and set(zero_at) | set(one_at) | {"gate"} == set(params)
    return out


@pytest.mark.parametrize("channels", [1, 3, 5])
def test_every_transform_at_its_identity_parameters_is_the_identity(channels):
    n, h, w = 4, 16, 12
    geom, color = build_matrices(_identity_params(n, channels), 1.0, channels=channels, height=h, width=w)
    assert torch.equal(geom, torch.eye(3).expand(n, 3, 3))
    assert torch.equal(color, torch.eye(channels + 1).expand(n, channels + 1, channels + 1))
    # and the resampler itself lands on pixel centres: flipping twice is the identity to float error
    x = _images(n, channels, h, w)
    flip = torch.diag(torch.tensor([-1.0, 1.0, 1.0])).expand(n, 3, 3)
    once = apply_geometric(x, flip)
    assert torch.allclose(once, x.flip(-1), atol=1e-5)
    assert torch.allclose(apply_geometric(once, flip), x, atol=1e-5)


def test_unchanged_fraction_is_the_product_of_one_minus_p_over_the_transforms():
    # Transforms with a continuous parameter change every sample they hit: P(untouched) = (1 - p)^k with k = 8
    # (scale, aniso, xfrac, the rotation pair counted once since (1 - p_rot)^2 = 1 - p, brightness, contrast,
    # hue, saturation).
    n, p = 3000, 0.1
    x = _images(n, 3, 8, 8)
    y = _augment(x, p, [*GEOM, "brightness", "contrast", "hue", "saturation"], seed=1)
    expected = (1 - p) ** 8
    assert abs(_unchanged(x, y).float().mean().item() - expected) < 4 * math.sqrt(
        expected * (1 - expected) / n
    )
    # the rotation pair alone, each at 1 - sqrt(1 - p): some rotation with probability p, not 1 - (1 - p)^2
    n, p = 4000, 0.5
    x = _images(n, 1, 8, 8)
    y = _augment(x, p, ["rotate"], seed=3)
    assert abs(_unchanged(x, y).float().mean().item() - (1 - p)) < 4 * math.sqrt(p * (1 - p) / n)
    # The whole pipeline: a flip or luma flip that hits changes a sample half the time, a quarter turn 3/4 of
    # it, an integer shift unless it rounds to 0 on both axes (probability (4 / 16)^2 at 16 px).
    n, p, size = 4000, 0.2, 16
    x = _images(n, 3, size, size)
    y = _augment(x, p, seed=2)
    p_still = 1 - (4 / size) ** 2
    expected = (1 - p / 2) * (1 - 3 * p / 4) * (1 - p * p_still) * (1 - p) ** 8 * (1 - p / 2)
    frac = _unchanged(x, y).float().mean().item()
    assert abs(frac - expected) < 5 * math.sqrt(expected * (1 - expected) / n)


def test_drawn_parameters_follow_the_papers_distributions():
    n = 40_000
    torch.manual_seed(0)
    d = draw_params(n, channels=3)
    assert d["gate"].shape == (n, len(GATES)) and 0 <= d["gate"].min() and d["gate"].max() < 1
    assert abs(d["xflip"].mean().item() - 0.5) < 0.01 and set(d["xflip"].unique().tolist()) == {0.0, 1.0}
    assert abs(d["lumaflip"].mean().item() - 0.5) < 0.01
    counts = torch.bincount(d["rotate90"].long(), minlength=4)
    assert len(counts) == 4 and (counts - n / 4).abs().max() < 0.03 * n
    assert d["xint"].abs().max() <= 0.125 and abs(d["xint"].abs().mean().item() - 0.0625) < 0.002
    for key in ("rotate_pre", "rotate_post", "hue"):
        assert d[key].abs().max() <= math.pi and abs(d[key].abs().mean().item() - math.pi / 2) < 0.03
    for key, std in (("scale", 0.2), ("aniso", 0.2), ("contrast", 0.5), ("saturation", 1.0)):
        log2 = torch.log2(d[key])
        assert abs(log2.mean().item()) < 0.02 and abs(log2.std().item() / std - 1) < 0.03, key
    for key, std in (("xfrac", 0.125), ("brightness", 0.2)):
        assert abs(d[key].mean().item()) < 0.01 and abs(d[key].std().item() / std - 1) < 0.03, key
    assert draw_params(5, channels=5)["brightness"].shape == (5, 5)  # per band beyond 1 and 3 channels


# --- geometric transforms ---------------------------------------------------------------------------


def _reference_geometric(d: dict[str, torch.Tensor], i: int, h: int, w: int) -> torch.Tensor:
    """Sample i's forward matrix written out from the paper, one transform after the other (float64)."""

    def mat(a, b, c, e, tx=0.0, ty=0.0):
        return torch.tensor([[a, b, tx], [c, e, ty], [0.0, 0.0, 1.0]], dtype=torch.float64)

    def rot(t):
        return mat(math.cos(t), -math.sin(t), math.sin(t), math.cos(t))

    v = {k: t[i].double().tolist() for k, t in d.items()}
    steps = [
        mat(1 - 2 * v["xflip"], 0, 0, 1),
        rot(v["rotate90"] * math.pi / 2),
        mat(1, 0, 0, 1, round(v["xint"][0] * w), round(v["xint"][1] * h)),
        mat(v["scale"], 0, 0, v["scale"]),
        rot(v["rotate_pre"]),
        mat(v["aniso"], 0, 0, 1 / v["aniso"]),
        rot(v["rotate_post"]),
        mat(1, 0, 0, 1, v["xfrac"][0] * w, v["xfrac"][1] * h),
    ]
    g = torch.eye(3, dtype=torch.float64)
    for m in steps:
        g = m @ g
    return g


def _reference_rgb(d: dict[str, torch.Tensor], i: int) -> torch.Tensor:
    """Sample i's RGB colour matrix from the paper: brightness, contrast, luma flip, hue, saturation."""
    v = {k: t[i].double() for k, t in d.items()}
    axis = torch.full((3,), 1 / math.sqrt(3), dtype=torch.float64)
    vv, eye = torch.outer(axis, axis), torch.eye(3, dtype=torch.float64)
    a = float(v["hue"])
    cross = torch.linalg.cross(axis.expand(3, 3), eye).T  # cross @ u == axis x u
    linear = (
        (vv + v["saturation"] * (eye - vv))
        @ (vv + math.cos(a) * (eye - vv) + math.sin(a) * cross)
        @ (eye - 2 * v["lumaflip"] * vv)
        * v["contrast"]
    )
    out = torch.eye(4, dtype=torch.float64)
    out[:3, :3] = linear
    out[:3, 3] = linear @ torch.full((3,), float(v["brightness"][0]), dtype=torch.float64)  # y = L (x + b)
    return out


def test_matrices_compose_the_papers_transforms_in_order():
    n, h, w = 64, 16, 24
    torch.manual_seed(16)
    d = draw_params(n, channels=3)
    d["gate"] = torch.zeros_like(d["gate"])  # everything applied
    geom, color = build_matrices(d, 1.0, channels=3, height=h, width=w)
    for i in range(n):
        assert torch.allclose(geom[i].double(), _reference_geometric(d, i, h, w), atol=1e-4)
        assert torch.allclose(color[i].double(), _reference_rgb(d, i), atol=1e-5)
    # a closed gate leaves its transform out exactly: as if it had drawn its identity
    d["gate"][:, GATES.index("aniso")] = 1.0
    gate_closed, _ = build_matrices(d, 0.99, channels=3, height=h, width=w)
    d["gate"][:, GATES.index("aniso")] = 0.0
    d["aniso"] = torch.ones_like(d["aniso"])
    assert torch.equal(gate_closed, build_matrices(d, 0.99, channels=3, height=h, width=w)[0])


def test_xflip_mirrors_about_half_the_samples():
    n = 400
    x = _images(n, 1, 8, 8)
    y = _augment(x, 1.0, ["xflip"], seed=3)
    same = _unchanged(x, y)
    mirrored = (y - x.flip(-1)).abs().flatten(1).amax(1) < 1e-5
    assert (same ^ mirrored).all()  # each sample is one or the other
    assert abs(mirrored.float().mean().item() - 0.5) < 0.1


def test_quarter_turns_are_exact_and_uniform():
    n = 400
    x = _images(n, 3, 8, 8)
    y = _augment(x, 1.0, ["rotate90"], seed=4)
    turns = torch.stack(
        [(y - torch.rot90(x, k, dims=(-2, -1))).abs().flatten(1).amax(1) < 1e-5 for k in range(4)]
    )
    assert (turns.sum(0) == 1).all()
    assert (turns.sum(1) > 0.15 * n).all()


def test_integer_translation_moves_content_by_whole_pixels_and_mirrors_at_the_edge():
    n, h, w = 2, 10, 12
    x = _images(n, 3, h, w)
    params = _identity_params(n, 3)
    params["xint"] = torch.tensor([[3 / w, -2 / h]] * n)  # content moves 3 px right and 2 px up
    geom, _ = build_matrices(params, 1.0, channels=3, height=h, width=w, transforms=["xint"])
    y = apply_geometric(x, geom)
    assert torch.allclose(y[..., : h - 2, 3:], x[..., 2:, : w - 3], atol=1e-5)
    # outside the image the sampler reads its mirror image (about the edge): sky, not a grey wall
    assert torch.allclose(y[..., : h - 2, :3], x[..., 2:, :3].flip(-1), atol=1e-5)
    assert torch.allclose(y[..., h - 2 :, 3:], x[..., h - 2 :, : w - 3].flip(-2), atol=1e-5)


def test_geometric_transforms_never_bring_in_a_wall():
    x = torch.full((64, 3, 16, 16), -0.8)  # an empty sky stays an empty sky, however it is moved
    y = _augment(x, 1.0, "bg", seed=6)
    assert torch.allclose(y, x, atol=1e-5)


def test_geometric_transforms_move_a_centred_blob():
    n, size = 200, 32
    yy, xx = torch.meshgrid(torch.arange(size) - 15.5, torch.arange(size) - 15.5, indexing="ij")
    blob = torch.exp(-(yy**2 + xx**2) / (2 * 3.0**2)) * 2 - 1
    x = blob.expand(n, 1, size, size).clone()
    y = _augment(x, 1.0, "bg", seed=7)

    def centroid(img: torch.Tensor) -> torch.Tensor:
        wgt = (img[:, 0] + 1).clamp(min=0)
        return torch.stack([(wgt * yy).sum((1, 2)), (wgt * xx).sum((1, 2))], 1) / wgt.sum((1, 2))[:, None]

    assert centroid(x).abs().max() < 1e-4
    moved = (centroid(y) - centroid(x)).norm(dim=1) > 0.5
    assert moved.float().mean() > 0.9


def _gaussian(size: int, cx: float, cy: float, sigma: float) -> torch.Tensor:
    """A (1, 1, size, size) Gaussian source of peak 1 centred (cx, cy) px from the picture's centre."""
    yy, xx = torch.meshgrid(
        torch.arange(size) - (size - 1) / 2, torch.arange(size) - (size - 1) / 2, indexing="ij"
    )
    return torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))[None, None]


def test_fractional_shifts_and_rotations_keep_a_psf_sized_source_sharp():
    """stylegan2-ada's 2x sym6 resampling: a source of the Sérsic stamps' PSF size (sigma 1 px) moved by half a
    pixel, or turned 30 degrees about the centre, keeps its peak and shape; 1x bilinear takes a fifth off the peak
    (the blur that made D blind to soft fakes)."""
    a = math.radians(30)
    turn = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]])
    half = torch.eye(3)
    half[:2, 2] = 0.5
    cases = [  # (matrix, source, where it must land, max error, min peak)
        (half, _gaussian(32, 0, 0, 1.0), _gaussian(32, 0.5, 0.5, 1.0), 0.05, 0.95),
        (turn, _gaussian(32, 3, 0, 1.0), _gaussian(32, 3 * math.cos(a), 3 * math.sin(a), 1.0), 0.12, 0.88),
    ]
    for m, x, ref, max_err, min_peak in cases:
        assert apply_geometric(x, m[None], resample="bilinear").max().item() < 0.8
        y = apply_geometric(x, m[None])
        assert (y - ref).abs().max().item() < max_err
        assert y.max().item() > min_peak


def test_resampling_is_chosen_by_name_and_passed_through_the_pipeline():
    x = _images(8, 3, 16, 16)
    with pytest.raises(ValueError, match="unknown ADA resampling"):
        apply_geometric(x, torch.eye(3).expand(8, 3, 3), resample="nearest")
    with pytest.raises(ValueError, match="unknown ADA resampling"):
        AdaptiveAugment(3, resample="nearest")
    torch.manual_seed(3)
    sharp = ada_augment(x, 1.0, transforms="g")
    torch.manual_seed(3)
    soft = ada_augment(x, 1.0, transforms="g", resample="bilinear")
    assert not torch.allclose(sharp, soft, atol=1e-3)
    assert sharp.std() > soft.std()  # bilinear averages neighbours: white noise loses contrast
    aug = AdaptiveAugment(3, p=1.0, transforms="g", resample="bilinear")
    torch.manual_seed(3)
    assert torch.equal(aug(x), soft)


# --- colour transforms ------------------------------------------------------------------------------


def _luma_chroma(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    luma = x.mean(1, keepdim=True)
    return luma, x - luma


def test_brightness_shifts_every_value_of_a_sample_by_one_offset():
    x = _images(2000, 3, 4, 4)
    y = _augment(x, 1.0, ["brightness"], seed=8)
    shift = (y - x).flatten(1)
    assert torch.allclose(shift, shift[:, :1].expand_as(shift), atol=1e-6)
    assert (shift[:, 0] != 0).all()
    assert abs(shift[:, 0].mean().item()) < 0.015 and abs(shift[:, 0].std().item() - 0.2) < 0.01


def test_contrast_scales_values_about_zero():
    x = _images(2000, 1, 4, 4, dtype=torch.float64)
    y = _augment(x, 1.0, ["contrast"], seed=9)
    gain = (y * x).sum((1, 2, 3)) / (x * x).sum((1, 2, 3))
    assert torch.allclose(y, gain.view(-1, 1, 1, 1) * x, atol=1e-6)
    assert abs(torch.log2(gain).std().item() - 0.5) < 0.025


def test_rgb_luma_flip_hue_and_saturation_act_on_luma_and_chroma_as_the_paper_says():
    x = _images(2000, 3, 4, 4, dtype=torch.float64)
    luma, chroma = _luma_chroma(x)
    # luma flip: luma negated in about half the samples, chroma kept
    y = _augment(x, 1.0, ["lumaflip"], seed=10)
    ly, cy = _luma_chroma(y)
    flipped = (ly + luma).abs().flatten(1).amax(1) < 1e-6
    assert (flipped ^ _unchanged(x, y)).all() and abs(flipped.double().mean().item() - 0.5) < 0.05
    assert torch.allclose(cy, chroma, atol=1e-6)
    # hue rotation: luma and the size of chroma kept, chroma turned
    y = _augment(x, 1.0, ["hue"], seed=11)
    ly, cy = _luma_chroma(y)
    assert torch.allclose(ly, luma, atol=1e-6)
    assert torch.allclose(cy.norm(dim=1), chroma.norm(dim=1), atol=1e-6)
    cos = (cy * chroma).sum(1) / (cy.norm(dim=1) * chroma.norm(dim=1))
    assert abs(cos.mean().item()) < 0.05  # uniform angles: the mean cosine is 0
    # saturation: luma kept, chroma scaled by one factor per sample with log2 ~ N(0, 1)
    y = _augment(x, 1.0, ["saturation"], seed=12)
    ly, cy = _luma_chroma(y)
    assert torch.allclose(ly, luma, atol=1e-6)
    gain = (cy * chroma).sum((1, 2, 3)) / (chroma * chroma).sum((1, 2, 3))
    assert torch.allclose(cy, gain.view(-1, 1, 1, 1) * chroma, atol=1e-6)
    assert abs(torch.log2(gain).std().item() - 1.0) < 0.05


def test_a_single_band_is_augmented_as_the_luma_of_rgb():
    grey = _images(64, 1, 16, 16)
    y1 = _augment(grey, 0.8, seed=13)
    y3 = _augment(grey.expand(-1, 3, -1, -1).contiguous(), 0.8, seed=13)
    assert torch.allclose(y3, y1.expand(-1, 3, -1, -1), atol=1e-5)
    # so the single-band luma flip is x -> -x (about the middle of [-1, 1])
    y = _augment(grey, 1.0, ["lumaflip"], seed=14)
    flipped = (y + grey).abs().flatten(1).amax(1) == 0
    assert (flipped ^ _unchanged(grey, y)).all() and flipped.any() and not flipped.all()


def test_other_band_counts_get_per_band_brightness_and_contrast():
    x = _images(500, 5, 4, 4, dtype=torch.float64)
    y = _augment(x, 1.0, COLOR, seed=15)
    # each band is an affine map of itself alone (no hue, saturation or luma flip mixing bands) ...
    dx, dy = x - x.mean((2, 3), keepdim=True), y - y.mean((2, 3), keepdim=True)
    gain = (dx * dy).sum((2, 3)) / (dx * dx).sum((2, 3))
    assert torch.allclose(dy, gain[..., None, None] * dx, atol=1e-6)
    assert (gain > 0).all()  # never a flip
    # ... with its own gain and offset: y = c_k (x + b_k)
    offset = y.mean((2, 3)) / gain - x.mean((2, 3))
    for v, std in ((torch.log2(gain), 0.5), (offset, 0.2)):
        assert (v.std(1) > 0).all()  # bands differ within a sample
        assert abs(v.std().item() / std - 1) < 0.1
