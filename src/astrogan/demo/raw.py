"""The demo's raw pictures, made from data that ships with the installed packages.

Raw pictures: random crops of the Hubble eXtreme Deep Field (scikit-image's `hubble_deep_field`) and
Sérsic galaxies rendered with GalSim, coloured by profile (bulgy n > 2.5 ones yellow, discs blue-white), on a
deep picture's sky: a little above black, its noise almost never clipped (see `make_sersic_pngs`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from astrogan.data.synthetic import asinh_stretch, render_sersic
from astrogan.sampling.post import save_png

SERSIC_PREFIX = "sersic-"  # file names of the Sérsic pictures: the build records them as each image's source
# The Sérsic pictures' sky. Stretched to black, a zero-mean sky clips half its noise to exactly 0, a law a generator
# ending in tanh cannot draw. Lifted by 2.5 sigma it sits at ~14 of 255 with noise ~6 levels, like the HXDF crops'
# sky (~12). Over seeds 0-3 of the demo's DCGAN this took the Sérsic part's Gini from 25-39x the real floor to 5-11x
# and its ellipticity from 7-10x to 3-6x; the part's mean stayed ~12x, now held back by the fakes' asymmetry.
SERSIC_NOISE_SIGMA = 0.5  # counts per pixel (GalSim Gaussian noise): a deep picture, galaxies well above it
SKY_LEVEL_SIGMAS = 2.5  # the sky level: at most ~1% of sky pixels fall below black
SOFTENING_SIGMAS = 10.0  # asinh softening: linear up to ~10 sigma, so the noise keeps its Gaussian shape


def make_hdf_crops(out_dir: Path, *, num: int, seed: int, min_px: int = 64, max_px: int = 112) -> int:
    """Cut `num` random square crops (min_px..max_px wide, native resolution) out of the HXDF picture."""
    from skimage import data as skdata

    field = skdata.hubble_deep_field()  # (872, 1000, 3) uint8, bundled with scikit-image
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    h, w = field.shape[:2]
    for i in range(num):
        size = int(rng.integers(min_px, max_px + 1))
        y, x = int(rng.integers(0, h - size)), int(rng.integers(0, w - size))
        save_png(field[y : y + size, x : x + size], out_dir / f"hxdf-{i:04d}.png")
    return num


def make_sersic_pngs(out_dir: Path, *, num: int, image_size: int, seed: int) -> int:
    """Render `num` Sérsic galaxies with GalSim on a sky above black, asinh-stretch and colour them, write PNGs."""
    images, params = render_sersic(
        num,
        image_size=image_size,
        seed=seed,
        bands=1,
        num_workers=2,
        noise=f"gaussian:sigma={SERSIC_NOISE_SIGMA}",
    )
    vmax = float(np.percentile(images, 99.9))
    sky = SKY_LEVEL_SIGMAS * SERSIC_NOISE_SIGMA
    out_dir.mkdir(parents=True, exist_ok=True)
    # GalSim rows run bottom-up (FITS convention); flip once so the PNG looks like the FITS in DS9.
    soft = SOFTENING_SIGMAS * SERSIC_NOISE_SIGMA
    gray = asinh_stretch(images[:, 0, ::-1, :] + sky, softening=soft, vmax=vmax).astype(np.float32) / 255.0
    for i in range(num):
        tint = np.array([1.0, 0.86, 0.62] if params["sersic_n"][i] > 2.5 else [0.78, 0.88, 1.0], np.float32)
        rgb = np.clip(gray[i][:, :, None] * tint * 255.0 + 0.5, 0, 255).astype(np.uint8)
        save_png(rgb, out_dir / f"{SERSIC_PREFIX}{i:04d}.png")
    return num
