"""Composition metric: count statistics, clustering and classifier pieces, the issue's two generators
(one that drops a kind of object, one that samples the real mix), the report and the `eval` flags."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from scipy.stats import chi2_contingency

from astrogan.metrics import composition as C
from astrogan.metrics.compute import evaluate, run_metrics
from astrogan.utils.errors import UserError

KINDS = ("red dot", "blue disc", "green cigar", "white pair")


def sky(kinds: np.ndarray, *, size: int = 32, seed: int = 0) -> np.ndarray:
    """Pictures of four kinds of object, uint8 `(N, size, size, 3)`: 0 a small red blob, 1 a large blue
    disc, 2 a thin green ellipse, 3 two white blobs; random position, size, angle and sky noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.indices((size, size), dtype=np.float64)
    colours = {0: (1.0, 0.25, 0.2), 1: (0.25, 0.4, 1.0), 2: (0.3, 1.0, 0.3), 3: (1.0, 1.0, 1.0)}
    out = np.empty((len(kinds), size, size, 3), np.uint8)
    for i, k in enumerate(kinds):
        cy, cx = size / 2 + rng.uniform(-2, 2, 2)
        th = rng.uniform(0, np.pi)
        dx, dy = xx - cx, yy - cy
        xp, yp = dx * np.cos(th) + dy * np.sin(th), -dx * np.sin(th) + dy * np.cos(th)
        if k == 0:
            img = np.exp(-(dx**2 + dy**2) / (2 * rng.uniform(1.2, 2.0) ** 2))
        elif k == 1:
            img = np.exp(-np.hypot(dx, dy) / rng.uniform(4.0, 6.0))
        elif k == 2:
            img = np.exp(-((xp / rng.uniform(5, 7)) ** 2 + (yp / rng.uniform(1.0, 1.5)) ** 2))
        else:
            sep = rng.uniform(4, 6)
            img = sum(np.exp(-((xp - s) ** 2 + yp**2) / (2 * 1.8**2)) for s in (-sep, sep))
        pix = 230 * img[..., None] * np.array(colours[int(k)]) + 12 + rng.normal(0, 4, (size, size, 3))
        out[i] = np.clip(pix, 0, 255).astype(np.uint8)
    return out


def mixed_kinds(n: int, *, seed: int) -> np.ndarray:
    """`n` kinds drawn from a fixed uneven mix (40/25/20/15 %)."""
    return np.random.default_rng(seed).choice(4, size=n, p=[0.4, 0.25, 0.2, 0.15])


@pytest.fixture(scope="module")
def population():
    """One sky of 800 pictures (kinds, images): half the real set, half a generator that samples it."""
    kinds = mixed_kinds(800, seed=1)
    return kinds, sky(kinds, seed=2)


# -- statistics on counts ------------------------------------------------------------------------


