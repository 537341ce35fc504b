"""DiffAugment: every op changes a batch, keeps shape/dtype, is differentiable and reproducible, has the
documented statistics (colour ranges, translation by up to 1/8 of a side, cutout of half a side filled
with black), p=0 is the identity, and a training step augments both real and fake images before D."""

from __future__ import annotations

import pytest
import torch

from astrogan.config import AUG_TYPES
from astrogan.data import augment as augment_mod
from astrogan.data.augment import Augment, DiffAugment, diff_augment
from astrogan.training import loop as loop_mod
from astrogan.training.loop import train
from tests.helpers.training import tiny_train_config

OPS = ("color", "translation", "cutout")


def _batch(
    n: int, c: int, h: int, w: int, *, seed: int = 0, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Random images in [-0.9, 0.9]: every value distinct and none black (-1), so fills and shifts show."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, c, h, w, generator=g, dtype=torch.float64) * 1.8 - 0.9).to(dtype)


def _augment(x: torch.Tensor, types, prob: float = 1.0, *, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    return DiffAugment(types, prob)(x)


def test_every_configurable_op_is_covered_and_unknown_ops_are_refused():
    assert set(AUG_TYPES) == set(OPS)
    with pytest.raises(ValueError, match="unknown augmentation"):
        DiffAugment(["color", "zoom"], 0.5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("op", OPS)
def test_each_op_changes_a_batch_and_keeps_shape_and_dtype(op, channels, dtype):
    x = _batch(8, channels, 16, 16, dtype=dtype)
    x0 = x.clone()
    y = _augment(x, [op])
    assert y.shape == x.shape and y.dtype == dtype and y.device == x.device
    assert torch.equal(x, x0)  # the input is not modified in place
    assert torch.isfinite(y).all()
    changed = (y != x).flatten(1).any(1)
    assert changed.sum() >= 6  # translation may draw a zero shift for a sample, nothing else leaves one as is
    if op != "color":  # translation and cutout only move pixels or black them out: [-1, 1] is kept
        assert y.min() >= -1 and y.max() <= 1
        assert torch.isin(y, torch.cat([x.flatten(), torch.tensor([-1.0], dtype=dtype)])).all()


@pytest.mark.parametrize("types", [[op] for op in OPS] + [list(OPS)], ids=[*OPS, "all"])
def test_augmentation_is_differentiable(types):
    x = _batch(2, 3, 6, 6, dtype=torch.float64).requires_grad_(True)
    y = _augment(x, types)
    assert y.requires_grad
    (y * torch.randn_like(y)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0

    # the analytic gradient matches finite differences (same random draws on every call)
    def f(inp: torch.Tensor) -> torch.Tensor:
        return _augment(inp, types, 0.5, seed=3)

    assert torch.autograd.gradcheck(f, (x.detach().clone().requires_grad_(True),))


def test_translation_and_cutout_pass_gradient_only_through_the_pixels_they_keep():
    x = _batch(6, 3, 16, 16).requires_grad_(True)
    for op in ("translation", "cutout"):
        x.grad = None
        y = _augment(x, [op], seed=5)
        y.sum().backward()
        assert set(x.grad.unique().tolist()) <= {0.0, 1.0}
        assert x.grad.sum() == (y != -1).sum()  # each kept output pixel is one input pixel


def test_seeded_augmentation_is_reproducible_and_the_function_matches_the_class():
    x = _batch(6, 3, 16, 16)
    a, b = _augment(x, OPS, 0.5, seed=11), _augment(x, OPS, 0.5, seed=11)
    assert torch.equal(a, b)
    assert not torch.equal(a, _augment(x, OPS, 0.5, seed=12))
    torch.manual_seed(11)
    assert torch.equal(diff_augment(x, OPS, prob=0.5), a)


def test_diffaugment_implements_the_augment_interface_with_a_constant_p():
    aug = DiffAugment(OPS, 0.25)
    assert isinstance(aug, Augment) and aug.name == "diffaugment"
    assert aug.p == aug.prob == 0.25
    aug.update({"d_real_sign": 1.0, "num_images": 64})  # nothing to adapt
    assert aug.p == 0.25
    assert aug.state_dict() == {"p": 0.25}
    other = DiffAugment(OPS, 0.0)
    other.load_state_dict(aug.state_dict())
    assert other.p == other.prob == 0.25
    x = _batch(4, 3, 16, 16)
    torch.manual_seed(1)
    a = aug(x)
    torch.manual_seed(1)
    assert torch.equal(other(x), a)
    for bad, match in (({}, "'p'"), ({"p": 1.5}, r"\[0, 1\]")):
        with pytest.raises(ValueError, match=match):
            other.load_state_dict(bad)


def test_no_augmentation_returns_the_input():
    x = _batch(4, 3, 16, 16)
    for aug in (DiffAugment(OPS, 0.0), DiffAugment((), 1.0)):
        assert torch.equal(aug(x), x)
    assert torch.equal(diff_augment(x, OPS, prob=0.0), x)
    assert torch.equal(diff_augment(x, [], prob=1.0), x)


@pytest.mark.parametrize("op", OPS)
def test_prob_picks_whole_samples_and_does_not_change_the_random_stream(op):
    n = 1000
    x = _batch(n, 1, 8, 8)
    always = _augment(x, [op], 1.0, seed=7)
    after_always = torch.rand(4)
    some = _augment(x, [op], 0.3, seed=7)
    after_some = torch.rand(4)
    assert torch.equal(after_always, after_some)  # a resumed run's RNG stream does not depend on prob
    same_as_aug = (some == always).flatten(1).all(1)
    same_as_input = (some == x).flatten(1).all(1)
    assert (same_as_aug | same_as_input).all()  # each sample is either augmented whole or left alone
    differs = ~(always == x).flatten(1).all(1)
    frac = (same_as_aug & differs).sum() / differs.sum()
    assert abs(frac.item() - 0.3) < 0.06


def test_translation_shifts_content_by_up_to_an_eighth_of_each_side_and_fills_black():
    n, h, w = 600, 24, 40  # shifts up to round(24 / 8) = 3 px in y and round(40 / 8) = 5 px in x
    x = _batch(n, 2, h, w)
    y = _augment(x, ["translation"], seed=1)
    dys, dxs = [], []
    for i in range(n):
        pos = (y[i, 0] == x[i, 0, h // 2, w // 2]).nonzero()
        assert len(pos) == 1
        dy, dx = h // 2 - int(pos[0, 0]), w // 2 - int(pos[0, 1])  # y[:, r, s] == x[:, r + dy, s + dx]
        expected = torch.full_like(x[i], -1.0)
        r0, r1, s0, s1 = max(0, -dy), min(h, h - dy), max(0, -dx), min(w, w - dx)
        expected[:, r0:r1, s0:s1] = x[i, :, r0 + dy : r1 + dy, s0 + dx : s1 + dx]
        assert torch.equal(y[i], expected)
        dys.append(dy)
        dxs.append(dx)
    assert set(dys) == set(range(-3, 4)) and set(dxs) == set(range(-5, 6))
    for shifts, k in ((dys, 7), (dxs, 11)):  # uniform over the allowed shifts
        counts = torch.bincount(torch.tensor(shifts) + k // 2, minlength=k).float()
        assert counts.min() > 0.5 * n / k and counts.max() < 1.5 * n / k


def _holes(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Check cutout's output is `x` with one black axis-aligned rectangle per sample (the same in every
    channel); return its row counts, column counts and whether it lies away from the border."""
    hole = y == -1
    assert (hole == hole[:, :1]).all()
    assert torch.equal(y[~hole], x[~hole])
    hole = hole[:, 0]
    rows, cols = hole.any(2), hole.any(1)
    assert torch.equal(hole, rows[:, :, None] & cols[:, None, :])  # a rectangle
    for m in (rows, cols):  # in one piece
        assert (torch.diff(m.int(), dim=1).abs().sum(1) <= 2).all()
    inner = ~(rows[:, 0] | rows[:, -1] | cols[:, 0] | cols[:, -1])
    return rows.sum(1), cols.sum(1), inner


def test_cutout_blacks_out_a_rectangle_of_half_each_side_anywhere():
    n, h, w = 600, 14, 22  # cutout of round(14 / 2) = 7 by round(22 / 2) = 11 px
    x = _batch(n, 3, h, w)
    y = _augment(x, ["cutout"], seed=2)
    num_rows, num_cols, inner = _holes(x, y)
    assert (num_rows >= 1).all() and (num_cols >= 1).all()
    assert num_rows.max() == 7 and num_cols.max() == 11
    assert inner.float().mean() > 0.12  # centres uniform: (6 / 14) * (10 / 22) = 19% miss the border
    assert (num_rows[inner] == 7).all() and (num_cols[inner] == 11).all()  # clipped only at the border
    assert (y == -1)[:, 0].any(0).all()  # every pixel gets cut out at some point


def test_cutout_square_is_half_the_side_when_that_is_even():
    # Was 9 x 9 at 16 px: `|yy - cy| <= side // 2` cut side + 1 rows for an even side.
    x = _batch(400, 1, 16, 16)
    num_rows, num_cols, inner = _holes(x, _augment(x, ["cutout"], seed=2))
    assert (num_rows[inner] == 8).all() and (num_cols[inner] == 8).all()


def _stats(v: torch.Tensor, lo: float, hi: float) -> None:
    """`v` is uniform on [lo, hi): inside it, reaching both ends, with quartiles in place."""
    assert v.min() >= lo and v.max() < hi
    span = hi - lo
    assert v.min() < lo + 0.03 * span and v.max() > hi - 0.03 * span
    q = torch.quantile(v, torch.tensor([0.25, 0.5, 0.75], dtype=v.dtype))
    expected = torch.tensor([lo + 0.25 * span, lo + 0.5 * span, lo + 0.75 * span], dtype=v.dtype)
    assert torch.allclose(q, expected, atol=0.05 * span)


def test_color_single_band_shifts_brightness_and_scales_contrast_within_the_ranges():
    x = _batch(2000, 1, 8, 8, dtype=torch.float64)
    y = _augment(x, ["color"], seed=4)
    brightness = y.mean((1, 2, 3)) - x.mean((1, 2, 3))
    dx, dy = x - x.mean((1, 2, 3), keepdim=True), y - y.mean((1, 2, 3), keepdim=True)
    contrast = (dx * dy).sum((1, 2, 3)) / (dx * dx).sum((1, 2, 3))
    assert torch.allclose(dy, contrast.view(-1, 1, 1, 1) * dx, atol=1e-10)  # an affine map per image
    _stats(brightness, -0.5, 0.5)
    _stats(contrast, 0.5, 1.5)


def test_color_rgb_changes_brightness_saturation_and_contrast_within_the_ranges():
    x = _batch(2000, 3, 8, 8, dtype=torch.float64)
    y = _augment(x, ["color"], seed=4)
    brightness = y.mean((1, 2, 3)) - x.mean((1, 2, 3))
    lum_x, lum_y = x.mean(1, keepdim=True), y.mean(1, keepdim=True)  # per-pixel grey level
    dlx, dly = lum_x - lum_x.mean((2, 3), keepdim=True), lum_y - lum_y.mean((2, 3), keepdim=True)
    contrast = (dlx * dly).sum((1, 2, 3)) / (dlx * dlx).sum((1, 2, 3))
    assert torch.allclose(dly, contrast.view(-1, 1, 1, 1) * dlx, atol=1e-10)
    chroma_x, chroma_y = x - lum_x, y - lum_y
    gain = (chroma_x * chroma_y).sum((1, 2, 3)) / (chroma_x * chroma_x).sum((1, 2, 3))
    assert torch.allclose(chroma_y, gain.view(-1, 1, 1, 1) * chroma_x, atol=1e-10)
    saturation = gain / contrast  # contrast scales the colour around the grey level too
    _stats(brightness, -0.5, 0.5)
    _stats(saturation, 0.0, 2.0)
    _stats(contrast, 0.5, 1.5)


def test_a_training_step_augments_real_and_fake_images_before_d(tiny_dataset, tmp_path, monkeypatch):
    calls: list[dict[str, object]] = []

    class Recording(augment_mod.DiffAugment):
        def __call__(self, x: torch.Tensor) -> torch.Tensor:
            y = super().__call__(x)
            pixels = (x.detach() + 1) * 127.5
            calls.append(
                {
                    "policy": (self.types, self.prob),
                    "changed": bool((y.detach() != x.detach()).flatten(1).any(1).all()),
                    "shape_kept": y.shape == x.shape,
                    "real": bool(torch.allclose(pixels, pixels.round(), atol=1e-3)),  # uint8 data
                    "grad_in": x.requires_grad,
                    "grad_out": y.requires_grad,
                }
            )
            return y

    monkeypatch.setattr(loop_mod, "DiffAugment", Recording)
    steps = 2
    cfg = tiny_train_config(
        tiny_dataset,
        tmp_path / "runs",
        num_train_steps=steps,
        save_every=steps,
        evaluate_every=steps,
        aug_prob=1.0,
        aug_types=OPS,
        model={"ngf": 8, "ndf": 8},
    )
    train(cfg, show_progress=False)
    # per step: D sees augmented reals and fakes, then G's loss sees augmented fakes
    assert len(calls) == 3 * steps
    assert all(c["policy"] == (OPS, 1.0) and c["changed"] and c["shape_kept"] for c in calls)
    assert [c["real"] for c in calls] == [True, False, False] * steps
    # in the G update the gradient reaches G through the augmentation
    assert [c["grad_in"] and c["grad_out"] for c in calls] == [False, False, True] * steps
