"""The holzschuh2022 protocol: magma FID images, frequency intervals, spectrum and morphology W1."""

from __future__ import annotations

import subprocess
import sys
import warnings

import matplotlib
import numpy as np
import pytest
from scipy import ndimage
from scipy.stats import wasserstein_distance

from astrogan.metrics.morphology import PROPERTIES
from astrogan.metrics.protocols import (
    HOLZSCHUH_MORPHOLOGY_PROPERTIES,
    HOLZSCHUH_OUTLIER_CUTS,
    PROTOCOLS,
    _w1,
    holzschuh_band,
    holzschuh_fid_images,
    holzschuh_morphology_distance,
    holzschuh_spectrum_bins,
    holzschuh_spectrum_distance,
    validate_protocol,
)
from astrogan.metrics.spectrum import radial_spectrum

MAGMA = matplotlib.colormaps["magma"]


def magma_u8(t) -> np.ndarray:
    """What the authors' toRGB does to a normalised image: cmap(t)[..., :3] * 255 cast to uint8."""
    return (np.asarray(MAGMA(t))[..., :3] * 255).astype(np.uint8)


def test_protocol_names_and_validation():
    assert PROTOCOLS == ("astrogan", "holzschuh2022")
    assert validate_protocol("holzschuh2022") == "holzschuh2022"
    with pytest.raises(ValueError, match="holzschuh2022"):
        validate_protocol("holzschuh")


def test_bands_the_authors_used():
    assert holzschuh_band(1, "fid") == 0 and holzschuh_band(1, "morphology") == 0
    assert holzschuh_band(4, "fid") == holzschuh_band(4, "spectrum") == 1  # r of g, r, i, z
    assert holzschuh_band(4, "morphology") == 2  # i
    assert holzschuh_band(2, "morphology") == 1
    with pytest.raises(ValueError):
        holzschuh_band(4, "colour")
    with pytest.raises(ValueError):
        holzschuh_band(0, "fid")


# ---------------------------------------------------------------------------------------------- FID images


def test_ramp_maps_to_magma_first_and_last_colours():
    ramp = np.tile(np.linspace(-3.0, 5.0, 40), (8, 1))[None]  # (1, 8, 40) float, min -3, max 5
    out = holzschuh_fid_images(ramp)
    assert len(out) == 1
    img = out[0]
    assert img.shape == (1, 8, 40, 3) and img.dtype == np.uint8
    np.testing.assert_array_equal(img[0, :, 0], np.broadcast_to(magma_u8(0.0), (8, 3)))
    np.testing.assert_array_equal(img[0, :, -1], np.broadcast_to(magma_u8(1.0), (8, 3)))
    assert tuple(magma_u8(0.0)) != tuple(magma_u8(1.0))
    # Colours run monotonically brighter along the ramp (magma's lightness increases).
    lum = img[0, 0].astype(float) @ [0.299, 0.587, 0.114]
    assert np.all(np.diff(lum) >= 0) and lum[-1] > lum[0] + 200


def test_mapping_equals_matplotlib_colormap_call_and_is_per_image():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 17, 19)) * np.array([1.0, 50.0, 1e-3])[:, None, None] + 10.0
    got = holzschuh_fid_images(x)[0]
    for i in range(3):
        t = (x[i] - x[i].min()) / (x[i].max() - x[i].min())
        np.testing.assert_array_equal(got[i], magma_u8(t))
    # Per-image min-max: an affine change of one image changes nothing; others are untouched.
    y = x.copy()
    y[1] = 7.0 * y[1] - 3.0
    np.testing.assert_array_equal(holzschuh_fid_images(y)[0], got)
    # uint8 input is normalised the same way as the equal float values.
    u = rng.integers(0, 256, size=(2, 9, 9), dtype=np.uint8)
    np.testing.assert_array_equal(holzschuh_fid_images(u)[0], holzschuh_fid_images(u.astype(np.float32))[0])


def test_four_bands_give_four_renderings_each_from_its_own_band():
    rng = np.random.default_rng(1)
    imgs = rng.random((3, 16, 16, 4)) * np.array([1.0, 10.0, 100.0, 0.1])
    imgs[..., 2] = np.linspace(0, 1, 16)[None, None, :]  # a ramp in band 2 only
    out = holzschuh_fid_images(imgs)
    assert len(out) == 4
    for b in range(4):
        assert out[b].shape == (3, 16, 16, 3) and out[b].dtype == np.uint8
        np.testing.assert_array_equal(out[b], holzschuh_fid_images(imgs[..., b])[0])
    np.testing.assert_array_equal(out[2][:, :, 0], np.broadcast_to(magma_u8(0.0), (3, 16, 3)))
    assert not np.array_equal(out[0], out[1])