def test_holm_matches_the_step_down_by_hand():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> 0.06 (never below the one before)
    np.testing.assert_allclose(C.holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(C.holm([0.02, 0.9]), [0.04, 0.9])
    np.testing.assert_allclose(C.holm([0.5, 0.9]), [1.0, 1.0])  # capped at 1, then carried down


def test_homogeneity_test_is_pearson_chi_square_and_calibrated():
    real, fake = np.array([120, 80, 60, 40]), np.array([90, 95, 70, 25])
    res = C.homogeneity_test(real, fake)
    stat, p, dof, _ = chi2_contingency(np.stack([real, fake]), correction=False)
    assert res.method == "asymptotic" and res.dof == dof == 3
    assert res.statistic == pytest.approx(stat) and res.p == pytest.approx(p)
    # Empty categories are left out; a single non-empty one cannot differ.
    assert C.homogeneity_test([5, 0, 7], [6, 0, 2]).dof == 1
    assert C.homogeneity_test([5, 0], [6, 0]).p == 1.0
    # Under the null (both sides drawn from one mix) p is uniform, also for the Monte Carlo p of small counts.
    rng = np.random.default_rng(0)
    mix = [0.5, 0.3, 0.15, 0.05]
    for n, method in ((400, "asymptotic"), (30, "monte carlo")):
        ps = []
        for _ in range(150):
            r = C.homogeneity_test(
                rng.multinomial(n, mix), rng.multinomial(n, mix), rng_seed=int(rng.integers(1e6))
            )
            ps.append(r.p)
        assert method in r.method
        assert 0.01 <= np.mean(np.array(ps) < 0.1) <= 0.2, (n, np.mean(np.array(ps) < 0.1))


def test_category_tests_flag_only_the_changed_category():
    real, fake = np.array([200, 200, 200, 200]), np.array([200, 200, 60, 200])
    p, p_adj = C.category_tests(real, fake)
    assert p_adj[2] < 1e-6 and p_adj.argmin() == 2
    assert np.all(p_adj >= p) and np.all(p_adj <= 1)


def test_total_variation_and_its_matched_floor():
    assert C.total_variation([1, 1, 0], [0, 1, 1]) == pytest.approx(0.5)
    assert C.total_variation([3, 3], [30, 30]) == 0.0
    rng = np.random.default_rng(0)
    labels = rng.choice(5, size=2000)
    floor, p = C.matched_tv_floor(labels, 5, 2000, rng_seed=1)
    # The floor is the noise of a 2000 vs 2000 comparison: what two such draws of the mix differ by.
    draws = [
        C.total_variation(rng.multinomial(2000, [0.2] * 5), rng.multinomial(2000, [0.2] * 5))
        for _ in range(200)
    ]
    assert floor == pytest.approx(np.mean(draws), rel=0.25)
    assert 0 < p <= 1


def test_adjusted_classify_and_count_undoes_a_known_confusion():
    m = np.array([[0.8, 0.15, 0.05], [0.1, 0.7, 0.2], [0.0, 0.3, 0.7]])  # rows: true class
    truth = np.array([0.6, 0.1, 0.3])
    observed = m.T @ truth  # what a classifier with this confusion reports
    np.testing.assert_allclose(C.adjusted_fractions(m * 100, observed * 1000), truth, atol=1e-6)
    # A class the real set lacks (zero row) gets nothing.
    m0 = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.0, 0.0, 0.0]])
    est = C.adjusted_fractions(m0, [0.5, 0.5, 0.0])
    assert est[2] == 0 and est.sum() == pytest.approx(1)


# -- categories ----------------------------------------------------------------------------------


def test_kmeans_finds_separated_groups_numbered_by_size():
    rng = np.random.default_rng(0)
    sizes = (30, 120, 60)
    x = np.concatenate([rng.normal(c, 0.3, (n, 2)) for c, n in zip((0, 5, 10), sizes, strict=True)])
    truth = np.repeat([0, 1, 2], sizes)
    centres, labels = C.kmeans(x, 3, rng_seed=0)
    # Largest first: group 1 (120) is cluster 0, group 2 (60) cluster 1, group 0 (30) cluster 2.
    assert np.array_equal(labels, np.array([2, 0, 1])[truth])
    np.testing.assert_allclose(centres[:, 0], [5, 10, 0], atol=0.15)
    assert np.array_equal(C.nearest_centre(np.array([[9.0, 8.0], [0.4, 0.1]]), centres), [1, 2])


def test_small_clusters_are_dissolved_into_their_neighbours():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.3, (50, 2)), rng.normal(5, 0.3, (40, 2)), [[40.0, 40.0]]])
    centres, labels = C.kmeans(x, 3, rng_seed=0)
    assert np.bincount(labels).min() == 1  # the outlier got a cluster of its own
    centres, labels, dissolved = C._dissolve_small(x, centres, labels)
    assert (
        dissolved == 1 and len(centres) == 2 and np.bincount(labels).tolist() == [50, 41]
    )  # it joined the nearer group


def test_number_of_clusters_rule():
    assert C.choose_num_clusters(1000, None)[0] == 8
    assert C.choose_num_clusters(100, None)[0] == 4  # ~25 real images per cluster
    assert C.choose_num_clusters(20, None)[0] == 2
    assert C.choose_num_clusters(1000, 12) == (12, "--clusters 12")
    assert C.choose_num_clusters(30, 12)[0] == 6  # capped at N/5


