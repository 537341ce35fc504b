"""The demo's parts: how the page says training stopped, its measured fidelity line, and its real pictures."""

from __future__ import annotations

import re

import numpy as np
import pytest

from astrogan.demo.fidelity import fidelity_lines, split_fakes
from astrogan.demo.run import DemoConfig, _how_it_stopped, real_pictures
from astrogan.sampling.post import PictureView
from astrogan.science import BandStretch, ScienceSpec, display_uint8
from tests.helpers.science_data import blob_flux

SIZE = 16
BANDS = ("u", "g", "r", "i", "z")


def test_a_demo_cut_short_by_its_time_cap_says_so():
    cfg = DemoConfig(num_train_steps=1100, max_train_minutes=7.5)
    assert _how_it_stopped(cfg, 1100) == "Training finished."
    assert "cut short by the 7.5-minute safety cap" in _how_it_stopped(cfg, 137)


def _blobs(rng, n, *, sky=8.0, noise=3.0, radius=(2.5, 5.0)):
    """`n` uint8 (32, 32, 3) pictures of one centred Gaussian galaxy on a noisy sky."""
    yy, xx = np.mgrid[:32, :32]
    out = np.empty((n, 32, 32, 3), np.uint8)
    for i in range(n):
        cy, cx, r = 16 + rng.normal(0, 1.5), 16 + rng.normal(0, 1.5), rng.uniform(*radius)
        img = 220 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r)) + rng.normal(
            sky, noise, (32, 32)
        )
        out[i] = np.clip(img, 0, 255).astype(np.uint8)[:, :, None]
    return out


def _fields(rng, n):
    """`n` busy fields: a bright noisy sky with many small sources (the Hubble crops' stand-in)."""
    out = np.clip(rng.normal(60, 25, (n, 32, 32, 3)), 0, 255)
    for i in range(n):
        for _ in range(8):
            y, x = rng.integers(2, 30, 2)
            out[i, y - 1 : y + 2, x - 1 : x + 2] = 250
    return out.astype(np.uint8)


def _sparse_fields(rng, n):
    """`n` dark fields with a few small sources anywhere (a deep field's crops, like most of the HXDF's)."""
    yy, xx = np.mgrid[:32, :32]
    out = rng.normal(8.0, 3.0, (n, 32, 32))
    for i in range(n):
        for _ in range(5):
            cy, cx, r = *rng.uniform(1, 31, 2), rng.uniform(0.8, 1.8)
            out[i] += rng.uniform(60, 200) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    return np.clip(out, 0, 255).astype(np.uint8)[..., None].repeat(3, axis=-1)


def _ratio(text, name="morphology distance"):
    return float(re.search(rf"{name} (\d+\.\d)x", text).group(1))


def test_fakes_are_split_by_a_classifier_fitted_on_the_reals_parts():
    rng = np.random.default_rng(0)
    real = np.concatenate([_fields(rng, 60), _blobs(rng, 60)])
    in_part = np.arange(120) >= 60
    fakes = np.concatenate([_blobs(rng, 30), _fields(rng, 10)])
    split = split_fakes(real, in_part, fakes)
    assert split.held_out_accuracy > 0.95 and split.real_fraction == 0.5
    assert split.fake_in_part[:30].all() and not split.fake_in_part[30:].any()
    # Labels that say nothing (a random half): the classifier cannot do better than chance on held-out reals.
    noise = split_fakes(real, rng.permutation(in_part), fakes)
    assert noise.held_out_accuracy < 0.75


def test_dark_fields_with_off_centre_sources_are_not_called_centred_galaxies():
    """The demo's real fields are mostly dark sky with a few small galaxies, as dark as the Sérsic stamps' sky: by
    brightness and spectrum alone such a field passes for a faint galaxy. Where the light sits tells them apart."""
    rng = np.random.default_rng(1)
    real = np.concatenate([_sparse_fields(rng, 80), _blobs(rng, 80, radius=(1.5, 4.0))])
    in_part = np.arange(160) >= 80
    fakes = np.concatenate([_blobs(rng, 40, radius=(1.5, 4.0)), _sparse_fields(rng, 40)])
    split = split_fakes(real, in_part, fakes)
    assert split.held_out_accuracy > 0.97
    assert split.fake_in_part[:40].mean() > 0.95 and split.fake_in_part[40:].mean() < 0.05


