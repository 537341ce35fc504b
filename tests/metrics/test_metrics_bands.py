"""Per-band spectrum and morphology (each band exactly the single-band metric on its plane), --band, and colours."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from astrogan.metrics.bands import rename_scalars, resolve_band
from astrogan.metrics.colours import aperture_fluxes, colour_pairs, colours_of
from astrogan.metrics.compute import evaluate, run_metrics
from astrogan.science import BandStretch, ScienceSpec
from astrogan.utils.errors import UserError

BANDS = ("g", "r", "i", "z")
SIZE = 24


def galaxy_flux(num: int, *, g_i: float, seed: int, size: int = SIZE, scatter: float = 0.1) -> np.ndarray:
    """Gaussian galaxies with known colours, float32 flux `(N, 4, size, size)` (g, r, i, z) plus sky noise.

    Each galaxy's g-i is drawn from N(g_i, scatter), split evenly into g-r and r-i; i-z = 0.1. Its i flux is
    100..400, its size 1.5..3 px; the sky is 0 with noise sigma 0.3 per pixel.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.indices((size, size), dtype=np.float64)
    out = np.empty((num, 4, size, size), np.float32)
    for n in range(num):
        sig = rng.uniform(1.5, 3.0)
        cy, cx = (size - 1) / 2 + rng.uniform(-1, 1, 2)
        prof = np.exp(-0.5 * ((yy - cy) ** 2 + (xx - cx) ** 2) / sig**2) / (2 * np.pi * sig**2)
        gi = rng.normal(g_i, scatter)
        mags = np.array([gi, gi / 2, 0.0, -0.1])  # g, r, i, z relative to i
        total_i = rng.uniform(100, 400)
        for b in range(4):
            out[n, b] = total_i * 10 ** (-0.4 * mags[b]) * prof + rng.normal(0, 0.3, (size, size))
    return out


def stretch_for(*fluxes: np.ndarray) -> BandStretch:
    """An asinh stretch whose white sits above every pixel of `fluxes` (nothing clipped, fluxes come back)."""
    allf = np.concatenate(fluxes)
    black = tuple(float(v) for v in allf.min(axis=(0, 2, 3)) - 1.0)
    white = tuple(float(v) for v in allf.max(axis=(0, 2, 3)) * 1.2)
    return BandStretch(kind="asinh", a=0.1, black=black, white=white)


def to_data(flux: np.ndarray, stretch: BandStretch) -> np.ndarray:
    """Flux `(N, B, H, W)` -> what a science dataset stores: float32 stretched values `(N, H, W, B)` in [0, 1]."""
    return np.ascontiguousarray(np.moveaxis(stretch.forward(flux), 1, -1))


@pytest.fixture(scope="module")
def sets():
    real_f = galaxy_flux(120, g_i=1.0, seed=0)
    same_f = galaxy_flux(80, g_i=1.0, seed=1)
    blue_f = galaxy_flux(80, g_i=0.4, seed=2)
    st = stretch_for(real_f, same_f, blue_f)
    spec = ScienceSpec(bands=BANDS, stretch=st, bunit="nanomaggy")
    return spec, to_data(real_f, st), to_data(same_f, st), to_data(blue_f, st)


# -- per band: exactly the single-band metric on that band's plane --------------------------------------------


