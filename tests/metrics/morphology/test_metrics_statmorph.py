"""The fast morphology engine agrees with statmorph (the reference) on a handful of galaxies."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from astrogan.metrics.morphology import measure_morphology, sersic_profile

pytest.importorskip("statmorph")


def _stamps() -> np.ndarray:
    rng = np.random.default_rng(0)
    size = 40
    yy, xx = np.indices((size, size), dtype=np.float64)
    out = []
    for n, r_eff, q, th in [
        (1.0, 3.0, 0.6, 0.3),
        (2.5, 4.0, 0.9, 1.0),
        (4.0, 2.5, 0.7, 2.0),
        (0.7, 5.0, 0.5, 0.8),
    ]:
        dx, dy = xx - 19.3, yy - 20.2
        xp, yp = dx * np.cos(th) + dy * np.sin(th), -dx * np.sin(th) + dy * np.cos(th)
        img = (
            50
            * sersic_profile(np.hypot(xp, yp / q), n=n, r_eff=r_eff)
            / sersic_profile(0.5, n=n, r_eff=r_eff)
        )
        out.append(img + rng.normal(0, 0.5, img.shape))
    return np.stack(out)


def test_fast_engine_matches_statmorph_on_sersic_stamps():
    from astrogan.metrics.morphology.statmorph import measure_morphology_statmorph

    imgs = _stamps()
    fast = measure_morphology(imgs)
    ref = measure_morphology_statmorph(imgs, num_workers=1)
    assert (fast.flag < 2).all() and (ref.flag < 2).all()
    tol = {
        "gini": 0.02,
        "m20": 0.05,
        "concentration": 0.1,
        "r50": 0.1,
        "rpetro_circ": 0.3,
        "ellipticity": 1e-6,
        "orientation": 1e-6,
        "xc_centroid": 1e-6,
    }
    for k, t in tol.items():
        assert np.allclose(fast.values[k], ref.values[k], atol=t), (k, fast.values[k], ref.values[k])
    # The same 2D Sérsic model from the same start: the same optimum (pixels far out are fitted in blocks).
    assert np.allclose(fast.values["sersic_n"], ref.values["sersic_n"], rtol=0.03), (
        fast.values["sersic_n"],
        ref.values["sersic_n"],
    )
    assert np.allclose(fast.values["sersic_rhalf"], ref.values["sersic_rhalf"], rtol=0.03)


def test_statmorph_exceptions_are_flagged_counted_and_warned_once(monkeypatch):
    """statmorph raising on some galaxies: flag 2 and NaN for those, the others measured, and one warning for
    the batch with the count by exception type (single-process path, so the patch reaches statmorph)."""
    import statmorph

    from astrogan.metrics.morphology import PROPERTIES
    from astrogan.metrics.morphology.statmorph import measure_morphology_statmorph

    real = statmorph.SourceMorphology
    raises = {1: ValueError("segmap too small"), 2: np.linalg.LinAlgError("singular"), 3: ValueError("nan")}
    calls = []

    def flaky(*args, **kw):
        calls.append(len(calls))
        if calls[-1] in raises:
            raise raises[calls[-1]]
        return real(*args, **kw)

    monkeypatch.setattr(statmorph, "SourceMorphology", flaky)
    with pytest.warns(UserWarning, match="statmorph failed") as record:
        res = measure_morphology_statmorph(_stamps(), num_workers=1)
    assert calls == [0, 1, 2, 3]
    msgs = [str(w.message) for w in record if "statmorph failed" in str(w.message)]
    assert len(msgs) == 1, msgs
    assert msgs[0].startswith("statmorph failed on 3 of 4 galaxies (ValueError x2, LinAlgError x1); they are")
    assert "flagged bad" in msgs[0] and "galaxy index 1, 2, 3" in msgs[0]
    assert res.flag[0] < 2 and list(res.flag[1:]) == [2, 2, 2]
    assert np.isfinite(res.values["gini"][0])
    for k in PROPERTIES:
        assert np.isnan(res.values[k][1:]).all(), k

    # A batch where statmorph never raises says nothing.
    monkeypatch.setattr(statmorph, "SourceMorphology", real)
    with warnings.catch_warnings(record=True) as clean:
        warnings.simplefilter("always")
        measure_morphology_statmorph(_stamps()[:1], num_workers=1)
    assert not [w for w in clean if "statmorph failed" in str(w.message)]


@pytest.mark.slow  # heavy: statmorph on every stamp
def test_statmorph_engine_through_run_metrics():
    from astrogan.metrics.compute import run_metrics

    imgs = _stamps()
    res = run_metrics(["morphology"], imgs, imgs[::-1].copy(), morphology_engine="statmorph", num_workers=1)
    assert res.details["morphology"]["engine"] == "statmorph"
    # The same galaxies in another order: every distance is zero.
    assert res.scalars["morph_w1_mean"] == pytest.approx(0.0, abs=1e-12)


def _statmorph_skybox_rule(seg: np.ndarray) -> tuple[int, int, int] | None:
    """statmorph's _slice_skybox written out: the first segmap-free square in a row-major scan."""
    ny, nx = seg.shape
    size = 32
    while True:
        for i in range(0, ny - size):
            for j in range(0, nx - size):
                if not seg[i : i + size, j : j + size].any():
                    return i, j, size
        if size <= 2:
            return None
        size //= 2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_skybox_follows_statmorph_scan(seed):
    from astrogan.metrics.morphology.measure import _skybox

    rng = np.random.default_rng(seed)
    seg = np.zeros((48, 48), dtype=bool)
    for _ in range(4 + 4 * seed):  # a few rectangles, more for later seeds (smaller boxes)
        y, x = rng.integers(0, 44, 2)
        seg[y : y + rng.integers(3, 20), x : x + rng.integers(3, 20)] = True
    img = rng.normal(size=seg.shape)
    box = _skybox(img, seg)
    ref = _statmorph_skybox_rule(seg)
    if ref is None:
        assert box.size == 0
    else:
        i, j, size = ref
        assert box.shape == (size, size)
        assert np.array_equal(box, img[i : i + size, j : j + size])


