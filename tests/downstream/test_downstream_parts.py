"""The denoising experiment's parts: mixing loader, degradation, test shifts, splits, scores, set checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from astrogan.downstream.degrade import (
    CONDITIONS,
    Degradation,
    coarsen,
    parse_conditions,
    parse_noise,
    parse_psf,
    psf_kernel,
)
from astrogan.downstream.mixing import GENERATED, REAL, MixingLoader, MixingSampler
from astrogan.downstream.scores import mse, psnr, ssim
from astrogan.downstream.sets import ImageSet, SetInfo, common_size, split_indices
from astrogan.utils.errors import UserError


def _images(n: int, size: int = 16, channels: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, channels), dtype=np.uint8)


class _Spy(ImageSet):
    """An ImageSet that counts the images taken from it (and can refuse to be touched at all)."""

    def __init__(self, images: np.ndarray, *, forbidden: bool = False) -> None:
        super().__init__(images)
        self.taken = 0
        self.forbidden = forbidden

    def take(self, idx):  # noqa: ANN001, ANN201
        if self.forbidden:
            raise AssertionError("this set must never be read")
        self.taken += len(np.arange(len(self))[idx]) if isinstance(idx, slice) else len(idx)
        return super().take(idx)


@pytest.mark.parametrize("alpha", [0.2, 0.5, 0.8])
def test_generated_fraction_matches_alpha_within_binomial_error(alpha):
    n = 4000
    sampler = MixingSampler(alpha, num_real=50, num_generated=70, batch_size=8, seed=3)
    picks = [sampler.draw(step)[0] for step in range(n)]
    frac = picks.count(GENERATED) / n
    assert abs(frac - alpha) < 4 * math.sqrt(alpha * (1 - alpha) / n), frac
    # The same step always draws the same batch (what makes a resumed cell bit-exact).
    src, idx = sampler.draw(17)
    src2, idx2 = MixingSampler(alpha, num_real=50, num_generated=70, batch_size=8, seed=3).draw(17)
    assert src == src2 and np.array_equal(idx, idx2)
    assert len(set(idx.tolist())) == 8  # no image twice within a batch


def test_alpha_zero_never_reads_generated_and_alpha_one_never_reads_real():
    deg = Degradation(psf_kernel(parse_psf("gaussian:sigma=1")), (0.05,) * 3)
    for alpha, real_forbidden, gen_forbidden in ((0.0, False, True), (1.0, True, False)):
        real = _Spy(_images(30), forbidden=real_forbidden)
        gen = _Spy(_images(30, seed=1), forbidden=gen_forbidden)
        sampler = MixingSampler(alpha, num_real=len(real), num_generated=len(gen), batch_size=4, seed=0)
        loader = MixingLoader(sampler, real=real, generated=gen, degradation=deg)
        sources = {loader.batch(step)[2] for step in range(300)}
        assert sources == ({REAL} if alpha == 0 else {GENERATED})
        assert (real.taken if alpha == 0 else gen.taken) == 300 * 4


def test_degradation_is_the_same_for_real_and_generated_images():
    """The same clean pixels, drawn once as real and once as generated at the same step, degrade identically."""
    pixels = _images(24)
    deg = Degradation(psf_kernel(parse_psf("gaussian:sigma=2")), (0.05,) * 3)
    outs = {}
    for alpha in (0.0, 1.0):
        sampler = MixingSampler(alpha, num_real=24, num_generated=24, batch_size=6, seed=11)
        loader = MixingLoader(
            sampler, real=ImageSet(pixels.copy()), generated=ImageSet(pixels.copy()), degradation=deg
        )
        outs[alpha] = [loader.batch(step) for step in range(5)]
    for (x0, t0, s0), (x1, t1, s1) in zip(outs[0.0], outs[1.0], strict=True):
        assert (s0, s1) == (REAL, GENERATED)
        assert torch.equal(t0, t1) and torch.equal(x0, x1)
    # The degradation itself: same seed, same pixels; another seed, other noise; the blur keeps the flux.
    clean = ImageSet(pixels).take(np.arange(4))
    a = deg(clean, generator=torch.Generator().manual_seed(5))[0]
    b = deg(clean, generator=torch.Generator().manual_seed(5))[0]
    c = deg(clean, generator=torch.Generator().manual_seed(6))[0]
    assert torch.equal(a, b) and not torch.equal(a, c)
    flat = torch.full((1, 3, 32, 32), 0.3)
    assert torch.allclose(deg.blur(flat), flat, atol=1e-6)


def test_psf_kernel_is_normalised_and_has_the_asked_width():
    k = psf_kernel(parse_psf("gaussian:sigma=2"))
    assert k.shape == (17, 17) and abs(k.sum() - 1) < 1e-6
    y, x = np.mgrid[-8:9, -8:9]
    assert abs((k * x**2).sum() - 4.0) < 0.05  # second moment = sigma^2 (pixel centres, no pixel response)
    assert np.allclose(k, k.T) and np.allclose(k, k[::-1])
    assert parse_psf("gaussian:fwhm=4.7096").fwhm_px == pytest.approx(
        parse_psf("gaussian:sigma=2").fwhm_px, 1e-4
    )
    assert psf_kernel(parse_psf("none")).shape == (1, 1)
    assert psf_kernel(parse_psf("moffat:fwhm=3,beta=3")).sum() == pytest.approx(1, abs=1e-6)
    for bad in ("gaussian", "gaussian:sigma=x", "airy:fwhm=2", "moffat:beta=3", "gaussian:sigma=-1"):
        with pytest.raises(UserError) as exc:
            parse_psf(bad)
        assert "\n" not in str(exc.value)


def test_noise_sigma_per_band_on_the_unit_scale():
    assert parse_noise("gaussian:sigma=0.05", 3) == (0.05, 0.05, 0.05)
    assert parse_noise("gaussian:sigma=0.01/0.02/0.04/0.08", 4) == (0.01, 0.02, 0.04, 0.08)
    assert parse_noise("none", 2) == (0.0, 0.0)
    with pytest.raises(UserError, match="one per band"):
        parse_noise("gaussian:sigma=0.01/0.02", 3)
    deg = Degradation(np.ones((1, 1), np.float32), (0.01, 0.02, 0.04, 0.08))
    clean = torch.zeros(64, 4, 16, 16)
    for cond, scale in ((CONDITIONS["none"], 1), (CONDITIONS["noise-x4"], 4)):
        x, _, _ = deg(clean, generator=torch.Generator().manual_seed(0), condition=cond)
        measured = x.transpose(0, 1).flatten(1).std(1)
        assert torch.allclose(measured, torch.tensor([0.01, 0.02, 0.04, 0.08]) * scale, rtol=0.03)


def test_half_res_bins_2x2_keeps_the_frame_and_scores_the_binned_region():
    clean = torch.arange(32.0).view(1, 1, 1, 32).expand(1, 1, 32, 32).contiguous()
    scene, box = coarsen(clean, 2)
    assert scene.shape == clean.shape and box == (8, 24, 8, 24)
    y0, y1, x0, x1 = box
    binned = scene[0, 0, y0:y1, x0:x1]
    assert torch.equal(binned[0], torch.arange(0.0, 32.0, 2.0) + 0.5)  # 2x2 block means of the columns
    assert torch.equal(binned[0, :2], torch.tensor([0.5, 2.5]))
    assert torch.equal(scene[0, 0, 0, x0 - 1], binned[0, 1])  # the border mirrors the binned scene
    deg = Degradation(np.ones((1, 1), np.float32), (0.0,))
    x, truth, box2 = deg(clean, generator=torch.Generator().manual_seed(0), condition=CONDITIONS["both"])
    assert x.shape == clean.shape and torch.equal(truth, scene) and box2 == box
    assert [c.name for c in parse_conditions("both,none,both")] == ["both", "none"]
    with pytest.raises(UserError, match="unknown test condition"):
        parse_conditions("none,quarter-res")


def test_splits_are_disjoint_cover_everything_and_follow_the_seed():
    s = split_indices(103, seed=4)
    train, val, test = (set(s[k].tolist()) for k in ("train", "val", "test"))
    assert not train & test and not train & val and not val & test
    assert train | val | test == set(range(103))
    assert (len(train), len(val), len(test)) == (62, 21, 20)
    again = split_indices(103, seed=4)
    assert all(np.array_equal(s[k], again[k]) for k in s)
    assert not np.array_equal(s["test"], split_indices(103, seed=5)["test"])
    with pytest.raises(UserError, match="at least 10"):
        split_indices(9, seed=0)


def test_image_set_take_keeps_order_and_units():
    imgs = _images(10, size=8, channels=2)
    sub = ImageSet(imgs).subset(np.array([7, 2, 5]))
    x = sub.take(np.array([2, 0]))
    assert x.shape == (2, 2, 8, 8) and x.dtype == torch.float32
    assert np.allclose(x.numpy(), imgs[[5, 7]].transpose(0, 3, 1, 2) / 255.0)
    floats = np.random.default_rng(0).random((4, 8, 8, 1), dtype=np.float32)
    assert np.array_equal(ImageSet(floats).take(slice(0, 4)).numpy(), floats.transpose(0, 3, 1, 2))


def test_ssim_and_psnr_match_the_reference():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(0)
    truth = rng.random((3, 2, 24, 24)).astype(np.float32)
    pred = np.clip(truth + rng.normal(0, 0.1, truth.shape), 0, 1).astype(np.float32)
    ours = ssim(torch.from_numpy(pred), torch.from_numpy(truth)).numpy()
    ref = [
        structural_similarity(
            t.transpose(1, 2, 0),
            p.transpose(1, 2, 0),
            channel_axis=2,
            data_range=1.0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        for p, t in zip(pred, truth, strict=True)
    ]
    assert np.allclose(ours, ref, atol=1e-5)
    assert ssim(torch.from_numpy(truth), torch.from_numpy(truth)).allclose(torch.ones(3))
    m = mse(torch.from_numpy(pred), torch.from_numpy(truth))
    assert np.allclose(m.numpy(), ((pred - truth) ** 2).reshape(3, -1).mean(1), rtol=1e-6)
    assert np.allclose(psnr(m).numpy(), 10 * np.log10(1 / m.numpy()), rtol=1e-6)


def test_mismatched_sizes_and_bands_are_refused_in_one_line():
    real = SetInfo("dataset", "real-ds", "h", (64, 32), 3, "uint8")
    assert common_size(real, SetInfo("generator", "run", "g", (32,), 3, "model")) == 32
    for gen, words in (
        (SetInfo("generator", "run", "g", (128,), 3, "model"), "image sizes differ"),
        (SetInfo("generator", "run", "g", (64,), 1, "model"), "band counts differ"),
    ):
        with pytest.raises(UserError, match=words) as exc:
            common_size(real, gen)
        assert "\n" not in str(exc.value)


def _fake_results(per_alpha: dict[float, list[float]]) -> list[dict]:
    scores = lambda m: {"none": {"mse": m, "psnr": 0.0, "ssim": 0.0, "mse_input": 1.0, "num_images": 5}}  # noqa: E731
    return [
        {"alpha": a, "repeat": r, "test": scores(m)} for a, ms in per_alpha.items() for r, m in enumerate(ms)
    ]


def test_conclusion_sentence_percentages_best_mix_and_paired_interval():
    from astrogan.downstream.report import summarise_condition

    lo = [1.0, 2.0, 3.0]  # the repeats differ a lot; each repeat's alpha=1 network is ~0.2 worse
    res = _fake_results(
        {
            0.0: lo,
            0.6: [m - 0.1 for m in lo],
            1.0: [m + d for m, d in zip(lo, (0.19, 0.2, 0.21), strict=True)],
        }
    )
    doc = summarise_condition("none", res, (0.0, 0.6, 1.0))
    assert doc["compared_vs_reference_pct"] == 10.0 and doc["best_alpha"] == 0.6
    assert doc["best_vs_reference_pct"] == -5.0
    assert doc["difference_is_clear"] is True  # paired by repeat: the same 0.2 each time
    assert doc["conclusion"] == (
        "As trained: generated-only (α = 1) is 10.0% worse than real-only (α = 0) (test MSE 2.2 vs 2; a clear "
        "difference: its 95% interval over 3 repeats excludes zero); the best mix is α = 0.6, 5.0% better than "
        "real-only (α = 0)."
    )
    noisy = _fake_results({0.0: lo, 1.0: [m + d for m, d in zip(lo, (-0.3, 0.2, 0.7), strict=True)]})
    doc = summarise_condition("none", noisy, (0.0, 1.0))
    assert doc["difference_is_clear"] is False and "no clear difference" in doc["conclusion"]
    assert doc["conclusion"].endswith("the best is real-only (α = 0).")


def test_a_time_cap_that_stopped_the_arms_unevenly_is_said_and_a_tie_is_level():
    """`--max-minutes` gives each network equal seconds, not equal steps: when it binds, the conclusion
    says the arms trained 60-87 steps, and the table shows each alpha's steps."""
    from astrogan.downstream.report import _table, summarise_condition

    res = _fake_results({0.0: [2.0], 1.0: [1.5]})
    for r, steps in zip(res, (60, 87), strict=True):
        r.update(steps_done=steps, stopped_by="time")
    doc = summarise_condition("none", res, (0.0, 1.0))
    assert (
        "Caution: the --max-minutes cap stopped 2 of 2 networks, which trained 60-87 steps"
        in doc["conclusion"]
    )
    html = _table("none", doc)
    assert "<th>steps trained</th>" in html and "<td>60</td></tr>" in html and "<td>87</td></tr>" in html
    even = _fake_results({0.0: [2.0], 1.0: [2.0]})
    for r in even:
        r.update(steps_done=50, stopped_by="steps")
    doc = summarise_condition("none", even, (0.0, 1.0))
    assert "Caution" not in doc["conclusion"]
    assert doc["conclusion"].startswith("As trained: generated-only (α = 1) is level with real-only (α = 0)")
    assert "the best is" not in doc["conclusion"] and doc["conclusion"].endswith("(test MSE 2 vs 2).")
