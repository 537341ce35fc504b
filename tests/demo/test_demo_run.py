"""The demo's parts: how the page says training stopped, its measured fidelity line, and its real pictures."""

from __future__ import annotations

import re

import numpy as np
import pytest

from astrogan.demo.run import DemoConfig, _fidelity, _how_it_stopped, real_pictures
from astrogan.sampling.post import PictureView
from astrogan.science import BandStretch, ScienceSpec, display_uint8
from tests.helpers.science_data import blob_flux

SIZE = 16
BANDS = ("u", "g", "r", "i", "z")


def test_a_demo_cut_short_by_its_time_cap_says_so():
    cfg = DemoConfig(num_train_steps=1100, max_train_minutes=7.5)
    assert _how_it_stopped(cfg, 1100) == "Training finished."
    assert "cut short by the 7.5-minute safety cap" in _how_it_stopped(cfg, 137)


@pytest.mark.slow  # runs the morphology metric on 480 images
def test_fidelity_line_reports_the_morphology_ratio(tmp_path):
    """The page's fidelity figure is measured: blob galaxies against themselves give a small ratio,
    blank fakes give none (they cannot be measured) rather than a made-up number."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:32, :32]

    def blobs(n):
        out = np.empty((n, 32, 32, 3), np.uint8)
        for i in range(n):
            cy, cx, r = 16 + rng.normal(0, 1.5), 16 + rng.normal(0, 1.5), rng.uniform(2.5, 5)
            img = 220 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r)) + rng.normal(8, 3, (32, 32))
            out[i] = np.clip(img, 0, 255).astype(np.uint8)[:, :, None]
        return out

    line = _fidelity(blobs(160), blobs(80), tmp_path / "a", seed=0)
    ratio = float(re.search(r"morphology distance (\d+\.\d)x", line).group(1))
    assert 0 < ratio < 5 and "over 80 fakes" in line
    blank = _fidelity(blobs(160), np.zeros((80, 32, 32, 3), np.uint8), tmp_path / "b", seed=0)
    assert (
        blank.startswith("morphology could not be measured")
        or float(re.search(r"(\d+\.\d)x", blank).group(1)) > 3 * ratio
    )


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