def test_softmax_classifier_and_held_out_predictions():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], [61, 41, 18])  # class sizes that do not divide by the 5 folds
    x = rng.normal(0, 1, (120, 4)) + 3 * np.eye(3, 4)[y]
    clf = C.SoftmaxClassifier(3).fit(x, y)
    proba = clf.predict_proba(x)
    assert proba.shape == (120, 3) and np.allclose(proba.sum(1), 1)
    assert np.mean(clf.predict(x) == y) > 0.9
    folds = C.stratified_folds(y, 5, rng_seed=0)
    assert np.bincount(folds).tolist() == [24] * 5 and all(
        np.ptp(np.bincount(folds[y == c])) <= 1
        for c in range(3)  # each class dealt evenly
    )
    held_out = C.cross_val_predict(x, y, 3, rng_seed=0)
    assert 0.8 < np.mean(held_out == y) <= np.mean(clf.predict(x) == y)
    cm = C.confusion_matrix(y, held_out, 3)
    assert cm.sum(1).tolist() == [61, 41, 18] and np.trace(cm) == np.sum(held_out == y)


def test_flux_colours_are_colours_whatever_the_brightness():
    """The flux-ratio colour of an object does not change when it is made brighter (the mean differences of
    `prdc` do), and a blue object is negative in (R - B) / (R + B)."""
    kinds = np.ones(2, int)  # blue discs
    faint = sky(kinds, seed=3).astype(np.float64)
    bright = np.clip(12 + 2.0 * (faint - 12), 0, 255)  # twice the light above the sky
    fc_faint = C.flux_colours(faint.astype(np.uint8))
    fc_bright = C.flux_colours(bright.astype(np.uint8))
    assert fc_faint.shape == (2, 3) and np.all(fc_faint[:, 2] < -0.3)
    np.testing.assert_allclose(fc_faint, fc_bright, atol=0.05)
    feats, names = C.weight_free_composition_features(faint.astype(np.uint8), {})
    diff = names.index("band0-band1")
    assert abs(feats[0, diff]) > 0.02  # the mean difference: grows with the light ...
    feats2, _ = C.weight_free_composition_features(bright.astype(np.uint8), {})
    assert abs(feats2[0, diff]) > 1.6 * abs(feats[0, diff])  # ... the flux colour does not
    assert C.flux_colours(faint[..., :1].astype(np.uint8)).shape == (2, 0)  # one band: no colour
    assert set(C.feature_families(names)) == {"colour", "brightness", "spectrum"}