@pytest.mark.slow  # heavy: every metric per band
def test_each_band_is_the_single_band_metric_on_its_plane(sets, tmp_path):
    spec, real, fake, _ = sets
    res = run_metrics(["spectrum", "morphology"], real, fake, science=spec, cache_dir=tmp_path, cache_key="k")
    assert not res.skipped
    for b, name in enumerate(BANDS):
        one = run_metrics(
            ["spectrum", "morphology"], real[..., b : b + 1].copy(), fake[..., b : b + 1].copy()
        )
        for k, v in one.scalars.items():
            k_band = rename_scalars(
                {k: v}, "spectrum" if k.startswith("spectrum") else "morph", name, taken=set()
            )
            ((key, _),) = k_band.items()
            got = res.scalars[key]
            # The same numbers, not close ones.
            assert got == v or (math.isnan(got) and math.isnan(v)), (key, got, v)
        spec_b = res.details["spectrum"]["bands"][name]
        assert np.array_equal(spec_b["comparison"].w1, one.details["spectrum"]["comparison"].w1)
        assert np.array_equal(spec_b["floor"], one.details["spectrum"]["floor"], equal_nan=True)
        mb, mo = res.details["morphology"]["bands"][name], one.details["morphology"]
        for prop in mo["real"].values:
            assert np.array_equal(mb["real"].values[prop], mo["real"].values[prop], equal_nan=True)
            assert np.array_equal(mb["fake"].values[prop], mo["fake"].values[prop], equal_nan=True)
    # Per-band keys, a row each with its floor and ratio, and the combined figures as before.
    for name in BANDS:
        for key in (
            f"spectrum_{name}_w1_mean",
            f"spectrum_{name}_floor_w1_mean",
            f"morph_{name}_w1_mean",
            f"morph_{name}_floor_w1_mean",
            f"morph_{name}_ratio_mean",
        ):
            assert key in res.scalars, key
    rows = {r.metric: r for r in res.rows}
    assert rows["power spectrum W1, band r (mean over bins)"].ratio is not None
    assert rows["morphology W1, band z (mean of 12 properties)"].ratio is not None
    assert len(rows) == 2 * (1 + len(BANDS))
    # A second run reads every band's real statistics from the cache and gives the same figures.
    assert any(p.name.startswith("k-band2-morphology-") for p in tmp_path.iterdir())
    again = run_metrics(
        ["spectrum", "morphology"], real, fake, science=spec, cache_dir=tmp_path, cache_key="k"
    )
    assert again.scalars.keys() == res.scalars.keys()
    assert all(again.scalars[k] == v or math.isnan(v) for k, v in res.scalars.items())


@pytest.mark.slow  # heavy: every metric per band
def test_the_combined_figures_are_the_mean_over_bands_and_the_mean_plane(sets):
    spec, real, fake, _ = sets
    res = run_metrics(["spectrum", "morphology"], real, fake, science=spec)
    s = res.scalars
    assert s["spectrum_w1_mean"] == pytest.approx(
        np.mean([s[f"spectrum_{b}_w1_mean"] for b in BANDS]), rel=1e-12
    )
    # Three science bands are no R, G, B: the combined morphology is measured on the mean of the bands.
    spec3 = ScienceSpec(
        bands=BANDS[:3],
        stretch=BandStretch(kind="asinh", a=0.1, black=spec.stretch.black[:3], white=spec.stretch.white[:3]),
    )
    r3, f3 = real[..., :3].copy(), fake[..., :3].copy()
    res3 = run_metrics(["morphology"], r3, f3, science=spec3)
    mean = run_metrics(["morphology"], r3.mean(axis=-1, keepdims=True), f3.mean(axis=-1, keepdims=True))
    assert res3.scalars["morph_w1_mean"] == mean.scalars["morph_w1_mean"]
    rgb = run_metrics(["morphology"], r3, f3)  # no spec: a picture, judged by its luminance
    assert rgb.scalars["morph_w1_mean"] != mean.scalars["morph_w1_mean"]


def test_pictures_get_no_per_band_figures():
    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (40, 16, 16, 3), dtype=np.uint8)
    res = run_metrics(["spectrum"], real, real[::-1].copy())
    assert sorted(res.scalars) == [
        "spectrum_floor_w1_mean",
        "spectrum_log_ratio_mean_abs",
        "spectrum_w1_mean",
    ]
    assert [r.metric for r in res.rows] == ["power spectrum W1 (mean over bins)"]


@pytest.mark.slow  # heavy: spectrum and morphology per band
def test_band_restricts_spectrum_and_morphology_to_that_band(sets, tmp_path):
    spec, real, fake, _ = sets
    res = run_metrics(["spectrum", "morphology"], real, fake, science=spec, band="i")
    one = run_metrics(["spectrum", "morphology"], real[..., 2:3].copy(), fake[..., 2:3].copy())
    assert res.scalars["spectrum_i_w1_mean"] == one.scalars["spectrum_w1_mean"]
    assert res.scalars["morph_i_w1_mean"] == one.scalars["morph_w1_mean"]
    assert res.scalars["morph_i_floor_w1_mean"] == one.scalars["morph_floor_w1_mean"]
    assert all("_i_" in k for k in res.scalars), sorted(res.scalars)  # band i only, no combined figure
    assert [r.metric for r in res.rows] == [
        "power spectrum W1, band i (mean over bins)",
        "morphology W1, band i (mean of 12 properties)",
    ]
    doc = evaluate(real, fake, tmp_path / "rep", names=["spectrum"], science=spec, band="i")
    assert doc["spectrum"]["band"] == "i" and "band i" in (tmp_path / "rep" / "report.html").read_text()
    # By index without a spec; unknown names are one actionable line.
    assert resolve_band("2", None, 4) == 2 and resolve_band("R", spec, 4) == 1
    with pytest.raises(UserError, match="unknown band 'y': the data have g, r, i, z"):
        run_metrics(["spectrum"], real, fake, science=spec, band="y")
    with pytest.raises(UserError, match="science spec names 4 band"):
        run_metrics(["spectrum"], real[..., :3], fake[..., :3], science=spec)