def test_constant_and_non_finite_images_are_safe():
    imgs = np.zeros((3, 8, 8, 1), dtype=np.float32)
    imgs[1] = 7.0
    imgs[2] = np.linspace(0, 1, 64).reshape(8, 8, 1)
    imgs[2, 0, 0, 0] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = holzschuh_fid_images(imgs)[0]
    first = magma_u8(0.0)
    assert np.all(out[0] == first) and np.all(out[1] == first)
    assert np.all(out[2, 0, 0] == first) and np.all(out[2, -1, -1] == magma_u8(1.0))
    u = np.full((2, 4, 4), 200, dtype=np.uint8)
    assert np.all(holzschuh_fid_images(u)[0] == first)


def test_fid_images_reject_bad_shapes():
    with pytest.raises(ValueError):
        holzschuh_fid_images(np.zeros((4, 4)))
    with pytest.raises(TypeError):
        holzschuh_fid_images(np.zeros((1, 4, 4), dtype=bool))


# ------------------------------------------------------------------------------------------ spectrum bins


def test_spectrum_bins_are_the_authors_intervals():
    edges = holzschuh_spectrum_bins(256)
    assert edges.shape == (15,)
    assert np.all(np.diff(edges) > 0)
    assert edges[0] == 0.0 and edges[-1] == pytest.approx(0.5)
    # The authors' notebook prints these interval edges (per kpc/h, f_max = 0.5 / (0.276 / 0.7)).
    f_max = 0.5 / (0.276 / 0.7)
    published = [0.014012330851149009, 0.035030827127872526, 0.06305548883017054, 0.11209864680919207,
                 0.1681479702137881, 0.23820962446953314, 0.32228360957642727, 0.4203699255344703,
                 0.5324685723436623, 0.651573384578429, 0.791696693089919, 0.9388261670269836,
                 1.0999679718151973, 1.2681159420289854]  # fmt: skip
    np.testing.assert_allclose(edges[1:] / 0.5 * f_max, published, rtol=1e-12)
    # Logarithmic construction: narrow intervals at low frequency, never narrowing upwards,
    # the first one more than ten times narrower than the last.
    widths = np.diff(edges)
    assert np.all(np.diff(widths) >= 0)
    assert widths[-1] > 10 * widths[0]
    # Same fractions of the largest radial_spectrum frequency for any size (odd sizes stop below 0.5).
    np.testing.assert_allclose(holzschuh_spectrum_bins(64), edges)
    assert holzschuh_spectrum_bins(65)[-1] == pytest.approx(32 / 65)
    with pytest.raises(ValueError):
        holzschuh_spectrum_bins(1)


def test_every_interval_holds_frequencies_at_256_px():
    freqs = np.arange(1, 129) / 256
    edges = holzschuh_spectrum_bins(256)
    counts = [
        np.sum((freqs > lo) & (freqs <= hi * (1 + 1e-9)))
        for lo, hi in zip(edges[:-1], edges[1:], strict=True)
    ]
    assert min(counts) >= 1 and sum(counts) == 128


# ------------------------------------------------------------------------------------------ spectrum W1


def _noisy_galaxies(n: int, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.indices((size, size)) - (size - 1) / 2
    out = np.empty((n, size, size))
    for i in range(n):
        r = np.hypot(xx / rng.uniform(0.6, 1.0), yy) / rng.uniform(3, 8)
        out[i] = np.exp(-r) + 0.05 * rng.normal(size=(size, size))
    return out


def test_numpy_w1_matches_scipy():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=57), rng.normal(0.3, 2.0, size=31)
    assert _w1(a, b) == pytest.approx(wasserstein_distance(a, b), rel=1e-12)
    assert _w1(a, a.copy()) == 0.0