def _sliced_features(n: int, *, seed: int, halve_blue: bool) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Weight-free-like features `(n', 40)`: 23 correlated brightness columns (one strong factor), 11
    morphology, 3 spectrum and 3 colour columns (one colour factor, independent of the rest), and whether
    each row is in the bluest quarter; `halve_blue` drops half of those rows."""
    rng = np.random.default_rng(seed)
    light, colour = rng.normal(size=n), rng.normal(size=n)
    cols = [light[:, None] * rng.uniform(0.8, 1.2, 23) + 0.3 * rng.normal(size=(n, 23))]
    cols += [rng.normal(size=(n, 11)) + 0.5 * light[:, None], rng.normal(size=(n, 3))]
    cols += [colour[:, None] + 0.2 * rng.normal(size=(n, 3))]
    x = np.hstack(cols)
    names = [f"band{b}_{s}" for b in range(3) for s in ("mean", "std", "p10", "p50", "p90")]
    names += ["band0-band1", "band1-band2"] + [
        f"band{b}_frame_{s}" for s in ("mean", "std") for b in range(3)
    ]
    names += [f"morph{i}" for i in range(11)] + [f"band{b}_spectrum_slope" for b in range(3)]
    names += ["colour_band0-band1", "colour_band1-band2", "colour_band0-band2"]
    blue = colour < np.quantile(colour, 0.25)
    keep = ~(blue & (rng.random(n) < 0.5)) if halve_blue else np.ones(n, bool)
    return x[keep], names, blue[keep]


def _composition_of_features(real, fake, names, seed=0):
    from astrogan.metrics.base import Context, StatsCache

    images = np.zeros((max(len(real), len(fake)), 8, 8, 3), np.uint8)
    ctx = Context(
        real=images[: len(real)], fake=images[: len(fake)], cache=StatsCache(None, None), rng_seed=seed
    )
    ctx._shared["composition_features"] = C.weight_free_space(real, fake, names)
    return C.CompositionMetric().compute(ctx)


@pytest.mark.slow  # heavy: k-means and slices on 1000 x 40 features, twice
def test_a_missing_colour_slice_is_caught_by_the_family_slices():
    """A generator that halves the bluest quarter: the clusters of all 40 columns follow brightness and
    miss it; the colour family's quantile slices catch it and name the slice."""
    real, names, _ = _sliced_features(1000, seed=0, halve_blue=False)
    fair_fake, _, _ = _sliced_features(1000, seed=1, halve_blue=False)
    fake, _, blue = _sliced_features(1000, seed=2, halve_blue=True)
    assert 0.1 < blue.mean() < 0.2
    d = _composition_of_features(real, fake, names)
    assert [s.family for s in d.slices] == ["colour", "brightness", "morphology", "spectrum"]
    assert d.slices[1].columns[15:17] == ["band0-band1", "band1-band2"]  # mean differences: brightness
    assert d.test.p > 0.05  # the clusters of all columns do not see it
    colour = d.slices[0]
    assert colour.p_adj < 1e-3 and d.p_overall == pytest.approx(colour.p_adj)
    assert all(s.p_adj > 0.05 for s in d.slices[1:])
    under = [c for c in colour.categories if c.verdict == "under"]
    assert len(under) == 1 and under[0].name.startswith("colour slice 1/4 (colour_band")
    assert " low, " in under[0].name  # the bluest slice: the colour columns low
    assert any(st.startswith("The generator under-produces colour slice 1/4") for st in d.statements)
    # The same generator without the cut: nothing flagged, and the overall p is Holm over five tests.
    fair = _composition_of_features(real, fair_fake, names)
    assert fair.p_overall > 0.05 and not fair.slices_flagged and not fair.under and not fair.over
    assert fair.p_overall == pytest.approx(min(C.holm([fair.test.p] + [s.test.p for s in fair.slices])))
    assert "No category is under- or over-produced" in fair.statements[0]


def test_cluster_names_file(tmp_path):
    f = tmp_path / "names.txt"
    f.write_text("# my names\n0: spiral galaxies\n\n3 = star field  # crowded\n", encoding="utf-8")
    assert C.read_cluster_names(f) == {0: "spiral galaxies", 3: "star field"}
    f.write_text("0: a\nspirals\n")
    with pytest.raises(UserError, match="line 2: expected 'NUMBER: NAME'"):
        C.read_cluster_names(f)
    f.write_text("1: a\n1: b\n")
    with pytest.raises(UserError, match="line 2: cluster 1 is named twice"):
        C.read_cluster_names(f)
    with pytest.raises(UserError, match="cannot read"):
        C.read_cluster_names(tmp_path / "missing.txt")


# -- the test: a generator that drops a kind is caught; one that samples the mix is not --------


def _composition(real, fake, **kw):
    res = run_metrics(["composition"], real, fake, **kw)
    return res.details["composition"], res


def _dominant_kind(assign: np.ndarray, kinds: np.ndarray, cluster: int) -> tuple[int, float]:
    counts = np.bincount(kinds[assign == cluster], minlength=4)
    return int(counts.argmax()), counts.max() / max(counts.sum(), 1)


@pytest.mark.slow  # heavy: clusters and scores several generators
def test_clusters_catch_a_generator_that_drops_a_kind(population):
    kinds, images = population
    real, held = np.arange(0, 800, 2), np.arange(1, 800, 2)
    fair, _ = _composition(images[real], images[held], num_clusters=4)
    assert fair.mode == "clusters" and fair.space == "weight-free" and len(fair.categories) == 4
    assert fair.test.p > 0.05 and not fair.under and not fair.over
    assert "No category is under- or over-produced" in fair.statements[0]
    # The four clusters are the four kinds (so that "cluster 2 is under-produced" means something).
    dominant = [_dominant_kind(fair.real_assign, kinds[real], c) for c in range(4)]
    assert sorted(k for k, _ in dominant) == [0, 1, 2, 3] and min(s for _, s in dominant) > 0.95

    # Drop almost all green cigars from the generated set.
    keep = held[(kinds[held] != 2) | (np.arange(held.size) % 10 == 0)]
    biased, _ = _composition(images[real], images[keep], num_clusters=4)
    assert biased.test.p < 1e-3
    assert len(biased.under) == 1
    under = biased.under[0]
    assert _dominant_kind(biased.real_assign, kinds[real], under.id)[0] == 2  # the cigars' cluster
    assert under.fake_fraction < 0.5 * under.real_fraction
    assert f"under-produces {under.name}" in biased.statements[0] and "p < 0.001" in biased.statements[0]