def test_a_band_name_never_collides_with_a_combined_figure():
    assert rename_scalars({"spectrum_w1_mean": 1.0}, "spectrum", "g", taken=set()) == {
        "spectrum_g_w1_mean": 1.0
    }
    out = rename_scalars({"spectrum_w1_mean": 1.0}, "spectrum", "floor", taken={"spectrum_floor_w1_mean"})
    assert out == {"spectrum_band_floor_w1_mean": 1.0}


# -- colours ---------------------------------------------------------------------------------------------------


def test_aperture_flux_and_colours_have_known_answers():
    yy, xx = np.indices((32, 32), dtype=np.float64)
    blob = np.exp(-0.5 * ((yy - 15.5) ** 2 + (xx - 15.5) ** 2) / 1.5**2) / (2 * np.pi * 1.5**2)
    # One galaxy (1, 2, 32, 32): fluxes 100 and 250 on flat skies of 5 and -2.
    flux = np.stack([np.stack([100 * blob + 5.0, 250 * blob - 2.0])])
    f = aperture_fluxes(flux)
    assert f == pytest.approx(np.array([[100.0, 250.0]]), rel=1e-6)
    c = colours_of(np.array([[100.0, 250.0], [-1.0, 10.0], [10.0, 0.0]]), [(0, 1)])
    assert c[0, 0] == pytest.approx(-2.5 * np.log10(100 / 250)) and np.isnan(c[1:, 0]).all()
    assert colour_pairs(BANDS) == [(0, 1), (1, 2), (2, 3), (0, 2)]  # adjacent, then g-i (the research seed's)
    assert colour_pairs(("u", "v", "w")) == [(0, 1), (1, 2), (0, 2)] and colour_pairs(("g", "r")) == [(0, 1)]
    assert colour_pairs(("g", "i", "z")) == [(1, 2), (0, 1)]  # g-i last: the red/blue split's colour
    assert colour_pairs(("z", "i", "r", "g")) == [
        (3, 2),
        (2, 1),
        (1, 0),
        (3, 1),
    ]  # listed red to blue: still g-r...


def test_colours_near_the_floor_for_the_same_population_far_for_bluer_galaxies(sets):
    spec, real, same, blue = sets
    res = run_metrics(["colours"], real, same, science=spec)
    s = res.scalars
    assert s["colour_g-i_median_real"] == pytest.approx(1.0, abs=0.05)
    assert s["colour_g-r_median_real"] == pytest.approx(0.5, abs=0.05)
    assert s["colour_i-z_median_real"] == pytest.approx(0.1, abs=0.05)
    for c in ("g-r", "r-i", "i-z", "g-i"):
        assert s[f"colour_{c}_w1"] < 3 * s[f"colour_{c}_floor"], c
        assert 0 < s[f"colour_{c}_floor"] < 0.05, c
        # The floor's split-to-split spread: positive, and smaller than the floor itself at these sizes.
        assert 0 < s[f"colour_{c}_floor_sd"] < s[f"colour_{c}_floor"], c
    assert s["colours_red_fraction_real"] == pytest.approx(0.5, abs=0.01)
    assert abs(s["colours_red_fraction_fake"] - 0.5) < 0.2
    bad = run_metrics(["colours"], real, blue, science=spec).scalars
    assert bad["colour_g-i_median_fake"] == pytest.approx(0.4, abs=0.05)
    assert bad["colour_g-i_w1"] == pytest.approx(0.6, abs=0.06)
    assert (
        bad["colour_g-i_w1"] > 20 * bad["colour_g-i_floor"]
        and bad["colour_g-r_w1"] > 10 * bad["colour_g-r_floor"]
    )
    assert bad["colour_i-z_w1"] < 3 * bad["colour_i-z_floor"]  # i-z did not change
    # Early/late: none of the bluer galaxies is redder than the real median (floor ~0.06 at 120 vs 80 galaxies).
    assert bad["colours_red_fraction_fake"] < 0.02
    assert bad["colours_red_fraction_diff"] > 5 * bad["colours_red_fraction_floor"]
    rows = {r.metric.split(" (")[0]: r for r in run_metrics(["colours"], real, blue, science=spec).rows}
    assert rows["colour g-i W1"].ratio > 20 and rows["red fraction difference"].ratio > 5