def _disc(size: int, xc: float, yc: float, n: float, r_eff: float, q: float, th: float, amp: float):
    """A Sérsic disc on a size x size stamp, and its major-axis coordinate, radius and azimuth."""
    yy, xx = np.indices((size, size), dtype=np.float64)
    dx, dy = xx - xc, yy - yc
    xp, yp = dx * np.cos(th) + dy * np.sin(th), -dx * np.sin(th) + dy * np.cos(th)
    img = amp * sersic_profile(np.hypot(xp, yp / q), n=n, r_eff=r_eff) / sersic_profile(0.5, n=n, r_eff=r_eff)
    return img, xp, np.hypot(dx, dy), np.arctan2(dy, dx)


def _clumps(size: int, spec: list[tuple[float, float, float, float]]) -> np.ndarray:
    """Gaussian blobs (x, y, sigma, amplitude)."""
    yy, xx = np.indices((size, size), dtype=np.float64)
    return sum(a * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * s * s)) for x, y, s, a in spec)


def _structured_stamps() -> list[np.ndarray]:
    """Six galaxies (40-64 px) whose asymmetry, smoothness, radii and elongation clearly differ."""
    rng = np.random.default_rng(7)
    out = []
    # A disc with four off-centre clumps: clumpy (high smoothness), moderately asymmetric.
    clumps = [(29, 20, 1.2, 25), (17, 28, 1.2, 20), (27, 32, 1.2, 15), (19, 18, 1.2, 18)]
    out.append(_disc(48, 23.6, 24.3, 1.0, 5.3, 0.8, 0.4, 40)[0] + _clumps(48, clumps))
    # A two-armed logarithmic spiral: structured but symmetric under 180 degrees (low asymmetry).
    img, _, r, phi = _disc(56, 27.7, 28.2, 1.0, 7.0, 0.9, 0.2, 40)
    out.append(img * (1 + 0.7 * np.cos(2 * (phi - 2.0 * np.log(r + 0.5)))))
    # A lopsided disc, brighter on one side of its major axis: the most asymmetric.
    img, xp, *_ = _disc(44, 21.8, 22.1, 1.5, 5.6, 0.75, 1.1, 50)
    out.append(img * (1 + 0.6 * np.tanh(xp / 4.0)))
    # A smooth, thin disc (q 0.3): elongation ~3, the largest elliptical Petrosian radius.
    out.append(_disc(64, 31.4, 32.3, 1.0, 9.5, 0.3, 0.7, 40)[0])
    # A bulge plus a clumpy two-armed disc.
    img, _, r, phi = _disc(60, 29.5, 30.1, 1.0, 10.0, 0.6, 2.2, 25)
    bulge = _disc(60, 29.5, 30.1, 4.0, 2.0, 0.9, 2.2, 60)[0]
    clumps = [(38, 27, 1.2, 14), (22, 36, 1.2, 12), (35, 38, 1.0, 10), (21, 24, 1.0, 12), (40, 33, 1.0, 9)]
    out.append(img * (1 + 0.5 * np.cos(2 * (phi - 1.5 * np.log(r + 0.5)))) + bulge + _clumps(60, clumps))
    # A compact n=3 spheroid with one bright clump off-centre.
    img, *_ = _disc(40, 19.4, 20.3, 3.0, 6.5, 0.85, 0.5, 60)
    out.append(img + _clumps(40, [(24, 16, 1.0, 20)]))
    return [o + rng.normal(0, 0.5, o.shape) for o in out]


