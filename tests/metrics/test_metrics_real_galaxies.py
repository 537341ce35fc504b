"""The metrics on 816 real Galaxy Zoo galaxies (../shared/data): real-vs-real sits at the floor, noise far
above it, fits stay physical, and a perfect generator's ratio is ~1 (skipped without the data)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from astrogan.data.build import BuildOptions, build_dataset
from astrogan.data.dataset import open_dataset
from astrogan.metrics.compute import run_metrics
from astrogan.metrics.distances import compare_properties
from astrogan.metrics.morphology import COMPARED_PROPERTIES, measure_morphology

pytestmark = pytest.mark.slow  # builds the 816 real galaxies and measures them several times

NAMES = ["spectrum", "morphology", "prdc", "memorization"]


@pytest.fixture(scope="module")
def galaxies_64(shared_data, tmp_path_factory) -> np.ndarray:
    out = tmp_path_factory.mktemp("gz") / "ds"
    build_dataset(
        [shared_data / "galaxyzoo-examples"],
        out,
        options=BuildOptions(image_sizes=(64,)),
        show_progress=False,
    )
    x = open_dataset(out).images(64)
    assert x.shape == (816, 64, 64, 3)
    # The examples show some galaxies twice (339 images have an identical twin): keep one of each so that
    # the two halves below are disjoint sets of galaxies.
    _, first = np.unique(x.reshape(len(x), -1), axis=0, return_index=True)
    assert 500 < len(first) < 816
    return x[np.sort(first)]


def _halves(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(0).permutation(len(x))
    return x[perm[: len(x) // 2]], x[perm[len(x) // 2 :]]


def test_measurements_stay_physical_on_real_galaxies(galaxies_64):
    res = measure_morphology(galaxies_64)
    diag = math.hypot(64, 64)
    v = res.values
    for k in ("r20", "r50", "r80", "rpetro_circ", "rpetro_ellip", "sersic_rhalf"):
        f = v[k][np.isfinite(v[k])]
        assert f.size > 0.9 * len(galaxies_64) and f.max() <= max(diag, 2 * 64) and f.min() > 0, k
    n = v["sersic_n"][np.isfinite(v["sersic_n"])]
    assert (
        n.size > 0.9 * len(galaxies_64) and n.min() >= 0.01 and n.max() <= 10
    )  # unbounded fits reached 1e13 here
    assert np.nanmin(v["asymmetry"]) >= -1 and np.nanmax(v["gini"]) <= 1


def test_real_against_real_sits_at_the_floor_and_noise_far_above(galaxies_64):
    a, b = _halves(galaxies_64)
    res = run_metrics(NAMES, a, b)
    assert not res.skipped
    for row in res.rows:
        assert row.ratio is not None and math.isfinite(row.value), row.metric
        assert 0.5 < row.ratio < 1.8, (row.metric, row.value, row.floor)
    for k, c in res.details["morphology"]["comparisons"].items():
        assert 0.3 < c.ratio < 2.5, (k, c)
        assert c.num_real + c.dropped_real == int(res.details["morphology"]["real"].good().sum())
    mem = res.details["memorization"]
    assert mem.interval["pixels"][0] <= 0.05 <= mem.interval["pixels"][1] + 0.03

    noise = np.random.default_rng(1).integers(0, 256, b.shape, dtype=np.uint8)
    bad = run_metrics(NAMES, a, noise)
    rows = {r.metric.split(" (")[0]: r for r in bad.rows}
    assert rows["power spectrum W1"].ratio > 10 and rows["morphology W1"].ratio > 5
    for k in ("precision", "recall", "density", "coverage"):  # 157 real vs 157 noise images: wide k-NN balls
        assert rows[k].ratio < 0.3, (k, rows[k].value, rows[k].floor)
    for k, c in bad.details["morphology"]["comparisons"].items():
        if k != "orientation":  # noise blobs point anywhere, as real galaxies do
            assert c.ratio > 2, (k, c)
    assert bad.details["memorization"].fraction["pixels"] < 0.01


def test_copying_the_training_set_is_caught_and_another_survey_is_not(galaxies_64):
    a, _ = _halves(galaxies_64)
    copies = a[np.random.default_rng(2).choice(len(a), 200)]
    res = run_metrics(["memorization"], a, copies)
    assert res.scalars["memorization_fraction"] > 0.95
    # Real pictures not in `a` (other galaxies of the same surveys) are not copies.
    _, b = _halves(galaxies_64)
    assert run_metrics(["memorization"], a, b).scalars["memorization_fraction"] < 0.12


def test_a_perfect_generator_scores_about_one():
    # Two fresh draws of one law with the real-vs-fake sizes of an eval (N real, M generated): the matched
    # floor makes the mean ratio ~1 (halves of the real set alone would give ~0.7 for M = N).
    rng = np.random.default_rng(0)
    ratios = []
    for t in range(30):
        real = {k: rng.gamma(2.0, size=400) for k in ("a", "b")}
        fake = {k: rng.gamma(2.0, size=1000) for k in ("a", "b")}
        ratios += [c.ratio for c in compare_properties(real, fake, ["a", "b"], rng_seed=t).values()]
    assert 0.85 < np.mean(ratios) < 1.2
    assert set(COMPARED_PROPERTIES) >= {"sersic_n", "sersic_rhalf"}


def test_pictures_of_another_kind_are_not_copies(galaxies_64, shared_data, tmp_path):
    # ESA/Hubble showcase pictures (nebulae, clusters) against the Galaxy Zoo galaxies.
    build_dataset(
        [shared_data / "hubble-showcase"],
        tmp_path / "hs",
        options=BuildOptions(image_sizes=(64,)),
        show_progress=False,
    )
    other = open_dataset(tmp_path / "hs").images(64)[..., :3]
    assert run_metrics(["memorization"], galaxies_64, other).scalars["memorization_fraction"] < 0.03


def test_a_perfect_sersic_generator_scores_the_floor():
    """Fresh GalSim stamps of the same law with new noise, 8-bit asinh-stretched as the demo writes them:
    every figure near its floor (ratio ~1) and ~5% memorised."""
    from astrogan.data.synthetic import asinh_stretch, render_sersic

    imgs, _ = render_sersic(900, image_size=32, seed=0, num_workers=1)
    x = asinh_stretch(imgs[:, 0, :, :, None], softening=2.0, vmax=float(np.percentile(imgs, 99.9)))
    real, fresh = x[:500], x[500:]
    res = run_metrics(["spectrum", "morphology", "memorization"], real, fresh)
    assert res.scalars["morph_bad_fraction_real"] < 0.05  # was 0.86: a clipped sky, no Petrosian radius
    for row in res.rows:
        assert 0.6 < row.ratio < 1.6, (row.metric, row.value, row.floor)
    lo, hi = res.details["memorization"].interval["pixels"]
    assert lo <= 0.05 <= hi + 0.02