@pytest.mark.filterwarnings("error::RuntimeWarning")  # no log10 of 0 or of a negative flux is ever taken
def test_non_positive_fluxes_are_left_out_and_counted(sets):
    spec, real, same, _ = sets
    # Five generated galaxies with no g flux at all (a blank g plane: the sky at black, below zero).
    fake = same.copy()
    fake[:5, :, :, 0] = 0.0
    res = run_metrics(["colours"], real, fake, science=spec)
    d = res.details["colours"]
    by = {c.name: c for c in d["colours"]}
    assert (
        by["g-r"].excluded_fake == 5 and by["g-i"].excluded_fake == 5 and by["g-r"].num_fake == len(fake) - 5
    )
    assert by["r-i"].excluded_fake == 0 and by["i-z"].excluded_fake == 0
    assert d["non_positive_fake"] == {"g": 5, "r": 0, "i": 0, "z": 0} and d["non_positive_real"]["g"] == 0
    assert all(np.isfinite(v) for v in res.scalars.values())


def test_colours_are_not_applicable_without_a_science_spec(sets):
    _, real, same, _ = sets
    res = run_metrics(["colours"], real, same)
    assert "colours" not in res.details and "not applicable" in res.skipped["colours"]
    assert "\n" not in res.skipped["colours"]
    one = ScienceSpec(bands=("r",), stretch=BandStretch(kind="linear", a=1.0, black=(0.0,), white=(1.0,)))
    res1 = run_metrics(["colours"], real[..., 1:2], same[..., 1:2], science=one)
    assert "one band" in res1.skipped["colours"]


@pytest.mark.slow  # heavy: every metric per band, and the report
def test_the_report_shows_colours_and_bands(sets, tmp_path):
    spec, real, _, blue = sets
    doc = evaluate(real, blue, tmp_path / "rep", names=["spectrum", "morphology", "colours"], science=spec)
    rep = tmp_path / "rep"
    on_disk = json.loads((rep / "metrics.json").read_text())
    assert on_disk["colours"]["colours"]["g-i"]["w1_mag"] == pytest.approx(doc["metrics"]["colour_g-i_w1"])
    assert on_disk["colours"]["red_fraction"]["generated"] < 0.02
    assert (
        set(on_disk["spectrum"]["bands"]) == set(BANDS)
        and "mean over bins and bands" in on_disk["spectrum"]["combined"]
    )
    assert set(on_disk["morphology"]["bands"]) == set(BANDS)
    assert on_disk["science"]["bands"] == list(BANDS) and on_disk["science"]["band_measured"] is None
    for f in ("colours.png", "spectrum.png", "morphology.png", "morphology_bands.png"):
        assert (rep / f).stat().st_size > 1000, f
    html = (rep / "report.html").read_text()
    assert "<h2>Colours</h2>" in html and "colours.png" in html and "measured on the mean of bands" in html


def test_matched_floor_is_the_mean_of_its_splits_and_their_spread_is_the_chance_of_one_w1():
    """For two independent samples of one law, W1 / floor scatters around 1 by about floor_sd / floor."""
    from scipy.stats import wasserstein_distance

    from astrogan.metrics.distances import matched_floor, matched_floor_splits

    rng = np.random.default_rng(0)
    real = rng.normal(size=1000)
    splits = matched_floor_splits(real, 500, num_splits=8, rng_seed=3, standardise=False)
    assert splits.shape == (8,) and np.all(splits > 0)
    assert matched_floor(real, 500, num_splits=8, rng_seed=3, standardise=False) == pytest.approx(
        splits.mean()
    )
    assert matched_floor_splits(real[:3], 500).size == 0 and np.isnan(matched_floor(real[:3], 500))
    # Same splits, another fake count: rescaled by sqrt((1/N + 1/M) / (1/N + 1/M')) exactly.
    other = matched_floor_splits(real, 1000, num_splits=8, rng_seed=3, standardise=False)
    assert np.allclose(splits / other, np.sqrt((1 / 1000 + 1 / 500) / (2 / 1000)))
    # Many independent fake sets of the same law: their W1 to the reals has mean ~ the floor, sd ~ the spread.
    w = np.array([wasserstein_distance(real, rng.normal(size=500)) for _ in range(200)])
    many = matched_floor_splits(real, 500, num_splits=200, rng_seed=3, standardise=False)
    assert w.mean() == pytest.approx(many.mean(), rel=0.25)
    assert w.std() == pytest.approx(many.std(), rel=0.5)