@pytest.mark.slow  # heavy: statmorph on every stamp
def test_fast_engine_matches_statmorph_on_structured_galaxies():
    """asymmetry, smoothness, r20, r80, rpetro_ellip and elongation agree with statmorph on galaxies where
    they are far from zero and differ from galaxy to galaxy (smooth Sérsic stamps prove nothing for A, S)."""
    from scipy.stats import spearmanr

    from astrogan.metrics.morphology.statmorph import measure_morphology_statmorph

    fast, ref = {}, {}
    for img in _structured_stamps():  # stamps of different sizes: one call each
        f, r = measure_morphology(img[None]), measure_morphology_statmorph(img[None], num_workers=1)
        assert f.flag[0] < 2 and r.flag[0] < 2
        for k in ("asymmetry", "smoothness", "r20", "r80", "rpetro_ellip", "elongation"):
            fast.setdefault(k, []).append(f.values[k][0])
            ref.setdefault(k, []).append(r.values[k][0])
    fast = {k: np.array(v) for k, v in fast.items()}
    ref = {k: np.array(v) for k, v in ref.items()}

    # Residuals measured on these stamps (largest over the six); tolerances 3-5x above them:
    # - asymmetry 1.6e-3: the fast engine scores statmorph's function at a given centre to ~1e-4, but its
    #   pattern search (1/4 px, then a quadratic step) ends a little above Nelder-Mead's minimum;
    # - smoothness 3.8e-4: aperture edge pixels ramp linearly instead of photutils' exact overlap;
    # - r20 2.6e-3, r80 1.1e-3, rpetro_ellip 5.9e-3 (relative): curves of growth from radial bins;
    # - elongation 2e-16: the same second moments. These stamps have no pixel that statmorph's 10-sigma
    #   outlier rule masks (the fast engine has no such rule; one masked pixel moves elongation ~3e-3).
    # Over 40 noise seeds of these galaxies 27 pass; the others fail on statmorph's outlier mask, on
    # rpetro_ellip of the q=0.3 disc (2-6%: thin elliptical annuli on pixel centres), on a Petrosian
    # function that grazes 0.2 (11%), once on Nelder-Mead stopping short (A 0.012, r20 4.6%) and once on
    # smoothness after a 1.7% rpetro_circ shift (2.2e-3). Every rpetro_circ here is > 0.9 px from a multiple
    # of 4, where the smoothness boxcar int(rpetro_circ / 4) jumps.
    atol = {"asymmetry": 0.006, "smoothness": 0.002}
    rtol = {"r20": 0.01, "r80": 0.01, "rpetro_ellip": 0.02, "elongation": 1e-9}
    for k, t in atol.items():
        assert np.abs(fast[k] - ref[k]).max() < t, (k, fast[k], ref[k])
    for k, t in rtol.items():
        assert np.abs(fast[k] / ref[k] - 1).max() < t, (k, fast[k], ref[k])

    # The values are far from zero and spread over the stamps (statmorph's: asymmetry -0.02..0.20,
    # smoothness 0.0076..0.073, r20 1.66..3.08, r80 7.6..11.2, rpetro_ellip 10.0..19.7, elongation 1.13..3.11),
    # so the tolerances above are a small fraction of the differences between galaxies ...
    assert np.ptp(ref["asymmetry"]) > 0.15 and np.ptp(ref["smoothness"]) > 0.05
    for k in ("r20", "r80", "rpetro_ellip"):
        assert ref[k].max() > 1.4 * ref[k].min(), (k, ref[k])
    assert ref["elongation"].max() > 2.5 and ref["elongation"].min() < 1.2
    # ... and both engines rank the galaxies alike.
    for k in fast:
        rho = spearmanr(fast[k], ref[k]).statistic
        assert rho >= 0.9, (k, rho, fast[k], ref[k])