@pytest.mark.slow  # heavy: clusters for every k
def test_clusters_with_the_automatic_k_also_name_the_dropped_kind(population):
    kinds, images = population
    real, held = np.arange(0, 800, 2), np.arange(1, 800, 2)
    fair, _ = _composition(images[real], images[held])
    assert fair.clustering["k"] == 8 and fair.test.p > 0.05 and not fair.under and not fair.over
    keep = held[kinds[held] != 2]
    biased, _ = _composition(images[real], images[keep])
    assert biased.test.p < 1e-3 and biased.under
    # Every under-produced cluster is one of cigars, and no cigar-dominated cluster goes unflagged.
    for c in biased.categories:
        kind, share = _dominant_kind(biased.real_assign, kinds[real], c.id)
        assert (c.verdict == "under") == (kind == 2 and share > 0.8), (c, kind, share)


@pytest.mark.slow  # heavy: trains a classifier on the labels
def test_labels_catch_a_generator_that_halves_a_class(population):
    kinds, images = population
    real, held = np.arange(0, 800, 2), np.arange(1, 800, 2)
    fair, _ = _composition(images[real], images[held], real_labels=kinds[real], label_names=list(KINDS))
    assert fair.mode == "labels" and [c.name for c in fair.categories] == list(KINDS)
    assert fair.classifier["accuracy"] > 0.9 and fair.classifier["chance"] == pytest.approx(
        np.mean(kinds[real] == 0)
    )
    assert fair.test.p > 0.05 and not fair.under and not fair.over
    # Half the blue discs.
    discs = np.flatnonzero(kinds[held] == 1)
    keep = np.setdiff1d(held, held[discs[::2]])
    biased, _ = _composition(images[real], images[keep], real_labels=kinds[real], label_names=list(KINDS))
    assert biased.test.p < 0.01  # 25% -> 14% of ~370 images
    assert [c.name for c in biased.under] == ["blue disc"] and not biased.over
    disc = biased.categories[1]
    truth = np.mean(kinds[keep] == 1)
    assert abs(disc.corrected_fraction - truth) < 0.03 and disc.label_fraction == pytest.approx(
        np.mean(kinds[real] == 1)
    )
    assert biased.statements[0].startswith("The generator under-produces blue disc: ")
    assert (
        ", both as classified (ratio" in biased.statements[0]
        and "Holm-adjusted p = 0.00" in biased.statements[0]
    )


@pytest.mark.slow  # heavy: many composition draws
def test_a_fair_generator_is_flagged_at_the_nominal_rate(population):
    """A single fair split is flagged 5% of the time by design; over many splits of one sky the rate must
    stay near 5% (the clusters are fitted to the real side, the generated side is out of sample)."""
    from astrogan.metrics.base import Context, StatsCache
    from astrogan.metrics.morphology import COMPARED_PROPERTIES, measure_morphology

    kinds, images = population
    morph = measure_morphology(images)
    cols = {
        k: np.where(morph.good(), morph.values[k], np.nan) for k in COMPARED_PROPERTIES if k != "orientation"
    }
    features, names = C.weight_free_composition_features(images, cols)
    flagged, any_verdict = [], []
    for s in range(60):
        perm = np.random.default_rng(100 + s).permutation(len(images))
        a, b = perm[:400], perm[400:]
        ctx = Context(real=images[a], fake=images[b], cache=StatsCache(None, None), rng_seed=s)
        ctx._shared["composition_features"] = C.weight_free_space(features[a], features[b], names)
        d = C.CompositionMetric().compute(ctx)
        flagged.append(d.p_overall < 0.05)
        any_verdict.append(bool(d.under or d.over or d.slices_flagged))
    assert np.mean(flagged) <= 0.15 and np.mean(any_verdict) <= 0.15, (np.mean(flagged), np.mean(any_verdict))