@pytest.mark.parametrize("variant", ["intervals", "released_code"])
def test_spectrum_distance_zero_for_identical_and_grows_when_smoothed(variant):
    imgs = _noisy_galaxies(12, 64, seed=3)
    freqs, p_real = radial_spectrum(imgs)
    p_real = p_real[:, 0]
    same = holzschuh_spectrum_distance(p_real, p_real.copy(), freqs, variant=variant)
    smooth = ndimage.gaussian_filter(imgs, sigma=(0, 1.5, 1.5))
    _, p_fake = radial_spectrum(smooth)
    diff = holzschuh_spectrum_distance(p_real, p_fake[:, 0], freqs, variant=variant)
    prefix = "interval_" if variant == "intervals" else "wavenumber_"
    keys = [f"{prefix}{j:02d}" for j in range(1, 15)]
    assert list(same) == [*keys, "mean"] and list(diff) == [*keys, "mean"]
    finite = [k for k in keys if np.isfinite(same[k])]
    assert len(finite) >= 12
    assert all(same[k] == 0.0 for k in finite) and same["mean"] == 0.0
    assert diff["mean"] > 0.1
    # Smoothing removes high frequencies: the highest band is further off than the lowest.
    assert diff[finite[-1]] > 5 * diff[finite[0]]
    assert diff[finite[-1]] > 0.5


def test_spectrum_intervals_pool_values_and_leave_empty_ones_nan():
    imgs = _noisy_galaxies(6, 64, seed=4)
    freqs, p = radial_spectrum(imgs)
    p = p[:, 0]
    q = p * 10.0  # +0.5 dex in log10 amplitude at every frequency
    d = holzschuh_spectrum_distance(p, q, freqs)
    # At 64 px the first two intervals (k <= 0.88) hold no frequency.
    assert np.isnan(d["interval_01"]) and np.isnan(d["interval_02"])
    vals = [d[f"interval_{j:02d}"] for j in range(3, 15)]
    np.testing.assert_allclose(vals, 0.5, rtol=1e-9)
    assert d["mean"] == pytest.approx(0.5)
    # Interval 5 (2.83 < k <= 4.24 cycles/image) pools k = 3 and 4 of every image.
    edges = holzschuh_spectrum_bins(64)
    sel = (freqs > edges[4]) & (freqs <= edges[5])
    np.testing.assert_array_equal(np.rint(freqs[sel] * 64), [3, 4])
    fake = p.copy()
    fake[:, sel] *= np.random.default_rng(5).uniform(0.5, 2.0, size=(6, sel.sum()))
    got = holzschuh_spectrum_distance(p, fake, freqs)["interval_05"]
    want = wasserstein_distance(0.5 * np.log10(p[:, sel].ravel()), 0.5 * np.log10(fake[:, sel].ravel()))
    assert got == pytest.approx(want, rel=1e-12)


def test_spectrum_distance_rejects_bad_input():
    freqs = np.arange(1, 9) / 16
    p = np.ones((3, 8))
    with pytest.raises(ValueError):
        holzschuh_spectrum_distance(p, np.ones((3, 7)), freqs)
    with pytest.raises(ValueError):
        holzschuh_spectrum_distance(p, p, freqs[::-1])
    with pytest.raises(ValueError):
        holzschuh_spectrum_distance(p, p, freqs, variant="paper")


# ------------------------------------------------------------------------------------------ morphology


def _morph(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "gini": rng.uniform(0.35, 0.65, n),
        "m20": rng.uniform(-2.5, -1.0, n),
        "concentration": rng.uniform(2.0, 5.0, n),
        "asymmetry": rng.uniform(-0.05, 0.4, n),
        "smoothness": rng.uniform(-0.02, 0.15, n),
        "r50": rng.uniform(2.0, 20.0, n),
        "sersic_n": rng.uniform(0.5, 6.0, n),
        "orientation": rng.uniform(-np.pi / 2, np.pi / 2, n),
        "ellipticity": rng.uniform(0.0, 0.8, n),
        "xc_centroid": rng.uniform(10, 20, n),
    }


def test_morphology_properties_are_astrogan_names():
    assert set(HOLZSCHUH_MORPHOLOGY_PROPERTIES) <= set(PROPERTIES)
    assert set(HOLZSCHUH_OUTLIER_CUTS) <= set(PROPERTIES)
    assert len(set(HOLZSCHUH_MORPHOLOGY_PROPERTIES)) == len(HOLZSCHUH_MORPHOLOGY_PROPERTIES) == 9