@pytest.mark.slow  # runs the morphology metric on several hundred images
def test_fidelity_lines_report_all_images_and_the_part_alone(tmp_path):
    """Measured figures: fakes like the part's reals give a small part ratio; fakes of the wrong size a large
    one (the classifier still calls them the part); no fake in the part gives no made-up figure."""
    rng = np.random.default_rng(0)
    real = np.concatenate([_fields(rng, 120), _blobs(rng, 160)])
    in_part = np.arange(len(real)) >= 120
    good = np.concatenate([_blobs(rng, 80), _fields(rng, 40)])
    lines = dict(fidelity_lines(real, in_part, good, tmp_path / "a", part="Sérsic", seed=0))
    assert "over 120 fakes" in lines["fidelity"]
    part = lines["fidelity (Sérsic part)"]
    assert "80 of 120 fakes (67%) look like Sérsic galaxies, against 57% of the reals" in part
    assert 0 < _ratio(part) < 5
    small = np.concatenate([_blobs(rng, 80, radius=(1.2, 2.0)), _fields(rng, 40)])
    wrong = dict(fidelity_lines(real, in_part, small, tmp_path / "b", part="Sérsic", seed=0))
    assert "80 of 120 fakes" in wrong["fidelity (Sérsic part)"]
    assert _ratio(wrong["fidelity (Sérsic part)"]) > 3 * _ratio(part)
    # The page names the properties furthest from the reals: for galaxies too small, a size leads.
    furthest = re.search(r"\(furthest: ([^)]*)\)", wrong["fidelity (Sérsic part)"]).group(1).split(", ")
    assert len(furthest) == 3
    sizes = ("r50", "rpetro circ", "sersic rhalf", "concentration")
    assert furthest[0].rsplit(" ", 1)[0] in sizes, furthest
    ratios = [float(f.rsplit(" ", 1)[1].rstrip("x")) for f in furthest]
    assert ratios == sorted(ratios, reverse=True) and ratios[0] > _ratio(wrong["fidelity (Sérsic part)"])
    none = dict(fidelity_lines(real, in_part, _fields(rng, 60), tmp_path / "c", part="Sérsic", seed=0))
    assert none["fidelity (Sérsic part)"].endswith("too few to measure")
    blank = dict(
        fidelity_lines(
            real, in_part, np.zeros((60, 32, 32, 3), np.uint8), tmp_path / "d", part="Sérsic", seed=0
        )
    )
    assert blank["fidelity"].startswith("morphology could not be measured") or _ratio(blank["fidelity"]) > 3


def test_demo_draws_multiband_reals_as_composites():
    flux = blob_flux(6, SIZE, num_bands=5, seed=1)
    spec = ScienceSpec(bands=BANDS, stretch=BandStretch.fit(flux))
    stored = spec.stretch.forward(flux).transpose(0, 2, 3, 1)  # (N, H, W, B) in [0, 1], as a dataset holds it
    view = PictureView(spec=spec, channels=5)
    grid, average = real_pictures(stored, view, seed=0, num=4)
    assert grid.shape[-1] == 3 and average.shape == (SIZE, SIZE, 3)
    values = stored.transpose(0, 3, 1, 2) * 2 - 1
    pick = np.sort(np.random.default_rng(0).choice(6, size=4, replace=False))
    assert np.array_equal(grid[2 : 2 + SIZE, 2 : 2 + SIZE], display_uint8(values[pick[:1]], spec)[0])
    pictures = (np.random.default_rng(0).random((5, SIZE, SIZE, 3)) * 255).astype(np.uint8)
    grid, average = real_pictures(pictures, PictureView(channels=3), seed=0)
    assert np.array_equal(average, pictures.astype(np.float64).mean(0).round().astype(np.uint8))