@pytest.mark.slow  # heavy: Inception features and clusters
def test_inception_features_are_used_when_the_weights_are_given(population, monkeypatch):
    import astrogan.metrics.fid as fid

    kinds, images = population
    rng = np.random.default_rng(0)
    # Stand-in Inception features (the weights are never downloaded): 2048-d, kind-dependent.
    feats = rng.normal(0, 1, (800, 2048)) + 15 * np.eye(4, 2048)[kinds]
    monkeypatch.setattr(fid, "shared_inception", lambda ctx: (feats[:400], feats[400:]))
    d, _ = _composition(images[:400], images[400:], inception_weights="unused.pth", num_clusters=4)
    assert d.space == "inception"
    assert all(_dominant_kind(d.real_assign, kinds[:400], c)[1] > 0.95 for c in range(4))
    # Without weights (and none in the environment) the weight-free vector is used, z-scored on the reals
    # (the missing morphology of failed measurements imputed).
    monkeypatch.delenv("ASTROGAN_INCEPTION_WEIGHTS", raising=False)
    space, r, f, families = C.feature_space(run_metrics([], images[:400], images[400:]).context)
    assert sorted(families) == ["brightness", "colour", "morphology", "spectrum"]
    assert families["colour"][0] == ["colour_band0-band1", "colour_band1-band2", "colour_band0-band2"]
    assert (
        space == "weight-free"
        and r.shape == (400, f.shape[1])
        and np.isfinite(r).all()
        and np.isfinite(f).all()
    )


def test_the_real_features_are_cached(population, tmp_path):
    _, images = population
    first, _ = _composition(images[:100], images[100:160], cache_dir=tmp_path, cache_key="k")
    assert len(list(tmp_path.glob("k-composition-*.npz"))) == 1
    second, _ = _composition(images[:100], images[100:160], cache_dir=tmp_path, cache_key="k")
    assert np.array_equal(first.real_assign, second.real_assign) and first.test.p == second.test.p


@pytest.mark.slow  # heavy: many composition draws
def test_a_confused_classifier_does_not_flag_a_fair_generator(population):
    """Two classes that look alike (a random quarter of the red dots relabelled): the classifier sends most
    of both to the larger one. Real images classified by held-out folds take the same bias as the
    generated ones, so a fair generator is still not flagged, and ACC undoes some of the bias."""
    kinds, images = population
    labels = kinds.copy()
    twins = np.flatnonzero(kinds == 0)
    labels[twins[np.random.default_rng(5).random(twins.size) < 0.25]] = 4
    real, held = np.arange(0, 800, 2), np.arange(1, 800, 2)
    fair, _ = _composition(images[real], images[held], real_labels=labels[real])
    assert fair.classifier["accuracy"] < 0.95  # the twins are confused
    twin = fair.categories[4]
    assert twin.fake_fraction < 0.5 * twin.label_fraction  # classified, the twin class nearly vanishes ...
    assert fair.test.p > 0.05 and not fair.under and not fair.over  # ... on both sides alike


def test_too_few_images_skip_with_a_reason(population):
    _, images = population
    res = run_metrics(["composition"], images[:15], images[15:40])
    assert res.skipped["composition"] == (
        "composition skipped: needs at least 20 real and 10 generated images, got 15 and 25"
    )


def test_bad_labels_are_refused(population):
    _, images = population
    with pytest.raises(UserError, match=r"one per real image \(30,\)"):
        run_metrics(["composition"], images[:30], images[30:60], real_labels=np.zeros(29, int))
    with pytest.raises(UserError, match="at least 2"):
        run_metrics(["composition"], images[:30], images[30:60], num_clusters=1)


# -- the report and the command ------------------------------------------------------------------