def test_morphology_distance_zero_for_identical_and_grows_with_shift():
    real = _morph(300, seed=6)
    same = holzschuh_morphology_distance(real, {k: v.copy() for k, v in real.items()})
    assert list(same) == [*HOLZSCHUH_MORPHOLOGY_PROPERTIES, "mean"]
    assert all(v == 0.0 for v in same.values())
    sd = real["gini"].std()
    prev = 0.0
    for shift in (0.01, 0.03, 0.1):
        fake = dict(real, gini=real["gini"] + shift)
        d = holzschuh_morphology_distance(real, fake)
        # A pure shift moves the standardised distribution by shift / sd, and nothing else changes.
        assert d["gini"] == pytest.approx(shift / sd, rel=1e-9)
        assert all(d[k] == 0.0 for k in HOLZSCHUH_MORPHOLOGY_PROPERTIES if k != "gini")
        assert d["mean"] == pytest.approx(d["gini"] / 9) and d["mean"] > prev
        prev = d["mean"]
    # Units do not matter: r50 in pixels and Gini in [0, 1] shifted by the same number of sigmas agree.
    fake = dict(real, r50=real["r50"] + 0.5 * real["r50"].std(), gini=real["gini"] + 0.5 * sd)
    d = holzschuh_morphology_distance(real, fake)
    assert d["r50"] == pytest.approx(d["gini"], rel=1e-9) == pytest.approx(0.5)


def test_morphology_nans_dropped_per_property_and_outlier_cuts():
    real = _morph(200, seed=7)
    fake = _morph(150, seed=8)
    base = holzschuh_morphology_distance(real, fake)
    with_nan = {k: v.copy() for k, v in fake.items()}
    with_nan["m20"][:40] = np.nan
    d = holzschuh_morphology_distance(real, with_nan)
    assert np.isfinite(d["m20"]) and d["m20"] != base["m20"]
    assert all(d[k] == base[k] for k in HOLZSCHUH_MORPHOLOGY_PROPERTIES if k != "m20")
    all_nan = dict(fake, smoothness=np.full(150, np.nan))
    d = holzschuh_morphology_distance(real, all_nan)
    assert np.isnan(d["smoothness"]) and np.isfinite(d["mean"])
    # A generated galaxy with sersic_n = 50 is an outlier: dropped from every property under the cuts.
    odd = {k: np.append(v, v[:1]) for k, v in fake.items()}
    odd["sersic_n"][-1] = 50.0
    odd["gini"][-1] = 5.0
    cut = holzschuh_morphology_distance(real, odd)
    assert cut == pytest.approx(base)
    kept = holzschuh_morphology_distance(real, odd, outlier_cuts=False)
    assert kept["gini"] > base["gini"] and kept["sersic_n"] > base["sersic_n"]


def test_morphology_reports_missing_properties():
    real = _morph(20, seed=9)
    fake = {k: v for k, v in real.items() if k != "m20"}
    with pytest.raises(ValueError, match="m20"):
        holzschuh_morphology_distance(real, fake)
    d = holzschuh_morphology_distance(real, fake, properties=("gini", "r50"))
    assert list(d) == ["gini", "r50", "mean"] and d["mean"] == 0.0


@pytest.mark.slow  # starts a process
def test_import_is_light():
    code = "import sys, astrogan.metrics.protocols as p; print(sorted({'torch', 'scipy'} & set(sys.modules)))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "[]"


def test_protocol_through_run_metrics():
    from astrogan.metrics.compute import run_metrics

    rng = np.random.default_rng(0)
    yy, xx = np.indices((32, 32))
    real = np.stack(
        [
            200 * np.exp(-np.hypot(xx - 16, yy - 16) / rng.uniform(2, 5)) + rng.normal(0, 3, (32, 32))
            for _ in range(30)
        ]
    )
    real = np.clip(real + 10, 0, 255).astype(np.uint8)[..., None]
    fake = np.clip(ndimage.gaussian_filter(real.astype(float), (0, 1.5, 1.5, 0)), 0, 255).astype(np.uint8)
    plain = run_metrics(["spectrum", "morphology"], real, fake)
    res = run_metrics(["spectrum", "morphology"], real, fake, protocol="holzschuh2022")
    assert "holzschuh2022_spectrum_w1_mean" not in plain.scalars
    assert res.scalars["holzschuh2022_spectrum_w1_mean"] > 0.05
    assert np.isfinite(res.scalars["holzschuh2022_morph_w1_mean"])
    with pytest.raises(Exception, match="unknown protocol"):
        run_metrics(["spectrum"], real, fake, protocol="bogus")
