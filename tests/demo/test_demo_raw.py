"""The demo's raw Sérsic pictures: a sky above black whose noise is not clipped, like a real picture's."""

from __future__ import annotations

import numpy as np
from PIL import Image

from astrogan.demo.raw import SERSIC_PREFIX, make_sersic_pngs


def _corners(img: np.ndarray, k: int = 6) -> np.ndarray:
    """The four k x k corner patches of (H, W, C) pictures, as one (4 k k C,) array: sky, far from the galaxy."""
    return np.concatenate([p.reshape(-1) for p in (img[:k, :k], img[:k, -k:], img[-k:, :k], img[-k:, -k:])])


def test_sersic_pictures_sit_on_an_unclipped_sky_with_the_galaxy_above_it(tmp_path):
    assert make_sersic_pngs(tmp_path, num=6, image_size=32, seed=0) == 6
    files = sorted(tmp_path.glob(f"{SERSIC_PREFIX}*.png"))
    assert len(files) == 6
    imgs = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files]).astype(np.float64)
    sky = np.concatenate([_corners(im) for im in imgs])
    # A sky stretched to black clips half its noise to exactly 0; lifted above black almost none is.
    assert np.mean(sky == 0) < 0.02
    assert 6 <= np.median(sky) <= 30
    assert 2 <= sky.std() <= 12  # the noise is visible, and nowhere near the galaxies' brightness
    centres = imgs[:, 12:20, 12:20].max(axis=(1, 2, 3))
    assert np.all(centres > np.median(sky) + 40)