@pytest.mark.slow  # heavy: composition and its report
def test_report_has_the_table_statements_and_thumbnails(population, tmp_path):
    kinds, images = population
    held = np.arange(1, 800, 2)
    keep = held[kinds[held] != 2]
    doc = evaluate(
        images[::2],
        images[keep],
        tmp_path / "rep",
        names=["composition"],
        num_clusters=4,
        category_names={0: "red dots", 9: "nothing"},
    )
    comp = doc["composition"]
    assert comp["mode"] == "clusters" and comp["test"]["p"] < 1e-3 and comp["unused_names"] == [9]
    assert comp["categories"][0]["name"] == "red dots (cluster 0)"
    under = [c for c in comp["categories"] if c["verdict"] == "under"]
    assert len(under) == 1 and under[0]["generated_count"] == 0
    (row,) = doc["summary"]
    assert row["metric"].startswith("composition (total variation over 4 clusters")
    assert row["floor"] > 0 and row["value"] > 3 * row["floor"]
    assert doc["metrics"]["composition_num_under"] == 1.0
    files = sorted(p.name for p in (tmp_path / "rep").glob("composition*.png"))
    assert files == ["composition.png"] + [f"composition_{i:02d}.png" for i in range(4)]
    assert set(files) <= set(doc["plots"])
    page = (tmp_path / "rep" / "report.html").read_text()
    assert "is the generated sky a representative sky?" in page and "red dots (cluster 0)" in page
    assert "The generator under-produces" in page and "composition_03.png" in page
    assert "Names given for categories that do not exist: [9]" in page


def _labelled_dataset(tmp_path, kinds):
    """A Galaxy10-layout file of our four kinds (class numbers 0-3), built into a dataset at 16 px."""
    from astrogan.data.build import BuildOptions, build_dataset

    g10 = tmp_path / "Galaxy10_DECals.h5"
    with h5py.File(g10, "w") as fh:
        fh["images"] = sky(kinds, size=32, seed=3)
        fh["ans"] = kinds.astype(np.uint8)
    build_dataset(
        [], tmp_path / "ds", galaxy10_path=g10, options=BuildOptions(image_sizes=(16,)), show_progress=False
    )
    return tmp_path / "ds"


@pytest.mark.slow  # heavy: eval with composition from the CLI
def test_eval_command_uses_the_dataset_labels_and_cluster_names(tmp_path, monkeypatch):
    import torch

    from astrogan.cli.main import main
    from astrogan.models import get_arch
    from astrogan.models.io import save_generator

    ds = _labelled_dataset(tmp_path, mixed_kinds(60, seed=4))
    torch.manual_seed(0)
    spec = get_arch("dcgan")
    cfg = spec.config_cls(image_size=16, channels=3, z_dim=8, ngf=8, ndf=8)
    save_generator(
        spec.build_generator(cfg).eval(), arch="dcgan", config=cfg, out_dir=tmp_path / "run" / "checkpoints"
    )
    names = tmp_path / "names.txt"
    names.write_text("2: cigars\n")
    args = [
        "eval",
        "--run",
        str(tmp_path / "run"),
        "--data",
        str(ds),
        "--num",
        "30",
        "--metrics",
        "composition",
        "--device",
        "cpu",
        "--cache-dir",
        str(tmp_path / "c"),
    ]
    assert main([*args, "--cluster-names", str(names)]) == 0
    comp = json.loads((tmp_path / "run" / "eval" / "metrics.json").read_text())["composition"]
    assert comp["mode"] == "labels" and comp["classifier"]["accuracy"] > 0
    # Galaxy10's class names come from the dataset; the file renames class 2.
    assert [c["name"] for c in comp["categories"]] == [
        "Disturbed",
        "Merging",
        "cigars (Round Smooth)",
        "In-between Round Smooth",
    ]
    # A bad names file or --clusters value is refused with one line, before anything is generated.
    import astrogan.cli.evaluate as cli_eval

    generated = []
    monkeypatch.setattr(cli_eval, "_generate", lambda *a, **k: generated.append(1))
    names.write_text("spirals\n")
    out = ["--out", str(tmp_path / "e2")]
    assert main([*args, *out, "--cluster-names", str(names)]) == 2
    assert main([*args, *out, "--clusters", "1"]) == 2
    assert not generated and not (tmp_path / "e2").exists()
